"""``av-lightning cache``: precompute the feature cache of a training config once.

Example::

    av-lightning cache --config configs/drums.yaml --cache-dir /data/cache/drums
    lightning fit --config configs/drums.yaml --data.init_args.cache_dir /data/cache/drums

The ``--config`` files are parsed by the project's LightningCLI (``av_lightning.cli``), exactly
as ``lightning fit`` would (overlays in order, ``class_path``/``init_args``, linked clip
geometry); nothing is trained. The model computes and describes the features it will read
(``feature_settings``, ``frame_features``, ``audio_features``: a
:class:`~av_lightning.data.cache.FeatureSource`); only its frozen parts run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from av_lightning.data.cache import build_cache


def load_model_and_data(configs: list[str], overrides: Sequence[str] = ()) -> tuple:
    """The ``model`` and ``data`` of LightningCLI configs, built by the project's CLI parser.

    This is exactly what ``lightning fit --config ...`` builds (overlays, class_path/init_args,
    the data->model links of clip geometry), without running anything.
    """
    from av_lightning.cli import cli_main

    args = [x for c in configs for x in ("--config", c)] + list(overrides)
    cli = cli_main(args, run=False)
    return cli.model, cli.datamodule


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-lightning cache", description=__doc__.split("\n")[0])
    p.add_argument("--config", action="append", required=True, help="LightningCLI YAML (repeat to overlay)")
    p.add_argument("--cache-dir", default=None, help="cache root (default: data.init_args.cache_dir)")
    p.add_argument("--splits", nargs="+", default=None, help="splits to cache (default: the DataModule's cache_splits)")
    p.add_argument("--batch-size", type=int, default=None, help="encoder batch (default: the DataModule's)")
    p.add_argument("--shard-size", type=int, default=256, help="clips per safetensors shard")
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--store-frames", action="store_true", help="also cache the uint8 frames")
    return p


def main(argv: list[str] | None = None) -> int:
    # anything else is a LightningCLI override, e.g. --data.init_args.num_workers=8
    args, overrides = build_parser().parse_known_args(argv)
    model, data = load_model_and_data(args.config, overrides)
    out = args.cache_dir or getattr(data, "cache_dir", None)
    if out is None:
        raise SystemExit("av-lightning cache: give --cache-dir or set data.init_args.cache_dir")
    if getattr(data, "train_starts", None) is None:
        data.train_starts = 1  # the cache stores fixed training starts; see av_lightning.data.clips
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(model, torch.nn.Module):
        model.eval().to(device)
    folder = build_cache(data, model, Path(out), splits=args.splits, batch_size=args.batch_size, shard_size=args.shard_size,
                         device=device, store_frames=args.store_frames)
    print(f"av-lightning cache: features in {folder}; train with data.init_args.cache_dir={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
