"""The Wan 2.1 text-to-video backbone: diffusers WanTransformer3DModel + AutoencoderKLWan + umT5.

Loads a local directory in the Wan2.1-T2V-1.3B-Diffusers layout (``transformer/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), or builds tiny random parts from config dicts
(:mod:`av_lightning.backbones.wan_parts`). Every part is frozen. What this backbone owns
(DESIGN §10):

- **latents**: the causal VAE maps F = 1 + 4k video frames to F_lat = 1 + k latent frames (16
  channels, 8× down in space), normalised per channel with the VAE's ``latents_mean`` /
  ``latents_std`` as WanPipeline does;
- **objective and sampler**: rectified flow with Wan's σ-shift (``flow_shift`` of the scheduler
  config) for training; UniPC on flow sigmas or flow-matching Euler with the same shift for sampling;
- **temporal compression of the audio tokens**: latent frame 0 takes video frame 0's tokens, latent
  frame i the mean of frames 4i−3 … 4i (:meth:`VideoBackbone.pool_frames`);
- **text pathway**, ``text_mode``:
  ``text_encoder`` (faithful TempoTokens) — one prompt per latent frame through umT5 with the K
  pseudo-tokens written over the placeholder rows of its input embeddings
  (:class:`~av_lightning.backbones.prompt.PromptInjector`); ``direct`` — the pseudo-tokens are
  context rows themselves, in umT5's output space (``text_width`` = 4096 wide), placed before the
  umT5 states of the template's remaining text (encoded once per template, without gradients), so
  no text-encoder forward or backward runs per step. Cross-attention has no positional encoding,
  so the order of context rows does not matter. In both modes each latent frame's context is
  zero-padded to ``text_length`` = 512 rows, as WanPipeline pads every prompt, and the
  unconditional branch is the empty prompt through umT5, WanPipeline's default negative prompt;
- **per-frame cross-attention**: :mod:`~av_lightning.backbones.wan_attention` regroups each
  block's ``attn2`` queries by latent frame.

umT5 runs on the prompts trimmed to the longest real one with its padding mask, then the states
are zero-padded: with the mask the states of real tokens do not depend on the padding, so this
equals WanPipeline's 512-token encoding at a fraction of the cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch

from av_lightning.backbones.base import VideoBackbone
from av_lightning.backbones.objective import FlowMatchingObjective
from av_lightning.backbones.prompt import PromptInjector
from av_lightning.backbones.wan_attention import install_frame_cross_attention
from av_lightning.backbones.wan_parts import WAN_SCHEDULER, WAN_TEXT_LENGTH

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TextMode = Literal["text_encoder", "direct"]
SCHEDULER_NAMES = ("unipc", "euler")


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast a diffusers model as ``from_pretrained(torch_dtype=...)`` would: the modules the class keeps
    in float32 (``_keep_in_fp32_modules``: norms, time embedding) stay float32."""
    model.to(dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(k in name.split(".") for k in keep):
            module.float()


def load_diffusers_model(cls, folder: Path):
    """A diffusers model from a local folder (``config.json`` + safetensors weights, sharded or not).

    ``cls.from_pretrained`` refuses classes that keep modules in float32 (the Wan transformer) when
    ``accelerate`` is not installed; this reads the same files without it, safetensors only (no
    pickle), and checks that every key matches.
    """
    import re

    from diffusers.models.modeling_utils import no_init_weights
    from safetensors.torch import load_file

    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = [folder / "diffusion_pytorch_model.safetensors"]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"{folder} lacks {absent}; it must hold the model's safetensors weights "
                                "(download the Diffusers version of the model, not .bin / .pth files)")
    with no_init_weights():
        model = cls.from_config(cls.load_config(folder))
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f))
    missing, unexpected = model.load_state_dict(state, strict=False)
    ignore = getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or []
    unexpected = [k for k in unexpected if not any(re.search(pat, k) for pat in ignore)]
    if missing or unexpected:
        raise ValueError(f"weights in {folder} do not fit {cls.__name__} with its config.json: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _clean(text: str) -> str:
    """WanPipeline's prompt cleaning (ftfy when installed, HTML unescape, whitespace)."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    return prompt_clean(text)


class WanT2V(VideoBackbone):
    """A frozen Wan 2.1 text-to-video model with per-latent-frame conditioning (module docstring).

    Args:
        pretrained: local directory in the Wan2.1-T2V-1.3B-Diffusers layout; None builds random parts
            from the config dicts below.
        transformer: ``WanTransformer3DModel`` config (when ``pretrained`` is None).
        vae: ``AutoencoderKLWan`` config (when ``pretrained`` is None).
        text_encoder: ``UMT5Config`` fields (when ``pretrained`` is None; the tokenizer is then the
            in-memory character tokenizer).
        scheduler: scheduler config overrides (``flow_shift``, ``num_train_timesteps``, ...) on top of
            the loaded or default (:data:`~av_lightning.backbones.wan_parts.WAN_SCHEDULER`) config.
        text_mode: ``text_encoder`` or ``direct`` (module docstring).
        text_length: N, context rows per latent frame (WanPipeline: 512).
        size: ``(H, W)`` pixels generation defaults to (Wan 1.3B: 480 × 832).
        dtype: dtype of the transformer and the text encoder.
        vae_dtype: dtype of the VAE (Wan's reference code keeps it in float32).
        gradient_checkpointing: recompute every transformer block in backward (diffusers' own switch).
        local_files_only: never reach the hub when loading ``pretrained``.
    """

    def __init__(
        self,
        pretrained: Optional[str] = None,
        transformer: Optional[dict] = None,
        vae: Optional[dict] = None,
        text_encoder: Optional[dict] = None,
        scheduler: Optional[dict] = None,
        text_mode: TextMode = "text_encoder",
        text_length: int = WAN_TEXT_LENGTH,
        size: tuple[int, int] = (480, 832),
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        vae_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        gradient_checkpointing: bool = False,
        local_files_only: bool = True,
    ):
        super().__init__()
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

        if text_mode not in ("text_encoder", "direct"):
            raise ValueError(f"text_mode must be 'text_encoder' or 'direct', got {text_mode!r}")
        self.pretrained = None if pretrained is None else os.fspath(pretrained)
        self.text_mode = text_mode
        self.text_length = int(text_length)
        self.size = (int(size[0]), int(size[1]))
        self.dtype_name, self.vae_dtype_name = dtype, vae_dtype
        frozen, vae_frozen = DTYPES[dtype], DTYPES[vae_dtype]
        if self.pretrained is not None:
            p = self.pretrained
            if not Path(p).is_dir():
                raise FileNotFoundError(
                    f"Wan directory {p!r} does not exist; give a local copy of Wan2.1-T2V-1.3B-Diffusers "
                    "(transformer/, vae/, text_encoder/, tokenizer/, scheduler/)"
                )
            missing = [d for d in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler") if not (Path(p) / d).is_dir()]
            if missing:
                raise FileNotFoundError(f"Wan directory {p} lacks {missing}; it must be in the diffusers layout of "
                                        "Wan2.1-T2V-1.3B-Diffusers")
            kw = dict(local_files_only=local_files_only)
            self.transformer = load_diffusers_model(WanTransformer3DModel, Path(p) / "transformer")
            self.vae = load_diffusers_model(AutoencoderKLWan, Path(p) / "vae")
            self.text_encoder = UMT5EncoderModel.from_pretrained(p, subfolder="text_encoder", dtype=frozen, **kw)
            self.tokenizer = AutoTokenizer.from_pretrained(p, subfolder="tokenizer", **kw)
            sched = json.loads((Path(p) / "scheduler" / "scheduler_config.json").read_text())
        else:
            if transformer is None or vae is None or text_encoder is None:
                raise ValueError("give either `pretrained` (a Wan directory) or the `transformer`, `vae` and "
                                 "`text_encoder` configs")
            from av_lightning.backbones.wan_parts import char_tokenizer

            self.transformer = WanTransformer3DModel(**transformer)
            self.vae = AutoencoderKLWan(**vae)
            self.text_encoder = UMT5EncoderModel(UMT5Config(**text_encoder))
            self.tokenizer = char_tokenizer(self.text_length)
            if frozen != torch.float32:
                self.text_encoder.to(frozen)
            sched = dict(WAN_SCHEDULER)
        for part, dt in ((self.transformer, frozen), (self.vae, vae_frozen)):
            if part.dtype != dt:
                _cast(part, dt)
        self.scheduler_config = {**sched, **(scheduler or {})}
        self.num_train_timesteps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        self.flow_shift = float(self.scheduler_config.get("flow_shift", self.scheduler_config.get("shift", 1.0)))
        self.objective = FlowMatchingObjective(self.num_train_timesteps, shift=self.flow_shift)
        self.temporal_factor = int(self.vae.config.scale_factor_temporal)
        self._check_parts()
        for part in (self.transformer, self.vae, self.text_encoder):
            part.requires_grad_(False)
            part.eval()
        self.num_frame_layers = install_frame_cross_attention(self.transformer, self.text_length)
        self.injector: Optional[PromptInjector] = None
        self.placeholder: Optional[tuple[str, int]] = None
        self._text_cache: dict[tuple[str, torch.device], tuple[torch.Tensor, int]] = {}
        self.gradient_checkpointing = bool(gradient_checkpointing)
        if gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()

    # -- structure ------------------------------------------------------------------------------
    def _check_parts(self) -> None:
        d_text, d_model = self.text_encoder.config.d_model, self.transformer.config.text_dim
        if d_text != d_model:
            raise ValueError(f"text encoder width {d_text} does not match the transformer's text_dim {d_model}")
        z, c = self.vae.config.z_dim, self.transformer.config.in_channels
        if z != c:
            raise ValueError(f"VAE latent channels (z_dim) {z} != transformer in_channels {c}")
        if tuple(self.transformer.config.patch_size)[0] != 1:
            raise ValueError("per-frame conditioning needs a temporal patch size of 1 (frame-major video tokens)")
        if self.text_length < 2:
            raise ValueError(f"text_length must be >= 2, got {self.text_length}")

    @property
    def text_width(self) -> int:
        """d_t: umT5's width (4096 for umT5-XXL), in both text modes."""
        return self.text_encoder.config.d_model

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels

    @property
    def spatial_factor(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    @property
    def default_size(self) -> tuple[int, int]:
        return self.size

    @property
    def frozen_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    def latent_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """``(B, 16, 1 + (F − 1)/4, H/8, W/8)``; H and W must be multiples of 8 × the patch size (16)."""
        m = self.spatial_factor * int(self.transformer.config.patch_size[1])
        if height % m or width % m:
            raise ValueError(f"height and width must be multiples of {m} for Wan (VAE 8× and patch 2×), got {height}×{width}")
        return super().latent_shape(batch_size, num_frames, height, width)

    def settings(self) -> dict:
        """What changes the cached latents (for cache keys)."""
        return {"class": "WanT2V", "pretrained": self.pretrained,
                "vae": json.loads(json.dumps(dict(self.vae.config), default=str)), "vae_dtype": self.vae_dtype_name}

    def train(self, mode: bool = True) -> "WanT2V":
        """Frozen parts stay in eval mode whatever the parent module does."""
        super().train(mode)
        for part in (self.transformer, self.vae, self.text_encoder):
            part.eval()
        return self

    def make_scheduler(self, name: Optional[str] = None):
        """A sampler on Wan's flow schedule with its shift: ``unipc`` (default, UniPC on flow sigmas, as
        WanPipeline) or ``euler`` (``FlowMatchEulerDiscreteScheduler``)."""
        from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

        name = (name or "unipc").lower()
        if name == "unipc":
            cfg = dict(self.scheduler_config) if self.scheduler_config.get("_class_name") == "UniPCMultistepScheduler" else {}
            cfg.update(num_train_timesteps=self.num_train_timesteps, use_flow_sigmas=True,
                       prediction_type="flow_prediction", flow_shift=self.flow_shift)
            return UniPCMultistepScheduler.from_config(cfg)
        if name in ("euler", "flow-euler", "flowmatcheulerdiscretescheduler"):
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=self.flow_shift)
        raise ValueError(f"unknown sampler {name!r} for Wan; choose one of {list(SCHEDULER_NAMES)}")

    # -- video <-> latents ----------------------------------------------------------------------
    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.latent_channels, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32, device=like.device).view(shape)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32, device=like.device).view(shape)
        return mean, std

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, 3, H, W)``, F = 1 + 4k -> normalised latents ``(B, 16, F_lat, H/8, W/8)`` (posterior
        mean), one video at a time."""
        if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected uint8 frames (B, F, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        self.latent_frames(frames.shape[1])
        dev, dt = self.vae.device, DTYPES[self.vae_dtype_name]
        out = []
        for video in frames:
            x = video.permute(1, 0, 2, 3).unsqueeze(0).to(dev, dt) / 127.5 - 1.0  # (1, 3, F, H, W)
            out.append(self.vae.encode(x).latent_dist.mean.float())
        z = torch.cat(out)
        mean, std = self._latent_stats(z)
        return (z - mean) / std

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, 16, F_lat, h, w)`` -> uint8 ``(B, 1 + 4(F_lat − 1), 3, 8h, 8w)``, one video at a time."""
        mean, std = self._latent_stats(latents)
        z = latents.float() * std + mean
        videos = []
        for item in z.to(self.vae.device, DTYPES[self.vae_dtype_name]).split(1):
            x = self.vae.decode(item).sample  # (1, 3, F, H, W), clamped to [-1, 1]
            videos.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 1, 3, 4))
        return torch.cat(videos)

    # -- text -----------------------------------------------------------------------------------
    def add_placeholder(self, placeholder: str, num_tokens: int) -> Optional[PromptInjector]:
        """Make ``placeholder`` stand for K tokens: K tokenizer tokens whose umT5 input rows are
        replaced (``text_encoder``), or K context rows (``direct``, the tokenizer is left alone)."""
        if self.placeholder is not None:
            if self.placeholder != (placeholder, num_tokens):
                raise ValueError("this backbone already has a different placeholder registered")
            return self.injector
        if num_tokens < 1 or num_tokens >= self.text_length:
            raise ValueError(f"num_tokens must be in [1, {self.text_length}), got {num_tokens}")
        if self.text_mode == "text_encoder":
            self.injector = PromptInjector(self.tokenizer, self.text_encoder, placeholder, num_tokens,
                                           max_length=self.text_length, embedding=lambda m: m.encoder.embed_tokens)
        self.placeholder = (placeholder, num_tokens)
        return self.injector

    def _encode_ids(self, ids: torch.Tensor, tokens: Optional[torch.Tensor] = None,
                    mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """umT5 on ``(n, N)`` padded ids (tokens injected at ``mask`` when given) -> ``(n, N, d)`` with the
        rows of padding set to zero, as WanPipeline does.

        ``ids`` and ``mask`` are best given on the CPU (the trimmed length is read there, no device sync).
        """
        attention = ids != self.tokenizer.pad_token_id
        L = max(int(attention.sum(1).max()), 1)
        dev = self.text_encoder.device
        ids_t = ids[:, :L].to(dev, non_blocking=True)
        att_t = attention[:, :L].to(dev, non_blocking=True)
        if tokens is None:
            states = self.text_encoder(input_ids=ids_t, attention_mask=att_t.long()).last_hidden_state
        else:
            states = self.injector.encode(ids_t, tokens.to(dev, self.frozen_dtype), mask=mask[:, :L].to(dev, non_blocking=True),
                                          attention_mask=att_t.long())
        states = states * att_t.unsqueeze(-1).to(states.dtype)
        return torch.nn.functional.pad(states, (0, 0, 0, self.text_length - L))

    def _tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer([_clean(p) for p in prompts], padding="max_length", max_length=self.text_length,
                              truncation=True, add_special_tokens=True, return_tensors="pt").input_ids

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Plain prompts -> ``(B, N, d_t)`` umT5 states zero-padded to N rows (WanPipeline's encoding)."""
        return self._encode_ids(self._tokenize(prompts))

    def _template_text(self, template: str, device: torch.device) -> tuple[torch.Tensor, int]:
        """``direct`` mode: umT5 states ``(N, d)`` of the template without its placeholder, and their
        real row count; computed once per template (no gradients: nothing in it trains)."""
        key = (template, device)
        cached = self._text_cache.get(key)
        if cached is None:
            placeholder = self.placeholder[0]
            if template.count(placeholder) != 1:
                raise ValueError(
                    f"prompt template {template!r} must contain the placeholder {placeholder!r} exactly once "
                    f"(found {template.count(placeholder)}); for example 'A video of {placeholder}'"
                )
            ids = self._tokenize([template.replace(placeholder, " ")])
            length = int((ids != self.tokenizer.pad_token_id).sum())
            with torch.no_grad():
                states = self._encode_ids(ids)[0].to(device)
            if len(self._text_cache) >= 1024:
                self._text_cache.clear()
            cached = self._text_cache[key] = (states, length)
        return cached

    def encode_frame_prompts(self, templates: Sequence[str], tokens: torch.Tensor) -> torch.Tensor:
        """Per-latent-frame conditioning with the audio tokens.

        Args:
            templates: B prompt templates, each holding the placeholder once.
            tokens: ``(B, F, K, d_t)`` audio tokens of the F = 1 + 4k video frames.

        Returns:
            ``(B, F_lat, N, d_t)``: one zero-padded context per latent frame (gradients reach ``tokens``).
        """
        if self.placeholder is None:
            raise RuntimeError("call add_placeholder() before encoding prompts with audio tokens")
        B, F, K, d = tokens.shape
        if len(templates) != B:
            raise ValueError(f"got {len(templates)} prompt templates for a batch of {B}")
        if K != self.placeholder[1]:
            raise ValueError(f"expected {self.placeholder[1]} tokens per frame, got {K}")
        pooled = self.pool_frames(tokens)  # (B, F_lat, K, d)
        n = pooled.shape[1]
        if self.text_mode == "direct":
            rows = []
            for b, template in enumerate(templates):
                text, length = self._template_text(template, tokens.device)
                if length > self.text_length - K:
                    raise ValueError(f"template {template!r} has {length} text tokens; with {K} audio tokens it "
                                     f"exceeds the {self.text_length}-row context")
                # The last K rows of the text states are padding (zeros): dropping them keeps N rows.
                rest = text[: self.text_length - K].to(pooled.dtype)
                rows.append(torch.cat([pooled[b], rest.expand(n, -1, -1)], dim=1))
            return torch.stack(rows)
        ids, mask = (torch.stack(x) for x in zip(*(self.injector.template_ids(_clean(t)) for t in templates)))
        ids = ids.repeat_interleave(n, dim=0)  # (B·F_lat, N) on the CPU, row b·F_lat + f
        mask = mask.repeat_interleave(n, dim=0)
        states = self._encode_ids(ids, pooled.reshape(B * n, K, d), mask)
        return states.unflatten(0, (B, n))

    # -- denoiser -------------------------------------------------------------------------------
    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Flow (velocity) prediction for latents ``(B, 16, F_lat, h, w)`` at timesteps ``(B,)`` (σ·T).

        ``cond`` is ``(B, N, d)`` (one context for every frame: the stock transformer) or
        ``(B, F_lat, N, d)`` (per latent frame, through the regrouping processors).
        """
        N = self.text_length
        if cond.dim() == 4:
            if cond.shape[1] != latents.shape[2]:
                raise ValueError(f"conditioning has {cond.shape[1]} latent frames, latents have {latents.shape[2]}")
            context = cond.flatten(1, 2)
        elif cond.dim() == 3:
            context = cond
        else:
            raise ValueError(f"conditioning must be (B, N, d) or (B, F_lat, N, d), got {tuple(cond.shape)}")
        if cond.shape[-2] != N:
            raise ValueError(f"conditioning has {cond.shape[-2]} rows per frame; this backbone pads contexts to {N}")
        dtype = self.frozen_dtype
        out = self.transformer(latents.to(dtype), timesteps, encoder_hidden_states=context.to(dtype),
                               return_dict=False)[0]
        return out.float()

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the frozen parts as diffusers' WanPipeline does (loadable with ``pretrained=path``)."""
        from diffusers import WanPipeline

        if self.injector is not None:
            raise RuntimeError("save the backbone before registering a placeholder: the tokenizer now holds its tokens")
        WanPipeline(tokenizer=self.tokenizer, text_encoder=self.text_encoder, vae=self.vae,
                    scheduler=self.make_scheduler("unipc"), transformer=self.transformer).save_pretrained(path)
