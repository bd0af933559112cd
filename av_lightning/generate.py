"""Generation from audio files: model loading, long audio by shared-frame windows, init images.

Long audio (MultiDiffusion-style; ``docs/generation.md``): a video of N frames is one latent
``(B, C, N, h, w)``. It is covered by W windows of F frames (the model's clip length) that overlap by
O frames; the last window is aligned to the end. At every sampling step each window is denoised with
its own audio tokens (windows, attentive token and all computed from the window's own audio), all W
windows (× 2 for classifier-free guidance) in one batched UNet call, and the W noise predictions are
averaged back onto the N frames with weights that ramp down towards the window edges. One scheduler
step then updates the shared latent. Overlapping frames are thus one set of latents that every window
covering them sees and pulls towards its own prediction, which keeps objects consistent across seams.
Cost per step: ``W · F`` frames of UNet work for N frames, ``W = ceil((N − F) / (F − O)) + 1``.

Everything here works on a built :class:`~av_lightning.module.AudioToVideo`; the command-line front end is
``av_lightning/commands/generate.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import torch

from av_lightning.weights import load_torch, safetensors_metadata

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".mp4", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Peak amplitude (full scale = 1) below which audio counts as silence (-80 dBFS).
SILENCE_PEAK = 1e-4
#: Hyper-parameters of AudioToVideo that are sub-modules (built here) or training-only (dropped).
_SUBMODULES = ("backbone", "encoder", "mapper", "tokens")
_DROPPED = ("optimizer", "metrics", "save_test_videos", "_class_path", "_instantiator")
PRECISIONS = {"float32": "float32", "fp32": "float32", "32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
              "float16": "float16", "fp16": "float16", "16": "float16"}


class GenerationError(ValueError):
    """Bad input for generation; the message names the file and the fix."""


# ------------------------------------------------------------------------------------------------
# model loading


def _import(class_path: str):
    if "." not in class_path:
        raise GenerationError(f"class_path {class_path!r} must be a full import path, e.g. av_lightning.tempo.AudioMapper")
    module, name = class_path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise GenerationError(f"cannot import {class_path!r} named in the model config ({err})") from err


def instantiate(config: Any) -> Any:
    """Build ``{"class_path", "init_args"}`` configs recursively (LightningCLI's saved form: nested
    sub-modules such as ``tokens.init_args.pool`` are built first)."""
    if isinstance(config, dict) and "class_path" in config:
        init = {k: instantiate(v) for k, v in (config.get("init_args") or {}).items()}
        return _import(config["class_path"])(**init)
    if isinstance(config, dict):
        return {k: instantiate(v) for k, v in config.items()}
    if isinstance(config, list):
        return [instantiate(v) for v in config]
    return config


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and "class_path" not in v else v
    return out


def read_config(paths: Sequence[str | os.PathLike]) -> dict:
    """Model hyper-parameters from training YAMLs (a base plus overlays, merged in order).

    The clip geometry (``num_frames``, ``fps``, ``sample_rate``) is taken from ``data.init_args`` when
    the model does not set it, as the training CLI links it.
    """
    import yaml

    merged: dict = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise GenerationError(f"config {p} does not exist; give the training YAML (e.g. configs/drums.yaml)")
        merged = _merge(merged, yaml.safe_load(p.read_text()) or {})
    model = merged.get("model") or {}
    hparams = dict(model.get("init_args", model))
    data = (merged.get("data") or {}).get("init_args") or {}
    for key in ("num_frames", "fps", "sample_rate"):
        if key in data and key not in hparams:
            hparams[key] = data[key]
    if not all(k in hparams for k in _SUBMODULES):
        raise GenerationError(f"config {', '.join(map(str, paths))} lacks model.init_args.{{{','.join(_SUBMODULES)}}}")
    return hparams


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(hparams, metadata)`` of an adapter file (safetensors from ``save_adapter`` / ``convert-official``)
    or a Lightning ``.ckpt``. ``hparams`` is empty when the file carries none."""
    path = Path(path)
    if not path.is_file():
        raise GenerationError(f"checkpoint {path} does not exist; give an adapter .safetensors or a Lightning .ckpt")
    if path.suffix == ".safetensors":
        meta = safetensors_metadata(path, "adapter")
        return (json.loads(meta["hparams"]) if "hparams" in meta else {}), meta
    # A Lightning checkpoint: its hyper-parameters are plain types, so it loads without full unpickling.
    ckpt = load_torch(path, "checkpoint")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise GenerationError(f"{path} is neither an adapter .safetensors nor a Lightning checkpoint with a state_dict")
    return dict(ckpt.get("hyper_parameters") or {}), {}


