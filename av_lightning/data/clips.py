"""Clips: F video frames and exactly the audio of their time span.

A clip starting at ``t0`` seconds holds frames at ``t0 + k / fps`` (k = 0..F-1, see
:mod:`av_lightning.data.io` for the resampling rule) and the audio of ``[t0, t0 + F / fps)``:
``S = round(F / fps * sample_rate)`` mono samples. ``t0`` is always a whole number of audio
samples (``round(t0 * sample_rate) / sample_rate``), so frame ``k`` starts exactly at audio
sample ``round(k * sample_rate / fps)``.

Start policy (:func:`clip_start`):
- training: a random start in ``[0, duration - F / fps]``, drawn from a generator seeded with
  ``(seed, epoch, index)``: the same run sees the same clips, every epoch sees new ones. With
  ``train_starts=K`` the start is instead drawn (per epoch) from K fixed candidate starts per
  file, seeded with ``(seed, index, k)``; the feature cache stores exactly those K starts.
- validation, test and predict: a fixed start, the middle of the file (``"middle"``) or its
  beginning (``"start"``). The CSV ``start_time`` of the official layout is the offset of the
  10 s file inside the original YouTube video, not a time inside the file, so it is not used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from av_lightning.data.io import MediaError, read_clip


@dataclass(frozen=True)
class ClipSpec:
    """Shape of one clip.

    Attributes:
        num_frames: F.
        fps: frames per second (Hz).
        size: output frame size policy (int short side + square crop, ``(H, W)``, or None).
        sample_rate: audio rate (Hz).
        buckets: optional ``(H, W)`` aspect buckets (overrides ``size``).
    """

    num_frames: int = 24
    fps: float = 24.0
    size: int | tuple[int, int] | None = 384
    sample_rate: int = 16000
    buckets: tuple[tuple[int, int], ...] | None = None

    @property
    def duration(self) -> float:
        """Seconds covered by the clip, F / fps."""
        return self.num_frames / self.fps

    @property
    def num_samples(self) -> int:
        """S = round(F / fps * sample_rate)."""
        return round(self.num_frames / self.fps * self.sample_rate)

    def settings(self) -> dict:
        """JSON-serialisable description (feature-cache keys)."""
        size = list(self.size) if isinstance(self.size, (tuple, list)) else self.size
        buckets = [list(b) for b in self.buckets] if self.buckets else None
        return {
            "num_frames": self.num_frames,
            "fps": float(self.fps),
            "size": size,
            "sample_rate": self.sample_rate,
            "buckets": buckets,
        }


@dataclass
class ClipRecord:
    """One listed file of a dataset.

    Attributes:
        id: the clip id (file stem).
        video: path of the video file.
        audio: path of the audio file (a separate wav or the video itself).
        label: the prompt label (class column).
        split: ``train``, ``val`` or ``test``.
        duration: usable seconds (min of video and audio), filled in by probing.
        extra: other CSV columns (e.g. ytid, start_time).
    """

    id: str
    video: str
    audio: str
    label: str
    split: str
    duration: float = 0.0
    extra: dict = field(default_factory=dict)


def quantize(t: float, sample_rate: int) -> float:
    """``t`` rounded to the audio sample grid (seconds)."""
    return round(t * sample_rate) / sample_rate


def clip_start(
    duration: float,
    spec: ClipSpec,
    train: bool,
    seed: int = 0,
    epoch: int = 0,
    index: int = 0,
    train_starts: int | None = None,
    eval_start: str = "middle",
) -> float:
    """The start (seconds) of the clip of file ``index`` (policy in the module docstring).

    Args:
        duration: usable seconds of the file.
        spec: the clip shape.
        train: random (training) or fixed (evaluation) start.
        seed, epoch, index: seed the random start.
        train_starts: None for a continuous random start, K for one of K fixed candidates.
        eval_start: ``"middle"`` or ``"start"``.
    """
    # The last audio sample of the clip must stay inside the file; the floor keeps
    # quantisation from pushing the end past it.
    slack = math.floor(max(0.0, duration - spec.duration) * spec.sample_rate) / spec.sample_rate
    if not train:
        if eval_start == "middle":
            return math.floor(slack / 2 * spec.sample_rate) / spec.sample_rate
        if eval_start == "start":
            return 0.0
        raise ValueError(f"eval_start must be 'middle' or 'start', got {eval_start!r}")
    if train_starts is not None:
        candidates = candidate_starts(duration, spec, seed, index, train_starts)
        pick = np.random.default_rng([seed, epoch, index, 1]).integers(len(candidates))
        return candidates[int(pick)]
    u = np.random.default_rng([seed, epoch, index]).random()
    return math.floor(u * slack * spec.sample_rate) / spec.sample_rate


def candidate_starts(duration: float, spec: ClipSpec, seed: int, index: int, k: int) -> list[float]:
    """The K fixed training starts of file ``index`` (seconds, sample-quantised)."""
    slack = math.floor(max(0.0, duration - spec.duration) * spec.sample_rate) / spec.sample_rate
    u = np.random.default_rng([seed, index, 2]).random(k)
    return [math.floor(x * slack * spec.sample_rate) / spec.sample_rate for x in u]


def load_clip(record: ClipRecord, spec: ClipSpec, start: float) -> dict:
    """Decode one clip.

    Returns:
        ``frames`` uint8 ``(F, 3, H, W)``, ``audio`` float32 ``(S,)``, ``label`` str, ``id`` str,
        ``start`` float seconds.

    Raises:
        MediaError: naming the file, when it does not decode (never replaced by another clip).
    """
    try:
        frames, audio = read_clip(record.video, record.audio, start, spec.num_frames, spec.fps, spec.num_samples,
                                  spec.sample_rate, spec.size, spec.buckets)
    except MediaError as exc:
        raise MediaError(f"clip {record.id!r} ({record.split}) failed at start {start:.3f} s: {exc}") from exc
    return {"frames": frames, "audio": audio, "label": record.label, "id": record.id, "start": float(start)}


class ClipDataset(Dataset):
    """Clips of a list of probed files, one clip per file and epoch.

    Indexing: an ``int`` key is ``epoch * len(self) + index`` (see :class:`EpochSampler`); plain
    indices ``0..len-1`` are epoch 0. Items are dicts as in :func:`load_clip`.

    Args:
        records: probed files (each long enough for one clip).
        spec: clip shape.
        train: random starts (training) or fixed starts (evaluation).
        seed: seeds the random starts.
        train_starts: see :func:`clip_start`.
        eval_start: see :func:`clip_start`.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        spec: ClipSpec,
        train: bool = False,
        seed: int = 0,
        train_starts: int | None = None,
        eval_start: str = "middle",
    ) -> None:
        self.records = list(records)
        self.spec = spec
        self.train = train
        self.seed = seed
        self.train_starts = train_starts
        self.eval_start = eval_start

    def __len__(self) -> int:
        return len(self.records)

    def locate(self, key: int) -> tuple[int, int]:
        """``(epoch, index)`` of a sampler key."""
        return divmod(int(key), len(self.records))

    def start_of(self, index: int, epoch: int = 0) -> float:
        """Start (seconds) of the clip of file ``index`` in ``epoch``."""
        return clip_start(
            self.records[index].duration,
            self.spec,
            self.train,
            self.seed,
            epoch,
            index,
            self.train_starts,
            self.eval_start,
        )

    def __getitem__(self, key: int) -> dict:
        epoch, index = self.locate(key)
        return load_clip(self.records[index], self.spec, self.start_of(index, epoch))


