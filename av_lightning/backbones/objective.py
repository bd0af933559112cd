"""Diffusion training objectives: how a backbone is noised, at which timesteps, towards which target.

Every backbone owns one (``backbone.objective``), so the LightningModule, the toy backbone
trainer and the oracle check train any backbone with the same three calls and never ask which
kind of model they hold:

- :class:`DDPMObjective` — discrete-time diffusion (ModelScope / zeroscope, the toy backbone):
  ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε`` with ``ᾱ`` from a diffusers DDPM-style schedule
  config; the target is ``ε`` (``epsilon``) or ``v = sqrt(ᾱ_t) ε − sqrt(1 − ᾱ_t) x_0``
  (``v_prediction``). Timesteps are integers in ``[0, T)``.
- :class:`FlowMatchingObjective` — rectified flow (Wan 2.1): ``x_σ = (1 − σ) x_0 + σ ε`` with the
  target velocity ``ε − x_0``; ``σ`` uniform, then shifted as ``s σ / (1 + (s − 1) σ)`` (the
  ``shift`` of Wan's schedulers), and the model's timestep is ``σ · T``.

``timestep_range`` (fractions of the schedule, e.g. ``(0.3, 1.0)``) restricts training to the
noisier part of it. Noise is drawn before timesteps, both from ``generator`` when one is given
(on the generator's device, then moved to the data's), so a seeded step is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class TrainingExample:
    """One noised batch: the model input, its timesteps and the regression target."""

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def _draw_device(x0: torch.Tensor, generator: Optional[torch.Generator]) -> torch.device:
    return generator.device if generator is not None else x0.device


class DiffusionObjective:
    """Base class: :meth:`example` draws noise and timesteps and builds the target."""

    #: ``epsilon``, ``v_prediction`` or ``flow``.
    prediction_type: str = ""
    num_train_timesteps: int = 1000

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample_timesteps(self, batch_size: int, generator: Optional[torch.Generator] = None,
                         device: Optional[torch.device] = None,
                         timestep_range: Optional[tuple[float, float]] = None) -> torch.Tensor:
        raise NotImplementedError

    def predict_x0(self, noisy: torch.Tensor, output: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean sample that a model ``output`` (in this objective's target space) implies for ``noisy``."""
        raise NotImplementedError

    def example(self, x0: torch.Tensor, generator: Optional[torch.Generator] = None,
                timestep_range: Optional[tuple[float, float]] = None,
                noise: Optional[torch.Tensor] = None, timesteps: Optional[torch.Tensor] = None) -> TrainingExample:
        """Noise ``x0`` (``(B, ...)``) at random timesteps; ``noise`` / ``timesteps`` may be fixed."""
        where = _draw_device(x0, generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=where).to(x0)
        if timesteps is None:
            timesteps = self.sample_timesteps(x0.shape[0], generator, where, timestep_range).to(x0.device)
        return TrainingExample(self.add_noise(x0, noise, timesteps), timesteps, self.target(x0, noise, timesteps))


def _check_range(timestep_range: Optional[tuple[float, float]]) -> tuple[float, float]:
    if timestep_range is None:
        return 0.0, 1.0
    lo, hi = (float(x) for x in timestep_range)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"timestep_range must be two fractions 0 <= lo < hi <= 1 of the schedule, got {timestep_range}")
    return lo, hi


class DDPMObjective(DiffusionObjective):
    """ε- or v-prediction on a discrete schedule (module docstring).

    Args:
        scheduler_config: a diffusers scheduler config (``num_train_timesteps``, ``beta_schedule``,
            ``beta_start``, ``beta_end``, ``prediction_type`` ...), as stored in ``scheduler/``.
    """

    def __init__(self, scheduler_config: dict):
        from diffusers import DDPMScheduler

        sched = DDPMScheduler.from_config(dict(scheduler_config))
        self.prediction_type = sched.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}: use epsilon or v_prediction")
        self.num_train_timesteps = int(sched.config.num_train_timesteps)
        self.alphas_cumprod = sched.alphas_cumprod.to(torch.float32)
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def _alpha(self, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        dev = timesteps.device
        if dev not in self._on_device:
            self._on_device[dev] = self.alphas_cumprod.to(dev)
        a = self._on_device[dev][timesteps.long()].to(like.dtype)
        return a.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0, noise, timesteps):
        a = self._alpha(timesteps, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0, noise, timesteps):
        if self.prediction_type == "epsilon":
            return noise
        a = self._alpha(timesteps, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def predict_x0(self, noisy, output, timesteps):
        a = self._alpha(timesteps, noisy)
        if self.prediction_type == "epsilon":
            return (noisy - (1 - a).sqrt() * output) / a.sqrt()
        return a.sqrt() * noisy - (1 - a).sqrt() * output

    def sample_timesteps(self, batch_size, generator=None, device=None, timestep_range=None):
        T = self.num_train_timesteps
        lo, hi = _check_range(timestep_range)
        lo_t, hi_t = int(lo * T), max(int(hi * T), int(lo * T) + 1)
        return torch.randint(lo_t, hi_t, (batch_size,), generator=generator, device=device)


class FlowMatchingObjective(DiffusionObjective):
    """Rectified-flow velocity prediction (module docstring).

    Args:
        num_train_timesteps: T; the model's timestep is ``σ · T``.
        shift: σ-shift ``s`` (Wan 2.1 uses 3.0 at 480p; 1 is no shift).
    """

    prediction_type = "flow"

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0):
        if shift <= 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.shift = float(shift)

    def sigmas(self, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        s = (timesteps.to(torch.float32) / self.num_train_timesteps).to(like.dtype)
        return s.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0, noise, timesteps):
        s = self.sigmas(timesteps, x0)
        return (1 - s) * x0 + s * noise

    def target(self, x0, noise, timesteps):
        return noise - x0

    def predict_x0(self, noisy, output, timesteps):
        return noisy - self.sigmas(timesteps, noisy) * output

    def sample_timesteps(self, batch_size, generator=None, device=None, timestep_range=None):
        lo, hi = _check_range(timestep_range)
        u = lo + (hi - lo) * torch.rand(batch_size, generator=generator, device=device)
        sigma = self.shift * u / (1 + (self.shift - 1) * u)
        return sigma * self.num_train_timesteps
