"""``av-lightning av-align DIR``: AV-Align of every video in a folder.

A drop-in for the authors' script: each ``NAME.mp4`` is scored against ``NAME.wav`` when that
file exists, otherwise against the mp4's own audio stream. Prints the mean, writes one row per
file to a CSV, and skips (counts and lists) files that cannot be read.

    av-lightning av-align results/videos --mode reference --workers 4 --out scores.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4",)


@dataclass
class FileResult:
    """One row of the output: a scored file, or a skipped one with its error."""

    video: str
    audio: str
    score: float = math.nan
    audio_peaks: int = 0
    video_peaks: int = 0
    matches: int = 0
    error: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.error)

    @property
    def empty(self) -> bool:
        return not self.error and self.audio_peaks == 0 and self.video_peaks == 0


def find_pairs(directory: Path) -> list[tuple[Path, Path]]:
    """``(video, audio)`` for every ``*.mp4`` in ``directory`` (sorted); the audio is
    ``NAME.wav`` next to it when present, else the video file itself (its audio stream)."""
    pairs = []
    for video in sorted(p for p in directory.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS):
        wav = video.with_suffix(".wav")
        pairs.append((video, wav if wav.is_file() else video))
    return pairs


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # reference mode reports the missing package per file
        pass


def score_file(job: tuple[str, str, str, str]) -> FileResult:
    """Score one ``(video, audio, mode, device)`` job; read/decode failures become a skipped row
    (anything else is a bug and propagates)."""
    video, audio, mode, device = job
    import av
    import numpy as np
    import torch

    from av_lightning.metrics._video import read_audio, read_video
    from av_lightning.metrics.alignment import align_clips

    result = FileResult(video=video, audio=audio)
    try:
        frames, fps = read_video(video)
        wave, rate = read_audio(audio)
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as err:  # soundfile: RuntimeError
        result.error = f"{type(err).__name__}: {err}"
        return result
    if frames.shape[0] < 3:
        result.error = f"ValueError: only {frames.shape[0]} frames"
        return result
    videos = torch.from_numpy(frames).permute(0, 3, 1, 2).unsqueeze(0).to(device)
    (clip,) = align_clips(videos, [np.asarray(wave)], fps, rate, mode=mode)
    result.score = clip.score
    result.audio_peaks = int(clip.audio_peaks.size)
    result.video_peaks = int(clip.video_peaks.size)
    result.matches = int(clip.matches)
    return result


def score_pairs(
    pairs: Iterable[tuple[Path, Path]],
    mode: str = "paper",
    workers: int = 1,
    device: str = "cpu",
    progress: bool = True,
    threads: int | None = None,
) -> list[FileResult]:
    """Score ``(video, audio)`` pairs, in ``workers`` spawned processes when > 1 (in order).

    ``threads``: torch/OpenCV threads per worker; default ``cpu_count // workers`` in worker
    processes and torch's own setting when ``workers == 1``.
    """
    from tqdm import tqdm

    jobs = [(os.fspath(v), os.fspath(a), mode, device) for v, a in pairs]
    bar = {
        "total": len(jobs),
        "desc": f"av-align ({mode})",
        "unit": "video",
        "disable": not progress,
    }
    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        if threads is not None:
            _init_worker(threads)
        try:
            return [score_file(job) for job in tqdm(jobs, **bar)]
        finally:
            torch.set_num_threads(before)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    # spawn: forking a process whose OpenMP pool has run is not safe (libgomp).
    with mp.get_context("spawn").Pool(
        workers, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        return list(tqdm(pool.imap(score_file, jobs), **bar))


def write_csv(results: list[FileResult], path: Path) -> None:
    """One row per file: ``file, audio, score, audio_peaks, video_peaks, matches, status``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["file", "audio", "score", "audio_peaks", "video_peaks", "matches", "status"]
        )
        for r in results:
            status = r.error or ("empty" if r.empty else "ok")
            score = "" if r.skipped or r.empty else f"{r.score:.6f}"
            writer.writerow(
                [r.video, r.audio, score, r.audio_peaks, r.video_peaks, r.matches, status]
            )


def summarise(results: list[FileResult]) -> dict:
    """Mean over scored files, and the counts of empty and skipped files."""
    scored = [r.score for r in results if not r.skipped and not r.empty]
    return {
        "mean": sum(scored) / len(scored) if scored else math.nan,
        "scored": len(scored),
        "empty": sum(r.empty for r in results),
        "skipped": [r for r in results if r.skipped],
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="av-lightning av-align",
        description="AV-Align of every NAME.mp4 in DIR against NAME.wav (or the mp4's own audio).",
    )
    p.add_argument(
        "directory", type=Path, metavar="DIR", help="folder of .mp4 files (and .wav files)"
    )
    p.add_argument(
        "--mode",
        choices=("paper", "reference"),
        default="paper",
        help="paper: SuperFlux onsets + Horn–Schunck flow; reference: the authors' script "
        "(librosa + Farneback) [default: %(default)s]",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="parallel processes [default: %(default)s]"
    )
    p.add_argument("--out", type=Path, default=None, help="CSV of per-file scores")
    p.add_argument("--device", default="cpu", help="torch device of paper mode's optical flow")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch/OpenCV threads per worker [default: CPU cores / workers; torch's default "
        "with one worker]",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``av-lightning av-align``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not args.directory.is_dir():
        print(f"av-align: {args.directory} is not a directory", file=sys.stderr)
        return 2
    pairs = find_pairs(args.directory)
    if not pairs:
        print(
            f"av-align: no {'/'.join(VIDEO_EXTENSIONS)} files in {args.directory}", file=sys.stderr
        )
        return 2
    results = score_pairs(
        pairs, args.mode, args.workers, args.device, progress=not args.no_progress
    )
    summary = summarise(results)
    if args.out is not None:
        write_csv(results, args.out)
    print(
        f"AV-Align ({args.mode}): {summary['mean']:.4f} over {summary['scored']} videos; "
        f"{summary['empty']} with no peaks on either side (left out); "
        f"{len(summary['skipped'])} skipped"
    )
    for r in summary["skipped"]:
        print(f"  skipped {r.video}: {r.error}")
    if args.out is not None:
        print(f"per-file scores: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
