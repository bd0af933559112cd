"""The project's LightningCLI: linked clip geometry, and checkpoints read safely.

Imported only by what runs Lightning (``fit``, ``test`` ...), so the project's other commands
start without it; the entry points are in :mod:`av_lightning.cli`.
"""

from __future__ import annotations

import pickle

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from av_lightning.weights import load_torch


class AVLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for key in ("num_frames", "fps", "sample_rate"):
            parser.link_arguments(f"data.init_args.{key}", f"model.init_args.{key}", apply_on="parse")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads `--ckpt_path` (weights_only=True) for its hyper-parameters; a file it
        # cannot read that way is read once more here, to fail with its name and the fix.
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            subcommand = self.config.get("subcommand")
            load_torch(self.config[subcommand].get("ckpt_path"), "checkpoint")
            raise err

    def _read_checkpoints_safely(self) -> None:
        # `--ckpt_path` is read with weights_only=True (Lightning's own checkpoints hold only tensors
        # and plain values), and a file that needs full unpickling is refused with its name.
        strategy = self.trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = SafeCheckpointIO()

    before_fit = before_validate = before_test = before_predict = _read_checkpoints_safely


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, loading through :func:`av_lightning.weights.load_torch`."""

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_torch(path, "checkpoint")


class ParseOnly(AVLightningCLI):
    """The CLI's parser and nothing else: configs parsed as `lightning fit` parses them, none built."""

    def instantiate_classes(self) -> None:
        pass
