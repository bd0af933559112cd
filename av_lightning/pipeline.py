"""The sampling loop and its long-audio windows: conditioning -> latents, with classifier-free guidance.

:func:`sample` is written against diffusers' scheduler API (``set_timesteps`` /
``scale_model_input`` / ``step``), so any diffusers scheduler works; DDIM is the UNet3D default.
Flow-matching schedulers (``FlowMatchEulerDiscreteScheduler``) have no ``scale_model_input`` or
``init_noise_sigma`` (their input needs no scaling, their noise has unit variance) and noise clean
latents with ``scale_noise``. The conditional branch may be per-frame ``(B, F, N, d)``; the
unconditional branch is the empty prompt, the same for every frame. Both branches share one
batched denoiser call per step.

Temporal guidance (optional, per-frame conditioning only): the branch ``m`` is conditioned on the
same prompt with the audio tokens averaged over the clip's frames, so it knows *what* sounds but
not *when*. In the noisier part of the schedule, where a frame's look and motion are decided, it
takes the unconditional branch's place: ``m + w_t (c - m)`` guides the timing, the part of ``c``
that differs between frames, with ``w_t``; the later steps are classifier-free guidance
``u + w (c - u)``. Every step still has two branches, so it costs what guidance costs.

Long audio (MultiDiffusion-style; ``docs/generation.md``): a video of N frames is one latent. It
is covered by W windows of F frames (the model's clip length, :func:`plan_video`) that overlap by
O frames; the last window is aligned to the end. At every step :class:`WindowedDenoiser` denoises
each window with its own conditioning (its tokens computed from its own audio) and averages the W
predictions back onto the N frames with weights that ramp down towards the window edges
(:func:`blend_weights`); one scheduler step then updates the shared latent, so overlapping
frames are one set of latents that every window covering them pulls towards its own
prediction. Cost per step: ``W · F`` frames of denoiser work, ``W = ceil((N − F) / (F − O)) + 1``.
With a backbone that compresses time r× the windows are planned in latent frames.

:meth:`av_lightning.module.AudioToVideo.sample` is the one caller that turns audio into videos
(test-time metrics, previews, ``predict``, ``av-lightning generate``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch
from tqdm.auto import tqdm


def temporal_scale(mode: str, scale: Optional[float]) -> Optional[float]:
    """The temporal guidance scale that sampling in conditioning ``mode`` uses: None in the ``text``
    and ``none`` modes (their conditioning has no time axis) and when it is off (None or <= 0)."""
    if mode not in ("audio", "text+audio") or scale is None or scale <= 0:
        return None
    return float(scale)


def frame_mean(cond: torch.Tensor) -> torch.Tensor:
    """Per-frame conditioning or tokens ``(B, F, N, d)`` with every frame replaced by the mean over
    the frames: what the clip says, without when (temporal guidance's timing-free ``m``)."""
    if cond.ndim != 4:
        raise ValueError(f"temporal guidance needs per-frame conditioning (B, F, N, d), got shape {tuple(cond.shape)}")
    return cond.mean(dim=1, keepdim=True).expand_as(cond).contiguous()


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
    static_cond: Optional[torch.Tensor] = None,
    temporal_guidance_scale: Optional[float] = None,
    temporal_guidance_span: float = 0.5,
    max_rows: Optional[int] = None,
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
        static_cond: the timing-free conditioning ``(B, F, N, d)`` of temporal guidance (the prompt
            with every frame's audio tokens replaced by their mean over the frames).
        temporal_guidance_scale: ``w_t`` in ``m + w_t (c - m)``; None: classifier-free guidance
            at every step (``static_cond`` is not used).
        temporal_guidance_span: the noisier fraction of the schedule that is timing-guided: steps
            at timesteps ``t >= (1 - span) · num_train_timesteps`` (0.5: the first 4 of 8 DDIM steps).
        max_rows: rows (clips × guidance branches) per denoiser call; None: all in one call. On a
            CPU, calls of a few dozen rows run faster per row than one call of hundreds.

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
    if temporal_guidance_scale is not None and not 0.0 <= temporal_guidance_span <= 1.0:
        raise ValueError(f"temporal_guidance_span must be a fraction in [0, 1], got {temporal_guidance_span}")
    temporal = temporal_guidance_scale is not None and temporal_guidance_span > 0
    if temporal:
        if static_cond is None:
            raise ValueError("temporal guidance needs the timing-free conditioning (static_cond); pass it or set "
                             "temporal_guidance_scale=None")
        if tuple(static_cond.shape) != tuple(cond.shape):
            raise ValueError(f"static_cond has shape {tuple(static_cond.shape)}, expected the conditioning's "
                             f"{tuple(cond.shape)}")
        timing_pair = torch.cat([static_cond.to(device), cond])
        from_t = (1.0 - temporal_guidance_span) * getattr(scheduler.config, "num_train_timesteps", 1000)
    guided = uncond is not None and guidance_scale > 1.0
    if guided:
        uncond = _expand_uncond(uncond.to(device), cond)
        both = torch.cat([uncond, cond])
    B = latent_shape[0]
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")

    def run(x_rows: torch.Tensor, t_rows: torch.Tensor, c_rows: torch.Tensor) -> torch.Tensor:
        n = x_rows.shape[0]
        if max_rows is None or n <= max_rows:
            return denoise(x_rows, t_rows, c_rows)
        return torch.cat([denoise(x_rows[i : i + max_rows], t_rows[i : i + max_rows], c_rows[i : i + max_rows])
                          for i in range(0, n, max_rows)])

    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in tqdm(timesteps, desc="sampling", disable=not progress, leave=False):
        x = scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
        if temporal and float(t) >= from_t:
            pred_m, pred_c = run(torch.cat([x, x]), t.expand(2 * B), timing_pair).chunk(2)
            pred = pred_m + temporal_guidance_scale * (pred_c - pred_m)
        elif guided:
            pred_u, pred_c = run(torch.cat([x, x]), t.expand(2 * B), both).chunk(2)
            pred = pred_u + guidance_scale * (pred_c - pred_u)
        else:
            pred = run(x, t.expand(B), cond)
        latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
    return latents


# ------------------------------------------------------------------------------------------------
# long audio: shared-frame windows


def plan_windows(total: int, window: int, overlap: int) -> list[int]:
    """Start frames of windows of ``window`` frames covering ``total`` frames.

    Consecutive windows share at least ``overlap`` frames; the last window ends at ``total`` (it may
    overlap its neighbour by more). ``total <= window`` gives one window ``[0]`` of ``total`` frames.
    """
    if total < 1 or window < 1:
        raise ValueError(f"need total >= 1 and window >= 1 frames, got {total}, {window}")
    if total <= window:
        return [0]
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window - 1}] frames for windows of {window}, got {overlap}")
    stride = window - overlap
    count = math.ceil((total - window) / stride) + 1
    return sorted({min(k * stride, total - window) for k in range(count)})


