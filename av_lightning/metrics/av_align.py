"""AV-Align (TempoTokens paper §4): do the video's motion peaks coincide with the audio's onsets?

For one clip, with ``A`` the audio onsets and ``V`` the video peaks (both as times in seconds)::

    AV-Align = matches / (|A| + |V| - matches)

an intersection-over-union where an onset and a peak match when they are at most one frame apart
(each peak matches at most one onset). The score is 0.0 when only one side has peaks; a clip with
no peaks on either side has no score (0/0): it is left out of the mean and counted separately.

Two modes:

``"paper"`` (default)
    Onsets from madmom's SuperFlux at 44.1 kHz (:func:`~.onsets.superflux_onsets`); video peaks
    from Horn–Schunck flow over every frame pair of the batch at once, on the videos' device
    (:func:`~.optical_flow.flow_magnitude_trajectory`); a peak is a strict local maximum of the
    mean flow magnitude that is at least ``peak_floor`` pixels/frame; onsets whose nearest frame
    cannot hold a video peak (the first two frames and the last) are left out (``edges="drop"``,
    see :mod:`~.alignment`); matching is a maximum one-to-one matching with
    ``|v - a| <= 1 / fps``.
``"reference"``
    The authors' published script, step for step: librosa onsets at 22.05 kHz with default
    parameters; OpenCV Farneback ``(0.5, 3, 15, 3, 5, 1.2, 0)`` on grayscale frames; trajectory
    ``[flow(0, 1)] + [flow(i - 1, i) for i >= 1]`` of mean magnitudes; strict local maxima
    ``>= 0.1`` at time ``i / fps``; greedy one-to-one matching, each onset in order taking the
    first free peak with ``v - 1/fps < a < v + 1/fps``.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from av_lightning.metrics.alignment import (
    EDGE_RULES,
    FARNEBACK_ARGS,
    MODES,
    REFERENCE_PEAK_FLOOR,
    ClipAlignment,
    ClipError,
    EdgeRule,
    Mode,
    align_clips,
    align_paper,
    align_reference,
    count_matches,
    count_matches_reference,
    farneback_trajectory,
    intersection_over_union,
    local_maxima,
)
from av_lightning.metrics.base import VideoMetric
from av_lightning.metrics.optical_flow import HornSchunckParams

__all__ = [
    "EDGE_RULES",
    "FARNEBACK_ARGS",
    "MODES",
    "REFERENCE_PEAK_FLOOR",
    "AVAlign",
    "ClipAlignment",
    "ClipError",
    "align_clips",
    "align_paper",
    "align_reference",
    "count_matches",
    "count_matches_reference",
    "farneback_trajectory",
    "intersection_over_union",
    "local_maxima",
]


class AVAlign(Metric, VideoMetric):
    """AV-Align over a set of generated clips and their conditioning audio.

    Args:
        mode: ``"paper"`` (SuperFlux + batched Horn–Schunck) or ``"reference"`` (the authors'
            script: librosa + Farneback).
        alpha, iterations, max_side, blur_sigma: Horn–Schunck parameters of paper mode
            (see :class:`~.optical_flow.HornSchunckParams`).
        peak_floor: paper mode's minimum mean flow magnitude of a video peak, pixels/frame.
        chunk_pairs: paper mode solves at most this many frame pairs at once.
        edges: paper mode's edge rule: ``"drop"`` (default) leaves out onsets at frames where no
            video peak can sit, ``"keep"`` counts them (see :mod:`~.alignment`).

    The flow runs on the videos' device: on the GPU in ``lightning test`` when the model is
    there, on the CPU through a compiled kernel otherwise. Clips with NaN or Inf audio, or fewer
    than 3 frames, raise :class:`~.alignment.ClipError` naming the clip.

    ``update(videos, audio, fps, sample_rate)`` scores each clip; ``update_from_clips`` uses
    ``fake`` and ``audio``. ``compute()`` returns a dict of scalar tensors:

    - ``av_align``: mean score over the clips with at least one peak (NaN if there are none);
    - ``av_align_empty``: number of clips with no peaks on either side (left out of the mean);
    - ``av_align_scored``: number of clips in the mean.

    :meth:`per_clip` returns every clip's ``[score, |A|, |V|, matches]`` (gathered over
    processes), e.g. to list the worst clips.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        mode: Mode = "paper",
        alpha: float = HornSchunckParams.alpha,
        iterations: int = HornSchunckParams.iterations,
        max_side: int | None = HornSchunckParams.max_side,
        blur_sigma: float = HornSchunckParams.blur_sigma,
        peak_floor: float = REFERENCE_PEAK_FLOOR,
        chunk_pairs: int = 512,
        edges: EdgeRule = "drop",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if edges not in EDGE_RULES:
            raise ValueError(f"edges must be one of {EDGE_RULES}, got {edges!r}")
        self.mode = mode
        self.edges = edges
        self.flow_params = HornSchunckParams(alpha, iterations, max_side, blur_sigma)
        self.peak_floor = peak_floor
        self.chunk_pairs = chunk_pairs
        if mode == "paper":
            from av_lightning.metrics.onsets import _superflux_processors

            _superflux_processors()  # fail at construction, not after generating a test set
        # One row per clip: [score (NaN if empty), |A|, |V|, matches].
        self.add_state("clips", default=[], dist_reduce_fx="cat")

    def update(
        self, videos: torch.Tensor, audio: torch.Tensor, fps: float, sample_rate: int
    ) -> None:
        """Score a batch.

        Args:
            videos: uint8 ``(B, F, 3, H, W)``.
            audio: float ``(B, S)`` mono covering the same span as the frames.
            fps: frames per second of ``videos``.
            sample_rate: Hz of ``audio``.
        """
        kwargs = {}
        if self.mode == "paper":
            kwargs = {
                "flow": self.flow_params,
                "peak_floor": self.peak_floor,
                "chunk_pairs": self.chunk_pairs,
                "edges": self.edges,
            }
        results = align_clips(videos, audio, fps, sample_rate, mode=self.mode, **kwargs)
        rows = torch.tensor([r.as_row() for r in results], dtype=torch.float64, device=self.device)
        self.clips.append(rows.view(-1, 4))

    def update_from_clips(
        self, fake, real=None, audio=None, texts=None, fps=None, sample_rate=None
    ) -> None:
        """Uses ``fake`` and ``audio`` (both required), ``fps`` and ``sample_rate``."""
        self.update(
            fake,
            self._require("audio", audio),
            self._require("fps", fps),
            self._require("sample_rate", sample_rate),
        )

    def compute(self) -> dict[str, torch.Tensor]:
        rows = (
            dim_zero_cat(self.clips)
            if len(self.clips)
            else torch.zeros(0, 4, dtype=torch.float64, device=self.device)
        )
        scores = rows[:, 0]
        empty = torch.isnan(scores)
        scored = scores[~empty]
        mean = (
            scored.mean()
            if scored.numel()
            else torch.tensor(float("nan"), dtype=torch.float64, device=rows.device)
        )
        return {
            "av_align": mean,
            "av_align_empty": empty.sum().to(torch.float64),
            "av_align_scored": (~empty).sum().to(torch.float64),
        }

    def per_clip(self) -> torch.Tensor:
        """``(N, 4)`` float64 rows ``[score, |A|, |V|, matches]`` of every clip so far, gathered
        over processes (score NaN for clips with no peaks)."""
        with self.sync_context(should_sync=True, should_unsync=True):
            if not len(self.clips):
                return torch.zeros(0, 4, dtype=torch.float64)
            return dim_zero_cat(self.clips).clone()
