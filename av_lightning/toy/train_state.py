"""The toy backbone trainer's resumable state: EMA weights, RNG states, schedules and the recipe check.

``train_state.pt`` holds only tensors, dicts, lists, strings and numbers (the recipe as a JSON
string), so :func:`load_state` reads it with ``torch.load(weights_only=True)``; a file that needs
anything else to unpickle is refused, naming the file, before any of it runs.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Sequence

import torch

#: recipe keys that are ``[[from_step, value], ...]`` schedules
SCHEDULES = ("image_schedule", "high_noise_schedule")


def scheduled(schedule: Sequence[Sequence[float]], step: int) -> float:
    """The value at ``step`` of ``[[from_step, value], ...]`` (the last entry that has started; 0 before any)."""
    value = 0
    for start, v in sorted(schedule):
        if step >= start:
            value = v
    return value


def trained_recipe(cfg: dict, step: int, defaults: dict) -> str:
    """The recipe of steps ``0 .. step-1`` as JSON: ``defaults`` filled into ``cfg["train"]``, schedule
    entries that start at ``step`` or later dropped (they have not acted yet, so a resumed run may add
    or change them)."""
    train = {**defaults, **cfg["train"]}
    for key in SCHEDULES:
        train[key] = [[int(e[0]), float(e[1])] for e in train.get(key, []) if e[0] < step]
    return recipe_json({**cfg, "train": train})


class EMA:
    """Exponential moving average of a list of parameters (float32 copies)."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float):
        self.params = list(params)
        self.shadow = [p.detach().float().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        # Short warm-up of the decay so that early weights do not dominate a short run.
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - d)

    def state_dict(self) -> list[torch.Tensor]:
        return self.shadow

    def load_state_dict(self, shadow: Sequence[torch.Tensor]) -> None:
        for s, v in zip(self.shadow, shadow):
            s.copy_(v)

    @torch.no_grad()
    def copy_to(self, params: Sequence[torch.nn.Parameter]) -> None:
        for p, s in zip(params, self.shadow):
            p.copy_(s.to(p.dtype))


def rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(gen: torch.Generator, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def recipe_json(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def save_state(path: Path, **state) -> None:
    """Write the train state atomically (a run killed while saving keeps the previous state)."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path, cfg: dict, defaults: dict) -> dict:
    """Read ``train_state.pt`` with ``weights_only=True``; refuse another recipe or an unsafe file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} cannot be loaded safely (it holds objects other than tensors, dicts and lists: "
                         f"not a train state this trainer wrote); delete it or train into a new --out") from err
    if not isinstance(state, dict) or "config" not in state:
        raise ValueError(f"{path} is not a train state of this trainer; delete it or train into a new --out")
    stored = json.loads(state["config"])
    if trained_recipe(stored, state["step"], defaults) != trained_recipe(cfg, state["step"], defaults):
        raise ValueError(f"{path} was written with another recipe; use a new --out or the same --config (only "
                         f"schedule entries from step {state['step']} on may change)")
    return state
