"""``av-lightning av-align DIR``: AV-Align of every video in a folder.

A drop-in for the authors' script at the scale of a test set: each ``NAME.mp4`` is scored
against ``NAME.wav`` when that file exists, otherwise against the mp4's own audio stream
(pairing by :func:`av_lightning.data.folders.pair_videos`). Prints the mean, writes one row per
file to a CSV, and skips (lists, counts and writes with the reason) every file that cannot be
scored; one bad file never costs the others their scores.

    av-lightning av-align results/videos --mode reference --workers 4 --out scores.csv

The engine is :class:`av_lightning.metrics.av_align_folder.FolderScorer`: worker processes that
live for the whole folder, each file decoded once and scored with the functional core of the
``AVAlign`` metric; with ``--device cuda`` the optical flow of many clips runs at once on the GPU.

Exit status: 0 when at least one video was scored (skips are listed and summarised); 1 when no
video was scored, when a file failed with an unexpected error, or, with ``--strict``, when any
file was skipped; 2 for a bad command line (no folder, no videos).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable
from pathlib import Path

from av_lightning.metrics.av_align_folder import FileResult, FolderScorer, default_workers

VIDEO_EXTENSIONS = (".mp4",)
CSV_COLUMNS = ("file", "audio", "score", "audio_peaks", "video_peaks", "matches", "edge_onsets", "status",
               "reason")


def write_csv(results: list[FileResult], path: Path) -> None:
    """One row per file (:data:`CSV_COLUMNS`); ``status`` is ``ok``, ``empty`` (no peaks on
    either side), ``skipped`` (``reason`` says why) or ``failed`` (an unexpected error)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            score = "" if r.skipped or r.empty else f"{r.score:.6f}"
            writer.writerow([r.video, r.audio, score, r.audio_peaks, r.video_peaks, r.matches, r.edge_onsets,
                             r.status, r.error])


def summarise(results: list[FileResult]) -> dict:
    """Mean over scored files; counts of empty, one-sided, skipped and failed files."""
    scored = [r.score for r in results if not r.skipped and not r.empty]
    return {
        "mean": sum(scored) / len(scored) if scored else math.nan,
        "scored": len(scored),
        "empty": sum(r.empty for r in results),
        "one_sided": sum(r.one_sided for r in results),
        "skipped": [r for r in results if r.skipped],
        "failed": [r for r in results if r.internal],
    }


def exit_status(summary: dict, strict: bool = False, say: Callable[[str], None] = print) -> int:
    """0 when something was scored (and, with ``strict``, nothing skipped); 1 otherwise."""
    skipped, failed = len(summary["skipped"]), len(summary["failed"])
    if failed:
        say(f"av-align: {failed} file(s) failed with an unexpected error (tracebacks above); "
            "please report it with the traceback")
        return 1
    if summary["scored"] == 0:
        say(f"av-align: no video was scored ({skipped} skipped, {summary['empty']} with no peaks on either side)")
        return 1
    if strict and skipped:
        say(f"av-align: --strict: {skipped} file(s) skipped")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="av-lightning av-align",
        description="AV-Align of every NAME.mp4 in DIR against NAME.wav (or the mp4's own audio).",
    )
    p.add_argument("directory", type=Path, metavar="DIR", help="folder of .mp4 files (and .wav files)")
    p.add_argument("--mode", choices=("paper", "reference"), default="paper",
                   help="paper: SuperFlux onsets + Horn–Schunck flow; reference: the authors' script "
                   "(librosa + Farneback) [default: %(default)s]")
    p.add_argument("--edges", choices=("drop", "keep"), default="drop",
                   help="paper mode: drop onsets at frames where no video peak can sit (the first two "
                   "and the last), or keep them [default: %(default)s]")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes for the whole folder; 1 scores in this process "
                   "[default: the CPU cores, here %d]" % default_workers())
    p.add_argument("--threads", type=int, default=None,
                   help="torch/OpenCV/FFmpeg threads per worker [default: 1]")
    p.add_argument("--device", default="cpu",
                   help="paper mode's optical flow: cpu (in the workers) or cuda (batched in the main "
                   "process) [default: %(default)s]")
    p.add_argument("--batch", type=int, default=64, help="clips per optical-flow batch on --device cuda")
    p.add_argument("--out", type=Path, default=None, help="CSV of per-file scores")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any file is skipped")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``av-lightning av-align``; returns the exit status."""
    from av_lightning.data.folders import FolderError, pair_videos

    args = build_parser().parse_args(argv)
    try:
        pairs = pair_videos(args.directory, VIDEO_EXTENSIONS)
    except FolderError as err:
        print(f"av-align: {err}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"av-align: no {'/'.join(VIDEO_EXTENSIONS)} files in {args.directory}", file=sys.stderr)
        return 2
    if args.device != "cpu" and args.mode == "reference":
        print("av-align: --device applies to paper mode only (reference mode is OpenCV on the CPU)",
              file=sys.stderr)
        return 2
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1 or args.batch < 1 or (args.threads is not None and args.threads < 1):
        print("av-align: --workers, --threads and --batch must be at least 1", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"av-align: --device {args.device}, but torch sees no CUDA device", file=sys.stderr)
            return 2
    with FolderScorer(args.mode, args.edges, max(1, min(workers, len(pairs))), args.threads, args.device,
                      args.batch) as scorer:
        results = scorer.score([(p.video, p.audio) for p in pairs], progress=not args.no_progress)
    summary = summarise(results)
    if args.out is not None:
        write_csv(results, args.out)
    for r in summary["failed"]:
        print(f"av-align: {r.video}: {r.details}", file=sys.stderr)
    print(
        f"AV-Align ({args.mode}): {summary['mean']:.4f} over {summary['scored']} videos "
        f"({summary['one_sided']} with peaks on one side only, scored 0); "
        f"{summary['empty']} with no peaks on either side (left out); "
        f"{len(summary['skipped'])} skipped"
    )
    for r in summary["skipped"]:
        print(f"  skipped {r.video}: {r.error}")
    if args.out is not None:
        print(f"per-file scores: {args.out}")
    return exit_status(summary, args.strict, say=lambda text: print(text, file=sys.stderr))


if __name__ == "__main__":
    raise SystemExit(main())
