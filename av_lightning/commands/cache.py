"""``av-lightning cache``: precompute the feature cache of a training config once.

Example::

    av-lightning cache --config configs/drums.yaml --cache-dir /data/cache/drums
    lightning fit --config configs/drums.yaml --data.init_args.cache_dir /data/cache/drums

The ``--config`` files are merged in order like LightningCLI's (later files override earlier
ones, nested dicts merge key by key). Their ``model`` and ``data`` sections are instantiated
from ``class_path``/``init_args`` (recursively); the model must expose ``backbone.encode_frames``,
``backbone.settings()`` and ``encoder`` (an AudioEncoder). Only the frozen encoders run.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any, Optional

import yaml

from av_lightning.data.cache import build_cache


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` recursively (dicts merge, anything else is replaced)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # a new class_path replaces the old init_args, as in LightningCLI
            if "class_path" in value and value["class_path"] != out[key].get("class_path"):
                out[key] = value
            else:
                out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_configs(paths: list[str]) -> dict:
    """The merged content of YAML config files."""
    config: dict = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            config = merge(config, yaml.safe_load(f) or {})
    return config


def instantiate(node: Any) -> Any:
    """Build ``{class_path, init_args}`` dicts (recursively); other values pass through."""
    if isinstance(node, list):
        return [instantiate(x) for x in node]
    if not isinstance(node, dict):
        return node
    if "class_path" not in node:
        return {k: instantiate(v) for k, v in node.items()}
    module_name, _, cls_name = node["class_path"].rpartition(".")
    if not module_name:
        raise ValueError(f"class_path {node['class_path']!r} must be a full dotted path, e.g. av_lightning.data.VGGSoundDataModule")
    cls = getattr(importlib.import_module(module_name), cls_name)
    kwargs = {k: instantiate(v) for k, v in (node.get("init_args") or {}).items()}
    kwargs.update({k: instantiate(v) for k, v in (node.get("dict_kwargs") or {}).items()})
    return cls(**kwargs)


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


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    config = load_configs(args.config)
    for key in ("model", "data"):
        if key not in config:
            raise SystemExit(f"av-lightning cache: no '{key}' section in {args.config}")
    data = instantiate(config["data"])
    model = instantiate(config["model"])
    out = args.cache_dir or getattr(data, "cache_dir", None)
    if out is None:
        raise SystemExit("av-lightning cache: give --cache-dir or set data.init_args.cache_dir")
    if getattr(data, "train_starts", None) is None:
        data.train_starts = 1  # the cache stores fixed training starts; see av_lightning.data.clips
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if isinstance(model, torch.nn.Module):
        model.eval().to(device)
    backbone = model.backbone
    folder = build_cache(data, backbone.encode_frames, backbone.settings(), model.encoder, Path(out),
                         splits=args.splits, batch_size=args.batch_size, shard_size=args.shard_size,
                         device=device, store_frames=args.store_frames)
    print(f"av-lightning cache: features in {folder}; train with data.init_args.cache_dir={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
