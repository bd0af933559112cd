"""Adapter files and the model they belong to.

An adapter is the trainable part of :class:`~av_lightning.module.AudioToVideo`: the mapper and
the token module. It is stored as

- ``.safetensors`` (:meth:`AudioToVideo.save_adapter`, ``av-lightning convert-official``): the
  weights, with the model configuration as JSON metadata (``hparams``), the text width and the
  token count;
- a Lightning ``.ckpt`` from a training run: the adapter's ``state_dict`` and the
  ``hyper_parameters`` LightningCLI saved (sub-modules as ``class_path`` / ``init_args``).

:func:`load_model` rebuilds the model a file belongs to through LightningCLI's own parser: from the
configuration stored in the file (``lightning.pytorch.cli.instantiate_module``, what
``load_from_checkpoint`` uses), or from training YAMLs parsed exactly as ``lightning fit`` parses
them (overlays, linked clip geometry). Every file is read safely (:mod:`av_lightning.weights`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch

from av_lightning.weights import load_safetensors, load_torch, safetensors_metadata

log = logging.getLogger(__name__)

PRECISIONS = {"float32": "float32", "fp32": "float32", "32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
              "float16": "float16", "fp16": "float16", "16": "float16"}
_SUBMODULES = ("backbone", "encoder", "mapper", "tokens")


class AdapterError(ValueError):
    """An adapter file does not fit the model or the backbone asked for; the message says how."""


class TextWidthError(ValueError):
    """The mapper's tokens are not as wide as the backbone's text embeddings."""

    def __init__(self, mapper_width: int, text_width: int):
        self.mapper_width, self.text_width = mapper_width, text_width
        super().__init__(
            f"mapper out_features={mapper_width} but the backbone's text embeddings are {text_width} wide: the adapter "
            f"or config was made for another backbone; use that backbone, or set "
            f"model.init_args.mapper.init_args.out_features: {text_width}"
        )


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(hparams, metadata)`` of an adapter ``.safetensors`` or a Lightning ``.ckpt``.

    ``hparams`` is the model configuration (LightningCLI's saved form, ``_class_path`` included when
    it was saved by the CLI), empty when the file carries none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; give an adapter .safetensors or a Lightning .ckpt")
    if path.suffix == ".safetensors":
        meta = safetensors_metadata(path, "adapter")
        return (json.loads(meta["hparams"]) if "hparams" in meta else {}), meta
    ckpt = load_torch(path, "checkpoint")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise AdapterError(f"{path} is neither an adapter .safetensors nor a Lightning checkpoint with a state_dict")
    return dict(ckpt.get("hyper_parameters") or {}), {}


def save_adapter(model, path: str | os.PathLike) -> None:
    """Write ``model``'s adapter (its trainable weights) as safetensors, with its configuration as metadata."""
    from safetensors.torch import save_file

    meta = {
        "format": "av_lightning.adapter/1",
        "text_width": str(model.backbone.text_width),
        "num_tokens": str(model.tokens.num_tokens),
        "encoder_features": str(model.encoder.feature_size),
        "hparams": json.dumps(dict(model.hparams.items()), default=str),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    save_file(state, os.fspath(path), metadata=meta)


def load_adapter(model, path: str | os.PathLike) -> None:
    """Load adapter weights (:func:`save_adapter`, or a Lightning checkpoint) into ``model``; every key and
    shape must match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file {path} does not exist")
    if path.suffix == ".safetensors":
        width = int(safetensors_metadata(path, "adapter").get("text_width", model.backbone.text_width))
        if width != model.backbone.text_width:
            raise AdapterError(f"adapter {path} was trained for a backbone with text width {width}; this backbone's is "
                               f"{model.backbone.text_width}: use the backbone the adapter was made for")
        state = load_safetensors(path, "adapter")
    else:
        state = load_torch(path, "adapter checkpoint")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.trainable_state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise AdapterError(f"adapter {path} does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise AdapterError(f"adapter {path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)


def model_config_from_yaml(paths: Sequence[str | os.PathLike]) -> dict:
    """The model configuration of training YAMLs (a base plus overlays), parsed by the project's
    LightningCLI exactly as ``lightning fit`` would, clip geometry linked from the data; nothing is
    built. Returns LightningCLI's saved form: ``{"_class_path": ..., **init_args}``."""
    from av_lightning.cli import parse_configs

    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"config {p} does not exist; give the training YAML (e.g. configs/drums.yaml)")
    model = parse_configs(paths).as_dict()["model"]
    return {"_class_path": model["class_path"], **(model.get("init_args") or {})}


