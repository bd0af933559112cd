"""BEATs checkpoint files: the released file's name and cfg, safe reading, strict loading.

Owns the step from a ``{'cfg': dict, 'model': state_dict}`` file on disk to a
:class:`~av_lightning.encoders.beats_model.BEATsModel` with its weights: reading with
``torch.load(weights_only=True)`` only (a file that would need arbitrary unpickling is refused
before anything in it runs), clear errors naming the file for unsafe, corrupt or foreign files, and a
strict key-for-key, shape-for-shape state-dict load.
"""

from __future__ import annotations

import logging
import os
import pickle

import torch

from av_lightning.encoders.beats_model import BEATsConfig, BEATsModel
from av_lightning.weights import WeightsError

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
# The cfg stored in BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (the paper's encoder): used to
# build random full-size models for benchmarks and tests; real checkpoints always bring their own.
PAPER_CHECKPOINT_CFG = {
    "input_patch_size": 16,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": True,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "finetuned_model": True,
    "predictor_class": 527,
}


# How to turn a trusted file that pickles other objects into one this loader reads.
_CONVERT_HINT = (
    "convert it once in a Python session you trust: load it with full unpickling (torch.load with weights_only "
    "set to False) into blob, then "
    "torch.save({'cfg': dict(blob['cfg']), "
    "'model': {k: v for k, v in blob['model'].items()}}, 'BEATs_converted.pt') "
    "(cfg as a plain dict of numbers, strings and booleans, model as a dict of tensors), then pass "
    "the converted file"
)


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The first sentence of the weights-only unpickler's own complaint (e.g. the refused global)."""
    text = str(err.__context__ or err)
    return text.split(" was not an allowed global")[0].split(". Please")[0].strip()[:300]


def read_checkpoint_file(path: str | os.PathLike) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file and the fix.

    Raises:
        WeightsError: (a ``ValueError``) the file pickles objects other than tensors and plain containers (refused before
            any of them is built: nothing in the file runs), or it cannot be read at all (truncated,
            corrupt, empty, not a ``torch.save`` file).
    """
    path = os.fspath(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if reason.startswith("Unsupported global"):
            raise WeightsError(
                f"{path} cannot be loaded safely: besides tensors it pickles Python objects "
                f"({reason}), and this project only loads checkpoints with torch.load(weights_only="
                "True); nothing in the file was run. If the file comes from a source you trust, "
                + _CONVERT_HINT
            ) from None
        raise WeightsError(
            f"{path} is not a readable checkpoint ({reason}): the file is corrupt, not a "
            "torch.save file, or pickled in a way torch.load(weights_only=True) does not read. "
            f"Download {CHECKPOINT_NAME} again and compare its size with the release; for a file "
            "you trust, " + _CONVERT_HINT
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no data'}"
        raise WeightsError(
            f"{path} is not a readable checkpoint ({reason[:300]}): the file is truncated, corrupt "
            f"or not a torch.save file. Download {CHECKPOINT_NAME} again and compare its size with "
            "the release"
        ) from None


def load_beats_checkpoint(path: str | os.PathLike) -> BEATsModel:
    """Build a :class:`BEATsModel` from a ``{'cfg': dict, 'model': state_dict}`` file.

    Raises with the file name and what was expected when the file is missing, unsafe or unreadable
    (:func:`read_checkpoint_file`), is not a BEATs checkpoint, or its weights do not match the
    architecture its cfg describes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"BEATs checkpoint {path!r} not found; download {CHECKPOINT_NAME} from the BEATs authors' "
            "release and set model.encoder.init_args.checkpoint to its local path"
        )
    blob = read_checkpoint_file(path)
    if not isinstance(blob, dict) or "cfg" not in blob or "model" not in blob:
        found = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(
            f"{path} is not a BEATs checkpoint: expected a dict with keys 'cfg' (architecture) and "
            f"'model' (state dict) as in {CHECKPOINT_NAME}, found {found}"
        )
    with torch.device("meta"):  # no throw-away random init: the checkpoint's tensors are used as is
        model = BEATsModel(BEATsConfig.from_dict(blob["cfg"]))
    load_beats_state_dict(model, blob["model"], source=path)
    return model


def load_beats_state_dict(model: BEATsModel, state: dict, source: str = "state dict") -> None:
    """Load ``state`` strictly, failing with the missing/unexpected/mis-shaped keys listed."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{source}: 'model' must be a state dict (parameter name -> tensor) as in "
            f"{CHECKPOINT_NAME}, found {type(state).__name__}"
            + ("" if not isinstance(state, dict) else " with values that are not all tensors")
        )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:

        def show(keys: list[str]) -> str:
            return (
                ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
                or "none"
            )

        raise ValueError(
            f"{source} does not match the BEATs architecture of its cfg: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}; wrong shapes: {show(wrong)}. Expected a BEATs "
            f"checkpoint such as {CHECKPOINT_NAME}"
        )
    model.load_state_dict(state, strict=True, assign=any(p.is_meta for p in model.parameters()))
    tables = [k for k in state if k.endswith("self_attn.relative_attention_bias.weight")]
    if any(not torch.equal(state[k], state[tables[0]]) for k in tables[1:]):
        log.warning(
            "%s: the per-layer relative position tables differ; BEATs uses the first layer's",
            source,
        )
