"""``av-lightning av-align DIR``: AV-Align of every video in a folder.

A drop-in for the authors' script at the scale of a test set: each ``NAME.mp4`` is scored
against ``NAME.wav`` when that file exists, otherwise against the mp4's own audio stream
(pairing by :func:`av_lightning.data.folders.pair_videos`). Prints the mean, writes one row per
file to a CSV, and skips (lists, counts and writes with the reason) every file that cannot be
scored; one bad file never costs the others their scores.

    av-lightning av-align results/videos --mode reference --workers 4 --out scores.csv

Engine (:class:`FolderScorer`): worker processes that live for the whole folder, each file
decoded once, scored with the same functional core as the ``AVAlign`` metric
(:mod:`av_lightning.metrics.alignment`). On the CPU a worker does everything for its file; with
``--device cuda`` the workers decode and detect onsets while the main process solves the
optical flow of many clips at once on the GPU.

Exit status: 0 when at least one video was scored (skips are listed and summarised); 1 when no
video was scored, when a file failed with an unexpected error, or, with ``--strict``, when any
file was skipped; 2 for a bad command line (no folder, no videos).
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4",)
CSV_COLUMNS = ("file", "audio", "score", "audio_peaks", "video_peaks", "matches", "edge_onsets", "status",
               "reason")


@dataclass
class FileResult:
    """One row of the output: a scored file, or a skipped one with the reason.

    ``internal`` marks a skip caused by an unexpected error (a bug, reported with its traceback)
    rather than by the file.
    """

    video: str
    audio: str
    score: float = math.nan
    audio_peaks: int = 0
    video_peaks: int = 0
    matches: int = 0
    edge_onsets: int = 0
    error: str = ""
    internal: bool = False
    details: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.error)

    @property
    def empty(self) -> bool:
        return not self.error and self.audio_peaks == 0 and self.video_peaks == 0

    @property
    def one_sided(self) -> bool:
        return not self.error and (self.audio_peaks == 0) != (self.video_peaks == 0)

    @property
    def status(self) -> str:
        if self.internal:
            return "failed"
        return "skipped" if self.error else ("empty" if self.empty else "ok")


@dataclass(frozen=True)
class Settings:
    """How every file is scored (sent once to each worker).

    Attributes:
        mode: ``"paper"`` or ``"reference"``.
        edges: paper mode's edge rule (``"drop"`` or ``"keep"``).
        flow_in_workers: paper mode: workers compute the optical flow (CPU); otherwise they send
            grayscale frames and the main process solves them in batches on its device.
        threads: torch/OpenCV/FFmpeg threads per worker (None: the libraries' defaults).
    """

    mode: str = "paper"
    edges: str = "drop"
    flow_in_workers: bool = True
    threads: int | None = None


@dataclass
class Prepared:
    """What a worker sends back: a finished row, or (paper mode, flow in the main process) the
    onsets and the flow input of a file still to be finished."""

    result: FileResult
    onsets: np.ndarray | None = None
    fps: float = 0.0
    gray: np.ndarray | None = field(default=None, repr=False)  # (F, h, w) float32
    scale: float = 1.0


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _init_worker(settings: Settings) -> None:
    """Worker start-up: threads, imports and the paper mode's compiled kernel, once per process."""
    if settings.mode == "paper":
        import torch

        _set_threads(settings.threads)
        from av_lightning.metrics.onsets import _superflux_processors
        from av_lightning.metrics.optical_flow import flow_magnitude_trajectory

        _superflux_processors()
        if settings.flow_in_workers:
            # Flow diffusing into flat regions reaches denormal magnitudes (< 1e-38), which x86
            # computes tens of times slower; flushing them to zero changes no peak.
            torch.set_flush_denormal(True)
            flow_magnitude_trajectory(torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8))
    else:
        import librosa.onset  # noqa: F401

        _set_threads(settings.threads)


