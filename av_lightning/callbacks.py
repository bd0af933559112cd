"""Callbacks: preview videos during training, and the videos of ``lightning predict`` as files.

:class:`PreviewVideos` samples a few validation clips every N epochs and logs them to TensorBoard
as an animated image (GIF, no moviepy needed) with their input audio, and writes them as mp4
files with the audio muxed in under ``<log_dir>/previews/``. :class:`WriteVideos` writes every
predicted clip as ``OUT/ID.mp4`` with its audio. Both sample through the model's one sampling
method, ``sample``.
"""

from __future__ import annotations

import io
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only

from av_lightning.data.io import write_videos


def gif_bytes(frames: torch.Tensor, fps: float) -> bytes:
    """uint8 ``(F, 3, H, W)`` -> an animated GIF."""
    from PIL import Image

    images = [Image.fromarray(f.permute(1, 2, 0).cpu().numpy()) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def log_video(writer, tag: str, frames: torch.Tensor, fps: float, step: int) -> None:
    """Log uint8 ``(F, 3, H, W)`` frames to a TensorBoard ``SummaryWriter`` as an animated image."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=frames.shape[-2], width=frames.shape[-1], colorspace=3,
                          encoded_image_string=gif_bytes(frames, fps))
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


class PreviewVideos(pl.Callback):
    """Sample preview videos from the first validation batch.

    Args:
        every_n_epochs: log after every N-th validation epoch.
        num_samples: clips per preview.
        steps: sampling steps (None: the model's).
        write_mp4: also write mp4 files with the audio under ``<log_dir>/previews``.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 2, steps: int | None = None, write_mp4: bool = True):
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.steps = steps
        self.write_mp4 = write_mp4
        self._batch: dict | None = None  # the first clips of the first validation batch

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and self._batch is None and not trainer.sanity_checking:
            n = self.num_samples
            self._batch = {k: (v[:n].detach().cpu() if torch.is_tensor(v) else v[:n]) for k, v in batch.items()}

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs or not self._batch:
            return
        batch = {k: (v.to(pl_module.device) if torch.is_tensor(v) else v) for k, v in self._batch.items()}
        videos = pl_module.sample(batch, steps=self.steps).cpu()
        fps, sr, step = pl_module.hparams.fps, pl_module.hparams.sample_rate, trainer.global_step
        writer = getattr(trainer.logger, "experiment", None)
        audio = batch.get("audio")
        for i in range(videos.shape[0]):
            label = (batch.get("label") or [""] * videos.shape[0])[i]
            if writer is not None and hasattr(writer, "file_writer"):
                log_video(writer, f"preview/{i}", videos[i], fps, step)
                if audio is not None:
                    writer.add_audio(f"preview/{i}/audio", audio[i].cpu(), step, sample_rate=sr)
                writer.add_text(f"preview/{i}/label", str(label), step)
        if self.write_mp4 and audio is not None:
            out = Path(trainer.log_dir or trainer.default_root_dir) / "previews"
            write_videos(out, videos, [f"step{step:07d}_{i}" for i in range(videos.shape[0])], fps, audio.cpu(), sr)


class WriteVideos(BasePredictionWriter):
    """Writes each clip that ``lightning predict`` samples as ``out_dir/ID.mp4``, its audio muxed in.

    Args:
        out_dir: output folder (created).
    """

    def __init__(self, out_dir: str = "predictions"):
        super().__init__(write_interval="batch")
        self.out_dir = out_dir

    def write_on_batch_end(self, trainer, pl_module, prediction: dict, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        videos = prediction["videos"]
        ids = prediction.get("id") or [f"{batch_idx:05d}_{i}" for i in range(videos.shape[0])]
        write_videos(self.out_dir, videos, ids, pl_module.hparams.fps, prediction.get("audio"),
                     pl_module.hparams.sample_rate)
