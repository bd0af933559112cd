"""The frozen text-to-video backbone: diffusers UNet3D + (optional) VAE + CLIP text encoder.

Loads a pretrained directory or hub id in the zeroscope_v2_576w layout (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), or builds tiny random parts from config
dicts. Without a VAE the model works in pixel space (frames scaled to [-1, 1]), as the toy
world's backbone does. Every part is frozen; only the audio tokens injected into the prompt
carry gradients.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch
from torch.utils.checkpoint import checkpoint

from av_lightning.backbones.base import VideoBackbone
from av_lightning.backbones.frame_attention import FRAME_KWARG, install_frame_attention
from av_lightning.backbones.objective import DDPMObjective
from av_lightning.backbones.prompt import PromptInjector

#: Samplers by short name (any other diffusers scheduler class name works too).
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _has_subfolder(pretrained: str, name: str) -> bool:
    """Whether a local directory or hub repo holds component ``name`` (reads model_index.json)."""
    path = Path(pretrained)
    if path.is_dir():
        return (path / name).is_dir()
    from huggingface_hub import hf_hub_download

    index = json.loads(Path(hf_hub_download(pretrained, "model_index.json")).read_text())
    return name in index and index[name][0] is not None


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


class DiffusersT2V(VideoBackbone):
    """A frozen diffusers text-to-video model with per-frame prompt conditioning.

    Args:
        pretrained: local directory or hub id in the zeroscope_v2_576w layout; None builds random
            parts from the config dicts below.
        unet: ``UNet3DConditionModel`` config (when ``pretrained`` is None).
        text_encoder: ``CLIPTextConfig`` fields (when ``pretrained`` is None).
        vae: ``AutoencoderKL`` config, or None for pixel space (when ``pretrained`` is None).
        scheduler: scheduler config (``DDPMScheduler`` fields) for training and sampling.
        tokenizer_max_length: model length of the built-in character tokenizer (random parts only).
        dtype: dtype of the frozen parts (``float32``, ``bfloat16``, ``float16``).
        gradient_checkpointing: recompute UNet block activations in backward to save memory.
        vae_slice: frames decoded / encoded by the VAE at once.
        local_files_only: never reach the hub when loading ``pretrained``.
    """

    def __init__(
        self,
        pretrained: Optional[str] = None,
        unet: Optional[dict] = None,
        text_encoder: Optional[dict] = None,
        vae: Optional[dict] = None,
        scheduler: Optional[dict] = None,
        tokenizer_max_length: int = 48,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        gradient_checkpointing: bool = False,
        vae_slice: int = 8,
        local_files_only: bool = True,
    ):
        super().__init__()
        from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        self.pretrained = pretrained
        self.dtype_name = dtype
        self.vae_slice = vae_slice
        if pretrained is not None:
            p = os.fspath(pretrained)
            if not Path(p).is_dir() and local_files_only and ("/" not in p or p.startswith((".", "/"))):
                raise FileNotFoundError(
                    f"backbone directory {p!r} does not exist; give a local copy of a text-to-video model in "
                    "the diffusers layout (unet/, text_encoder/, tokenizer/, scheduler/, optional vae/)"
                )
            kw = dict(local_files_only=local_files_only)
            self.unet = UNet3DConditionModel.from_pretrained(p, subfolder="unet", **kw)
            self.text_encoder = CLIPTextModel.from_pretrained(p, subfolder="text_encoder", **kw)
            self.tokenizer = CLIPTokenizer.from_pretrained(p, subfolder="tokenizer", **kw)
            self.vae = AutoencoderKL.from_pretrained(p, subfolder="vae", **kw) if _has_subfolder(p, "vae") else None
            sched_config = DDPMScheduler.load_config(p, subfolder="scheduler", **kw)
        else:
            if unet is None or text_encoder is None:
                raise ValueError("give either `pretrained` (a model directory) or the `unet` and `text_encoder` configs")
            from av_lightning.backbones.tiny import TINY_SCHEDULER, char_tokenizer

            self.unet = UNet3DConditionModel(**unet)
            self.text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder))
            self.tokenizer = char_tokenizer(min(tokenizer_max_length, text_encoder.get("max_position_embeddings", 77)))
            self.vae = AutoencoderKL(**vae) if vae is not None else None
            sched_config = dict(TINY_SCHEDULER, **(scheduler or {}))
        self.scheduler_config = dict(sched_config)
        self.objective = DDPMObjective(self.scheduler_config)
        self._check_widths()

        frozen_dtype = DTYPES[dtype]
        for part in (self.unet, self.text_encoder, self.vae):
            if part is not None:
                part.requires_grad_(False)
                part.eval()
                if frozen_dtype != torch.float32:
                    part.to(frozen_dtype)
        self.num_frame_layers = install_frame_attention(self.unet)
        self.injector: Optional[PromptInjector] = None
        self.gradient_checkpointing = False
        if gradient_checkpointing:
            self.enable_gradient_checkpointing()

    # -- structure ------------------------------------------------------------------------------
    def _check_widths(self) -> None:
        d_text = self.text_encoder.config.hidden_size
        d_cross = self.unet.config.cross_attention_dim
        if d_text != d_cross:
            raise ValueError(f"text encoder width {d_text} does not match the UNet's cross_attention_dim {d_cross}")
        if self.vae is not None and self.vae.config.latent_channels != self.unet.config.in_channels:
            raise ValueError(
                f"VAE latent channels {self.vae.config.latent_channels} != UNet in_channels {self.unet.config.in_channels}"
            )

    @property
    def text_width(self) -> int:
        """d_t, the width of CLIP token embeddings and of the injected audio tokens."""
        return self.text_encoder.config.hidden_size

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel (1 in pixel space)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size * self.spatial_factor
        return (size, size)

    def make_scheduler(self, name: Optional[str] = None):
        """A diffusers sampler on this model's noise schedule (default DDIM; :data:`SCHEDULERS`)."""
        import diffusers

        cls_name = SCHEDULERS.get((name or "ddim").lower(), name)
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)} or a diffusers class name")
        return cls.from_config(self.scheduler_config)

    @property
    def frozen_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    def settings(self) -> dict:
        """What changes the cached latents (for cache keys)."""
        vae_cfg = dict(self.vae.config) if self.vae is not None else None
        return {"class": "DiffusersT2V", "pretrained": self.pretrained, "vae": json.loads(json.dumps(vae_cfg, default=str)),
                "dtype": self.dtype_name}

    def train(self, mode: bool = True) -> "DiffusersT2V":
        """Frozen parts stay in eval mode whatever the parent module does."""
        super().train(mode)
        for part in (self.unet, self.text_encoder, self.vae):
            if part is not None:
                part.eval()
        return self

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each UNet block in backward (diffusers' UNet3D has no switch of its own)."""
        if self.gradient_checkpointing:
            return
        blocks = [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]
        for block in blocks:
            block.forward = functools.partial(_checkpointed, block.forward)
        self.gradient_checkpointing = True

    def add_placeholder(self, placeholder: str, num_tokens: int) -> PromptInjector:
        """Register the placeholder and its K tokens in the tokenizer (once)."""
        if self.injector is not None:
            if (self.injector.placeholder, self.injector.num_tokens) != (placeholder, num_tokens):
                raise ValueError("this backbone already has a different placeholder registered")
            return self.injector
        self.injector = PromptInjector(self.tokenizer, self.text_encoder, placeholder, num_tokens)
        return self.injector

    # -- video <-> latents ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, F, 3, H, W)`` uint8 -> latents ``(B, C, F, h, w)`` (the VAE posterior mean, scaled)."""
        if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected uint8 frames (B, F, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        B, F = frames.shape[:2]
        x = frames.flatten(0, 1).to(self.frozen_dtype) / 127.5 - 1.0
        if self.vae is not None:
            x = x.to(self.vae.device)
            outs = [self.vae.encode(chunk).latent_dist.mean for chunk in x.split(self.vae_slice)]
            x = torch.cat(outs) * self.vae.config.scaling_factor
        return x.unflatten(0, (B, F)).permute(0, 2, 1, 3, 4).float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, F, h, w)`` -> uint8 frames ``(B, F, 3, H, W)``, decoded ``vae_slice`` frames at a time."""
        B, C, F = latents.shape[:3]
        x = latents.permute(0, 2, 1, 3, 4).flatten(0, 1)
        if self.vae is not None:
            x = x.to(self.frozen_dtype) / self.vae.config.scaling_factor
            x = torch.cat([self.vae.decode(chunk).sample for chunk in x.split(self.vae_slice)])
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.unflatten(0, (B, F))

    # -- prompts ----------------------------------------------------------------------------------
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Plain prompts -> ``(B, N, d_t)`` (no placeholder)."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.unet.device)
        return self.text_encoder(input_ids=ids).last_hidden_state

    def encode_frame_prompts(self, templates: Sequence[str], tokens: torch.Tensor) -> torch.Tensor:
        """Per-frame conditioning with audio tokens injected at the placeholder.

        Args:
            templates: B prompt templates, each holding the placeholder once.
            tokens: ``(B, F, K, d_t)`` audio tokens.

        Returns:
            ``(B, F, N, d_t)`` text-encoder states, one prompt per frame (all B·F prompts in one batch).
        """
        if self.injector is None:
            raise RuntimeError("call add_placeholder() before encoding prompts with audio tokens")
        B, F, K, d = tokens.shape
        if len(templates) != B:
            raise ValueError(f"got {len(templates)} prompt templates for a batch of {B}")
        ids, mask = (torch.stack(x) for x in zip(*(self.injector.template_ids(t) for t in templates)))
        # (B·F, N), row b·F + f; one host-to-device copy each
        ids = ids.to(tokens.device, non_blocking=True).repeat_interleave(F, dim=0)
        mask = mask.to(tokens.device, non_blocking=True).repeat_interleave(F, dim=0)
        states = self.injector.encode(ids, tokens.reshape(B * F, K, d).to(self.frozen_dtype), mask=mask)
        return states.unflatten(0, (B, F))

    # -- denoiser ---------------------------------------------------------------------------------
    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """UNet prediction for latents ``(B, C, F, h, w)``.

        ``cond`` is either ``(B, N, d)`` (one prompt for every frame, the stock path) or
        ``(B, F, N, d)`` (per-frame conditioning through the frame-attention processors).
        """
        dtype = self.frozen_dtype
        if cond.dim() == 3:
            out = self.unet(latents.to(dtype), timesteps, encoder_hidden_states=cond.to(dtype)).sample
        elif cond.dim() == 4:
            if cond.shape[1] != latents.shape[2]:
                raise ValueError(f"conditioning has {cond.shape[1]} frames, latents have {latents.shape[2]}")
            out = self.unet(
                latents.to(dtype), timesteps, encoder_hidden_states=cond[:, 0].to(dtype),
                cross_attention_kwargs={FRAME_KWARG: cond.to(dtype)},
            ).sample
        else:
            raise ValueError(f"conditioning must be (B, N, d) or (B, F, N, d), got {tuple(cond.shape)}")
        return out.float()

    def save_pretrained(self, path: str) -> None:
        """Write the frozen parts in the diffusers layout (loadable with ``pretrained=path``)."""
        from diffusers import DDIMScheduler

        path = Path(path)
        self.unet.save_pretrained(path / "unet")
        self.text_encoder.save_pretrained(path / "text_encoder")
        self.tokenizer.save_pretrained(path / "tokenizer")
        if self.vae is not None:
            self.vae.save_pretrained(path / "vae")
        DDIMScheduler.from_config(self.scheduler_config).save_pretrained(path / "scheduler")
        index = {"_class_name": "TextToVideoSDPipeline", "unet": ["diffusers", "UNet3DConditionModel"],
                 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                 "scheduler": ["diffusers", "DDIMScheduler"],
                 "vae": ["diffusers", "AutoencoderKL"] if self.vae is not None else [None, None]}
        (path / "model_index.json").write_text(json.dumps(index, indent=2))
