"""``av-lightning generate``: videos from audio files (and optional text) with a trained adapter.

    av-lightning generate --audio song.wav --checkpoint adapter.safetensors \\
        --backbone /models/zeroscope_v2_576w --out song.mp4 --prompt "on the moon" \\
        --height 320 --width 576 --precision fp16 --contact-sheet

``--audio`` may be a folder: the model is loaded once and every audio file gets ``OUT/NAME.mp4``.
Audio longer than one window of F frames is generated in overlapping windows that share frames
(``AudioToVideo.sample``, ``av_lightning/pipeline.py``, ``docs/generation.md``). ``--init image.png --strength 0.7`` animates
an image (or a video) instead of starting from noise.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Optional


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-lightning generate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", required=True, type=Path, help="audio file (wav, flac, mp3, or a video's sound) or a folder of them")
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="adapter .safetensors (save_adapter / convert-official) or Lightning .ckpt")
    p.add_argument("--backbone", default=None,
                   help="text-to-video model directory (diffusers layout); default: the one in the adapter's config")
    p.add_argument("--config", action="append", type=Path, default=None,
                   help="training YAML to take the model configuration from (repeat for overlays)")
    p.add_argument("--encoder-checkpoint", default=None, help="audio-encoder weights (BEATs .pt), overriding the config's")
    p.add_argument("--out", type=Path, default=None,
                   help="output .mp4 (one audio file) or folder (a folder of audio); default: NAME.mp4 here")
    p.add_argument("--prompt", default=None, help='text added to the audio: "A video of <audio> TEXT" (paper §6.2)')
    p.add_argument("--steps", type=int, default=None, help="sampling steps [default: the adapter's]")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale [default: the adapter's]")
    p.add_argument("--temporal-guidance", type=float, default=None,
                   help="temporal guidance scale: in the noisier half of the steps, guides the timing (what differs "
                        "between frames) against the clip-mean tokens; 0: classifier-free guidance only "
                        "[default: the adapter's; the paper's configs have none]")
    p.add_argument("--seed", type=int, default=0, help="initial-noise seed [default: %(default)s]")
    p.add_argument("--backbone-seed", type=int, default=0,
                   help="seed of the random frozen parts of a config without pretrained weights (tiny test configs; "
                        "the training's seed_everything) [default: %(default)s]")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the video (Hz) [default: the adapter's]")
    p.add_argument("--height", type=int, default=None, help="pixels [default: the UNet's sample size]")
    p.add_argument("--width", type=int, default=None, help="pixels [default: the UNet's sample size]")
    p.add_argument("--num-frames", type=int, default=None,
                   help="frames per window F; longer audio uses several windows [default: the adapter's]")
    p.add_argument("--overlap", type=int, default=None, help="frames shared by consecutive windows [default: F // 4]")
    p.add_argument("--blend", choices=("ramp", "uniform"), default="ramp", help="averaging of overlapping windows")
    p.add_argument("--window-batch", type=int, default=None,
                   help="rows (windows x 2 guidance branches) per denoiser call [default: 2, one window: long audio "
                        "needs no more memory than one window]")
    p.add_argument("--init", type=Path, default=None, help="image or video to animate instead of starting from noise")
    p.add_argument("--strength", type=float, default=0.8,
                   help="with --init: noise level put on it, in (0, 1]; lower keeps more of it [default: %(default)s]")
    p.add_argument("--precision", default=None, choices=("float32", "fp32", "bfloat16", "bf16", "float16", "fp16"),
                   help="dtype of the frozen backbone [default: the config's]")
    p.add_argument("--vae-slice", type=int, default=None, help="frames decoded by the VAE at once (memory)")
    p.add_argument("--device", default=None, help="torch device [default: cuda when available]")
    p.add_argument("--contact-sheet", action="store_true", help="also write NAME.png, a grid of frames")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


class GenerationError(ValueError):
    """Bad input for generation; the message names the file and the fix."""


#: Peak amplitude (full scale = 1) below which audio counts as silence (-80 dBFS).
SILENCE_PEAK = 1e-4


def load_audio(path: str | Path, sample_rate: int, fps: float, min_samples: int = 1):
    """A whole audio file as float ``(S,)`` mono at ``sample_rate`` Hz (any container PyAV reads).

    Raises:
        GenerationError: unreadable, no audio, NaN / Inf samples, silent, shorter than one video
            frame (``1 / fps`` s) or than the encoder's shortest input (``min_samples``).
    """
    from av_lightning.data.io import MediaError, probe, read_audio

    path = Path(path)
    try:
        info = probe(path)
        if not info.has_audio:
            raise GenerationError(f"{path}: no audio stream; give a wav/flac/mp3 or a video with sound")
        seconds = info.audio_duration if info.audio_duration is not None else info.duration
        num = math.floor(seconds * sample_rate)
        if num < 1:
            raise GenerationError(f"{path}: the audio stream is empty")
        audio = read_audio(path, 0.0, num, sample_rate)
    except MediaError as err:
        raise GenerationError(f"cannot read audio {path}: {err}") from err
    need = max(sample_rate / fps, min_samples)
    if audio.numel() < need:
        raise GenerationError(
            f"{path}: {audio.numel() / sample_rate:.3f} s of audio is shorter than one video frame or the encoder's "
            f"shortest input ({need / sample_rate:.3f} s at {fps:g} fps); give at least {need / sample_rate:.3f} s of sound"
        )
    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        raise GenerationError(f"{path}: the audio is silent (peak {peak:.1e} of full scale); the video is generated "
                              "from the sound, so give audio that has some")
    return audio


def load_init_frames(path: str | Path, num_frames: int, fps: float, height: int, width: int):
    """Frames to animate: an image repeated over ``num_frames``, or the first ``num_frames`` of a video
    at ``fps``, covered-and-cropped to ``height × width``: uint8 ``(N, 3, H, W)``."""
    from av_lightning.data.folders import IMAGE_EXTENSIONS
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


def _outputs(inputs: list[Path], out: Optional[Path], folder: bool) -> list[Path]:
    if folder or len(inputs) > 1:
        root = out or Path(".")
        return [root / f"{p.stem}.mp4" for p in inputs]
    return [out or Path(f"{inputs[0].stem}.mp4")]


def generate_file(model, src: Path, args) -> tuple:
    """One input file -> ``(frames uint8 (N, 3, H, W), audio (S,), fps)`` through ``model.sample``."""
    hp = model.hparams
    fps = args.fps or float(hp.fps)
    audio = load_audio(src, int(hp.sample_rate), fps, model.encoder.min_samples)
    mode = hp.conditioning
    if args.prompt and mode == "audio":
        mode = "text+audio"  # "A video of <audio> TEXT" (paper §6.2)
    if mode in ("text", "none"):
        raise GenerationError(f"this model is conditioned on {mode!r}, not on audio: there is nothing to generate "
                              "from a sound file")
    height, width = args.height or model.backbone.default_size[0], args.width or model.backbone.default_size[1]
    init = None
    if args.init is not None:
        n = int(audio.numel() * fps / hp.sample_rate + 1e-6)
        init = load_init_frames(args.init, n, fps, height, width)[None]
    try:
        frames = model.sample(
            {"audio": audio[None].to(model.device), "label": [args.prompt or ""]}, mode, height=height, width=width,
            fps=fps, steps=args.steps, guidance_scale=args.guidance, temporal_guidance_scale=args.temporal_guidance,
            seeds=[args.seed], window=args.num_frames,
            overlap=args.overlap, blend=args.blend, window_batch=args.window_batch, init_frames=init,
            strength=args.strength if init is not None else 1.0, progress=not args.no_progress,
        )[0]
    except ValueError as err:  # a size or window that does not fit the backbone
        raise GenerationError(f"{src}: {err}") from err
    return frames, audio, fps


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``av-lightning generate``; returns the exit status (0 ok, 1 some files failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    from av_lightning.adapters import load_model
    from av_lightning.data.folders import FolderError, input_files
    from av_lightning.data.io import write_contact_sheet, write_video

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        inputs = input_files(args.audio)
        if args.out is not None and args.out.suffix.lower() == ".mp4" and (args.audio.is_dir() or len(inputs) > 1):
            raise GenerationError(f"--audio {args.audio} is a folder: --out must be a folder, not {args.out}")
        if args.init is not None and not 0.0 < args.strength <= 1.0:
            raise GenerationError(f"--strength must be in (0, 1], got {args.strength}")
        model = load_model(args.checkpoint, backbone=args.backbone, config=args.config, precision=args.precision,
                           device=device, encoder_checkpoint=args.encoder_checkpoint, vae_slice=args.vae_slice,
                           backbone_seed=args.backbone_seed)
    except (ValueError, FileNotFoundError, FolderError) as err:  # bad input, unsafe file, a config that does not fit
        print(f"generate: error: {err}", file=sys.stderr)
        return 2
    outputs = _outputs(inputs, args.out, args.audio.is_dir())
    clash = [str(src) for src, dst in zip(inputs, outputs) if dst.resolve() == src.resolve()]
    if clash:
        print(f"generate: error: the output would overwrite the input {clash[0]}; choose another --out", file=sys.stderr)
        return 2
    sr = int(model.hparams.sample_rate)
    failed: list[tuple[Path, str]] = []
    for src, dst in tqdm(list(zip(inputs, outputs)), desc="generate", unit="file", disable=args.no_progress or len(inputs) == 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            frames, audio, fps = generate_file(model, src, args)
        except GenerationError as err:
            failed.append((src, str(err)))
            print(f"generate: skipped {src}: {err}", file=sys.stderr)
            continue
        write_video(dst, frames, fps=fps, audio=audio[: round(frames.shape[0] * sr / fps)].cpu(), sample_rate=sr)
        msg = (f"{dst}: {frames.shape[0]} frames {frames.shape[-2]}x{frames.shape[-1]} at {fps:g} fps in "
               f"{time.perf_counter() - start:.1f} s (CPU time {time.process_time() - cpu_start:.1f} s)")
        if args.contact_sheet:
            msg += f"; contact sheet {write_contact_sheet(frames, dst.with_suffix('.png'))}"
        print(msg)
    if failed:
        print(f"generate: {len(failed)} of {len(inputs)} file(s) failed", file=sys.stderr)
        return 2 if len(failed) == len(inputs) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