def _mapper_width(hparams: dict) -> Optional[int]:
    mapper = hparams.get("mapper")
    if isinstance(mapper, dict):
        return (mapper.get("init_args") or {}).get("out_features")
    return None


def load_model(
    checkpoint: str | os.PathLike,
    backbone: Optional[str] = None,
    config: Optional[Sequence[str | os.PathLike]] = None,
    precision: Optional[str] = None,
    device: str | torch.device = "cpu",
    encoder_checkpoint: Optional[str] = None,
    vae_slice: Optional[int] = None,
    seed: int = 0,
):
    """Rebuild the model an adapter was trained with and load the adapter.

    Args:
        checkpoint: adapter ``.safetensors`` (``save_adapter``, ``convert-official``) or Lightning ``.ckpt``.
        backbone: local directory (or hub id) of the text-to-video model; default: the one in the config.
        config: training YAML(s) to take the model configuration from instead of the checkpoint's.
        precision: dtype of the frozen backbone: float32 / bfloat16 / float16 (or fp32 / bf16 / fp16).
        device: where to run.
        encoder_checkpoint: audio-encoder weights (the BEATs ``.pt``), overriding the config's.
        vae_slice: frames the VAE decodes at once (memory).
        seed: seeds random backbone weights when the config has no ``pretrained`` (tests, toy runs).

    Returns:
        an ``AudioToVideo`` in eval mode on ``device``.
    """
    from av_lightning.module import AudioToVideo

    checkpoint = Path(checkpoint)
    hparams, meta = read_checkpoint(checkpoint)
    if config:
        hparams = read_config(config)
    missing = [k for k in _SUBMODULES if not isinstance(hparams.get(k), dict)]
    if missing:
        raise GenerationError(
            f"{checkpoint} carries no model configuration for {missing} (it was not saved from a LightningCLI run); "
            "give the training YAML with --config"
        )
    hparams = {k: v for k, v in hparams.items() if k not in _DROPPED}
    bb = dict(hparams["backbone"])
    bb_args = dict(bb.get("init_args") or {})
    if backbone is not None:
        bb_args = {k: v for k, v in bb_args.items() if k in ("dtype", "vae_slice", "local_files_only")}
        bb_args["pretrained"] = os.fspath(backbone)
    if precision is not None:
        if precision not in PRECISIONS:
            raise GenerationError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        bb_args["dtype"] = PRECISIONS[precision]
    if vae_slice is not None:
        bb_args["vae_slice"] = vae_slice
    bb_args.pop("gradient_checkpointing", None)
    if bb_args.get("pretrained") is None:
        log.warning("the backbone config has no pretrained weights: building random tiny parts (seed %d)", seed)
        torch.manual_seed(seed)
    backbone_module = instantiate({"class_path": bb["class_path"], "init_args": bb_args})

    # A checkpoint for another text width cannot work with this backbone: say so before anything else.
    width = int(meta["text_width"]) if "text_width" in meta else _mapper_width(hparams)
    if width is not None and width != backbone_module.text_width:
        raise GenerationError(
            f"{checkpoint} was trained for a backbone whose text encoder is {width} wide, but the backbone "
            f"{bb_args.get('pretrained') or '(from the config)'} is {backbone_module.text_width} wide; "
            "use --backbone with the model the adapter was made for"
        )
    enc = dict(hparams["encoder"])
    if encoder_checkpoint is not None:
        enc["init_args"] = {**(enc.get("init_args") or {}), "checkpoint": os.fspath(encoder_checkpoint)}
        enc["init_args"].pop("cfg", None)
    enc_args = enc.get("init_args") or {}
    if enc["class_path"].endswith("BEATsEncoder") and not enc_args.get("checkpoint") and not enc_args.get("cfg"):
        raise GenerationError(
            f"{checkpoint} uses the BEATs audio encoder but names no weights; give --encoder-checkpoint "
            "/path/to/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
        )
    encoder = instantiate(enc)
    mapper = instantiate(hparams["mapper"])
    tokens = instantiate(hparams["tokens"])
    accepted = set(inspect.signature(AudioToVideo.__init__).parameters)
    unknown = sorted(k for k in hparams if k not in accepted)
    if unknown:
        log.warning("ignoring hyper-parameters this version of AudioToVideo does not take: %s", unknown)
    rest = {k: v for k, v in hparams.items() if k not in _SUBMODULES and k in accepted}
    model = AudioToVideo(backbone=backbone_module, encoder=encoder, mapper=mapper, tokens=tokens, **rest)
    model.load_adapter(checkpoint)
    return model.eval().to(device)


