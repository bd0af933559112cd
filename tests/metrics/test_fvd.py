"""FVD: invariants, the Fréchet term against scipy, real-statistics caching."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from av_lightning.metrics.fvd import FVD, frechet_distance
from tests.metrics.metric_helpers import TinyVideoNet, random_videos


def make_fvd(**kw) -> FVD:
    return FVD(TinyVideoNet(out=8), num_features=8, **kw)


def test_set_against_itself_is_zero():
    videos = random_videos(12, seed=0)
    fvd = make_fvd()
    fvd.update(videos, real=True)
    fvd.update(videos, real=False)
    assert abs(fvd.compute().item()) < 1e-6


def test_permutation_invariant_and_positive():
    real, fake = random_videos(12, seed=0), random_videos(12, seed=1)
    a, b = make_fvd(), make_fvd()
    a.update(real, real=True)
    a.update(fake, real=False)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    b.update(real[perm][:5], real=True)
    b.update(real[perm][5:], real=True)
    b.update(fake[perm], real=False)
    assert a.compute().item() > 1e-3
    # float32 features differ in the last bit with the batch composition
    torch.testing.assert_close(a.compute(), b.compute(), rtol=1e-5, atol=1e-8)


def test_frechet_term_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    d = 6
    x, y = rng.standard_normal((50, d)), rng.standard_normal((40, d)) @ rng.standard_normal((d, d))
    mu1, mu2 = x.mean(0), y.mean(0) + 0.3
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(root))
    ours = frechet_distance(*(torch.from_numpy(t) for t in (mu1, s1, mu2, s2)))
    assert ours.dtype == torch.float64
    assert abs(ours.item() - expected) < 1e-8 * max(1.0, abs(expected))


def test_update_from_clips_and_real_stats_survive_reset():
    real, fake = random_videos(8, seed=0), random_videos(8, seed=1)
    fvd = make_fvd()
    fvd.update_from_clips(fake=fake, real=real, fps=24.0)
    first = fvd.compute()
    fvd.reset()
    assert fvd.real_num == 8 and fvd.fake_num == 0
    fvd.update_from_clips(fake=fake)  # no real clips this time: the kept ones are used
    torch.testing.assert_close(fvd.compute(), first)
    fvd.reset()
    # Real clips after a reset are ignored: the real set is encoded once.
    fvd.update_from_clips(fake=fake, real=random_videos(8, seed=5))
    assert fvd.real_num == 8
    torch.testing.assert_close(fvd.compute(), first)
    fresh = make_fvd(reset_real_features=True)
    fresh.update(real, real=True)
    fresh.reset()
    assert fresh.real_num == 0


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_real_statistics_saved_and_loaded(tmp_path, suffix):
    path = tmp_path / f"real{suffix}"
    real, fake = random_videos(8, seed=0), random_videos(8, seed=1)
    first = make_fvd(real_stats_path=path)
    first.update(real, real=True)
    first.update(fake, real=False)
    expected = first.compute()
    assert path.is_file()
    second = make_fvd(real_stats_path=path)
    second.update(random_videos(4, seed=7), real=True)  # ignored: statistics come from the file
    second.update(fake, real=False)
    torch.testing.assert_close(second.compute(), expected)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_frame_count_protocol_and_errors():
    fvd = make_fvd()
    with pytest.raises(ValueError, match="allow_shorter"):
        fvd.update(random_videos(2, frames=8), real=False)
    short = make_fvd(allow_shorter=True)
    short.update(random_videos(2, frames=8), real=False)
    calls = []
    net = TinyVideoNet(out=8)
    net.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape))
    long = FVD(net, num_features=8)
    long.update(random_videos(2, frames=20), real=True)
    assert calls[-1] == (2, 3, 16, 16, 16)  # (B, 3, T, H, W), the first 16 frames
    with pytest.raises(RuntimeError, match="at least 2"):
        make_fvd().compute()


def test_num_features_inferred():
    assert FVD(TinyVideoNet(out=5)).num_features == 5
