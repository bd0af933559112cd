"""AV-Align's functional core: onsets vs. motion peaks for single clips and batches.

No torchmetrics here, so that the ``av-align`` command's worker processes start fast; the metric
class is :class:`av_lightning.metrics.av_align.AVAlign`, whose docstring defines the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from av_lightning.metrics.base import check_videos
from av_lightning.metrics.onsets import librosa_onsets, superflux_onsets
from av_lightning.metrics.optical_flow import HornSchunckParams, flow_magnitude_trajectory

Mode = Literal["paper", "reference"]
MODES = ("paper", "reference")
#: The authors' threshold on the mean Farneback magnitude (pixels/frame).
REFERENCE_PEAK_FLOOR = 0.1
#: Farneback arguments of the authors' script: pyr_scale, levels, winsize, iterations, poly_n,
#: poly_sigma, flags.
FARNEBACK_ARGS = (0.5, 3, 15, 3, 5, 1.2, 0)


@dataclass
class ClipAlignment:
    """AV-Align of one clip.

    Attributes:
        audio_peaks: ``(|A|,)`` onset times, seconds.
        video_peaks: ``(|V|,)`` motion-peak times, seconds.
        matches: matched (onset, peak) pairs.
        score: matches / (|A| + |V| - matches); NaN when both sides are empty.
    """

    audio_peaks: np.ndarray
    video_peaks: np.ndarray
    matches: int

    @property
    def empty(self) -> bool:
        return self.audio_peaks.size == 0 and self.video_peaks.size == 0

    @property
    def score(self) -> float:
        return intersection_over_union(self.audio_peaks.size, self.video_peaks.size, self.matches)

    def as_row(self) -> list[float]:
        """``[score, |A|, |V|, matches]``: one row of the metric's per-clip state."""
        return [
            self.score,
            float(self.audio_peaks.size),
            float(self.video_peaks.size),
            float(self.matches),
        ]


def intersection_over_union(num_audio: int, num_video: int, matches: int) -> float:
    """matches / (|A| + |V| - matches); NaN for a clip with no peaks on either side."""
    union = num_audio + num_video - matches
    return float("nan") if union == 0 else matches / union


def local_maxima(trajectory: np.ndarray, floor: float) -> np.ndarray:
    """Indices ``i`` (1 <= i <= F-2) with ``x[i-1] < x[i] > x[i+1]`` and ``x[i] >= floor``.

    Args:
        trajectory: ``(F,)`` mean flow magnitudes, pixels/frame.
        floor: minimum magnitude of a peak, pixels/frame.
    """
    x = np.asarray(trajectory)
    if x.size < 3:
        return np.zeros(0, dtype=np.int64)
    mid = x[1:-1]
    keep = (x[:-2] < mid) & (mid > x[2:]) & (mid >= floor)
    return np.nonzero(keep)[0] + 1


def count_matches(audio_peaks: np.ndarray, video_peaks: np.ndarray, tolerance: float) -> int:
    """Size of a maximum one-to-one matching with ``|v - a| <= tolerance`` (seconds).

    On a line, walking both sorted lists and matching the earliest compatible pair is optimal.
    """
    a = np.sort(np.asarray(audio_peaks, dtype=np.float64))
    v = np.sort(np.asarray(video_peaks, dtype=np.float64))
    tol = tolerance * (1 + 1e-9)  # frame times i/fps are inexact: keep "exactly one frame" in
    i = j = matches = 0
    while i < a.size and j < v.size:
        if v[j] < a[i] - tol:
            j += 1
        elif v[j] > a[i] + tol:
            i += 1
        else:
            matches += 1
            i += 1
            j += 1
    return matches


def count_matches_reference(
    audio_peaks: Sequence[float], video_peaks: Sequence[float], fps: float
) -> int:
    """The reference matching: each onset in order takes the first unused peak with
    ``v - 1/fps < a < v + 1/fps`` (the authors' expression, evaluated the same way)."""
    used = [False] * len(video_peaks)
    matches = 0
    for a in audio_peaks:
        for k, v in enumerate(video_peaks):
            if not used[k] and v - 1 / fps < a < v + 1 / fps:
                used[k] = True
                matches += 1
                break
    return matches