# ------------------------------------------------------------------------------------------------
# inputs


def load_audio(path: str | os.PathLike, sample_rate: int, fps: float, min_samples: int = 1) -> torch.Tensor:
    """A whole audio file as float ``(S,)`` mono at ``sample_rate`` Hz (any container PyAV reads).

    Raises:
        GenerationError: unreadable, no audio, silent, shorter than one video frame (``1 / fps`` s)
            or than the encoder's shortest input (``min_samples``).
    """
    from av_lightning.data.io import MediaError, probe, read_audio

    path = Path(path)
    try:
        info = probe(path)
        if not info.has_audio:
            raise GenerationError(f"{path}: no audio stream; give a wav/flac/mp3 or a video with sound")
        seconds = info.audio_duration if info.audio_duration is not None else info.duration
        num = math.floor(seconds * sample_rate)
        audio = read_audio(path, 0.0, num, sample_rate) if num > 0 else torch.zeros(0)
    except MediaError as err:
        raise GenerationError(f"cannot read audio {path}: {err}") from err
    frame = sample_rate / fps
    if audio.numel() < max(frame, min_samples):
        need = max(frame, min_samples) / sample_rate
        raise GenerationError(
            f"{path}: {audio.numel() / sample_rate:.3f} s of audio is shorter than one video frame or the encoder's "
            f"shortest input ({need:.3f} s at {fps:g} fps); give at least {need:.3f} s of sound"
        )
    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        raise GenerationError(
            f"{path}: the audio is silent (peak {peak:.1e} of full scale); the video is generated from the sound, "
            "so give audio that has some"
        )
    return audio


def load_init_frames(path: str | os.PathLike, num_frames: int, fps: float, height: int, width: int) -> torch.Tensor:
    """Frames to animate: an image repeated over ``num_frames``, or the first ``num_frames`` of a video
    at ``fps``, covered-and-cropped to ``height × width``: uint8 ``(N, 3, H, W)``."""
    from av_lightning.data.io import MediaError, probe, read_frames

    path = Path(path)
    try:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return read_frames(path, 0.0, 1, fps, size=(height, width)).expand(num_frames, -1, -1, -1).contiguous()
        info = probe(path)
        if info.fps is None:
            raise GenerationError(f"init file {path} has no video stream; give an image or a video")
        if info.video_duration is not None and info.video_duration + 1e-3 < num_frames / fps:
            raise GenerationError(
                f"init video {path} is {info.video_duration:.2f} s long but the audio needs {num_frames / fps:.2f} s "
                f"({num_frames} frames at {fps:g} fps); trim the audio or give a longer video or an image"
            )
        return read_frames(path, 0.0, num_frames, fps, size=(height, width))
    except MediaError as err:
        raise GenerationError(f"cannot read init image/video {path}: {err}") from err


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


class WindowedDenoiser:
    """A ``denoise`` for :func:`~av_lightning.pipeline.sample` over the whole N-frame latent.

    Called with latents ``(B', C, N, h, w)``, timesteps ``(B',)`` and the windows' conditioning laid
    out as ``(B', W·F, L, d)`` (window k's frames at ``k·F .. k·F + F − 1``), it denoises the W windows
    in batches of ``max_batch`` rows (one UNet call when None) and returns the weighted average of the
    window predictions per frame, ``(B', C, N, h, w)``.
    """

    def __init__(self, denoise: Callable, starts: Sequence[int], window: int, total: int,
                 weights: torch.Tensor, max_batch: Optional[int] = None):
        self.denoise, self.starts, self.window, self.total = denoise, list(starts), window, total
        self.weights, self.max_batch = weights, max_batch
        self.calls = 0

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, C, N, h, w = latents.shape
        W, F = len(self.starts), self.window
        if N != self.total or cond.shape[1] != W * F:
            raise ValueError(f"windowed denoiser set up for {self.total} frames in {W}×{F}, got latents with {N} "
                             f"frames and conditioning with {cond.shape[1]}")
        x = torch.stack([latents[:, :, s : s + F] for s in self.starts], dim=1).flatten(0, 1)  # (B·W, C, F, h, w)
        c = cond.unflatten(1, (W, F)).flatten(0, 1)  # (B·W, F, L, d)
        ts = t.repeat_interleave(W)
        step = self.max_batch or x.shape[0]
        preds = []
        for i in range(0, x.shape[0], step):
            preds.append(self.denoise(x[i : i + step], ts[i : i + step], c[i : i + step]))
            self.calls += 1
        pred = torch.cat(preds).unflatten(0, (B, W))
        wts = self.weights.to(pred)
        out = torch.zeros(B, C, N, h, w, dtype=pred.dtype, device=pred.device)
        norm = torch.zeros(N, dtype=pred.dtype, device=pred.device)
        for k, s in enumerate(self.starts):
            out[:, :, s : s + F] += pred[:, k] * wts[None, None, :, None, None]
            norm[s : s + F] += wts
        return out / norm[None, None, :, None, None]


