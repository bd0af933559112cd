"""The sampling loop: conditioning -> video frames, with classifier-free guidance.

Written against diffusers' scheduler API (``set_timesteps`` / ``scale_model_input`` / ``step``)
so any diffusers scheduler works; DDIM is the default. Flow-matching schedulers
(``FlowMatchEulerDiscreteScheduler``) have no ``scale_model_input`` or ``init_noise_sigma`` (their
input needs no scaling, their noise has unit variance) and noise clean latents with ``scale_noise``. The conditional branch may be per-frame
``(B, F, N, d)``; the unconditional branch is the empty prompt, the same for every frame, so it
runs through the stock UNet path. Both branches share one batched UNet call per step.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}


def make_scheduler(config: dict, name: str = "ddim"):
    """A diffusers scheduler of kind ``name`` (a key of :data:`SCHEDULERS` or a class name)."""
    import diffusers

    cls_name = SCHEDULERS.get(name.lower(), name)
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)} or a diffusers class name")
    return cls.from_config(config)


def _expand_uncond(uncond: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Bring the unconditional states to the conditional layout (B, [F,] N, d)."""
    B = cond.shape[0]
    if uncond.shape[0] == 1 and B > 1:
        uncond = uncond.expand(B, *uncond.shape[1:])
    if cond.dim() == 4 and uncond.dim() == 3:
        uncond = uncond[:, None].expand(-1, cond.shape[1], -1, -1)
    return uncond


@torch.no_grad()
def sample(
    denoise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    cond: torch.Tensor,
    latent_shape: tuple[int, ...],
    uncond: Optional[torch.Tensor] = None,
    steps: int = 25,
    guidance_scale: float = 9.0,
    generator: Optional[torch.Generator] = None,
    latents: Optional[torch.Tensor] = None,
    init_latents: Optional[torch.Tensor] = None,
    strength: float = 1.0,
    progress: bool = True,
    step_callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Denoise from noise (or from noised ``init_latents``) to clean latents.

    Args:
        denoise: ``(latents (B', C, F, h, w), t (B',), cond) -> prediction``, e.g. ``backbone.denoise``.
        scheduler: a diffusers scheduler (its state is reset by ``set_timesteps``).
        cond: ``(B, N, d)`` or per-frame ``(B, F, N, d)`` conditioning.
        latent_shape: ``(B, C, F, h, w)``.
        uncond: unconditional states ``(1 or B, N, d)``; None or ``guidance_scale <= 1`` disables CFG.
        steps: inference steps.
        guidance_scale: CFG weight ``w`` in ``u + w (c - u)``.
        generator: seeds the initial noise (and stochastic schedulers).
        latents: the initial noise itself, overriding ``generator``.
        init_latents: clean latents to start from (image / video animation); noised to the
            level of ``strength`` and denoised for the last ``strength · steps`` steps.
        strength: in (0, 1]; 1 ignores ``init_latents``.
        progress: show a progress bar.
        step_callback: ``(i, t, latents) -> latents`` applied after every step (long-audio blending).

    Returns:
        ``(B, C, F, h, w)`` float latents.
    """
    device = cond.device
    if latents is None:
        latents = torch.randn(latent_shape, generator=generator, device="cpu").to(device)
    elif tuple(latents.shape) != tuple(latent_shape):
        raise ValueError(f"initial noise has shape {tuple(latents.shape)}, expected {tuple(latent_shape)}")
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    if init_latents is not None and strength < 1.0:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        start = steps - max(1, int(round(steps * strength)))
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        t0 = timesteps[:1].repeat(latent_shape[0])
        if hasattr(scheduler, "add_noise"):
            latents = scheduler.add_noise(init_latents.to(device), latents, t0)
        else:
            latents = scheduler.scale_noise(init_latents.to(device), t0, latents)
    else:
        latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)
    guided = uncond is not None and guidance_scale > 1.0
    if guided:
        uncond = _expand_uncond(uncond.to(device), cond)
        both = torch.cat([uncond, cond])
    B = latent_shape[0]
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
        x = scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
        if guided:
            pred_u, pred_c = denoise(torch.cat([x, x]), t.expand(2 * B), both).chunk(2)
            pred = pred_u + guidance_scale * (pred_c - pred_u)
        else:
            pred = denoise(x, t.expand(B), cond)
        latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
        if step_callback is not None:
            latents = step_callback(i, t, latents)
    return latents