def _override(config: dict, backbone: Optional[str], precision: Optional[str], encoder_checkpoint: Optional[str],
              vae_slice: Optional[int]) -> dict:
    config = copy.deepcopy(config)
    bb = config["backbone"].setdefault("init_args", {})
    if backbone is not None:
        bb["pretrained"] = os.fspath(backbone)
    if precision is not None:
        if precision not in PRECISIONS:
            raise AdapterError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        bb["dtype"] = PRECISIONS[precision]
    if vae_slice is not None:
        bb["vae_slice"] = vae_slice
    bb.pop("gradient_checkpointing", None)  # nothing trains here
    if encoder_checkpoint is not None:
        enc = config["encoder"].setdefault("init_args", {})
        enc["checkpoint"] = os.fspath(encoder_checkpoint)
        enc.pop("cfg", None)
    return config


def _cause(err: BaseException, kind: type) -> Optional[BaseException]:
    """``err`` itself or the first exception of type ``kind`` in its cause / context chain."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def load_model(
    checkpoint: str | os.PathLike,
    backbone: Optional[str] = None,
    config: Optional[Sequence[str | os.PathLike]] = None,
    precision: Optional[str] = None,
    device: str | torch.device = "cpu",
    encoder_checkpoint: Optional[str] = None,
    vae_slice: Optional[int] = None,
    backbone_seed: int = 0,
):
    """Rebuild the model an adapter was trained with and load the adapter.

    Args:
        checkpoint: adapter ``.safetensors`` or Lightning ``.ckpt``.
        backbone: local directory (or hub id) of the text-to-video model; default: the one in the config.
        config: training YAML(s) to take the model configuration from instead of the checkpoint's.
        precision: dtype of the frozen backbone: float32 / bfloat16 / float16 (or fp32 / bf16 / fp16).
        device: where to run.
        encoder_checkpoint: audio-encoder weights (the BEATs ``.pt``), overriding the config's.
        vae_slice: frames the VAE decodes at once (memory).
        backbone_seed: seeds the random frozen parts of a config without ``pretrained`` weights (tiny test
            configs): the training run built them after ``seed_everything``, 0 in the shipped configs.

    Returns:
        an ``AudioToVideo`` in eval mode on ``device``.

    Raises:
        AdapterError: the file carries no model configuration (and no ``config`` was given), or it
            was trained for a backbone of another text width.
    """
    from lightning.pytorch import LightningModule
    from lightning.pytorch.cli import instantiate_module

    checkpoint = Path(checkpoint)
    hparams, meta = read_checkpoint(checkpoint)
    if config:
        hparams = model_config_from_yaml(config)
    missing = [k for k in _SUBMODULES if not isinstance(hparams.get(k), dict)]
    if missing:
        raise AdapterError(
            f"{checkpoint} carries no model configuration for {missing} (it was not saved from a LightningCLI run); "
            "give the training YAML with --config"
        )
    hparams = _override(hparams, backbone, precision, encoder_checkpoint, vae_slice)
    hparams.pop("_instantiator", None)  # LightningCLI's bookkeeping, not an argument
    hparams.setdefault("_class_path", "av_lightning.module.AudioToVideo")
    enc = hparams["encoder"]
    if enc.get("class_path", "").endswith("BEATsEncoder") and not (enc.get("init_args") or {}).get("checkpoint") \
            and not (enc.get("init_args") or {}).get("cfg"):
        raise AdapterError(f"{checkpoint} uses the BEATs audio encoder but names no weights; give --encoder-checkpoint "
                           "/path/to/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
    if (hparams["backbone"].get("init_args") or {}).get("pretrained") is None:
        log.warning("the backbone config has no pretrained weights: building random parts (seed %d)", backbone_seed)
        torch.manual_seed(backbone_seed)
    try:
        model = instantiate_module(LightningModule, hparams)
    except ValueError as wrapped:  # jsonargparse wraps what the constructor raised
        err = _cause(wrapped, TextWidthError)
        if err is None:
            raise
        width = int(meta.get("text_width", err.mapper_width))
        where = (hparams["backbone"].get("init_args") or {}).get("pretrained") or "(from the config)"
        raise AdapterError(
            f"{checkpoint} was trained for a backbone whose text encoder is {width} wide, but the backbone {where} is "
            f"{err.text_width} wide; use --backbone with the model the adapter was made for"
        ) from err
    model.load_adapter(checkpoint)
    return model.eval().to(device)
