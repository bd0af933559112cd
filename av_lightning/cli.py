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
import sys
from typing import Optional

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

COMMANDS = ("generate", "cache", "av-align", "filter-vggsound", "convert-official")


class AVLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for key in ("num_frames", "fps", "sample_rate"):
            parser.link_arguments(f"data.init_args.{key}", f"model.init_args.{key}", apply_on="parse")


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


def lightning_main() -> int:
    """The ``lightning`` console script: LightningCLI only (exit status 0 on success)."""
    cli_main()
    return 0


def _usage() -> str:
    cmds = "\n".join(f"  av-lightning {c} --help" for c in COMMANDS)
    return ("usage: av-lightning {fit,validate,test,predict} --config CONFIG.yaml [...]\n"
            f"       av-lightning COMMAND [...]; commands:\n{cmds}\n")


def main(argv: Optional[list[str]] = None) -> int:
    """``av-lightning``: LightningCLI sub-commands plus the project's own commands."""
    given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(f"av_lightning.commands.{argv[0].replace('-', '_')}")
        return int(module.main(argv[1:]) or 0)
    if argv and argv[0] in ("commands", "help"):
        sys.stdout.write(_usage())
        return 0
    cli_main(given)
    return 0


if __name__ == "__main__":
    sys.exit(main())
