"""Command-line entry points.

``lightning`` (and ``av-lightning`` for its fit/validate/test/predict sub-commands) is a
LightningCLI in subclass mode: the model and the data are chosen by ``class_path`` in YAML, so
``lightning fit --config configs/drums.yaml`` works as with any Lightning project. The clip
geometry (frames, fps, sample rate) is set once, on the data, and linked into the model.

``av-lightning`` also runs the project's own commands (``generate``, ``cache``, ``av-align``,
``filter-vggsound``, ``convert-official``); each lives in ``av_lightning/commands/``.
"""

from __future__ import annotations

import importlib
import pickle
import sys
from typing import Optional

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from av_lightning.weights import load_torch

#: LightningCLI's sub-commands, with one line each for ``av-lightning --help``.
LIGHTNING_COMMANDS = {
    "fit": "train an adapter (av-lightning fit --config configs/drums.yaml)",
    "validate": "run the validation split of a config",
    "test": "generate the test split and score it (FVD, IS, CLIPSIM, AV-Align)",
    "predict": "generate videos for the test split",
}
#: The project's own commands (``av_lightning/commands/NAME.py``), with one line each.
COMMANDS = {
    "generate": "videos from audio files (and optional text) with a trained adapter",
    "av-align": "AV-Align of every video in a folder (paper or reference mode)",
    "cache": "precompute the frozen features (latents, audio states) of a training config",
    "filter-vggsound": "the paper's VGGSound filter: score clips and write the filtered CSV",
    "convert-official": "the authors' released learned_embeds.pth -> an adapter file",
}


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


def cli_main(args: Optional[list[str]] = None, run: bool = True) -> AVLightningCLI:
    """LightningCLI over any LightningModule / LightningDataModule (``args`` for in-process use)."""
    torch.set_float32_matmul_precision("high")
    return AVLightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        parser_kwargs={"description": "Train, validate, test or predict with an av_lightning config."},
    )


class _ParseOnly(AVLightningCLI):
    """The CLI's parser and nothing else: configs parsed as `lightning fit` parses them, none built."""

    def instantiate_classes(self) -> None:
        pass


def parse_configs(configs, overrides=()):
    """Training YAMLs (a base plus overlays, then ``--key=value`` overrides) parsed exactly as
    ``lightning fit --config ...`` parses them (class_path / init_args, linked clip geometry),
    without building anything: a jsonargparse ``Namespace`` with ``model``, ``data``, ``trainer``."""
    args = [x for c in configs for x in ("--config", str(c))] + list(overrides)
    return _ParseOnly(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                      args=args, run=False).config


def lightning_main() -> int:
    """The ``lightning`` console script: LightningCLI only (exit status 0 on success)."""
    cli_main()
    return 0


def usage() -> str:
    """``av-lightning --help``: every command with one line; ``av-lightning COMMAND --help`` for its options."""
    width = max(map(len, [*LIGHTNING_COMMANDS, *COMMANDS])) + 2
    lines = ["usage: av-lightning COMMAND [options]", "",
             "Video from sound: TempoTokens on a frozen text-to-video model, with PyTorch Lightning.", "",
             "Training and evaluation (LightningCLI; --config CONFIG.yaml [--config OVERLAY.yaml]):"]
    lines += [f"  {name:<{width}}{text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines += ["", "Commands:"]
    lines += [f"  {name:<{width}}{text}" for name, text in COMMANDS.items()]
    lines += ["", "`av-lightning COMMAND --help` lists a command's options."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    """``av-lightning``: LightningCLI sub-commands plus the project's own commands."""
    given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(f"av_lightning.commands.{argv[0].replace('-', '_')}")
        return int(module.main(argv[1:]) or 0)
    if not argv or argv[0] in ("-h", "--help", "help", "commands"):
        sys.stdout.write(usage())
        return 0 if argv else 2
    cli_main(given)
    return 0


if __name__ == "__main__":
    sys.exit(main())
