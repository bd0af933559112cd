"""AV-Align of media files at the scale of a test set: the engine of ``av-lightning av-align``.

:class:`FolderScorer` scores ``(video, audio)`` files with worker processes that live as long as
the scorer (forked from one server process that imported the libraries once), each file decoded
once and scored with the functional core the ``AVAlign`` metric uses
(:mod:`~.alignment`). On the CPU a worker does all the work for its file; with a GPU the
workers decode and detect onsets while this process solves the optical flow of ``batch`` clips
at once (:func:`~.optical_flow.clip_trajectories`).

Every file ends as one :class:`FileResult`: scored, skipped with the reason (a file that cannot
be read, audio with NaN or Inf samples, too few frames) or failed (an unexpected error, with its
traceback); one file never costs the others their scores.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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


#: Imported once by the fork server; its forked workers start with them loaded.
WORKER_MODULES = ("av_lightning.metrics.av_align_folder", "av_lightning.data.io", "av_lightning.metrics.alignment",
                  "av_lightning.metrics.optical_flow", "av_lightning.metrics.horn_schunck_cpu", "cv2",
                  "librosa.onset", "madmom.audio.filters", "madmom.features.onsets", "soundfile", "torch")


def _worker_context():
    """Workers fork from a fresh server process that imported :data:`WORKER_MODULES` once
    (forking this process is not safe once its OpenMP pool has run); spawn where there is no
    fork server (Windows)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES))
    return context


class FolderScorer:
    """Scores lists of ``(video, audio)`` files with workers that live as long as the scorer.

    Args:
        mode: ``"paper"`` or ``"reference"``.
        edges: paper mode's edge rule, ``"drop"`` (default) or ``"keep"``.
        workers: processes (spawned once); 1 scores in this process.
        threads: torch/OpenCV/FFmpeg threads per worker (default 1: the workers are the
            parallelism, and OpenMP pools that spin on cores shared with other processes are
            slow); with ``workers=1`` they apply while scoring and are restored after.
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
        if threads is None:
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
            self._pool = ProcessPoolExecutor(self.workers, mp_context=_worker_context(),
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
        todo = deque((index, job, 0) for index, job in enumerate(jobs))  # (index, job, crashes seen)
        pending: dict[Future, tuple[int, tuple, int]] = {}
        restarts = 0
        while todo or pending:
            broken = False
            while todo and len(pending) < window:
                try:
                    future = self._pool.submit(process_file, todo[0][1])
                except BrokenProcessPool:
                    broken = True
                    break
                pending[future] = todo.popleft()
            done, _ = wait(pending, return_when=FIRST_COMPLETED) if pending else ((), ())
            for future in done:
                index, job, crashes = pending.pop(future)
                try:
                    prepared = future.result()
                except BrokenProcessPool:
                    # A worker died (a codec crash, say) and took the pool down with every file in
                    # flight: each gets one more try in a fresh pool, and fails on a second crash.
                    broken = True
                    if crashes == 0:
                        todo.append((index, job, 1))
                        continue
                    prepared = _failed(FileResult(job[0], job[1]), RuntimeError(
                        "a worker process died twice while this file was being scored; rescore the folder "
                        "with --workers 1 to see whether this file crashes the decoder"), internal=True)
                else:
                    restarts = 0
                yield index, prepared
            if broken:
                self.close()
                restarts += 1
                if restarts > 3:
                    reason = RuntimeError("worker processes keep dying before they finish a file; run with "
                                          "--workers 1 to see the error")
                    for index, job, _ in [*pending.values(), *todo]:
                        yield index, _failed(FileResult(job[0], job[1]), reason, internal=True)
                    return
                self.start()

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

        try:
            grays = [torch.from_numpy(p.gray).to(self.device) for _, p in waiting]
            # The whole batch's pairs at once: a GPU wants thousands (about 12 floats per pixel).
            trajectories = [t.double().cpu().numpy() for t in clip_trajectories(
                grays, [p.scale for _, p in waiting], HornSchunckParams(), chunk_pairs=4096)]
        except Exception as err:  # noqa: BLE001 - e.g. out of device memory: fail this batch, keep the rest
            for index, prepared in waiting:
                results[index] = _failed(prepared.result, err, internal=True).result
        else:
            for (index, prepared), trajectory in zip(waiting, trajectories):
                results[index] = _finish(prepared, trajectory, self.settings).result
        bar.update(len(waiting))
        waiting.clear()


def score_pairs(pairs: Iterable[tuple[Path, Path]], mode: str = "paper", workers: int = 1, device: str = "cpu",
                progress: bool = True, threads: int | None = None, edges: str = "drop",
                **scorer_kwargs) -> list[FileResult]:
    """Score ``(video, audio)`` pairs with a :class:`FolderScorer` that lives for this call."""
    with FolderScorer(mode, edges, workers, threads, device, **scorer_kwargs) as scorer:
        return scorer.score(pairs, progress=progress)


def default_workers() -> int:
    """The CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
