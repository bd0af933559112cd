"""Horn–Schunck flow: a known sub-pixel translation, and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from av_lightning.metrics.optical_flow import (
    HornSchunckParams,
    flow_magnitude_trajectory,
    horn_schunck,
    to_gray,
)


def smooth_texture(
    shift_x: float = 0.0, shift_y: float = 0.0, size: int = 64, seed: int = 0
) -> torch.Tensor:
    """``(size, size)`` float32 sum of low-frequency sinusoids, content moved by (shift_x, shift_y)
    pixels (evaluated analytically, so the translation is exact)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = xx - shift_x, yy - shift_y
    out = np.zeros_like(x)
    for _ in range(6):
        fx, fy = rng.uniform(-0.06, 0.06, 2)
        out += np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    return torch.from_numpy(0.5 + 0.08 * out).float()


@pytest.mark.parametrize("shift", [(0.4, -0.25), (-0.3, 0.6)])
def test_recovers_subpixel_translation(shift):
    first, second = smooth_texture(), smooth_texture(*shift)
    flow = horn_schunck(first[None], second[None], alpha=0.05, iterations=200)[0]
    interior = flow[:, 8:-8, 8:-8].mean(dim=(1, 2))
    for estimate, truth in zip(interior.tolist(), shift):
        assert abs(estimate - truth) <= 0.1 * abs(truth), (interior, shift)


def test_batched_equals_per_pair():
    pairs = [(smooth_texture(seed=s), smooth_texture(0.3 * s, -0.2, seed=s)) for s in range(4)]
    first = torch.stack([a for a, _ in pairs])
    second = torch.stack([b for _, b in pairs])
    batched = horn_schunck(first, second, alpha=0.05, iterations=30, blur_sigma=1.0)
    for i, (a, b) in enumerate(pairs):
        single = horn_schunck(a[None], b[None], alpha=0.05, iterations=30, blur_sigma=1.0)[0]
        torch.testing.assert_close(batched[i], single, rtol=1e-4, atol=1e-5)


def test_trajectory_batched_over_videos_and_convention():
    g = torch.Generator().manual_seed(0)
    videos = torch.randint(0, 256, (3, 5, 3, 24, 32), generator=g, dtype=torch.uint8)
    params = HornSchunckParams(iterations=10, max_side=16)
    traj = flow_magnitude_trajectory(videos, params, chunk_pairs=5)  # chunks cross video borders
    assert traj.shape == (3, 5)
    assert torch.equal(traj[:, 0], traj[:, 1])  # [flow(0,1)] + [flow(i-1,i)]
    for b in range(3):
        torch.testing.assert_close(traj[b], flow_magnitude_trajectory(videos[b : b + 1], params)[0])


def test_static_video_has_zero_flow_and_gray_matches_opencv():
    import cv2

    g = torch.Generator().manual_seed(1)
    frame = torch.randint(0, 256, (1, 3, 20, 20), generator=g, dtype=torch.uint8)
    assert (
        flow_magnitude_trajectory(frame.repeat(1, 4, 1, 1, 1).view(1, 4, 3, 20, 20)).abs().max()
        == 0
    )
    rgb = frame[0].permute(1, 2, 0).numpy()
    ours = to_gray(frame[0]).numpy() * 255
    np.testing.assert_allclose(ours, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), atol=0.51)


def test_bad_input_fails_loudly():
    with pytest.raises(ValueError, match="equal shape"):
        horn_schunck(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
    with pytest.raises(ValueError, match="at least 2 frames"):
        flow_magnitude_trajectory(torch.zeros(1, 1, 3, 8, 8, dtype=torch.uint8))


def test_cpu_kernel_gives_the_torch_loops_flow():
    pairs = [(smooth_texture(seed=s), smooth_texture(0.4 * s - 0.5, 0.3, seed=s)) for s in range(3)]
    first = torch.stack([a for a, _ in pairs])[:, :40, :56]  # not square
    second = torch.stack([b for _, b in pairs])[:, :40, :56]
    kernel = horn_schunck(first, second, alpha=0.05, iterations=40, blur_sigma=1.0, backend="numba")
    loop = horn_schunck(first, second, alpha=0.05, iterations=40, blur_sigma=1.0, backend="torch")
    assert kernel.abs().max() > 0.1  # there is flow to compare
    # Same float32 operations in the same order; allow for a compiler that contracts to FMA.
    torch.testing.assert_close(kernel, loop, rtol=0, atol=1e-6)
    assert horn_schunck(first, second, backend="auto").device == first.device


def test_clips_of_different_lengths_and_sizes_solved_together():
    from av_lightning.metrics.optical_flow import clip_trajectories, flow_input

    g = torch.Generator().manual_seed(2)
    clips = [torch.randint(0, 256, (f, 3, h, w), generator=g, dtype=torch.uint8)
             for f, h, w in ((4, 16, 20), (6, 16, 20), (3, 12, 12), (5, 16, 20))]
    params = HornSchunckParams(iterations=8, max_side=None)
    grays = [flow_input(c, None)[0] for c in clips]
    together = clip_trajectories(grays, [1.0] * len(clips), params, chunk_pairs=4)
    for clip, trajectory in zip(clips, together):
        alone = flow_magnitude_trajectory(clip[None], params)[0]
        torch.testing.assert_close(trajectory, alone, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="backend"):
        horn_schunck(grays[0][:1], grays[0][1:2], backend="opencv")


def test_cpu_clip_kernel_matches_the_torch_path_on_a_real_clip():
    from av_lightning.metrics._synthetic import render_video
    from av_lightning.metrics.alignment import local_maxima

    videos = torch.from_numpy(np.stack([render_video([4, 11, 19], num_frames=26, size=72, seed=s)
                                        for s in range(2)])).permute(0, 1, 4, 2, 3)
    params = HornSchunckParams(max_side=48)  # downscaled, blurred: every stage runs
    kernel = flow_magnitude_trajectory(videos, params)
    loop = flow_magnitude_trajectory(videos, params, backend="torch")
    # Same operations in the same order; only the mean's summation order differs.
    torch.testing.assert_close(kernel, loop, rtol=1e-5, atol=1e-7)
    for a, b in zip(kernel.numpy(), loop.numpy()):
        np.testing.assert_array_equal(local_maxima(a, 0.1), local_maxima(b, 0.1))
        assert local_maxima(a, 0.1).tolist() == [4, 11, 19]
