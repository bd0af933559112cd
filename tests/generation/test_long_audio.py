"""Long audio: window planning, prediction blending, and seams on the tiny pixel-space backbone."""

from __future__ import annotations

import math

import pytest
import torch

from av_lightning.pipeline import WindowedDenoiser, blend_weights, plan_video, plan_windows
from tests.helpers import sample_one as generate_video


@pytest.mark.parametrize("total,window,overlap,starts", [
    (4, 8, 2, [0]),
    (8, 8, 2, [0]),
    (20, 8, 2, [0, 6, 12]),
    (21, 8, 2, [0, 6, 12, 13]),
    (48, 24, 6, [0, 18, 24]),
    (10, 4, 1, [0, 3, 6]),
])
def test_plan_windows(total, window, overlap, starts):
    got = plan_windows(total, window, overlap)
    assert got == starts
    assert got[-1] + min(window, total) == total  # last window ends at the last frame
    assert all(b - a <= window - overlap for a, b in zip(got, got[1:]))  # neighbours share >= overlap frames


def test_plan_video_counts_whole_frames():
    plan = plan_video(num_samples=40000, sample_rate=16000, fps=4.0, window=4, overlap=1)
    assert (plan.num_frames, plan.window, plan.starts) == (10, 4, [0, 3, 6])
    short = plan_video(num_samples=9000, sample_rate=16000, fps=4.0, window=4)
    assert (short.num_frames, short.window, short.starts) == (2, 2, [0])


def test_blend_weights():
    w = blend_weights(8, 2)
    assert torch.allclose(w, torch.tensor([1 / 3, 2 / 3, 1, 1, 1, 1, 2 / 3, 1 / 3]))
    assert torch.equal(blend_weights(8, 2, "uniform"), torch.ones(8))


def test_windowed_denoiser_bounds_its_calls_and_averages():
    calls = []

    def denoise(x, t, c):  # prediction = the latents + the window's conditioning value per frame
        calls.append(x.shape[0])
        return x + c[..., :1, :1].permute(0, 2, 1, 3)[..., None]

    starts, F, N = [0, 3, 6], 4, 10
    cond = torch.zeros(2, 3 * F, 5, 1)
    for k in range(3):
        cond[:, k * F : (k + 1) * F] = float(k)
    den = WindowedDenoiser(denoise, starts, F, N, blend_weights(F, 1, "uniform"))
    x = torch.randn(2, 3, N, 2, 2)
    out = den(x, torch.tensor([5, 5]), cond)
    assert calls == [2, 2, 2]  # by default one window per row and call: the memory of a one-window batch
    # frame 3 is in windows 0 and 1: mean offset 0.5; frame 9 only in window 2
    torch.testing.assert_close(out - x, torch.tensor([0, 0, 0, .5, 1, 1, 1.5, 2, 2, 2]).view(1, 1, N, 1, 1).expand_as(x))
    WindowedDenoiser(denoise, starts, F, N, blend_weights(F, 1), max_batch=4)(x, torch.tensor([5, 5]), cond)
    assert calls[3:] == [4, 2]


def rotating_noise(frames: int, seed: int, size: int = 8, theta: float = 0.25) -> torch.Tensor:
    """Unit-variance noise that turns slowly over time: frames inside a window differ smoothly."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 1, 3, 1, size, size, generator=g)
    f = torch.arange(frames, dtype=torch.float32)[None, None, :, None, None] * theta
    return torch.cos(f) * a + torch.sin(f) * b


def jumps(latents: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between consecutive frames of ``(C, N, h, w)``: ``(N - 1,)``."""
    return (latents[:, 1:] - latents[:, :-1]).abs().mean(dim=(0, 2, 3))


@pytest.fixture(scope="module")
def model():
    from tests.conftest import tiny_module

    return tiny_module(num_frames=4, fps=4.0).eval()


@pytest.fixture(scope="module")
def song():
    sr, seconds = 16000, 2.5
    t = torch.arange(int(seconds * sr)) / sr
    g = torch.Generator().manual_seed(0)
    return 0.3 * torch.sin(2 * math.pi * 440 * t) * (1 + torch.sin(2 * math.pi * 1.5 * t)) / 2 + 0.01 * torch.randn(t.shape, generator=g)


def test_three_windows_have_no_seams(model, song):
    """10 frames in windows [0, 4), [3, 7), [6, 10): the jumps where a window starts or ends are no
    larger than the jumps inside windows, while windows generated apart (disjoint windows with their
    own noise: [0, 4), [4, 8), [8, 12)) show clear seams under the same measure."""
    kw = dict(height=8, width=8, steps=2, guidance_scale=1.0, progress=False, return_latents=True)
    latents = generate_video(model, song, overlap=1, noise=rotating_noise(10, 1), **kw)
    assert latents.shape == (3, 10, 8, 8)
    starts, F = [0, 3, 6], 4
    seams = sorted({s - 1 for s in starts[1:]} | {s + F - 1 for s in starts[:-1]})  # jump k: frame k -> k + 1
    d = jumps(latents)
    inside = [k for k in range(9) if k not in seams]
    assert d[seams].max() <= 1.25 * d[inside].max(), (d, seams)

    apart = torch.cat([rotating_noise(4, 10 + k) for k in range(3)], dim=2)
    naive = generate_video(model, torch.cat([song, song[:8000]]), overlap=0, noise=apart, **kw)
    dn = jumps(naive)
    assert dn[[3, 7]].min() > 2 * dn[[0, 1, 2, 4, 5, 6, 8, 9, 10]].max(), dn
