"""Time the audio encoders on CPU: 10 s of audio, full-size BEATs (random weights), time_shifts.

    .venv/bin/python bench/encoders.py [--seconds 10] [--repeats 2] [--out docs/results/encoders.md]

Prints a markdown table and writes it, with the command and the machine, to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from av_lightning.encoders import BEATsEncoder, MelEncoder
from av_lightning.encoders.beats import PAPER_CHECKPOINT_CFG

FULL_BEATS = dict(PAPER_CHECKPOINT_CFG)


def measure(encoder, audio: torch.Tensor, repeats: int) -> dict:
    """Median wall and process-CPU seconds of ``encoder(audio)`` after one warm-up call."""
    encoder(audio[:, :16000])
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = encoder(audio)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "shape": tuple(out.hidden_states.shape),
        "rate": out.frame_rate,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="audio length (s)")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per row (median)")
    p.add_argument(
        "--shifts", type=int, nargs="+", default=[1, 4], help="time_shifts values for BEATs"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: CPU time = compute)"
    )
    p.add_argument("--out", default="docs/results/encoders.md", help="markdown file to write")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(1, int(args.seconds * 16000))
    rows = []
    for n in args.shifts:
        enc = BEATsEncoder(cfg=FULL_BEATS, time_shifts=n)
        r = measure(enc, audio, args.repeats)
        rows.append((f"BEATs full size, time_shifts={n}", r))
        print(
            f"BEATs time_shifts={n}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU", file=sys.stderr
        )
        del enc
    rows.append(("MelEncoder(n_mels=64, 100 Hz)", measure(MelEncoder(), audio, args.repeats)))

    base = rows[0][1]
    lines = [
        "| encoder | hidden_states (B, T', Lh, d) | frame rate (Hz) | wall (s) | CPU (s) | wall / CPU vs. first row |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows:
        ratio = f"{r['wall'] / base['wall']:.2f} / {r['cpu'] / base['cpu']:.2f}"
        lines.append(
            f"| {name} | {r['shape']} | {r['rate']:g} | {r['wall']:.3f} | {r['cpu']:.3f} | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    command = "python bench/encoders.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = f"""# Audio encoder cost on CPU

{args.seconds:g} s of audio (batch 1), median of {args.repeats} calls after a warm-up; full-size BEATs
(90M parameters, the cfg of `BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`) with random weights,
which cost the same as the real ones. CPU time is the process's user + system time over all
threads; with one thread (the default) it is the compute itself, while wall time also shows how
busy the machine was.

{table}

Command: `{command.strip()}`

Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}
with {torch.get_num_threads()} threads; load average during the run {", ".join(f"{x:.1f}" for x in load)}
(a shared machine: other jobs were running, so wall times are pessimistic; CPU time and the
ratio between rows are the robust numbers). Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.
"""
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
