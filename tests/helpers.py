"""Test-only callbacks used through the CLI (``--trainer.callbacks+=tests.helpers.X``)."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import torch


class SaveAdapterPerRank(pl.Callback):
    """Writes each rank's trainable weights to ``DIR/rank{r}.pt`` when fit ends."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(pl_module.trainable_state_dict(), os.path.join(self.out_dir, f"rank{trainer.global_rank}.pt"))