def farneback_trajectory(frames: np.ndarray) -> np.ndarray:
    """The reference video trajectory: mean Farneback magnitude per frame.

    Args:
        frames: uint8 ``(F, H, W, 3)`` RGB, F >= 2.

    Returns:
        ``(F,)`` float64 pixels/frame: ``[flow(0, 1)] + [flow(i - 1, i) for i in 1..F-1]``.
    """
    import cv2

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (F >= 2, H, W, 3) RGB, got {frames.shape}")
    # The script converts OpenCV's BGR frames with BGR2GRAY; on RGB frames RGB2GRAY is the same.
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]

    def mean_magnitude(first: np.ndarray, second: np.ndarray) -> float:
        flow = cv2.calcOpticalFlowFarneback(first, second, None, *FARNEBACK_ARGS)
        return cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0]

    steps = [mean_magnitude(gray[i - 1], gray[i]) for i in range(1, len(gray))]
    return np.asarray(steps[:1] + steps, dtype=np.float64)


def align_reference(
    frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int
) -> ClipAlignment:
    """AV-Align of one clip exactly as the authors' script computes it.

    Args:
        frames: uint8 ``(F, H, W, 3)`` RGB.
        audio: ``(S,)`` float mono waveform covering the same span, at ``sample_rate`` Hz.
        fps: frame rate of ``frames``.
        sample_rate: Hz.
    """
    audio_peaks = librosa_onsets(audio, sample_rate)
    trajectory = farneback_trajectory(frames)
    video_peaks = np.asarray(
        [i / fps for i in local_maxima(trajectory, REFERENCE_PEAK_FLOOR)], dtype=np.float64
    )
    matches = count_matches_reference(audio_peaks.tolist(), video_peaks.tolist(), fps)
    return ClipAlignment(audio_peaks, video_peaks, matches)


def align_paper(
    videos: torch.Tensor,
    audio: torch.Tensor | Sequence[np.ndarray],
    fps: float,
    sample_rate: int,
    flow: HornSchunckParams | None = None,
    peak_floor: float = REFERENCE_PEAK_FLOOR,
    chunk_pairs: int = 512,
) -> list[ClipAlignment]:
    """AV-Align of a batch in paper mode (SuperFlux onsets, batched Horn–Schunck peaks).

    Args:
        videos: uint8 ``(B, F, 3, H, W)``; the flow runs on its device.
        audio: ``(B, S)`` float mono, or B waveforms of any lengths, at ``sample_rate`` Hz.
        fps: frame rate (frames per second).
        sample_rate: Hz.
        flow: Horn–Schunck parameters.
        peak_floor: minimum mean flow magnitude of a video peak (input pixels per frame).
        chunk_pairs: frame pairs solved at once.
    """
    flow = HornSchunckParams() if flow is None else flow
    trajectories = (
        flow_magnitude_trajectory(videos, flow, chunk_pairs=chunk_pairs).double().cpu().numpy()
    )
    out = []
    for trajectory, wave in zip(trajectories, audio):
        wave = wave.detach().float().cpu().numpy() if isinstance(wave, torch.Tensor) else wave
        audio_peaks = superflux_onsets(wave, sample_rate)
        video_peaks = local_maxima(trajectory, peak_floor) / fps
        out.append(
            ClipAlignment(
                audio_peaks, video_peaks, count_matches(audio_peaks, video_peaks, 1 / fps)
            )
        )
    return out


def align_clips(
    videos: torch.Tensor,
    audio: torch.Tensor | Sequence[np.ndarray],
    fps: float,
    sample_rate: int,
    mode: Mode = "paper",
    **paper_kwargs,
) -> list[ClipAlignment]:
    """AV-Align of every clip of a batch in either mode (the functional core of :class:`AVAlign`).

    Args:
        videos: uint8 ``(B, F, 3, H, W)``.
        audio: ``(B, S)`` float mono, or B waveforms, at ``sample_rate`` Hz.
        fps: frames per second.
        sample_rate: Hz.
        mode: ``"paper"`` or ``"reference"``.
        paper_kwargs: ``flow``, ``peak_floor``, ``chunk_pairs`` for paper mode.
    """
    check_videos(videos)
    if len(audio) != videos.shape[0]:
        raise ValueError(f"got {videos.shape[0]} videos but {len(audio)} waveforms")
    if fps is None or fps <= 0 or sample_rate is None or sample_rate <= 0:
        raise ValueError(
            f"need positive fps and sample_rate, got fps={fps}, sample_rate={sample_rate}"
        )
    if mode == "paper":
        return align_paper(videos, audio, fps, sample_rate, **paper_kwargs)
    if mode == "reference":
        frames = videos.permute(0, 1, 3, 4, 2).cpu().numpy()
        waves = [
            w.detach().float().cpu().numpy() if isinstance(w, torch.Tensor) else w for w in audio
        ]
        return [align_reference(f, w, fps, sample_rate) for f, w in zip(frames, waves)]
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
