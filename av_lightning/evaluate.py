"""Scoring existing videos with the test metrics under ``lightning test`` (no generation).

:class:`ScoreVideos` is the LightningModule of ``configs/eval_folder.yaml``: it feeds the clips of
:class:`~av_lightning.data.video_folder.VideoFolderDataModule` (or any DataModule whose batches
carry ``generated`` videos) to the metrics through the same ``update_from_clips`` call that
:class:`~av_lightning.module.AudioToVideo` uses after sampling, logs ``test/<key>`` for every scalar
they return, and writes a report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from av_lightning.data.batch import ClipBatch
from av_lightning.metrics.collection import compute_metrics


class ScoreVideos(pl.LightningModule):
    """Runs metrics over existing clips (``generated``, and ``frames`` as the real set) in ``lightning test``.

    Args:
        metrics: metrics with ``update_from_clips`` (``av_lightning.metrics``).
        num_frames / fps / sample_rate: the clip geometry (linked from the data by the CLI);
            ``fps`` and ``sample_rate`` are passed to the metrics.
        report: write the results here at the end of the test epoch: Markdown for ``*.md``,
            JSON otherwise (float64 values, clip and skip counts).

    Nothing trains: ``lightning test`` runs it without a checkpoint. Keys are those of
    :func:`compute_metrics` (a repeated key gets the metric's index appended).
    """

    def __init__(
        self,
        metrics: Sequence[nn.Module],
        num_frames: int = 16,
        fps: float = 24.0,
        sample_rate: int = 16000,
        report: str | None = None,
    ):
        super().__init__()
        if not metrics:
            raise ValueError("ScoreVideos needs at least one metric (model.init_args.metrics)")
        self.save_hyperparameters(ignore=["metrics"])
        self.metrics = nn.ModuleList(metrics)
        self.results: dict[str, float] = {}
        self._clips = 0

    def configure_optimizers(self):
        return None

    def test_step(self, batch: ClipBatch, batch_idx: int) -> None:
        fake = batch["generated"]
        if fake.shape[1] != self.hparams.num_frames:
            raise ValueError(f"batch['generated'] has {fake.shape[1]} frames, ScoreVideos is set to "
                             f"num_frames={self.hparams.num_frames}")
        for metric in self.metrics:
            metric.update_from_clips(fake=fake, real=batch.get("frames"), audio=batch.get("audio"),
                                     texts=batch.get("label"), fps=self.hparams.fps,
                                     sample_rate=self.hparams.sample_rate)
        self._clips += fake.shape[0]

    def on_test_epoch_end(self) -> None:
        results = compute_metrics(self.metrics)
        for key, value in results.items():
            # Metrics already synchronise their states across processes in compute().
            self.log(f"test/{key}", value.float(), sync_dist=False)
        self.results = {k: float(v) for k, v in results.items()}
        if self.hparams.report and self.trainer.is_global_zero:
            self.write_report(self.hparams.report)
        self._clips = 0

    def write_report(self, path: str) -> Path:
        """Write :attr:`results` with the data's folders and counts (Markdown or JSON)."""
        dm = getattr(self.trainer, "datamodule", None)
        info = {
            "fake_dir": str(getattr(dm, "fake_dir", "")) or None,
            "real_dir": str(dm.real_dir) if getattr(dm, "real_dir", None) else None,
            "clips": self._clips,  # this process's count (all clips on one device)
            "skipped": len(getattr(dm, "skipped", [])),
            "num_frames": self.hparams.num_frames, "fps": self.hparams.fps, "sample_rate": self.hparams.sample_rate,
            "metrics": [type(m).__name__ for m in self.metrics],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".md":
            lines = ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {'nan' if math.isnan(v) else f'{v:.6g}'} |" for k, v in self.results.items()]
            lines += ["", ", ".join(f"{k}: {v}" for k, v in info.items())]
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_text(json.dumps({"results": self.results, **info}, indent=2) + "\n")
        rank_zero_info(f"ScoreVideos: wrote {path}")
        return path
