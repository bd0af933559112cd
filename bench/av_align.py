"""Speed of ``av-lightning av-align``: clips per second in paper and reference mode, 1 and 2 workers.

Writes 32 synthetic clips (24 frames at 24 fps, 256x256, H.264 mp4 + 16 kHz wav) to a temporary
folder and times the command's engine (:func:`av_lightning.commands.av_align.score_pairs`) on
them, decoding included, worker start-up included. Prints a markdown table and writes it to
docs/results/av_align_speed.md.

    .venv/bin/python bench/av_align.py [--clips 32] [--out docs/results/av_align_speed.md]

``--flow-only --device cuda`` instead times just paper mode's batched Horn–Schunck video side
(:func:`~av_lightning.metrics.optical_flow.flow_magnitude_trajectory` over all frame pairs of the
32 clips at once) on the CPU and on the device, and checks that both find the same peaks; it
needs only torch and numpy (no PyAV, librosa or madmom).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from av_lightning.metrics._synthetic import render_clip

FPS, SAMPLE_RATE, FRAMES, SIZE = 24.0, 16000, 24, 256


def make_clips(root: Path, count: int) -> None:
    import soundfile as sf

    from av_lightning.metrics._video import write_clip

    for i in range(count):
        events = [3 + i % 3, 10 + i % 3, 17 + i % 3]
        frames, audio = render_clip(
            events, num_frames=FRAMES, fps=FPS, size=SIZE, sample_rate=SAMPLE_RATE, seed=i
        )
        write_clip(root / f"clip{i:03d}.mp4", frames, FPS)
        sf.write(root / f"clip{i:03d}.wav", audio, SAMPLE_RATE)


def flow_only(clips: int, device: str) -> str:
    """Markdown table: batched Horn–Schunck trajectories of ``clips`` clips, CPU vs ``device``."""
    import torch

    from av_lightning.metrics.alignment import local_maxima
    from av_lightning.metrics.optical_flow import HornSchunckParams, flow_magnitude_trajectory

    frames = [
        render_clip([3 + i % 3, 10 + i % 3, 17 + i % 3], num_frames=FRAMES, size=SIZE, seed=i)[0]
        for i in range(clips)
    ]
    videos = torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).contiguous()
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
    lines = [
        (
            f"Batched Horn–Schunck over all {clips * (FRAMES - 1)} frame pairs of {clips} clips "
            f"({FRAMES} frames, {SIZE}x{SIZE}); CPU: {torch.get_num_threads()} threads; device: {name}."
        ),
        "",
        "| max_side | CPU s | CPU clips/s | device s | device clips/s | max abs diff (px) | same peaks |",
        "|---|---|---|---|---|---|---|",
    ]
    for max_side in (128, None):
        params = HornSchunckParams(max_side=max_side)
        start = time.perf_counter()
        cpu = flow_magnitude_trajectory(videos, params)
        cpu_s = time.perf_counter() - start
        on_device = videos.to(device)
        flow_magnitude_trajectory(on_device, params)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            out = flow_magnitude_trajectory(on_device, params)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dev_s = (time.perf_counter() - start) / 5
        out = out.cpu()
        same = all(
            np.array_equal(local_maxima(a, 0.1), local_maxima(b, 0.1))
            for a, b in zip(cpu.numpy(), out.numpy())
        )
        diff = (out - cpu).abs().max().item()
        lines.append(
            f"| {max_side} | {cpu_s:.2f} | {clips / cpu_s:.1f} | {dev_s:.3f} | {clips / dev_s:.0f} | "
            f"{diff:.1e} | {same} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads per worker")
    p.add_argument("--out", type=Path, default=Path("docs/results/av_align_speed.md"))
    p.add_argument("--flow-only", action="store_true", help="time only the batched optical flow")
    p.add_argument("--device", default="cuda", help="device of --flow-only")
    args = p.parse_args(argv)

    if args.flow_only:
        text = flow_only(args.clips, args.device)
        text += f"\n\nCommand: `python bench/av_align.py --flow-only --device {args.device} --clips {args.clips}`\n"
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        return 0

    from av_lightning.commands.av_align import find_pairs, score_pairs, summarise

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_clips(root, args.clips)
        pairs = find_pairs(root)
        for mode in ("paper", "reference"):
            score_pairs(
                pairs[:1], mode, workers=1, progress=False, threads=args.threads
            )  # warm up lazy imports
            for workers in (1, 2):
                start = time.perf_counter()
                results = score_pairs(
                    pairs, mode, workers=workers, progress=False, threads=args.threads
                )
                seconds = time.perf_counter() - start
                summary = summarise(results)
                rows.append(
                    (
                        mode,
                        workers,
                        seconds,
                        len(pairs) / seconds,
                        summary["mean"],
                        len(summary["skipped"]),
                    )
                )

    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    lines = [
        "# AV-Align speed",
        "",
        (
            f"{args.clips} synthetic clips, {FRAMES} frames at {FPS:g} fps, {SIZE}x{SIZE}, mp4 + 16 kHz wav; "
            "time of `score_pairs` (the `av-lightning av-align` engine): decoding, onsets, optical flow "
            "and matching, worker start-up (spawn) included. Paper mode runs Horn–Schunck on the CPU "
            "with the defaults (alpha 0.05, 64 iterations, frames downscaled to 128 px, blur 1 px). "
            f"Each worker uses {args.threads} torch/OpenCV thread(s) (`--threads`)."
        ),
        "",
        (
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"Python {platform.python_version()}, load average during the run {load} "
            "(the machine was shared with other jobs: treat absolute numbers as a lower bound)."
        ),
        "",
        "| mode | workers | seconds | clips/s | mean AV-Align | skipped |",
        "|---|---|---|---|---|---|",
    ]
    for mode, workers, seconds, rate, mean, skipped in rows:
        lines.append(
            f"| {mode} | {workers} | {seconds:.1f} | {rate:.2f} | {mean:.3f} | {skipped} |"
        )
    lines += [
        "",
        "Command:",
        "",
        "```",
        f"{Path(sys.executable).name} bench/av_align.py --clips {args.clips} --threads {args.threads}",
        "```",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
