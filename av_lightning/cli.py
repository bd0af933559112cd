"""Command-line entry points.

``lightning`` (and ``av-lightning`` for its fit/validate/test/predict sub-commands) is a
LightningCLI in subclass mode: the model and the data are chosen by ``class_path`` in YAML, so
``lightning fit --config configs/drums.yaml`` works as with any Lightning project. The clip
geometry (frames, fps, sample rate) is set once, on the data, and linked into the model.

``av-lightning`` also runs the project's own commands (``generate``, ``cache``, ``av-align``,
``filter-vggsound``, ``convert-official``); each lives in ``av_lightning/commands/`` and is imported
only when it runs, so a command that needs no Lightning starts without importing it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

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


def cli_main(args: Optional[list[str]] = None, run: bool = True):
    """The project's LightningCLI (:class:`~av_lightning.lightning_cli.AVLightningCLI`) over any
    LightningModule / LightningDataModule (``args`` for in-process use)."""
    import torch
    from lightning.pytorch import LightningDataModule, LightningModule

    from av_lightning.lightning_cli import AVLightningCLI

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


def parse_configs(configs, overrides=()):
    """Training YAMLs (a base plus overlays, then ``--key=value`` overrides) parsed exactly as
    ``lightning fit --config ...`` parses them (class_path / init_args, linked clip geometry),
    without building anything: a jsonargparse ``Namespace`` with ``model``, ``data``, ``trainer``."""
    from lightning.pytorch import LightningDataModule, LightningModule

    from av_lightning.lightning_cli import ParseOnly

    args = [x for c in configs for x in ("--config", str(c))] + list(overrides)
    return ParseOnly(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
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