@dataclass
class VideoPlan:
    """How an audio clip becomes frames: N frames in windows of F starting at ``starts``.

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
    latent_starts: list[int] = dataclasses.field(default_factory=list)

    @property
    def num_windows(self) -> int:
        return len(self.starts)


def plan_video(num_samples: int, sample_rate: int, fps: float, window: int, overlap: Optional[int] = None,
               temporal_factor: int = 1) -> VideoPlan:
    """N = whole frames the audio covers; windows of ``min(window, N)`` frames; default overlap F // 4.

    With ``temporal_factor`` r > 1 (a causal video VAE), N and F are rounded down to ``1 + r·k``
    frames (the trailing < r frames of audio are left out) and the windows are planned in latent
    frames, the overlap rounded up to whole latent frames.
    """
    spf = sample_rate / fps
    total = math.floor(num_samples / spf + 1e-6)
    if total < 1:
        raise GenerationError(f"{num_samples} samples is shorter than one frame at {fps:g} fps")
    r = int(temporal_factor)
    if r == 1:
        F = min(window, total)
        overlap = min(max(1, window // 4) if overlap is None else overlap, F - 1)
        starts = plan_windows(total, F, overlap)
        return VideoPlan(total, F, overlap, starts, spf, F, overlap, starts)
    if (window - 1) % r:
        raise GenerationError(f"this backbone makes 1 + {r}·k frames per window; --num-frames {window} is not one")
    total = 1 + r * ((total - 1) // r)
    F = min(window, total)
    n_lat, f_lat = 1 + (total - 1) // r, 1 + (F - 1) // r
    o_lat = min(max(1, (1 + (window - 1) // r) // 4) if overlap is None else -(-overlap // r), max(f_lat - 1, 0))
    lat_starts = plan_windows(n_lat, f_lat, o_lat)
    return VideoPlan(total, F, r * o_lat, [r * s for s in lat_starts], spf, f_lat, o_lat, lat_starts)


@torch.no_grad()
def generate_video(
    model,
    audio: torch.Tensor,
    text: Optional[str] = None,
    height: Optional[int] = None,
    width: Optional[int] = None,
    fps: Optional[float] = None,
    window: Optional[int] = None,
    overlap: Optional[int] = None,
    blend: Literal["ramp", "uniform"] = "ramp",
    steps: Optional[int] = None,
    guidance_scale: Optional[float] = None,
    seed: int = 0,
    init_frames: Optional[torch.Tensor] = None,
    strength: float = 1.0,
    noise: Optional[torch.Tensor] = None,
    window_batch: Optional[int] = None,
    progress: bool = True,
    return_latents: bool = False,
) -> torch.Tensor:
    """Generate the video of one audio clip of any length.

    Args:
        model: an ``AudioToVideo`` (eval mode).
        audio: float ``(S,)`` mono at the model's sample rate.
        text: optional text; the prompt becomes the model's text+audio template, ``"A video of <audio> {text}"``
            (the paper's §6.2); without it the audio template ``"<audio>"``.
        height / width: pixels (default: the backbone's ``default_size``).
        fps: frame rate (Hz, default the model's); N = whole frames the audio covers.
        window: frames per window F (default the model's ``num_frames``).
        overlap: frames shared by consecutive windows (default F // 4).
        blend: ``ramp`` or ``uniform`` averaging of window predictions (:func:`blend_weights`).
        steps / guidance_scale: sampling settings (default the model's).
        seed: seeds the initial noise.
        init_frames: uint8 ``(N', 3, H, W)``, N' >= N, to animate (:func:`load_init_frames`; the first N are
            used); used when ``strength < 1``.
        strength: in (0, 1]: how much noise is put on ``init_frames`` (1 ignores them).
        noise: the initial noise ``(1, C, N_lat, h, w)`` itself (tests), overriding ``seed``.
        window_batch: rows (windows × CFG branches) per UNet call; None: all in one call.
        progress: show the sampling progress bar.
        return_latents: return the float latents ``(C, N_lat, h, w)`` instead of decoded frames.

    Returns:
        uint8 ``(N, 3, H, W)`` (or latents).
    """
    from av_lightning.pipeline import sample

    hp = model.hparams
    fps = float(fps or hp.fps)
    sr = int(hp.sample_rate)
    bb = model.backbone
    height = height or bb.default_size[0]
    width = width or bb.default_size[1]
    plan = plan_video(audio.numel(), sr, fps, window or hp.num_frames, overlap, bb.temporal_factor)
    N, F, starts = plan.num_frames, plan.window, plan.starts
    device = next(model.mapper.parameters()).device

    # Audio of each window: exactly the span of its F frames.
    n_win = round(F * plan.samples_per_frame)
    chunks = []
    for s in starts:
        a = audio[round(s * plan.samples_per_frame) :][:n_win]
        chunks.append(torch.nn.functional.pad(a, (0, n_win - a.numel())))  # < 1 sample of rounding
    batch_audio = torch.stack(chunks).to(device)
    mode = "text+audio" if text else "audio"
    templates = model.prompt_templates([text or ""] * len(starts), mode)
    tokens = model.audio_tokens({"audio": batch_audio}, num_frames=F)  # (W, F, K, d)
    cond = bb.encode_frame_prompts(templates, tokens)  # (W, F_lat, L, d)
    cond = cond.flatten(0, 1).unsqueeze(0)  # (1, W·F_lat, L, d)
    uncond = bb.encode_text([""])

    try:
        latent_shape = bb.latent_shape(1, N, height, width)  # (1, C, N_lat, h, w)
    except ValueError as err:
        raise GenerationError(str(err)) from err
    init_latents = None
    if init_frames is not None and strength < 1.0:
        init_frames = init_frames[:N]  # the frames the audio's whole latent frames cover
        if init_frames.shape[0] != N or tuple(init_frames.shape[-2:]) != (height, width):
            raise GenerationError(f"init frames {tuple(init_frames.shape)} do not match {N} frames of {height}×{width}")
        init_latents = bb.encode_frames(init_frames.unsqueeze(0).to(device))
    denoiser = WindowedDenoiser(bb.denoise, plan.latent_starts, plan.latent_window, latent_shape[2],
                                blend_weights(plan.latent_window, plan.latent_overlap, blend), max_batch=window_batch)
    g = torch.Generator().manual_seed(seed)
    latents = sample(
        denoiser, bb.make_scheduler(hp.scheduler), cond, latent_shape, uncond=uncond,
        steps=steps or hp.steps, guidance_scale=hp.guidance_scale if guidance_scale is None else guidance_scale,
        generator=g, latents=noise, init_latents=init_latents, strength=strength, progress=progress,
    )
    return latents[0] if return_latents else bb.decode_latents(latents)[0]


# ------------------------------------------------------------------------------------------------
# outputs


def contact_sheet(frames: torch.Tensor, path: str | os.PathLike, columns: int = 8, max_frames: int = 48) -> Path:
    """Write a PNG grid of frames (evenly chosen when there are more than ``max_frames``).

    Args:
        frames: uint8 ``(N, 3, H, W)``.
    """
    from PIL import Image

    N, _, H, W = frames.shape
    idx = torch.linspace(0, N - 1, min(N, max_frames)).round().long().unique()
    cols = min(columns, idx.numel())
    rows = math.ceil(idx.numel() / cols)
    sheet = torch.zeros(3, rows * H, cols * W, dtype=torch.uint8)
    for n, i in enumerate(idx.tolist()):
        r, c = divmod(n, cols)
        sheet[:, r * H : (r + 1) * H, c * W : (c + 1) * W] = frames[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet.permute(1, 2, 0).numpy()).save(path)
    return path


def audio_inputs(path: str | os.PathLike) -> list[Path]:
    """The audio files to generate for: ``path`` itself, or the audio/video files in a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise GenerationError(f"{path} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
        return files
    if not path.is_file():
        raise GenerationError(f"audio {path} does not exist; give an audio file or a folder of them")
    return [path]