def _prepare(result: FileResult, settings: Settings) -> Prepared:
    from av_lightning.data.io import read_audio_file, read_video_file
    from av_lightning.metrics.alignment import audio_onsets, check_num_frames, farneback_trajectory

    frames, fps = read_video_file(result.video, threads=settings.threads)
    wave, rate = read_audio_file(result.audio)  # refuses NaN/Inf samples, naming the file
    check_num_frames(frames.shape[0], f"{result.video}: the video")
    onsets = audio_onsets(wave, rate, settings.mode)
    if settings.mode == "reference":
        return _finish(Prepared(result, onsets, fps), farneback_trajectory(frames), settings)
    import torch

    from av_lightning.metrics.optical_flow import HornSchunckParams, clip_trajectories, flow_input

    params = HornSchunckParams()
    gray, scale = flow_input(torch.from_numpy(frames).permute(0, 3, 1, 2), params.max_side)
    prepared = Prepared(result, onsets, fps, scale=scale)
    if not settings.flow_in_workers:
        prepared.gray = gray.numpy()
        return prepared
    (trajectory,) = clip_trajectories([gray], [scale], params)
    return _finish(prepared, trajectory.double().numpy(), settings)


def _finish(prepared: Prepared, trajectory: np.ndarray, settings: Settings) -> Prepared:
    from av_lightning.metrics.alignment import align_trajectory

    clip = align_trajectory(prepared.onsets, trajectory, prepared.fps, settings.mode, edges=settings.edges)
    r = prepared.result
    r.score, r.matches, r.edge_onsets = clip.score, int(clip.matches), clip.edge_onsets
    r.audio_peaks, r.video_peaks = int(clip.audio_peaks.size), int(clip.video_peaks.size)
    prepared.gray = None
    return prepared


def _failed(result: FileResult, err: BaseException, internal: bool) -> Prepared:
    if internal:
        result.error = f"internal error: {type(err).__name__}: {err}"
        result.internal = True
        result.details = "".join(traceback.format_exception(err))
    else:
        result.error = str(err)
    return Prepared(result)


def process_file(job: tuple[str, str, Settings]) -> Prepared:
    """Score one ``(video, audio, settings)`` job. A file that cannot be read or scored becomes a
    skipped row with the reason; an unexpected error becomes a ``failed`` row with its
    traceback, so that it is reported without losing the other files."""
    from av_lightning.data.io import MediaError
    from av_lightning.metrics.alignment import ClipError

    video, audio, settings = job
    result = FileResult(video=video, audio=audio)
    try:
        return _prepare(result, settings)
    except (MediaError, ClipError) as err:
        return _failed(result, err, internal=False)
    except Exception as err:  # noqa: BLE001 - reported as a failed row with its traceback
        return _failed(result, err, internal=True)


