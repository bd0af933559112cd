"""Training steps per second with and without the feature cache (tiny config, on-disk clips).

    python bench/cache.py [--clips 32] [--steps 30] [--size 16] [--device cpu]

Writes ``--clips`` synthetic mp4 + wav files in the official layout to a temporary folder,
builds the model of ``configs/tiny.yaml``, trains ``--steps`` steps reading the files (decode
every step, run the frozen encoders), builds the feature cache, and trains again from the
cache. Prints one markdown table row per run; the first 5 steps of each run are warm-up.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from av_lightning.commands.cache import load_model_and_data
from av_lightning.data import AudioVideoDataModule, build_cache, write_audio, write_video


class StepTimer(pl.Callback):
    def __init__(self, warmup: int = 5) -> None:
        self.warmup, self.t0, self.steps = warmup, None, 0

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.warmup:
            self.t0 = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.steps = trainer.global_step - self.warmup

    def rate(self) -> float:
        return self.steps / (time.perf_counter() - self.t0)


def time_inputs(dm, model, batches: int) -> float:
    """Seconds per batch of everything before the trainable part: loading + frozen encoders."""
    loader = dm.train_dataloader()
    n, t0 = 0, time.perf_counter()
    with torch.no_grad():
        while n < batches:
            for batch in loader:
                if "latents" not in batch:
                    model.backbone.encode_frames(batch["frames"])
                    model.encoder(batch["audio"])
                n += 1
                if n == batches:
                    break
    return (time.perf_counter() - t0) / batches


def make_dataset(root: Path, n: int, fps: float = 24, seconds: float = 2.0, hw=(96, 128)) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        frames = rng.integers(0, 255, size=(int(seconds * fps), *hw, 3), dtype=np.uint8)
        write_video(root / "video" / f"c{i}.mp4", frames, fps)
        write_audio(root / "audio" / f"c{i}.wav", 0.1 * rng.standard_normal(int(seconds * 44100)).astype(np.float32), 44100)
        rows.append([f"c{i}", 0, "noise", "train" if i < n - 2 else "test"])
    with open(root / "audioset_drums.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    model, _data = load_model_and_data([args.config])
    geometry = {"num_frames": model.hparams.num_frames, "fps": model.hparams.fps}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_dataset(root, args.clips)
        print("| run | input pipeline + frozen encoders (s/batch) | training steps/s | device | clips | F x fps | size |")
        print("|---|---|---|---|---|---|---|")
        for cached in (False, True):
            pl.seed_everything(0)
            model, _ = load_model_and_data([args.config])
            dm = AudioVideoDataModule(str(root), manifest="audioset_drums.csv", size=args.size, batch_size=4, num_workers=args.num_workers,
                                         val_size=0, train_starts=1, cache_dir=str(Path(tmp) / "cache") if cached else None,
                                         **geometry)
            if cached:
                build_cache(dm, model.backbone.encode_frames, model.backbone.settings(), model.encoder, device=args.device)
            dm.setup("fit")
            per_batch = time_inputs(dm, model, args.steps)
            timer = StepTimer()
            trainer = pl.Trainer(max_steps=args.steps + timer.warmup, accelerator=args.device, devices=1, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                 limit_val_batches=0, callbacks=[timer])
            trainer.fit(model, datamodule=dm)
            print(f"| {'cache' if cached else 'decode + encoders'} | {per_batch:.3f} | {timer.rate():.3f} | {args.device} | {args.clips} | "
                  f"{geometry['num_frames']} x {geometry['fps']} | {args.size} |")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()  # run with python -u to see the rows as they come
