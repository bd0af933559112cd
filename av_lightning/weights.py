"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)``.

Unpickling a ``.pt`` / ``.ckpt`` file in full can run arbitrary code, so nothing in the project
does it. A checkpoint that holds anything beyond tensors and plain Python values (dicts, lists,
strings, numbers) is refused with a message that names the file and says how to convert it once,
in a session that trusts it. A truncated or corrupt file is refused with its name too.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

PathLike = str | os.PathLike


class WeightsError(ValueError):
    """A weight file cannot be read safely; the message names the file and the fix."""


def _convert_hint(path: Path) -> str:
    return (
        f"If you trust {path.name}, convert it once in a Python session: load it with full unpickling "
        f"(torch.load with weights_only set to False), then save its tensors with "
        "`safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}, "
        "'weights.safetensors')` (for a nested checkpoint take its state dict first), or re-save it with plain "
        "tensors and dicts only"
    )


def load_torch(path: PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Args:
        path: a ``.pt`` / ``.pth`` / ``.ckpt`` file.
        what: what the file is, for messages ("BEATs checkpoint", "adapter", ...).

    Raises:
        FileNotFoundError: no such file.
        WeightsError: the file holds objects that need full unpickling, or is not a readable
            torch file (truncated, corrupt, another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((ln.strip() for ln in str(err).splitlines() if "WeightsUnpickler error" in ln), "")
        if "Unsupported global" not in detail:  # not a pickle at all, or a damaged one
            raise WeightsError(
                f"{what} {path} is not a readable torch file (truncated, corrupt, or another format: "
                f"{detail[:200] or type(err).__name__}); re-download or re-save it"
            ) from err
        first = detail.split(". Please")[0][:300]
        raise WeightsError(
            f"{what} {path} holds objects other than tensors and plain Python values, so it is not loaded: "
            f"unpickling it could run code ({first}). {_convert_hint(path)}"
        ) from err
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError, IndexError, KeyError) as err:
        raise WeightsError(
            f"{what} {path} is not a readable torch file (truncated, corrupt, or another format: "
            f"{type(err).__name__}: {str(err)[:200]}); re-download or re-save it"
        ) from err


def _safetensors_error(path: Path, what: str, err: Exception) -> WeightsError:
    return WeightsError(
        f"{what} {path} is not a readable safetensors file (truncated or corrupt: {type(err).__name__}: "
        f"{str(err)[:200]}); re-download or re-save it"
    )


def safetensors_metadata(path: PathLike, what: str = "weights") -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (``{}`` when it has none)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with safe_open(os.fspath(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise _safetensors_error(path, what, err) from err


def load_safetensors(path: PathLike, what: str = "weights") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return load_file(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise _safetensors_error(path, what, err) from err


def load_weights(path: PathLike, what: str = "weights") -> Any:
    """A safetensors file (by suffix) or a torch file, each read safely."""
    if Path(path).suffix == ".safetensors":
        return load_safetensors(path, what)
    return load_torch(path, what)