class EpochSampler(DistributedSampler):
    """A (distributed) shuffling sampler that tells the dataset the epoch, and resumes mid-epoch.

    It yields ``epoch * len(dataset) + index`` so that random clip starts are seeded per epoch
    and index even inside persistent worker processes. Lightning calls :meth:`set_epoch` every
    epoch and, since this is a ``DistributedSampler``, leaves it in place under DDP. After
    :meth:`resume` it skips the indices that a run interrupted mid-epoch had already trained on,
    so the resumed run sees exactly the batches the uninterrupted run would have.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            replicas, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        else:
            replicas, rank = 1, 0
        super().__init__(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._resume: tuple[int, int] | None = None

    def resume(self, epoch: int, samples: int) -> None:
        """Skip the first ``samples`` indices (of this rank) of ``epoch``, once."""
        self._resume = (int(epoch), int(samples))

    def __iter__(self):
        n = len(self.dataset)
        indices = list(super().__iter__())
        if self._resume is not None:
            epoch, skip = self._resume
            self._resume = None
            if epoch == self.epoch:
                indices = indices[skip:]
        return (self.epoch * n + int(i) for i in indices)


def fit_progress(trainer) -> dict:
    """Where a Lightning fit stands: ``{"epoch": e, "batches": k}``, k training steps of epoch e done.

    This is what a DataModule stores in checkpoints (``state_dict``) so that a run resumed from a
    mid-epoch checkpoint (``last.ckpt``, or one saved on Ctrl-C) can skip the batches already
    trained on (:meth:`EpochSampler.resume`); Lightning's own loop counters say how far it got.
    """
    loop = trainer.fit_loop
    return {"epoch": int(loop.epoch_progress.current.processed),
            "batches": int(loop.epoch_loop.batch_progress.current.processed)}


class ResumableFit:
    """A LightningDataModule mixin: checkpoints hold :func:`fit_progress`, and the training sampler
    built by :meth:`train_sampler` after a resume skips what was already trained on.

    Lightning stores a DataModule's ``state_dict()`` in every checkpoint and hands it back to
    ``load_state_dict`` before the dataloaders are built, so resuming from any mid-epoch
    ``last.ckpt`` continues with exactly the batches an uninterrupted run would have seen.
    """

    _resume_state: dict | None = None

    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {"fit_progress": fit_progress(trainer)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_state = state_dict.get("fit_progress")

    def train_sampler(self, dataset: Dataset, seed: int, batch_size: int) -> EpochSampler:
        sampler = EpochSampler(dataset, shuffle=True, seed=seed)
        if self._resume_state:
            sampler.resume(self._resume_state["epoch"], self._resume_state["batches"] * batch_size)
            self._resume_state = None
            # Lightning warns that a plain DataLoader cannot resume mid-epoch; this sampler does.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        return sampler


def resolve_path(root: str | Path, path: str | Path) -> Path:
    """``path`` if absolute, else relative to ``root``."""
    path = Path(path)
    return path if path.is_absolute() else Path(root) / path
