"""Synthetic audio-visual clips with known events, for AV-Align tests and benchmarks.

A bright textured square sits on a static textured background. At each event frame ``e`` it
jumps sideways and then settles back over three frames (offsets 0 → D → D/2 → D/6 → 0, so the
per-step motion is largest exactly at ``e`` and decreases after it, like a hit and its recoil).
The audio has a short decaying broadband burst (a click) at each event time ``e / fps``, over
optional steady background noise (real recordings start with sound, which onset detectors
report as an onset at t = 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """``(h, w)`` smooth noise in [0, 1]: bilinear upsampling of a coarse random grid."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw))
    ys = np.arange(h) / cell
    xs = np.arange(w) / cell
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    g00 = grid[y0][:, x0]
    g01 = grid[y0][:, x0 + 1]
    g10 = grid[y0 + 1][:, x0]
    g11 = grid[y0 + 1][:, x0 + 1]
    return (1 - fy) * ((1 - fx) * g00 + fx * g01) + fy * ((1 - fx) * g10 + fx * g11)


def render_video(
    events: Sequence[int],
    num_frames: int = 48,
    size: int = 64,
    jump: int = 6,
    seed: int = 0,
) -> np.ndarray:
    """Frames of the synthetic clip: uint8 ``(F, H, W, 3)`` RGB.

    Args:
        events: frame indices at which the square jumps (at least 4 frames apart).
        num_frames: F.
        size: H = W in pixels.
        jump: the jump in pixels (at ``size`` = 64; scaled with the size).
        seed: texture seed.
    """
    rng = np.random.default_rng(seed)
    scale = size / 64
    background = 40 + 120 * _smooth_noise(rng, size, size, max(2, int(6 * scale)))
    side = max(4, round(14 * scale))
    patch = 170 + 80 * _smooth_noise(rng, side, side, max(2, int(4 * scale)))
    offsets = np.zeros(num_frames)
    recoil = (1.0, 0.5, 1 / 6)
    for e in events:
        for k, frac in enumerate(recoil):
            if 0 <= e + k < num_frames:
                offsets[e + k] = frac * jump * scale
    y0 = x0 = (size - side) // 2
    tint = np.array([1.0, 0.9, 0.8])
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for f in range(num_frames):
        img = background.copy()
        x = x0 + round(offsets[f])
        img[y0 : y0 + side, x : x + side] = patch
        frames[f] = np.clip(img[..., None] * tint, 0, 255).astype(np.uint8)
    return frames


def render_audio(
    events: Sequence[float],
    duration: float,
    sample_rate: int = 16000,
    seed: int = 0,
    background: float = 0.0,
) -> np.ndarray:
    """Clicks: float32 ``(S,)`` mono with a 10 ms decaying noise burst at each event time.

    Args:
        events: event times in seconds; those outside ``[0, duration)`` are dropped.
        duration: seconds.
        sample_rate: Hz.
        seed: noise seed.
        background: standard deviation of white noise over the whole clip (0: silence between
            clicks; the clicks peak around 0.2).
    """
    rng = np.random.default_rng(seed)
    audio = np.zeros(round(duration * sample_rate), dtype=np.float32)
    if background > 0:
        audio += (background * rng.standard_normal(audio.size)).astype(np.float32)
    n = int(0.01 * sample_rate)
    envelope = np.exp(-np.arange(n) / (0.003 * sample_rate))
    for t in events:
        start = round(t * sample_rate)
        if 0 <= start < audio.size:
            burst = 0.2 * rng.standard_normal(n) * envelope
            stop = min(audio.size, start + n)
            audio[start:stop] += burst[: stop - start].astype(np.float32)
    return audio


def render_clip(
    events: Sequence[int],
    num_frames: int = 48,
    fps: float = 24.0,
    size: int = 64,
    sample_rate: int = 16000,
    audio_shift_frames: int = 0,
    seed: int = 0,
    background: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A clip whose square jumps at ``events`` (frame indices) and whose audio clicks at
    ``events + audio_shift_frames`` (over ``background`` noise, see :func:`render_audio`).

    Returns:
        ``(frames, audio)``: uint8 ``(F, H, W, 3)`` and float32 ``(S,)`` with
        ``S = F / fps * sample_rate``.
    """
    frames = render_video(events, num_frames=num_frames, size=size, seed=seed)
    times = [(e + audio_shift_frames) / fps for e in events]
    audio = render_audio(times, num_frames / fps, sample_rate=sample_rate, seed=seed + 1, background=background)
    return frames, audio
