"""AudioToVideo: the LightningModule that trains TempoTokens on a frozen text-to-video model.

Wires the plain modules together (DESIGN §3): frozen audio encoder -> AudioMapper -> TempoTokens
-> placeholder tokens in the CLIP prompt -> frozen UNet3D with per-frame cross-attention. Only the
mapper and the token module (its attentive pool) train; checkpoints hold only them.
"""

from __future__ import annotations

import os
import zlib
from typing import Literal, Optional, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F

from av_lightning.adapters import TextWidthError, load_adapter, save_adapter
from av_lightning.backbones.base import VideoBackbone
from av_lightning.data.batch import ClipBatch
from av_lightning.data.io import write_videos
from av_lightning.encoders.base import AudioEncoder
from av_lightning.metrics.collection import compute_metrics
from av_lightning.pipeline import (
    VideoPlan,
    WindowedDenoiser,
    blend_weights,
    frame_mean,
    plan_video,
    sample,
    temporal_scale,
)
from av_lightning.tempo import AudioMapper, TempoTokens

try:  # set by LightningCLI while it instantiates the model
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
except ImportError:  # pragma: no cover - older Lightning
    _given_hyperparameters = None

Conditioning = Literal["audio", "text", "text+audio", "none"]
TRAINABLE = ("mapper.", "tokens.")


def default_optimizer(params) -> torch.optim.Optimizer:
    """AdamW at a constant 1e-5, the paper's setting."""
    return torch.optim.AdamW(params, lr=1e-5)


