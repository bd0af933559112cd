"""AV-Align's functional core: onsets vs. motion peaks, shared by the metric and the command.

:class:`av_lightning.metrics.av_align.AVAlign` (``lightning test``) and ``av-lightning
av-align`` (folders) score a clip with the same three steps: :func:`audio_onsets`, a motion
trajectory (:func:`farneback_trajectory` in reference mode, the Horn–Schunck functions of
:mod:`~.optical_flow` in paper mode) and :func:`align_trajectory`. No torchmetrics here, so the
command's worker processes start fast; ``AVAlign``'s docstring defines the score.

Edge rule of paper mode (``edges="drop"``, the default). A video peak at frame ``i`` is a strict
local maximum of the motion into frames ``i - 1``, ``i`` and ``i + 1``; the first frame has no
motion into it, so peaks can only sit at frames ``2 .. F - 2``. An onset counts at its nearest
frame (``round(t * fps)``), and onsets outside ``2 .. F - 2`` are dropped: events the video
could never show as a peak (a sound at the clip's very start, which onset detectors report on
almost every real clip, or after the last frame) are then left out on both sides instead of
costing every clip an unmatched onset. ``edges="keep"`` counts every onset. Reference mode is
the authors' script and always keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from av_lightning.metrics.onsets import librosa_onsets, superflux_onsets

if TYPE_CHECKING:
    import torch

    from av_lightning.metrics.optical_flow import HornSchunckParams

Mode = Literal["paper", "reference"]
MODES = ("paper", "reference")
EdgeRule = Literal["drop", "keep"]
EDGE_RULES = ("drop", "keep")
#: The authors' threshold on the mean Farneback magnitude (pixels/frame).
REFERENCE_PEAK_FLOOR = 0.1
#: Farneback arguments of the authors' script: pyr_scale, levels, winsize, iterations, poly_n,
#: poly_sigma, flags.
FARNEBACK_ARGS = (0.5, 3, 15, 3, 5, 1.2, 0)
#: A clip needs a frame on each side of a peak.
MIN_FRAMES = 3


class ClipError(ValueError):
    """A clip cannot be scored (too few frames, non-finite audio); the message says why."""


@dataclass
class ClipAlignment:
    """AV-Align of one clip.

    Attributes:
        audio_peaks: ``(|A|,)`` onset times that count, seconds.
        video_peaks: ``(|V|,)`` motion-peak times, seconds.
        matches: matched (onset, peak) pairs.
        edge_onsets: onsets left out by the edge rule (module docstring).
        score: matches / (|A| + |V| - matches); NaN when both sides are empty.
    """

    audio_peaks: np.ndarray
    video_peaks: np.ndarray
    matches: int
    edge_onsets: int = 0

    @property
    def empty(self) -> bool:
        return self.audio_peaks.size == 0 and self.video_peaks.size == 0

    @property
    def one_sided(self) -> bool:
        """Peaks on exactly one side (the score is 0.0 and counts in the mean)."""
        return (self.audio_peaks.size == 0) != (self.video_peaks.size == 0)

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


def peak_frame_range(num_frames: int) -> tuple[int, int]:
    """``(first, last)``: the frames where paper mode's video peaks can sit, ``2 .. F - 2``."""
    return 2, num_frames - 2


