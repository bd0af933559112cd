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


class _CreatesFile:
    """Unpickling this object creates ``path``: the payload of a malicious checkpoint."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_malicious_pickle(path, marker, payload: dict | None = None) -> None:
    """Write a ``torch.save`` file at ``path`` whose unpickling would create the file ``marker``.

    ``payload`` is saved beside the trap (e.g. a plausible ``state_dict``), so a loader that looks
    for its usual keys would find them; a safe loader must refuse the file before ``marker`` exists.
    """
    torch.save({**(payload or {}), "trap": _CreatesFile(os.fspath(marker))}, os.fspath(path))


class InterruptAt(pl.Callback):
    """Raises ``KeyboardInterrupt`` (what Ctrl-C does) before training step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def build(config: dict):
    """A module from its ``{"class_path", "init_args"}`` config (nested ones too), by LightningCLI's parser."""
    from lightning.pytorch.cli import instantiate_module

    return instantiate_module(torch.nn.Module, {"_class_path": config["class_path"], **(config.get("init_args") or {})})


def sample_one(model, audio, **kw):
    """One clip of any length through ``model.sample``: uint8 ``(N, 3, H, W)`` (or ``(C, N, h, w)`` latents)."""
    if "noise" not in kw:
        kw.setdefault("seeds", [kw.pop("seed", 0)])
    return model.sample({"audio": audio[None].to(model.device)}, **kw)[0]