def blend_weights(window: int, overlap: int, mode: Literal["ramp", "uniform"] = "ramp") -> torch.Tensor:
    """``(F,)`` weights of a window's frames when predictions are averaged over windows.

    ``ramp`` rises linearly over the first ``overlap`` frames and falls over the last (a cross-fade,
    never zero); ``uniform`` weighs every frame alike (plain MultiDiffusion averaging).
    """
    if mode == "uniform" or overlap <= 0:
        return torch.ones(window)
    if mode != "ramp":
        raise ValueError(f"blend must be 'ramp' or 'uniform', got {mode!r}")
    f = torch.arange(window, dtype=torch.float32)
    return torch.minimum(torch.ones(window), torch.minimum(f + 1, window - f) / (overlap + 1))


@dataclass
class VideoPlan:
    """How audio becomes frames: N frames in windows of F starting at ``starts`` (video frames).

    The ``latent_*`` fields are the same windows in latent frames, where the denoiser blends them;
    with a backbone that compresses time r× (``temporal_factor``), window k covers latent frames
    ``latent_starts[k] …`` and video frames ``r · latent_starts[k] … + F − 1``. Without compression
    they equal the video-frame fields.
    """

    num_frames: int
    window: int
    overlap: int
    starts: list[int]
    samples_per_frame: float
    latent_window: int = 0
    latent_overlap: int = 0
    latent_starts: list[int] = field(default_factory=list)

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    def window_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` waveforms -> ``(B, W, n)``: each window's audio, exactly its F frames' span."""
        n = round(self.window * self.samples_per_frame)
        chunks = []
        for s in self.starts:
            a = audio[:, round(s * self.samples_per_frame):][:, :n]
            chunks.append(torch.nn.functional.pad(a, (0, n - a.shape[1])))  # < 1 sample of rounding
        return torch.stack(chunks, dim=1)


def plan_video(num_samples: int, sample_rate: int, fps: float, window: int, overlap: Optional[int] = None,
               temporal_factor: int = 1) -> VideoPlan:
    """N = whole frames the audio covers; windows of ``min(window, N)`` frames; default overlap F // 4.

    With ``temporal_factor`` r > 1 (a causal video VAE), N and F are rounded down to ``1 + r·k``
    frames (the trailing < r frames of audio are left out) and the windows are planned in latent
    frames, the overlap rounded up to whole latent frames.

    Raises:
        ValueError: the audio is shorter than one frame, or ``window`` does not fit the backbone.
    """
    spf = sample_rate / fps
    total = math.floor(num_samples / spf + 1e-6)
    if total < 1:
        raise ValueError(f"{num_samples} samples is shorter than one frame at {fps:g} fps")
    r = int(temporal_factor)
    if r == 1:
        F = min(window, total)
        overlap = min(max(1, window // 4) if overlap is None else overlap, max(F - 1, 0))
        starts = plan_windows(total, F, overlap)
        return VideoPlan(total, F, overlap, starts, spf, F, overlap, starts)
    if (window - 1) % r:
        raise ValueError(f"this backbone makes 1 + {r}·k frames per window; a window of {window} frames is not one")
    total = 1 + r * ((total - 1) // r)
    F = min(window, total)
    n_lat, f_lat = 1 + (total - 1) // r, 1 + (F - 1) // r
    o_lat = min(max(1, (1 + (window - 1) // r) // 4) if overlap is None else -(-overlap // r), max(f_lat - 1, 0))
    lat_starts = plan_windows(n_lat, f_lat, o_lat)
    return VideoPlan(total, F, r * o_lat, [r * s for s in lat_starts], spf, f_lat, o_lat, lat_starts)


class WindowedDenoiser:
    """A ``denoise`` for :func:`sample` over the whole latent of N (latent) frames.

    Called with latents ``(B', C, N, h, w)``, timesteps ``(B',)`` and the windows' conditioning laid
    out as ``(B', W·F, L, d)`` (window k's frames at ``k·F .. k·F + F − 1``), it denoises the W windows
    in calls of at most ``max_batch`` rows (default ``B'``: one window per row, the memory of a
    one-window batch, however long the audio) and returns the weighted average of the window
    predictions per frame, ``(B', C, N, h, w)``.
    """

    def __init__(self, denoise: Callable, starts: Sequence[int], window: int, total: int,
                 weights: torch.Tensor, max_batch: Optional[int] = None):
        self.denoise, self.starts, self.window, self.total = denoise, list(starts), window, total
        self.weights, self.max_batch = weights, max_batch

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, C, N, h, w = latents.shape
        W, F = len(self.starts), self.window
        if N != self.total or cond.shape[1] != W * F:
            raise ValueError(f"windowed denoiser set up for {self.total} frames in {W}×{F}, got latents with {N} "
                             f"frames and conditioning with {cond.shape[1]}")
        if W == 1:  # one window covering everything: the plain denoiser, bit for bit
            return self.denoise(latents, t, cond)
        x = torch.stack([latents[:, :, s : s + F] for s in self.starts], dim=1).flatten(0, 1)  # (B·W, C, F, h, w)
        c = cond.unflatten(1, (W, F)).flatten(0, 1)  # (B·W, F, L, d)
        ts = t.repeat_interleave(W)
        step = max(1, self.max_batch or B)
        pred = torch.cat([self.denoise(x[i : i + step], ts[i : i + step], c[i : i + step])
                          for i in range(0, x.shape[0], step)]).unflatten(0, (B, W))
        wts = self.weights.to(pred)
        out = torch.zeros(B, C, N, h, w, dtype=pred.dtype, device=pred.device)
        norm = torch.zeros(N, dtype=pred.dtype, device=pred.device)
        for k, s in enumerate(self.starts):
            out[:, :, s : s + F] += pred[:, k] * wts[None, None, :, None, None]
            norm[s : s + F] += wts
        return out / norm[None, None, :, None, None]