def edge_rule_mask(onsets: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """``(n,)`` bool: which onsets (seconds) fall, at their nearest frame, where a video peak can
    sit (:func:`peak_frame_range`)."""
    first, last = peak_frame_range(num_frames)
    frame = np.floor(np.asarray(onsets, dtype=np.float64) * fps + 0.5)
    return (frame >= first) & (frame <= last)


def check_audio(audio, name: str = "audio") -> np.ndarray:
    """A mono waveform as float32 ``(S,)`` numpy, refusing NaN or Inf samples.

    Raises:
        ClipError: non-finite samples (onset detectors would fail or return nonsense).
    """
    if not isinstance(audio, np.ndarray):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    bad = ~np.isfinite(audio)
    if bad.any():
        raise ClipError(
            f"{name} holds {int(bad.sum())} NaN or Inf samples of {audio.size}; fix the sound "
            "(re-export it, e.g. as 16-bit PCM) or leave the clip out"
        )
    return audio


def check_num_frames(num_frames: int, name: str = "video") -> None:
    """Raises ClipError when a clip has fewer than :data:`MIN_FRAMES` frames."""
    if num_frames < MIN_FRAMES:
        raise ClipError(
            f"{name} has {num_frames} frame(s); AV-Align needs at least {MIN_FRAMES} (a peak needs "
            "a frame on each side)"
        )


def audio_onsets(audio: np.ndarray, sample_rate: int, mode: Mode) -> np.ndarray:
    """Onset times (seconds) of one mono waveform: SuperFlux in paper mode, librosa in reference.

    Args:
        audio: finite float ``(S,)`` (see :func:`check_audio`).
        sample_rate: Hz.
        mode: ``"paper"`` or ``"reference"``.
    """
    if mode == "paper":
        return superflux_onsets(audio, sample_rate)
    if mode == "reference":
        return librosa_onsets(audio, sample_rate)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def align_trajectory(
    onsets: np.ndarray,
    trajectory: np.ndarray,
    fps: float,
    mode: Mode = "paper",
    peak_floor: float = REFERENCE_PEAK_FLOOR,
    edges: EdgeRule = "drop",
) -> ClipAlignment:
    """AV-Align of one clip from its onsets and its motion trajectory.

    Args:
        onsets: ``(n,)`` onset times, seconds.
        trajectory: ``(F,)`` mean flow magnitude per frame (entry 0 repeats entry 1),
            pixels/frame.
        fps: frames per second.
        mode: ``"reference"``: the authors' peaks (floor 0.1) and greedy matching, every onset
            kept; ``"paper"``: ``peak_floor``, the edge rule and a maximum matching.
        peak_floor: paper mode's minimum peak magnitude, pixels/frame.
        edges: paper mode's edge rule, ``"drop"`` or ``"keep"`` (module docstring).
    """
    trajectory = np.asarray(trajectory, dtype=np.float64)
    onsets = np.asarray(onsets, dtype=np.float64).reshape(-1)
    if mode == "reference":
        video_peaks = np.asarray(
            [i / fps for i in local_maxima(trajectory, REFERENCE_PEAK_FLOOR)], dtype=np.float64
        )
        matches = count_matches_reference(onsets.tolist(), video_peaks.tolist(), fps)
        return ClipAlignment(onsets, video_peaks, matches)
    if mode != "paper":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if edges not in EDGE_RULES:
        raise ValueError(f"edges must be one of {EDGE_RULES}, got {edges!r}")
    dropped = 0
    if edges == "drop":
        keep = edge_rule_mask(onsets, fps, trajectory.size)
        dropped = int((~keep).sum())
        onsets = onsets[keep]
    video_peaks = local_maxima(trajectory, peak_floor) / fps
    return ClipAlignment(onsets, video_peaks, count_matches(onsets, video_peaks, 1 / fps), dropped)


def farneback_trajectory(frames: np.ndarray) -> np.ndarray:
    """The reference video trajectory: mean Farneback magnitude per frame.

    Args:
        frames: uint8 ``(F, H, W, 3)`` RGB or ``(F, H, W)`` grayscale, F >= 2.

    Returns:
        ``(F,)`` float64 pixels/frame: ``[flow(0, 1)] + [flow(i - 1, i) for i in 1..F-1]``.
    """
    import cv2

    rgb = frames.ndim == 4 and frames.shape[-1] == 3
    if not (rgb or frames.ndim == 3) or frames.shape[0] < 2:
        raise ValueError(f"frames must be (F >= 2, H, W, 3) RGB or (F, H, W) gray, got {frames.shape}")
    # The script converts OpenCV's BGR frames with BGR2GRAY; on RGB frames RGB2GRAY is the same.
    gray = (
        [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
        if rgb
        else [np.ascontiguousarray(f) for f in frames]
    )

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
    onsets = audio_onsets(check_audio(audio), sample_rate, "reference")
    return align_trajectory(onsets, farneback_trajectory(frames), fps, "reference")


def align_paper(
    videos: torch.Tensor,
    audio: torch.Tensor | Sequence[np.ndarray],
    fps: float,
    sample_rate: int,
    flow: HornSchunckParams | None = None,
    peak_floor: float = REFERENCE_PEAK_FLOOR,
    chunk_pairs: int = 512,
    edges: EdgeRule = "drop",
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
        edges: the edge rule, ``"drop"`` (default) or ``"keep"`` (module docstring).
    """
    from av_lightning.metrics.optical_flow import HornSchunckParams, flow_magnitude_trajectory

    flow = HornSchunckParams() if flow is None else flow
    waves = [check_audio(w, f"clip {i}: audio") for i, w in enumerate(audio)]
    trajectories = (
        flow_magnitude_trajectory(videos, flow, chunk_pairs=chunk_pairs).double().cpu().numpy()
    )
    return [
        align_trajectory(audio_onsets(w, sample_rate, "paper"), t, fps, "paper", peak_floor, edges)
        for t, w in zip(trajectories, waves)
    ]


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
        paper_kwargs: ``flow``, ``peak_floor``, ``chunk_pairs``, ``edges`` for paper mode.

    Raises:
        ClipError: fewer than 3 frames, or audio with NaN or Inf samples.
    """
    from av_lightning.metrics.base import check_videos

    check_videos(videos)
    if len(audio) != videos.shape[0]:
        raise ValueError(f"got {videos.shape[0]} videos but {len(audio)} waveforms")
    if fps is None or fps <= 0 or sample_rate is None or sample_rate <= 0:
        raise ValueError(
            f"need positive fps and sample_rate, got fps={fps}, sample_rate={sample_rate}"
        )
    check_num_frames(videos.shape[1], "the videos")
    if mode == "paper":
        return align_paper(videos, audio, fps, sample_rate, **paper_kwargs)
    if mode == "reference":
        frames = videos.permute(0, 1, 3, 4, 2).cpu().numpy()
        return [
            align_reference(f, check_audio(w, f"clip {i}: audio"), fps, sample_rate)
            for i, (f, w) in enumerate(zip(frames, audio))
        ]
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
