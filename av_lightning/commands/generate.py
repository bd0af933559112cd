"""``av-lightning generate``: videos from audio files (and optional text) with a trained adapter.

    av-lightning generate --audio song.wav --checkpoint adapter.safetensors \\
        --backbone /models/zeroscope_v2_576w --out song.mp4 --prompt "on the moon" \\
        --height 320 --width 576 --precision fp16 --contact-sheet

``--audio`` may be a folder: the model is loaded once and every audio file gets ``OUT/NAME.mp4``.
Audio longer than one window of F frames is generated in overlapping windows that share frames
(``av_lightning/generate.py``, ``docs/generation.md``). ``--init image.png --strength 0.7`` animates
an image (or a video) instead of starting from noise.
"""

from __future__ import annotations

import argparse
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
    p.add_argument("--seed", type=int, default=0, help="initial-noise seed [default: %(default)s]")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the video (Hz) [default: the adapter's]")
    p.add_argument("--height", type=int, default=None, help="pixels [default: the UNet's sample size]")
    p.add_argument("--width", type=int, default=None, help="pixels [default: the UNet's sample size]")
    p.add_argument("--num-frames", type=int, default=None,
                   help="frames per window F; longer audio uses several windows [default: the adapter's]")
    p.add_argument("--overlap", type=int, default=None, help="frames shared by consecutive windows [default: F // 4]")
    p.add_argument("--blend", choices=("ramp", "uniform"), default="ramp", help="averaging of overlapping windows")
    p.add_argument("--window-batch", type=int, default=None,
                   help="rows (windows x 2 guidance branches) per UNet call; lower to save memory [default: all]")
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


def _outputs(inputs: list[Path], out: Optional[Path], folder: bool) -> list[Path]:
    if folder or len(inputs) > 1:
        root = out or Path(".")
        return [root / f"{p.stem}.mp4" for p in inputs]
    return [out or Path(f"{inputs[0].stem}.mp4")]


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``av-lightning generate``; returns the exit status (0 ok, 1 some files failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    from av_lightning.data.io import write_video
    from av_lightning.generate import (
        GenerationError,
        audio_inputs,
        contact_sheet,
        generate_video,
        load_audio,
        load_init_frames,
        load_model,
    )

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        inputs = audio_inputs(args.audio)
        if args.out is not None and args.out.suffix.lower() == ".mp4" and (args.audio.is_dir() or len(inputs) > 1):
            raise GenerationError(f"--audio {args.audio} is a folder: --out must be a folder, not {args.out}")
        if args.init is not None and not 0.0 < args.strength <= 1.0:
            raise GenerationError(f"--strength must be in (0, 1], got {args.strength}")
        model = load_model(args.checkpoint, backbone=args.backbone, config=args.config, precision=args.precision,
                           device=device, encoder_checkpoint=args.encoder_checkpoint, vae_slice=args.vae_slice,
                           seed=args.seed)
    except (ValueError, FileNotFoundError) as err:  # GenerationError, WeightsError, a config that does not fit
        print(f"generate: error: {err}", file=sys.stderr)
        return 2
    hp = model.hparams
    fps = args.fps or float(hp.fps)
    outputs = _outputs(inputs, args.out, args.audio.is_dir())
    clash = [str(src) for src, dst in zip(inputs, outputs) if dst.resolve() == src.resolve()]
    if clash:
        print(f"generate: error: the output would overwrite the input {clash[0]}; choose another --out", file=sys.stderr)
        return 2
    failed: list[tuple[Path, str]] = []
    for src, dst in tqdm(list(zip(inputs, outputs)), desc="generate", unit="file", disable=args.no_progress or len(inputs) == 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            audio = load_audio(src, int(hp.sample_rate), fps, model.encoder.min_samples)
            init = None
            if args.init is not None:
                n = int(audio.numel() * fps / hp.sample_rate + 1e-6)
                size = model.backbone.default_size
                init = load_init_frames(args.init, n, fps, args.height or size[0], args.width or size[1])
            frames = generate_video(
                model, audio, text=args.prompt, height=args.height, width=args.width, fps=fps, window=args.num_frames,
                overlap=args.overlap, blend=args.blend, steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                init_frames=init, strength=args.strength if init is not None else 1.0, window_batch=args.window_batch,
                progress=not args.no_progress,
            )
        except GenerationError as err:
            failed.append((src, str(err)))
            print(f"generate: skipped {src}: {err}", file=sys.stderr)
            continue
        n_samples = round(frames.shape[0] * hp.sample_rate / fps)
        write_video(dst, frames, fps=fps, audio=audio[:n_samples].cpu(), sample_rate=int(hp.sample_rate))
        msg = (f"{dst}: {frames.shape[0]} frames {frames.shape[-2]}x{frames.shape[-1]} at {fps:g} fps in "
               f"{time.perf_counter() - start:.1f} s (CPU time {time.process_time() - cpu_start:.1f} s)")
        if args.contact_sheet:
            msg += f"; contact sheet {contact_sheet(frames, dst.with_suffix('.png'))}"
        print(msg)
    if failed:
        print(f"generate: {len(failed)} of {len(inputs)} file(s) failed", file=sys.stderr)
        return 2 if len(failed) == len(inputs) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