class FolderScorer:
    """Scores lists of ``(video, audio)`` files with workers that live as long as the scorer.

    Args:
        mode: ``"paper"`` or ``"reference"``.
        edges: paper mode's edge rule, ``"drop"`` (default) or ``"keep"``.
        workers: processes (spawned once); 1 scores in this process.
        threads: torch/OpenCV/FFmpeg threads per worker; default 1 when ``workers > 1``, the
            libraries' own setting otherwise.
        device: where paper mode's optical flow runs. ``"cpu"``: in the workers; another device
            (``"cuda"``): in this process, ``batch`` clips at a time.
        batch: clips whose flow is solved together in this process.
        flow_in_workers: override where the flow runs (``False`` with ``device="cpu"`` runs the
            batched path on the CPU).

    Use as a context manager (``with FolderScorer(...) as scorer: scorer.score(pairs)``); the
    workers start on entry, so their start-up is paid once.
    """

    def __init__(self, mode: str = "paper", edges: str = "drop", workers: int = 1, threads: int | None = None,
                 device: str = "cpu", batch: int = 64, flow_in_workers: bool | None = None) -> None:
        from av_lightning.metrics.alignment import EDGE_RULES, MODES

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if edges not in EDGE_RULES:
            raise ValueError(f"edges must be one of {EDGE_RULES}, got {edges!r}")
        if workers < 1 or batch < 1:
            raise ValueError(f"need workers >= 1 and batch >= 1, got {workers} and {batch}")
        if flow_in_workers is None:
            flow_in_workers = device == "cpu"
        if threads is None and workers > 1:
            threads = 1
        self.settings = Settings(mode, edges, flow_in_workers, threads)
        self.workers, self.device, self.batch = workers, device, batch
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> FolderScorer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self.workers > 1 and self._pool is None:
            # spawn: forking a process whose OpenMP pool has run is not safe (libgomp).
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.settings,))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def score(self, pairs: Iterable[tuple[Path, Path]], progress: bool = True) -> list[FileResult]:
        """Rows for ``(video, audio)`` pairs, in input order."""
        from tqdm import tqdm

        jobs = [(os.fspath(v), os.fspath(a), self.settings) for v, a in pairs]
        results: list[FileResult | None] = [None] * len(jobs)
        waiting: list[tuple[int, Prepared]] = []  # flow still to solve in this process
        bar = tqdm(total=len(jobs), desc=f"av-align ({self.settings.mode})", unit="video", disable=not progress)
        try:
            for index, prepared in self._prepared(jobs):
                if prepared.gray is None:
                    results[index] = prepared.result
                    bar.update()
                    continue
                waiting.append((index, prepared))
                if len(waiting) >= self.batch:
                    self._solve(waiting, results, bar)
            self._solve(waiting, results, bar)
        finally:
            bar.close()
        return results

    def _prepared(self, jobs: list) -> Iterator[tuple[int, Prepared]]:
        if self.workers <= 1:
            yield from self._in_process(jobs)
            return
        self.start()
        # A bounded number of jobs in flight: returned frames (device path) must not pile up.
        window = 4 * self.workers + self.batch
        todo = iter(enumerate(jobs))
        pending: dict[Future, tuple[int, tuple]] = {}

        def submit() -> None:
            for index, job in todo:
                pending[self._pool.submit(process_file, job)] = (index, job)
                if len(pending) >= window:
                    return

        submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index, job = pending.pop(future)
                try:
                    yield index, future.result()
                except BrokenProcessPool as err:
                    # A worker died (e.g. a codec crashed): report the files it took down with it
                    # and go on with a fresh pool.
                    reason = RuntimeError(f"a worker process died while this file was in flight ({err}); "
                                          "rescore it with --workers 1 to see which file crashes")
                    yield index, _failed(FileResult(job[0], job[1]), reason, internal=True)
                    self._pool = None
            if self._pool is None:
                self.start()
            submit()

    def _in_process(self, jobs: list) -> Iterator[tuple[int, Prepared]]:
        threads = self.settings.threads
        saved = None
        if threads is not None:
            import cv2
            import torch

            saved = (torch.get_num_threads(), cv2.getNumThreads())
            _set_threads(threads)
        try:
            for index, job in enumerate(jobs):
                yield index, process_file(job)
        finally:
            if saved is not None:
                import cv2
                import torch

                torch.set_num_threads(saved[0])
                cv2.setNumThreads(saved[1])

    def _solve(self, waiting: list[tuple[int, Prepared]], results: list, bar) -> None:
        """Optical flow of the waiting clips at once, on ``self.device``; then their rows."""
        if not waiting:
            return
        import torch

        from av_lightning.metrics.optical_flow import HornSchunckParams, clip_trajectories

        grays = [torch.from_numpy(p.gray).to(self.device) for _, p in waiting]
        trajectories = clip_trajectories(grays, [p.scale for _, p in waiting], HornSchunckParams())
        for (index, prepared), trajectory in zip(waiting, trajectories):
            results[index] = _finish(prepared, trajectory.double().cpu().numpy(), self.settings).result
            bar.update()
        waiting.clear()


def score_pairs(pairs: Iterable[tuple[Path, Path]], mode: str = "paper", workers: int = 1, device: str = "cpu",
                progress: bool = True, threads: int | None = None, edges: str = "drop",
                **scorer_kwargs) -> list[FileResult]:
    """Score ``(video, audio)`` pairs with a :class:`FolderScorer` that lives for this call."""
    with FolderScorer(mode, edges, workers, threads, device, **scorer_kwargs) as scorer:
        return scorer.score(pairs, progress=progress)


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


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
                   help="torch/OpenCV/FFmpeg threads per worker [default: 1 with several workers, the "
                   "libraries' own setting with one]")
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