class AudioToVideo(pl.LightningModule):
    """Audio-conditioned video generation with TempoTokens.

    Args:
        backbone: the frozen text-to-video model.
        encoder: the frozen audio encoder.
        mapper: encoder states -> per-frame tokens (trained).
        tokens: per-frame token sets (windows, pooled token; trained).
        conditioning: ``audio`` (the method), ``text`` (class prompt only), ``text+audio`` or
            ``none`` (empty prompt) — the paper's baselines are one flag away.
        audio_prompt / text_prompt / text_audio_prompt: prompt templates per mode; ``{label}`` is
            replaced by the clip's class, the placeholder by the K audio tokens.
        placeholder: the placeholder string in templates.
        l1_weight: λ of the L1 penalty on the tokens.
        timestep_range: train on timesteps drawn uniformly from this fraction of the schedule,
            e.g. ``[0.3, 1.0]`` to skip the low-noise steps where the prompt barely matters
            (None: the whole schedule, as the paper).
        num_frames / fps / sample_rate: the clip geometry (linked from the data by the CLI).
        steps / guidance_scale / scheduler / seed: sampling settings for previews and tests (``scheduler``:
            one of the backbone's samplers; None: its default, DDIM for UNet3D, UniPC for Wan).
        temporal_guidance_scale / temporal_guidance_span: temporal guidance in the audio modes
            (:mod:`av_lightning.pipeline`): in the noisier ``span`` of the schedule the timing, the
            part of the conditioning that differs between frames, is guided with ``w_t`` against a
            branch conditioned on the clip-mean tokens; the later steps use ``guidance_scale``. None
            (the paper): classifier-free guidance at every step. The cost is the same.
        metrics: metrics updated in ``test_step`` (each has ``update_from_clips``).
        save_test_videos: directory to write generated test clips (mp4 with audio), or None.
        optimizer: builds the optimizer from the trainable parameters (LightningCLI injects it).
        lr_scheduler: optional schedule built on that optimizer and stepped after every optimizer
            step (None: the optimizer's constant learning rate).
        compat: ``"official"`` feeds the mapper the encoder's raw patch tokens of all layers
            (``encoder.patch_tokens``, BEATs: ``(B, 48, 9216)`` per second) instead of the
            time-averaged hidden states, as the released official adapters expect (DESIGN §5,
            ``av_lightning/official.py``); None is this project's method.
    """

    def __init__(
        self,
        backbone: VideoBackbone,
        encoder: AudioEncoder,
        mapper: AudioMapper,
        tokens: TempoTokens,
        conditioning: Conditioning = "audio",
        audio_prompt: str = "<audio>",
        text_prompt: str = "{label}",
        text_audio_prompt: str = "A video of <audio> {label}",
        placeholder: str = "<audio>",
        l1_weight: float = 0.01,
        timestep_range: Optional[tuple[float, float]] = None,
        num_frames: int = 24,
        fps: float = 24.0,
        sample_rate: int = 16000,
        steps: int = 25,
        guidance_scale: float = 9.0,
        scheduler: Optional[str] = None,
        seed: int = 0,
        temporal_guidance_scale: Optional[float] = None,
        temporal_guidance_span: float = 0.5,
        metrics: Optional[Sequence[nn.Module]] = None,
        save_test_videos: Optional[str] = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        compat: Optional[Literal["official"]] = None,
    ):
        super().__init__()
        if conditioning not in ("audio", "text", "text+audio", "none"):
            raise ValueError(f"conditioning must be audio, text, text+audio or none, got {conditioning!r}")
        if compat not in (None, "official"):
            raise ValueError(f"compat must be None or 'official', got {compat!r}")
        if compat == "official" and not hasattr(encoder, "patch_tokens"):
            raise ValueError(f"compat='official' needs an encoder with patch_tokens() (BEATsEncoder), got {type(encoder).__name__}")
        # Under LightningCLI the sub-modules arrive as config dicts (class_path / init_args) and are
        # saved, so `load_from_checkpoint` and `generate` can rebuild the model; built in Python they
        # are module objects, kept out of the hyper-parameters.
        cli_config = _given_hyperparameters.get() if _given_hyperparameters is not None else None
        ignore = (["metrics"] if cli_config is not None
                  else ["backbone", "encoder", "mapper", "tokens", "metrics", "optimizer", "lr_scheduler"])
        self.save_hyperparameters(ignore=ignore)
        self.backbone = backbone
        self.encoder = encoder
        self.mapper = mapper
        self.tokens = tokens
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.metrics = nn.ModuleList(metrics or [])
        self._check_widths()
        self.backbone.add_placeholder(placeholder, tokens.num_tokens)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.strict_loading = False  # checkpoints hold only the trainable parts (checked on load)

    # -- structure ------------------------------------------------------------------------------
    def _check_widths(self) -> None:
        d_t = self.backbone.text_width
        if self.mapper.out_features != d_t:
            raise TextWidthError(self.mapper.out_features, d_t)
        if self.mapper.in_features != self.encoder.feature_size:
            raise ValueError(
                f"mapper in_features={self.mapper.in_features} but the encoder gives "
                f"{self.encoder.num_layers} layers × {self.encoder.hidden_size} = {self.encoder.feature_size}; "
                f"set model.mapper.init_args.in_features: {self.encoder.feature_size}"
            )
        if self.tokens.pool is not None and self.tokens.pool.dim != d_t:
            raise ValueError(f"pool dim {self.tokens.pool.dim} != text width {d_t}")

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen feature extractors never leave eval mode
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter: every parameter and buffer of the mapper and the token module."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(TRAINABLE)}

    def parameter_counts(self) -> tuple[int, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return trainable, frozen

    def setup(self, stage: str) -> None:
        bad = [n for n, p in self.named_parameters() if p.requires_grad and not n.startswith(TRAINABLE)]
        if bad:
            raise RuntimeError(f"parameters outside the adapter require grad: {bad[:5]}")
        trainable, frozen = self.parameter_counts()
        rank_zero_info(f"AudioToVideo: {trainable:,} trainable parameters (mapper + tokens), {frozen:,} frozen")
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if hasattr(datamodule, "expect_cache"):  # cached splits must hold exactly the features read here
            datamodule.expect_cache(self.feature_settings())

    # -- conditioning ---------------------------------------------------------------------------
    def check_batch(self, batch: ClipBatch) -> None:
        """Raise a clear error on clips that do not match the configured geometry."""
        F_, sr = self.hparams.num_frames, self.hparams.sample_rate
        expected = round(F_ / self.hparams.fps * sr)
        audio = batch.get("audio")
        if audio is not None and "audio_states" not in batch:
            if not torch.is_tensor(audio) or not audio.is_floating_point() or audio.dim() != 2:
                raise ValueError(f"batch['audio'] must be float (B, S) mono at {sr} Hz, got "
                                 f"{getattr(audio, 'dtype', type(audio))} {tuple(getattr(audio, 'shape', ()))}")
            if audio.shape[1] != expected:
                raise ValueError(
                    f"batch['audio'] has {audio.shape[1]} samples per clip; {F_} frames at {self.hparams.fps} fps need "
                    f"exactly {expected} samples at {sr} Hz (audio too short, or another sample rate?)"
                )
        frames = batch.get("frames")
        if frames is not None and "latents" not in batch:
            if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[2] != 3:
                raise ValueError(f"batch['frames'] must be uint8 (B, F, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
            if frames.shape[1] != F_:
                raise ValueError(f"batch['frames'] has {frames.shape[1]} frames, the model is set to num_frames={F_}")
        latents = batch.get("latents")
        if latents is not None and latents.shape[2] != self.backbone.latent_frames(F_):
            raise ValueError(f"batch['latents'] has {latents.shape[2]} latent frames; num_frames={F_} needs "
                             f"{self.backbone.latent_frames(F_)} for this backbone")

    # -- frozen features (also what the feature cache stores) ---------------------------------------
    def feature_settings(self) -> dict:
        """What the frozen features depend on: the feature cache's key (``data/cache.py``)."""
        kind = "patch_tokens" if self.hparams.get("compat") == "official" else "hidden_states"
        return {"frames": self.backbone.settings(), "audio": {**self.encoder.settings(), "features": kind}}

    @torch.no_grad()
    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, F, 3, H, W)`` -> the backbone's latents ``(B, C, F_lat, h, w)``."""
        return self.backbone.encode_frames(frames)

    @torch.no_grad()
    def audio_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(B, S)`` waveforms -> ``(states, mask)``: what the mapper reads. The method's features are the
        encoder's hidden states ``(B, T', Lh, d)``; ``compat="official"`` reads BEATs' raw patch tokens of
        all layers ``(B, P, Lh·d)``, as the released adapters expect."""
        if self.hparams.get("compat") == "official":
            return self.encoder.patch_tokens(audio), None
        out = self.encoder(audio)
        return out.hidden_states, out.mask

    def audio_tokens(self, batch: ClipBatch, num_frames: Optional[int] = None) -> torch.Tensor:
        """Audio (or its cached features ``audio_states``) -> ``(B, F, K, d_t)`` tempo tokens.

        ``num_frames`` (default: the configured F) lets sampling make windows of another length.
        """
        num_frames = num_frames or self.hparams.num_frames
        states, mask = batch.get("audio_states"), None
        if states is None:
            states, mask = self.audio_features(batch["audio"])
        return self.tokens(self.mapper(states.float(), num_frames, mask))

    def prompt_templates(self, labels: Sequence[str], mode: Conditioning) -> list[str]:
        template = {"audio": self.hparams.audio_prompt, "text": self.hparams.text_prompt,
                    "text+audio": self.hparams.text_audio_prompt, "none": ""}[mode]
        return [template.replace("{label}", str(label)) for label in labels]

    def conditioning(self, batch: ClipBatch, mode: Optional[Conditioning] = None):
        """The UNet conditioning of a batch and the tokens it used.

        Returns:
            ``(cond, tokens)``: cond ``(B, F, N, d)`` when audio is used, else ``(B, N, d)``;
            tokens ``(B, F, K, d)`` or None.
        """
        mode = mode or self.hparams.conditioning
        labels = batch.get("label") or [""] * self._batch_size(batch)
        templates = self.prompt_templates(labels, mode)
        if mode in ("audio", "text+audio"):
            tokens = self.audio_tokens(batch)
            return self.backbone.encode_frame_prompts(templates, tokens), tokens
        with torch.no_grad():
            return self.backbone.encode_text(templates), None

    @staticmethod
    def _batch_size(batch: ClipBatch) -> int:
        for key in ("audio", "audio_states", "frames", "latents"):
            if batch.get(key) is not None:
                return batch[key].shape[0]
        raise ValueError("batch holds neither audio nor frames")

    # -- training -------------------------------------------------------------------------------
    def latents(self, batch: ClipBatch) -> torch.Tensor:
        if batch.get("latents") is not None:
            return batch["latents"].float()
        return self.backbone.encode_frames(batch["frames"])

    def diffusion_loss(
        self, batch: ClipBatch, noise: Optional[torch.Tensor] = None, timesteps: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> dict[str, torch.Tensor]:
        """Denoising loss + λ·mean|tokens| on one batch (noise and timesteps may be fixed)."""
        self.check_batch(batch)
        x0 = self.latents(batch)
        ex = self.backbone.objective.example(x0, generator, self.hparams.timestep_range, noise, timesteps)
        cond, tokens = self.conditioning(batch)
        pred = self.backbone.denoise(ex.noisy, ex.timesteps, cond)
        mse = F.mse_loss(pred, ex.target)
        l1 = tokens.abs().mean() if tokens is not None else pred.new_zeros(())
        return {"loss": mse + self.hparams.l1_weight * l1, "mse": mse, "l1": l1}

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        # Noise, timesteps and dropout come from a generator seeded by (seed, step, rank), so a run
        # resumed from a checkpoint continues exactly as the uninterrupted run would have.
        step_seed = (self.hparams.seed * 1_000_003 + self.global_step * 7919 + self.global_rank) % 2**63
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(step_seed)
            out = self.diffusion_loss(batch)
        B = self._batch_size(batch)
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=B)
        self.log("train/mse", out["mse"], batch_size=B)
        self.log("train/l1", out["l1"], batch_size=B)
        return out["loss"]

    def validation_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        # Fixed noise and timesteps per batch so validation losses compare across epochs.
        g = torch.Generator().manual_seed(self.hparams.seed + batch_idx)
        out = self.diffusion_loss(batch, generator=g)
        self.log("val/loss", out["loss"], prog_bar=True, sync_dist=True, batch_size=self._batch_size(batch))
        self.log("val/mse", out["mse"], sync_dist=True, batch_size=self._batch_size(batch))
        return out["loss"]

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        self._check_schedule_length(scheduler)
        # stepped after every optimizer step, so a schedule's length is counted in steps
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _check_schedule_length(self, scheduler) -> None:
        """A schedule of a fixed length (OneCycleLR's ``total_steps``) must cover ``trainer.max_steps``:
        one step past its end raises inside the training loop, after the run's time is spent."""
        total = getattr(scheduler, "total_steps", None)
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        if not isinstance(total, int) or max_steps is None or max_steps < 0:
            return
        if max_steps > total:
            raise ValueError(
                f"the learning-rate schedule {type(scheduler).__name__} lasts total_steps={total} optimizer steps but "
                f"trainer.max_steps={max_steps}; set --model.init_args.lr_scheduler.init_args.total_steps={max_steps} "
                "(the demo and the ablation scripts do so when they change the number of steps)")
        if max_steps < total:
            rank_zero_info(f"{type(scheduler).__name__}: training stops after {max_steps} of the schedule's {total} steps")

    # -- sampling -------------------------------------------------------------------------------
    def frame_size(self, batch: ClipBatch) -> tuple[int, int]:
        """``(H, W)`` pixels of a batch's clips: its frames, its cached latents × the spatial factor,
        else the backbone's default size."""
        if batch.get("frames") is not None:
            return tuple(batch["frames"].shape[-2:])
        if batch.get("latents") is not None:
            f = self.backbone.spatial_factor
            return tuple(s * f for s in batch["latents"].shape[-2:])
        return tuple(self.backbone.default_size)

    def clip_seeds(self, batch: ClipBatch, seed: Optional[int] = None) -> list[int]:
        """The initial-noise seed of each clip: ``seed + crc32(id)`` for clips with an ``id`` (the same
        whatever the batching, the order or the number of devices), else ``seed + i``."""
        seed = self.hparams.seed if seed is None else int(seed)
        ids = batch.get("id")
        if ids:
            return [(seed + zlib.crc32(str(i).encode())) % 2**31 for i in ids]
        return [seed + i for i in range(self._batch_size(batch))]

    @torch.no_grad()
    def sample(
        self, batch: ClipBatch, mode: Optional[Conditioning] = None, *, height: Optional[int] = None,
        width: Optional[int] = None, fps: Optional[float] = None, steps: Optional[int] = None,
        guidance_scale: Optional[float] = None, seed: Optional[int] = None, seeds: Optional[Sequence[int]] = None,
        window: Optional[int] = None, overlap: Optional[int] = None, blend: Literal["ramp", "uniform"] = "ramp",
        window_batch: Optional[int] = None, init_frames: Optional[torch.Tensor] = None, strength: float = 1.0,
        noise: Optional[torch.Tensor] = None, progress: bool = False, return_latents: bool = False,
        temporal_guidance_scale: Optional[float] = None,
    ) -> torch.Tensor:
        """Videos for a batch: the one sampling path (test-time metrics, previews, ``predict``, ``generate``).

        The audio may have any length (the same for every clip of the batch): N = the whole frames it
        covers at ``fps``. Up to the model's F = ``num_frames`` it is one window; longer audio is
        sampled in overlapping windows of F frames that share frames (:mod:`av_lightning.pipeline`).
        ``text`` and ``none`` modes make ``num_frames`` frames from the labels alone.

        Args:
            batch: ``audio`` float ``(B, S)`` at ``sample_rate`` (or cached ``audio_states``), ``label``
                list[str] (used by templates with ``{label}``), optional ``id`` and ``frames``.
            mode: conditioning (default the model's).
            height / width: pixels (default :meth:`frame_size`).
            fps: frame rate of the video (Hz, default the model's): N and the windows' audio follow it.
            steps / guidance_scale: sampling settings (default the model's).
            temporal_guidance_scale: ``w_t`` of temporal guidance (default the model's; 0 turns it
                off); used in the audio modes only, since ``text`` and ``none`` conditioning has no
                time axis.
            seed / seeds: the initial noise of clip i comes from ``seeds[i]`` (default :meth:`clip_seeds`).
            window / overlap / blend: frames per window (default F), frames shared by consecutive windows
                (default F // 4) and how overlapping predictions are averaged (``ramp`` or ``uniform``).
            window_batch: rows (clips × windows × guidance branches) per denoiser call; default one
                window per clip and branch, so long audio needs no more memory than one window, and all
                clips of a one-window batch in one call.
            init_frames: uint8 ``(B, N', 3, H, W)``, N' >= N, to animate instead of starting from noise.
            strength: in (0, 1]: the noise put on ``init_frames`` (1 ignores them).
            noise: the initial noise ``(B, C, N_lat, h, w)`` itself, overriding the seeds.
            progress: show the sampling progress bar.
            return_latents: return the float latents ``(B, C, N_lat, h, w)`` instead of frames.

        Returns:
            uint8 ``(B, N, 3, H, W)``.
        """
        hp, bb = self.hparams, self.backbone
        mode = mode or hp.conditioning
        B = self._batch_size(batch)
        H, W = (height or self.frame_size(batch)[0]), (width or self.frame_size(batch)[1])
        templates = self.prompt_templates(batch.get("label") or [""] * B, mode)
        guidance = hp.guidance_scale if guidance_scale is None else guidance_scale
        audio = batch.get("audio") if mode in ("audio", "text+audio") else None
        temporal = hp.get("temporal_guidance_scale") if temporal_guidance_scale is None else temporal_guidance_scale
        temporal = temporal_scale(mode, temporal) if audio is not None else None
        branches = 2 if guidance > 1.0 or temporal is not None else 1
        rows = window_batch or branches * B
        static = None
        if audio is not None:
            plan = plan_video(audio.shape[1], hp.sample_rate, fps or hp.fps, window or hp.num_frames, overlap,
                              bb.temporal_factor)
            num_frames = plan.num_frames
            cond, static = self._window_conditioning(audio.to(self.device), templates, plan, max(1, rows // branches),
                                                     static=temporal is not None)
            denoise = WindowedDenoiser(bb.denoise, plan.latent_starts, plan.latent_window,
                                       bb.latent_frames(num_frames),
                                       blend_weights(plan.latent_window, plan.latent_overlap, blend), rows)
        else:  # text / none, or cached audio states: one clip of num_frames
            num_frames = hp.num_frames
            cond, _ = self.conditioning(batch, mode)
            denoise = bb.denoise
        shape = bb.latent_shape(B, num_frames, H, W)
        if noise is None:
            seeds = list(seeds) if seeds is not None else self.clip_seeds(batch, seed)
            noise = torch.cat([torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(int(s)))
                               for s in seeds])
        init_latents = None
        if init_frames is not None and strength < 1.0:
            init_latents = bb.encode_frames(init_frames[:, :num_frames].to(self.device))
        latents = sample(
            denoise, bb.make_scheduler(hp.scheduler), cond, shape, uncond=bb.encode_text([""]),
            steps=steps or hp.steps, guidance_scale=guidance,
            generator=torch.Generator().manual_seed(self.hparams.seed if seed is None else int(seed)),
            latents=noise.to(self.device), init_latents=init_latents, strength=strength, progress=progress,
            static_cond=static, temporal_guidance_scale=temporal,
            temporal_guidance_span=float(hp.get("temporal_guidance_span", 0.5)), max_rows=window_batch,
        )
        return latents if return_latents else bb.decode_latents(latents)

    def _window_conditioning(self, audio: torch.Tensor, templates: Sequence[str], plan: VideoPlan,
                             chunk: int, static: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Each window's audio -> its own tokens and prompts: ``(B, W·F_lat, L, d)``, ``chunk`` window-rows
        through the encoder and the text encoder at a time.

        With ``static``, also the timing-free conditioning of temporal guidance (same shape): every
        frame of a window gets the mean of that window's tokens over its frames; else None."""
        B, W = audio.shape[0], plan.num_windows
        windows = plan.window_audio(audio).flatten(0, 1)  # (B·W, n), row b·W + k
        rows = [t for t in templates for _ in range(W)]
        cond, still = [], []
        for i in range(0, B * W, chunk):
            tokens = self.audio_tokens({"audio": windows[i : i + chunk]}, num_frames=plan.window)
            cond.append(self.backbone.encode_frame_prompts(rows[i : i + chunk], tokens))
            if static:
                still.append(self.backbone.encode_frame_prompts(rows[i : i + chunk], frame_mean(tokens)))

        def layout(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(parts).unflatten(0, (B, W)).flatten(1, 2)

        return layout(cond), (layout(still) if static else None)

    def test_step(self, batch: ClipBatch, batch_idx: int) -> None:
        self.check_batch(batch)
        videos = self.sample(batch)
        for metric in self.metrics:
            metric.update_from_clips(fake=videos, real=batch.get("frames"), audio=batch.get("audio"),
                                     texts=batch.get("label"), fps=self.hparams.fps,
                                     sample_rate=self.hparams.sample_rate)
        if self.hparams.save_test_videos:
            ids = batch.get("id") or [f"{batch_idx:05d}_{i}" for i in range(videos.shape[0])]
            write_videos(self.hparams.save_test_videos, videos, ids, self.hparams.fps, batch.get("audio"),
                         self.hparams.sample_rate)

    def predict_step(self, batch: ClipBatch, batch_idx: int) -> dict:
        """``{"videos": uint8 (B, N, 3, H, W), "id", "audio"}`` (written by ``av_lightning.callbacks.WriteVideos``)."""
        return {"videos": self.sample(batch).cpu(), "id": batch.get("id"),
                "audio": batch["audio"].cpu() if batch.get("audio") is not None else None}

    def on_test_epoch_end(self) -> None:
        # A key two metrics share (AV-Align paper + reference) gets the index appended: logged
        # twice, Lightning would silently report the mean of the two values.
        for key, v in compute_metrics(self.metrics).items():
            self.log(f"test/{key}", v.float(), sync_dist=False)

    # -- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(TRAINABLE)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        expected = set(self.trainable_state_dict())
        got = set(checkpoint["state_dict"])
        if got != expected:
            missing, extra = sorted(expected - got)[:5], sorted(got - expected)[:5]
            raise RuntimeError(
                f"checkpoint does not match this model's adapter: missing {missing}, unexpected {extra}; "
                "was it trained with another mapper or token configuration?"
            )

    def save_adapter(self, path: str | os.PathLike) -> None:
        """Write the adapter (trainable weights) as safetensors, the model configuration as metadata
        (:mod:`av_lightning.adapters`)."""
        save_adapter(self, path)

    def load_adapter(self, path: str | os.PathLike) -> None:
        """Load adapter weights written by :meth:`save_adapter` (or a Lightning checkpoint)."""
        load_adapter(self, path)
