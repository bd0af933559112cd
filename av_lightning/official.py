"""The authors' released TempoTokens adapters (``learned_embeds.pth``) in this project.

The official mapper (DESIGN §5) is, for one second of 16 kHz audio:

1. BEATs patch tokens of all 12 layers concatenated: ``(48, 9216)``, time-major (6 steps × 8 bands);
2. ``fc1 → GELU → fc2 → GELU → fc3``: ``(48, 1024)``;
3. segment ``s`` of 24 = mean of tokens ``2s`` and ``2s+1``; ``GELU → fc4``: ``ã`` ``(24, 1024)``;
4. windows of radius 1, 2, 4, 8 over ``[max(i−j, 0), min(i+j, 24))`` (half-open);
5. an attentive clip token from ``fga.*`` (1×1 convolutions = Linear layers), no dropout at inference;
6. the prompt ``"<temp> <local1> <local2> <local3> <local4> <class>"`` = ``[ã_i, w_1, w_2, w_4, w_8, att]``.

Every step is already one of this project's modules, so compatibility is a configuration plus a
renaming of weights, not a second implementation:

- ``AudioMapper(9216, 2304, 1024, depth=4)``: ``pre.0/2/4`` = ``fc1/2/3``, ``post.1`` = ``fc4``; its
  area-weighted time pooling of 48 tokens into 24 segments is exactly the mean of pairs ``(2s, 2s+1)``;
- ``TempoTokens(radii=[1, 2, 4, 8], bounds="half_open", pool=AttentivePool(1024))``: K = 6 tokens in
  the official order;
- ``AudioToVideo(compat="official")`` feeds the mapper ``BEATsEncoder.patch_tokens`` (raw patch tokens)
  instead of the time-averaged hidden states.

:func:`convert_official` writes an adapter file (safetensors) whose metadata carries that model
configuration, so ``av-lightning generate --checkpoint adapter.safetensors`` rebuilds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional

import torch

#: Keys and shapes of the official ``learned_embeds.pth`` (a plain state dict).
OFFICIAL_SHAPES: dict[str, tuple[int, ...]] = {
    "fc1.weight": (2304, 9216),
    "fc1.bias": (2304,),
    "fc2.weight": (2304, 2304),
    "fc2.bias": (2304,),
    "fc3.weight": (1024, 2304),
    "fc3.bias": (1024,),
    "fc4.weight": (1024, 1024),
    "fc4.bias": (1024,),
    "fga.un_models.0.embed.weight": (1024, 1024, 1),
    "fga.un_models.0.embed.bias": (1024,),
    "fga.un_models.0.feature_reduce.weight": (1, 1024, 1),
    "fga.un_models.0.feature_reduce.bias": (1,),
    "fga.pp_models.0.embed_X.weight": (1024, 1024, 1),
    "fga.pp_models.0.embed_X.bias": (1024,),
    "fga.pp_models.0.embed_Y.weight": (1024, 1024, 1),
    "fga.pp_models.0.embed_Y.bias": (1024,),
    "fga.reduce_potentials.0.weight": (1, 2, 1),
}


def _conv1x1(w: torch.Tensor) -> torch.Tensor:
    """Conv1d weight ``(out, in, 1)`` -> Linear weight ``(out, in)``. Also ``reduce_potentials``, a
    Conv1d(2 -> 1, k=1) ``(1, 2, 1)``, becomes ``mix``, Linear(2, 1) ``(1, 2)``: its input channels are
    ordered [unary, pairwise], as AttentivePool stacks them."""
    return w[..., 0]


def _same(w: torch.Tensor) -> torch.Tensor:
    return w


#: official key -> (adapter key, weight transform).
KEY_MAP: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "fc1.weight": ("mapper.pre.0.weight", _same),
    "fc1.bias": ("mapper.pre.0.bias", _same),
    "fc2.weight": ("mapper.pre.2.weight", _same),
    "fc2.bias": ("mapper.pre.2.bias", _same),
    "fc3.weight": ("mapper.pre.4.weight", _same),
    "fc3.bias": ("mapper.pre.4.bias", _same),
    "fc4.weight": ("mapper.post.1.weight", _same),
    "fc4.bias": ("mapper.post.1.bias", _same),
    "fga.un_models.0.embed.weight": ("tokens.pool.unary_embed.weight", _conv1x1),
    "fga.un_models.0.embed.bias": ("tokens.pool.unary_embed.bias", _same),
    "fga.un_models.0.feature_reduce.weight": ("tokens.pool.unary_reduce.weight", _conv1x1),
    "fga.un_models.0.feature_reduce.bias": ("tokens.pool.unary_reduce.bias", _same),
    "fga.pp_models.0.embed_X.weight": ("tokens.pool.pair_x.weight", _conv1x1),
    "fga.pp_models.0.embed_X.bias": ("tokens.pool.pair_x.bias", _same),
    "fga.pp_models.0.embed_Y.weight": ("tokens.pool.pair_y.weight", _conv1x1),
    "fga.pp_models.0.embed_Y.bias": ("tokens.pool.pair_y.bias", _same),
    "fga.reduce_potentials.0.weight": ("tokens.pool.mix.weight", _conv1x1),
}

#: The zeroscope_v2_576w hub id the official adapters were trained with.
OFFICIAL_BACKBONE = "cerspense/zeroscope_v2_576w"


def official_model_config(
    beats_checkpoint: Optional[str] = None,
    backbone: Optional[str] = OFFICIAL_BACKBONE,
    dims: Optional[dict] = None,
) -> dict:
    """The ``AudioToVideo`` hyper-parameters (LightningCLI ``class_path``/``init_args`` form) of an
    official adapter.

    Args:
        beats_checkpoint: path of the BEATs ``.pt`` file (``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt``);
            None leaves it to ``av-lightning generate --encoder-checkpoint``.
        backbone: local directory or hub id of zeroscope_v2_576w (``--backbone`` overrides it).
        dims: ``{"in_features", "hidden", "width"}`` overriding the full sizes (9216, 2304, 1024); tests
            use small ones.
    """
    d = {"in_features": 9216, "hidden": 2304, "width": 1024, **(dims or {})}
    return {
        "backbone": {"class_path": "av_lightning.backbones.diffusers_t2v.DiffusersT2V",
                     "init_args": {"pretrained": backbone}},
        "encoder": {"class_path": "av_lightning.encoders.beats.BEATsEncoder",
                    "init_args": {"checkpoint": beats_checkpoint}},
        "mapper": {"class_path": "av_lightning.tempo.AudioMapper",
                   "init_args": {"in_features": d["in_features"], "hidden": d["hidden"],
                                 "out_features": d["width"], "depth": 4}},
        "tokens": {"class_path": "av_lightning.tempo.TempoTokens",
                   "init_args": {"own_token": True, "windows": "windows", "radii": [1, 2, 4, 8],
                                 "bounds": "half_open",
                                 "pool": {"class_path": "av_lightning.tempo.AttentivePool",
                                          "init_args": {"dim": d["width"], "hidden": d["width"], "dropout": 0.5}}}},
        "conditioning": "audio",
        "audio_prompt": "<audio>",
        "text_audio_prompt": "A video of <audio> {label}",
        "placeholder": "<audio>",
        "num_frames": 24,
        "fps": 24.0,
        "sample_rate": 16000,
        "compat": "official",
    }


def convert_state_dict(official: dict, source: str = "state dict", shapes: Optional[dict] = None) -> dict[str, torch.Tensor]:
    """Rename and reshape an official mapper state dict into this project's adapter keys.

    Args:
        official: the ``learned_embeds.pth`` contents (``{key: tensor}``).
        source: a name for error messages (the file).
        shapes: expected shapes (default :data:`OFFICIAL_SHAPES`; tests pass small ones).

    Returns:
        ``{adapter key: float32 tensor}`` for ``AudioToVideo.load_adapter`` (``mapper.*`` and ``tokens.pool.*``).

    Raises:
        ValueError: keys missing or unexpected, or a shape differs; the message lists them.
    """
    shapes = OFFICIAL_SHAPES if shapes is None else shapes
    if not isinstance(official, dict) or not all(torch.is_tensor(v) for v in official.values()):
        raise ValueError(f"{source} is not a plain state dict of tensors (keys fc1.weight ... fga.*); "
                         "give the official learned_embeds.pth")
    missing = sorted(set(KEY_MAP) - set(official))
    extra = sorted(set(official) - set(KEY_MAP))
    if missing or extra:
        raise ValueError(f"{source} is not an official TempoTokens mapper: missing keys {missing}, unexpected keys "
                         f"{extra}; expected exactly {sorted(KEY_MAP)}")
    bad = [f"{k}: {tuple(v.shape)} (expected {shapes[k]})" for k, v in official.items() if tuple(v.shape) != tuple(shapes[k])]
    if bad:
        raise ValueError(f"{source}: unexpected shapes: {bad}")
    return {new: fn(official[old]).detach().to(torch.float32).contiguous() for old, (new, fn) in KEY_MAP.items()}


def load_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``learned_embeds.pth`` (tensors only: ``weights_only=True``)."""
    from av_lightning.weights import load_torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; give the official learned_embeds.pth")
    state = load_torch(path, "official adapter")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def convert_official(
    src: str | os.PathLike,
    out: str | os.PathLike,
    beats_checkpoint: Optional[str] = None,
    backbone: Optional[str] = OFFICIAL_BACKBONE,
    shapes: Optional[dict] = None,
) -> Path:
    """Convert ``learned_embeds.pth`` into an adapter file for ``av-lightning generate``.

    The safetensors metadata holds the model configuration (:func:`official_model_config`) in the
    same form as :meth:`AudioToVideo.save_adapter` writes, so the generator rebuilds the official
    model from the file alone (plus the BEATs checkpoint and the backbone).

    Returns:
        the written path.
    """
    from safetensors.torch import save_file

    src = Path(src)
    shapes = OFFICIAL_SHAPES if shapes is None else shapes
    state = convert_state_dict(load_official(src), source=os.fspath(src), shapes=shapes)
    dims = {"in_features": shapes["fc1.weight"][1], "hidden": shapes["fc1.weight"][0], "width": shapes["fc4.weight"][0]}
    hparams = official_model_config(beats_checkpoint, backbone, dims)
    meta = {
        "format": "av_lightning.adapter/1",
        "source": f"official TempoTokens adapter {src.name}",
        "text_width": str(dims["width"]),
        "num_tokens": "6",
        "encoder_features": str(dims["in_features"]),
        "hparams": json.dumps(hparams),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, os.fspath(out), metadata=meta)
    return out
