"""The interface every frozen text-to-video backbone implements (DESIGN §10).

A backbone owns everything that differs between text-to-video models, so that
:class:`~av_lightning.module.AudioToVideo`, the sampling loop and the commands never ask which
one they hold:

- pixels <-> latents: :meth:`encode_frames`, :meth:`decode_latents`, :meth:`latent_shape`
  (channels, spatial factor, temporal compression: ``temporal_factor`` video frames per latent
  frame after the first);
- the diffusion objective for training (:attr:`objective`, a
  :class:`~av_lightning.backbones.objective.DiffusionObjective`) and the sampler
  (:meth:`make_scheduler`);
- the text pathway: :attr:`text_width` (the width of the pseudo-tokens the adapter must emit),
  :meth:`add_placeholder`, :meth:`encode_text` (plain prompts, one for every frame) and
  :meth:`encode_frame_prompts` (templates with the audio tokens of every *video* frame, which the
  backbone groups onto its latent frames);
- the denoiser: :meth:`denoise` takes either plain ``(B, N, d)`` conditioning or the per-frame
  conditioning :meth:`encode_frame_prompts` returns.

Every parameter is frozen: only the injected tokens carry gradients.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from av_lightning.backbones.objective import DiffusionObjective


class VideoBackbone(nn.Module):
    """Abstract frozen text-to-video model (module docstring).

    Subclasses set :attr:`objective` and implement the methods below.
    """

    objective: DiffusionObjective
    #: Video frames per latent frame after the first (1: no temporal compression).
    temporal_factor: int = 1

    # -- sizes --------------------------------------------------------------------------------
    @property
    def text_width(self) -> int:
        """d_t: the width of the prompt-token embeddings the audio tokens replace."""
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel (1 in pixel space)."""
        raise NotImplementedError

    @property
    def default_size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels that the model was trained at (generation's default)."""
        raise NotImplementedError

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of ``num_frames`` video frames: ``1 + (F − 1) / temporal_factor``."""
        r = self.temporal_factor
        if r == 1:
            return num_frames
        if num_frames < 1 or (num_frames - 1) % r:
            raise ValueError(f"this backbone compresses time {r}×: the frame count must be 1 + {r}·k, got {num_frames}")
        return 1 + (num_frames - 1) // r

    def latent_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """``(B, C, F_lat, h, w)`` of a video of ``num_frames`` frames of ``height × width`` pixels."""
        f = self.spatial_factor
        if height % f or width % f:
            raise ValueError(f"height and width must be multiples of {f} for this backbone, got {height}×{width}")
        return (batch_size, self.latent_channels, self.latent_frames(num_frames), height // f, width // f)

    def pool_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Per-video-frame values ``(B, F, ...)`` -> per-latent-frame ``(B, F_lat, ...)``.

        A causal video VAE's grouping (r = ``temporal_factor``): latent frame 0 takes video frame 0,
        latent frame i the mean of frames ``r·i − r + 1 … r·i``. Identity when r = 1.
        """
        r = self.temporal_factor
        n = self.latent_frames(x.shape[1])
        if r == 1:
            return x
        rest = x[:, 1:].unflatten(1, (n - 1, r)).mean(2)
        return torch.cat([x[:, :1], rest], dim=1)

    def settings(self) -> dict:
        """JSON-serialisable description of what changes :meth:`encode_frames` (feature-cache keys)."""
        raise NotImplementedError

    # -- video <-> latents --------------------------------------------------------------------
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, 3, H, W)`` -> latents ``(B, C, F_lat, h, w)``."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, F_lat, h, w)`` -> uint8 ``(B, F, 3, H, W)``."""
        raise NotImplementedError

    # -- text pathway -------------------------------------------------------------------------
    def add_placeholder(self, placeholder: str, num_tokens: int) -> None:
        """Make ``placeholder`` in templates stand for K = ``num_tokens`` injected tokens."""
        raise NotImplementedError

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Plain prompts -> ``(B, N, d)`` conditioning, the same for every frame."""
        raise NotImplementedError

    def encode_frame_prompts(self, templates: Sequence[str], tokens: torch.Tensor) -> torch.Tensor:
        """B templates and audio tokens ``(B, F, K, d_t)`` of every video frame -> per-latent-frame
        conditioning ``(B, F_lat, N, d)`` (with gradients to ``tokens``)."""
        raise NotImplementedError

    # -- denoiser -----------------------------------------------------------------------------
    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The model's prediction (the objective's target) for latents ``(B, C, F_lat, h, w)``."""
        raise NotImplementedError

    def make_scheduler(self, name: Optional[str] = None):
        """A fresh diffusers scheduler for sampling (``name``: the backbone's choices; None: its default)."""
        raise NotImplementedError
