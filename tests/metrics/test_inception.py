"""Video Inception Score against a numpy reference (StyleGAN-V's formula)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from av_lightning.metrics.inception import VideoInceptionScore, canonical_shuffle, inception_score
from tests.metrics.metric_helpers import TinyVideoNet, random_videos


def numpy_is(probs: np.ndarray, splits: int) -> tuple[float, float]:
    """StyleGAN-V's compute_isv after the shuffle."""
    n = len(probs)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]
        kl = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_functional_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((53, 7)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mean, std = inception_score(torch.from_numpy(probs), splits=10)
    ref_mean, ref_std = numpy_is(probs, 10)
    assert abs(mean.item() - ref_mean) < 1e-10 and abs(std.item() - ref_std) < 1e-10


def test_metric_matches_numpy_on_tiny_classifier():
    videos = random_videos(20, seed=0)
    net = TinyVideoNet(out=5, head="probs")
    metric = VideoInceptionScore(net, splits=4, shuffle_seed=None)
    metric.update(videos[:7])
    metric.update_from_clips(fake=videos[7:], texts=["x"] * 13)
    with torch.no_grad():
        probs = net(videos.permute(0, 2, 1, 3, 4)).double().numpy()
    ref_mean, ref_std = numpy_is(probs, 4)
    out = metric.compute()
    assert (
        abs(out["is_mean"].item() - ref_mean) < 1e-6 and abs(out["is_std"].item() - ref_std) < 1e-6
    )


def test_logits_are_softmaxed_once_and_probs_not_at_all():
    videos = random_videos(10, seed=1)
    from_probs = VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=2)
    from_logits = VideoInceptionScore(
        TinyVideoNet(out=5, head="logits"), outputs="logits", splits=2
    )
    from_probs.update(videos)
    from_logits.update(videos)
    torch.testing.assert_close(from_probs.compute(), from_logits.compute())
    wrong = VideoInceptionScore(TinyVideoNet(out=5, head="logits"), splits=2)
    with pytest.raises(ValueError, match="outputs='logits'"):
        wrong.update(videos)


def test_order_invariant_with_shuffle_seed():
    videos = random_videos(20, seed=2)
    a = VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=4)
    b = VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=4)
    a.update(videos)
    b.update(videos.flip(0)[:9])
    b.update(videos.flip(0)[9:])
    torch.testing.assert_close(a.compute(), b.compute())
    probs = torch.rand(6, 3)
    assert sorted(canonical_shuffle(probs, 42).sum(1).tolist()) == sorted(probs.sum(1).tolist())


def test_too_few_clips_for_splits():
    metric = VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=10)
    metric.update(random_videos(3))
    with pytest.raises(RuntimeError, match="at least 10"):
        metric.compute()
