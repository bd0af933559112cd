"""Test-time metrics: FVD, video Inception Score, CLIPSIM and AV-Align (torchmetrics, DDP-safe).

Every metric is a :class:`torchmetrics.Metric` and a :class:`~.base.VideoMetric`, so the
LightningModule updates all of them with one call,
``metric.update_from_clips(fake=..., real=..., audio=..., texts=..., fps=..., sample_rate=...)``.
See docs/metrics.md.
"""

from av_lightning.metrics.av_align import AVAlign, ClipAlignment, align_clips
from av_lightning.metrics.base import FrozenNet, VideoMetric
from av_lightning.metrics.clipsim import CLIPSIM
from av_lightning.metrics.fvd import FVD, frechet_distance
from av_lightning.metrics.inception import VideoInceptionScore, inception_score
from av_lightning.metrics.optical_flow import (
    HornSchunckParams,
    flow_magnitude_trajectory,
    horn_schunck,
)

__all__ = [
    "CLIPSIM",
    "FVD",
    "AVAlign",
    "ClipAlignment",
    "FrozenNet",
    "HornSchunckParams",
    "VideoInceptionScore",
    "VideoMetric",
    "align_clips",
    "flow_magnitude_trajectory",
    "frechet_distance",
    "horn_schunck",
    "inception_score",
]
