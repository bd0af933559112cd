"""Test-time metrics: FVD, video Inception Score, CLIPSIM and AV-Align (torchmetrics, DDP-safe).

Every metric is a :class:`torchmetrics.Metric` and a :class:`~.base.VideoMetric`, so the
LightningModule updates all of them with one call,
``metric.update_from_clips(fake=..., real=..., audio=..., texts=..., fps=..., sample_rate=...)``.
See docs/metrics.md.

Names are imported lazily: ``import av_lightning.metrics.alignment`` (the ``av-align`` command's
workers) does not pay for importing torchmetrics and transformers. ``FolderScorer`` scores files
at the scale of a test set (the engine of ``av-lightning av-align``).
"""

from __future__ import annotations

from av_lightning._lazy import lazy_exports

_EXPORTS = {
    "AVAlign": "av_align",
    "ClipAlignment": "alignment",
    "ClipError": "alignment",
    "align_clips": "alignment",
    "FolderScorer": "av_align_folder",
    "CLIPSIM": "clipsim",
    "FVD": "fvd",
    "frechet_distance": "fvd",
    "VideoInceptionScore": "inception",
    "inception_score": "inception",
    "FrozenNet": "base",
    "VideoMetric": "base",
    "HornSchunckParams": "optical_flow",
    "flow_magnitude_trajectory": "optical_flow",
    "horn_schunck": "optical_flow",
}

__all__ = [  # noqa: RUF022 - same order as _EXPORTS
    "AVAlign",
    "ClipAlignment",
    "ClipError",
    "align_clips",
    "FolderScorer",
    "CLIPSIM",
    "FVD",
    "frechet_distance",
    "VideoInceptionScore",
    "inception_score",
    "FrozenNet",
    "VideoMetric",
    "HornSchunckParams",
    "flow_magnitude_trajectory",
    "horn_schunck",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
