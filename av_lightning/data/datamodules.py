"""LightningDataModules over the official layout (DESIGN §7) and over any folder of videos.

Official layout (VGGSound, AudioSet-Drums, Landscape)::

    ROOT/video/NAME.mp4      NAME = name_pattern.format(**csv_row), e.g. "{ytid}_{start_time:06d}"
    ROOT/audio/NAME.wav      optional; without it the mp4's own audio stream is used
    ROOT/<manifest>.csv      ytid,start_time,class,set  (with or without a header row)

``class`` is the prompt label, ``set`` is ``train`` or ``test`` (``val`` rows are used as the
validation split if present). Validation otherwise is a small fixed subset of the training rows
(``val_size``: a fraction if < 1, else a count), chosen by the SHA-1 of the id, so it is the
same in every run and for any CSV order, and removed from training. The test split is every
``test`` row, in CSV order; ``predict_dataloader`` is the test split.

Bad data: ``setup`` probes every listed file once (progress bar; ``num_workers`` threads;
results kept in ``probe_cache.json`` for unchanged files) and skips, with a count per
reason, files that are missing, do not decode, have no audio, or are shorter than one clip. It
prints one summary line and writes ``skipped.csv`` (to ``log_dir``, else the trainer's log
dir, else ``root``). A clip that fails later, in ``__getitem__``, raises with its file name;
nothing is replaced by another clip. An empty split is an error.

Batches (:class:`~av_lightning.data.batch.ClipBatch`, default collate): ``frames`` uint8 ``(B, F, 3, H, W)``, ``audio`` float32 ``(B, S)``
with ``S = round(F / fps * sample_rate)``, ``label`` list[str], ``id`` list[str], ``start``
float64 ``(B,)`` seconds. With ``cache_dir`` (see :mod:`av_lightning.data.cache`) the fit
splits instead give ``latents`` ``(B, C, F, h, w)`` and ``audio_states`` ``(B, T', Lh, d)``
plus ``audio``, ``label``, ``id``, ``start`` (and ``frames`` if they were cached).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from av_lightning.data.clips import ClipDataset, ClipRecord, ClipSpec, ResumableFit, resolve_path
from av_lightning.data.folders import VIDEO_EXTENSIONS, FolderError, MediaPair, pair_videos, sidecar_audio
from av_lightning.data.manifest import SPLIT_ALIASES, read_manifest, stable_rank
from av_lightning.data.probing import ProbeCache, check_audio, check_video


class AudioVideoDataModule(ResumableFit, pl.LightningDataModule):
    """Clips of F frames and their audio from the official layout (module docstring).

    Args:
        root: dataset folder.
        manifest: CSV path (relative to ``root`` or absolute); default ``root/<default_manifest>``.
        fps: output frame rate (Hz).
        num_frames: F, frames per clip.
        size: frame size: int (short side, square centre crop), ``[H, W]``, or None (native;
            only with batch_size 1 or equal-sized videos).
        batch_size: clips per batch.
        num_workers: DataLoader workers.
        classes: keep only these classes (None: all).
        sample_rate: audio rate (Hz).
        seed: seeds random training starts and the sampler's shuffle.
        cache_dir: feature cache folder (:mod:`av_lightning.data.cache`); None decodes files.
        cache_splits: splits served from the cache.
        val_size: validation subset of the training rows: a fraction if < 1, else a count.
        name_pattern: file stem from a CSV row, ``str.format`` fields = CSV columns.
        video_dir, audio_dir: sub-folders of ``root`` (audio_dir None: audio from the video).
        video_ext, audio_ext: file extensions.
        min_clips_per_class: classes with fewer listed training clips are dropped everywhere.
        train_starts: None (continuous random starts) or K fixed candidate starts per file
            (required by the cache; 1 is used when ``cache_dir`` is set and this is None).
        eval_start: ``"middle"`` or ``"start"``: the fixed start of val/test clips.
        buckets: optional ``[[H, W], ...]`` aspect buckets (needs batch_size 1 or bucketed data).
        log_dir: where ``skipped.csv`` goes (default: trainer log dir, else ``root``).
        drop_last: drop the last incomplete training batch.
        probe_cache: remember probe results in ``probe_cache.json`` (in ``cache_dir``, else
            ``root``), keyed by each file's size and mtime, so later runs do not re-probe.
    """

    default_manifest: str = "metadata.csv"
    default_name_pattern: str = "{ytid}"

    def __init__(
        self,
        root: str,
        manifest: str | None = None,
        fps: float = 24.0,
        num_frames: int = 24,
        size: int | tuple[int, int] | None = 384,
        batch_size: int = 8,
        num_workers: int = 4,
        classes: list[str] | None = None,
        sample_rate: int = 16000,
        seed: int = 0,
        cache_dir: str | None = None,
        cache_splits: Sequence[str] = ("train", "val"),
        val_size: float = 0.02,
        name_pattern: str | None = None,
        video_dir: str = "video",
        audio_dir: str | None = "audio",
        video_ext: str = ".mp4",
        audio_ext: str = ".wav",
        min_clips_per_class: int = 0,
        train_starts: int | None = None,
        eval_start: str = "middle",
        buckets: list[tuple[int, int]] | None = None,
        log_dir: str | None = None,
        drop_last: bool = True,
        probe_cache: bool = True,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.manifest = resolve_path(root, manifest or self.default_manifest)
        self.spec = ClipSpec(
            num_frames=num_frames,
            fps=float(fps),
            size=tuple(size) if isinstance(size, (list, tuple)) else size,
            sample_rate=sample_rate,
            buckets=tuple(tuple(b) for b in buckets) if buckets else None,
        )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.classes = list(classes) if classes else None
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache_splits = tuple(cache_splits)
        self.val_size = val_size
        self.name_pattern = name_pattern or self.default_name_pattern
        self.video_dir, self.audio_dir = video_dir, audio_dir
        self.video_ext, self.audio_ext = video_ext, audio_ext
        self.min_clips_per_class = min_clips_per_class
        self.train_starts = train_starts if train_starts is not None or cache_dir is None else 1
        if eval_start not in ("middle", "start"):
            raise ValueError(f"eval_start must be 'middle' or 'start', got {eval_start!r}")
        self.eval_start = eval_start
        self.log_dir = log_dir
        self.drop_last = drop_last
        self.probe_cache = probe_cache
        self.records: dict[str, list[ClipRecord]] = {}
        self.skipped: list[dict] = []
        self._cache_settings: dict | None = None  # the features the reader needs (expect_cache)
        self._datasets: dict[str, Dataset] = {}

    # ---------------------------------------------------------------- listing

    def list_records(self) -> list[ClipRecord]:
        """Every listed file with its split and label (before probing)."""
        rows = read_manifest(self.manifest)
        out = []
        for row in rows:
            try:
                name = self.name_pattern.format(**row)
            except (KeyError, ValueError, IndexError) as exc:
                raise ValueError(
                    f"name_pattern {self.name_pattern!r} does not fit manifest {self.manifest} row {row}: {exc}"
                ) from exc
            video = self.root / self.video_dir / f"{name}{self.video_ext}"
            audio = self.root / self.audio_dir / f"{name}{self.audio_ext}" if self.audio_dir else None
            out.append(
                ClipRecord(
                    id=name,
                    video=str(video),
                    audio=str(audio) if audio is not None and audio.is_file() else str(video),
                    label=row["class"],
                    split=row["set"],
                    extra=row,
                )
            )
        return out

    def select(self, records: list[ClipRecord]) -> list[ClipRecord]:
        """Class selection: ``classes`` and ``min_clips_per_class`` (counted on training rows)."""
        if self.classes is not None:
            wanted = set(self.classes)
            unknown = wanted - {r.label for r in records}
            if unknown:
                rank_zero_warn(f"classes not in {self.manifest}: {sorted(unknown)}")
            records = [r for r in records if r.label in wanted]
        if self.min_clips_per_class > 0:
            counts = Counter(r.label for r in records if r.split == "train")
            dropped = sorted(c for c in {r.label for r in records} if counts[c] < self.min_clips_per_class)
            if dropped:
                rank_zero_info(
                    f"dropping {len(dropped)} classes with fewer than {self.min_clips_per_class} training clips"
                )
                records = [r for r in records if r.label not in set(dropped)]
        return records

    def split(self, records: list[ClipRecord]) -> dict[str, list[ClipRecord]]:
        """train / val / test lists (module docstring for the validation rule)."""
        splits: dict[str, list[ClipRecord]] = {"train": [], "val": [], "test": []}
        for r in records:
            if r.split not in splits:
                raise ValueError(f"{self.manifest}: clip {r.id} has set {r.split!r}; expected train/val/test")
            splits[r.split].append(r)
        if not splits["val"] and splits["train"] and self.val_size > 0:
            n = len(splits["train"])
            n_val = int(self.val_size) if self.val_size >= 1 else max(1, round(self.val_size * n))
            n_val = min(n_val, n - 1)
            chosen = {r.id for r in sorted(splits["train"], key=lambda r: stable_rank(r.id))[:n_val]}
            splits["val"] = [r for r in splits["train"] if r.id in chosen]
            splits["train"] = [r for r in splits["train"] if r.id not in chosen]
            for r in splits["val"]:
                r.split = "val"
        return splits

    # ---------------------------------------------------------------- probing

    #: How :mod:`~av_lightning.data.probing`'s problems read in ``skipped.csv``.
    REASONS = {"missing": "missing", "undecodable": "decode error", "no video": "decode error",
               "no audio": "no audio", "non-finite audio": "non-finite audio", "too short": "too short"}

    def check(self, record: ClipRecord) -> tuple[str, str] | None:
        """Probe one listed file; ``None`` when usable (``record.duration`` is set), else (reason, detail)."""
        need = self.spec.duration
        problem, info = check_video(record.video, need)
        if problem is None:
            own = record.audio == record.video
            problem, audio_seconds = check_audio(record.audio, need, info if own else None)
        if problem is not None:
            return self.REASONS[problem.kind], problem.detail
        video_seconds = info.video_duration if info.video_duration is not None else info.duration
        record.duration = min(video_seconds, audio_seconds)
        return None

    def _probe(self, records: list[ClipRecord], what: str) -> list[ClipRecord]:
        """Probe ``records`` (threads; results reused from ``probe_cache.json`` for unchanged files)."""
        path = (self.cache_dir or self.root) / "probe_cache.json" if self.probe_cache else None
        cache = ProbeCache(path, f"{self.spec.num_frames}/{self.spec.fps}")

        def one(r: ClipRecord) -> tuple[str, str] | None:
            files = [r.video, r.audio]
            hit = cache.get(files)
            if hit is not None:
                r.duration = hit[0]
                return tuple(hit[1]) if hit[1] else None
            problem = self.check(r)
            cache.put(files, [r.duration, list(problem) if problem else None])
            return problem

        kept = []
        with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
            results = pool.map(one, records)
            for r, problem in zip(records, tqdm(results, total=len(records), desc=f"probing {what}", unit="file",
                                                disable=len(records) < 50)):
                if problem is None:
                    kept.append(r)
                else:
                    self.skipped.append({"id": r.id, "split": r.split, "reason": problem[0],
                                         "video": r.video, "audio": r.audio, "detail": problem[1]})
        cache.save()
        return kept

    def _report_dir(self) -> Path:
        if self.log_dir:
            return Path(self.log_dir)
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.log_dir:
            return Path(trainer.log_dir)
        return self.root

    def _report(self, listed: dict[str, int]) -> None:
        """One line for the splits just set up (``listed``: split -> listed clips); ``skipped.csv``
        lists every skipped clip of every split set up so far."""
        names = ", ".join(listed)
        total = sum(listed.values())
        new = [s for s in self.skipped if s["split"] in listed]
        if not new:
            rank_zero_info(f"{type(self).__name__}: all {total} listed clips of the {names} split(s) are usable")
            return
        counts = Counter(s["reason"] for s in new)
        where = self._report_dir() / "skipped.csv"
        if rank_zero_only.rank == 0:
            try:
                where.parent.mkdir(parents=True, exist_ok=True)
                self._write_skipped(where)
            except OSError:
                where = Path.cwd() / "skipped.csv"
                self._write_skipped(where)
        parts = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
        per_split = "; ".join(f"{name} {sum(s['split'] == name for s in new)} of {n}" for name, n in listed.items())
        if rank_zero_only.rank == 0:
            print(f"{type(self).__name__}: skipped {len(new)} of {total}: {parts} ({per_split}) — see {where}")
        self.skipped_csv = where

    def _write_skipped(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "split", "reason", "video", "audio", "detail"])
            writer.writeheader()
            writer.writerows(self.skipped)

    # ---------------------------------------------------------------- Lightning hooks

    @staticmethod
    def stage_splits(stage: str | None) -> tuple[str, ...]:
        return {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                "predict": ("test",)}.get(stage or "", ("train", "val", "test"))

    def setup(self, stage: str | None = None) -> None:
        """List, select, split and probe the files the stage needs; build the datasets."""
        wanted = [s for s in self.stage_splits(stage) if s not in self.records]
        if not wanted:
            return
        splits = self.split(self.select(self.list_records()))
        self.skipped = [s for s in self.skipped if s["split"] not in wanted]
        for name in wanted:
            self.records[name] = self._probe(splits[name], name)
        self._report({name: len(splits[name]) for name in wanted})
        for name in wanted:
            if name == "val" and not splits["val"] and self.val_size == 0:
                continue  # validation switched off: val_dataloader() returns []
            if not self.records[name]:
                n_listed = len(splits[name])
                why = f"all {n_listed} listed clips were skipped, see skipped.csv" if n_listed else "no clip listed after class selection"
                raise ValueError(
                    f"{type(self).__name__}: the {name} split is empty ({why}; manifest {self.manifest}); "
                    f"check root={self.root}, name_pattern={self.name_pattern!r}, classes and min_clips_per_class"
                )
            self._datasets.pop(name, None)  # built on first use by dataset(name)

    def expect_cache(self, feature_settings: dict) -> None:
        """Say which features the batches must carry (``model.feature_settings()``): the cached splits
        are then served from the cache built with exactly those settings, or fail naming the
        difference. ``AudioToVideo.setup`` calls it; without a call the only cache whose clip settings
        match is used, with a warning."""
        self._cache_settings = feature_settings
        self._datasets = {k: v for k, v in self._datasets.items() if k not in self.cache_splits}

    def make_dataset(self, name: str, use_cache: bool = True) -> Dataset:
        """The dataset of split ``name`` (cached features when ``cache_dir`` is set)."""
        records = self.records[name]
        if use_cache and self.cache_dir is not None and name in self.cache_splits:
            from av_lightning.data.cache import CachedClipDataset, open_cache

            folder = open_cache(self.cache_dir, self.clip_settings(), self._cache_settings)
            return CachedClipDataset(records, folder, name, self.dataset_kwargs(name))
        return ClipDataset(records, self.spec, **self.dataset_kwargs(name))

    def dataset_kwargs(self, name: str) -> dict:
        return {"train": name == "train", "seed": self.seed, "train_starts": self.train_starts,
                "eval_start": self.eval_start}

    def clip_settings(self) -> dict:
        """Everything about clip extraction that the feature cache depends on."""
        return {**self.spec.settings(), "seed": self.seed, "train_starts": self.train_starts,
                "eval_start": self.eval_start}

    def dataset(self, name: str) -> Dataset:
        """The dataset of split ``name`` (built on first use; cached features when configured)."""
        if name not in self.records:
            raise RuntimeError(f"the {name} split is not set up; call setup() with the matching stage first")
        if name not in self._datasets:
            self._datasets[name] = self.make_dataset(name)
        return self._datasets[name]

    def _loader(self, name: str, train: bool) -> DataLoader:
        ds = self.dataset(name)
        sampler = self.train_sampler(ds, self.seed, self.batch_size) if train else None
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            drop_last=train and self.drop_last and len(ds) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        if "val" in self.records and not self.records["val"] and self.val_size == 0:
            return []  # no validation split (val_size=0)
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class VGGSoundDataModule(AudioVideoDataModule):
    """VGGSound (files ``video/{ytid}_{start_time:06d}.mp4``, CSV ``vggsound.csv`` without header).

    Extra args:
        filter_csv: output of ``av-lightning filter-vggsound`` (:mod:`av_lightning.data.filtering`);
            rows of ``filter_splits`` are kept only when the filter marked them ``keep``.
        filter_threshold: re-threshold the filter's ``similarity`` instead of its ``keep`` column.
        filter_splits: splits the filter applies to.
        min_clips_per_class: default 120 (classes with fewer training clips are dropped).
    """

    default_manifest = "vggsound.csv"
    default_name_pattern = "{ytid}_{start_time:06d}"

    def __init__(
        self,
        root: str,
        manifest: str | None = None,
        filter_csv: str | None = None,
        filter_threshold: float | None = None,
        filter_splits: Sequence[str] = ("train", "val", "test"),
        min_clips_per_class: int = 120,
        **kwargs,
    ) -> None:
        super().__init__(root, manifest=manifest, min_clips_per_class=min_clips_per_class, **kwargs)
        self.filter_csv = resolve_path(root, filter_csv) if filter_csv else None
        self.filter_threshold = filter_threshold
        self.filter_splits = tuple(filter_splits)

    def select(self, records: list[ClipRecord]) -> list[ClipRecord]:
        if self.filter_csv is not None:
            from av_lightning.data.filtering import read_filter_csv

            kept = read_filter_csv(self.filter_csv, self.filter_threshold)
            before = len(records)
            records = [r for r in records if r.split not in self.filter_splits or r.id in kept]
            rank_zero_info(f"VGGSound filter {self.filter_csv}: kept {len(records)} of {before} listed clips")
        return super().select(records)


class FolderDataModule(AudioVideoDataModule):
    """Any folder of videos with their own audio.

    Labels and splits:
    - with ``manifest`` (a CSV ``path,class,set`` — or the official columns, ``ytid`` then being
      the path relative to ``root`` without or with extension): as listed;
    - otherwise every video under ``root`` (recursively, :data:`VIDEO_EXTENSIONS`); a first
      folder named train/val/test gives the split, the folder holding the file gives the label
      (``default_label`` for files directly in ``root`` or a split folder), and files outside
      split folders go to test when the SHA-1 of their path falls in ``test_fraction``.
    A ``.wav`` next to a video with the same stem is used as its audio.
    """

    def __init__(
        self,
        root: str,
        manifest: str | None = None,
        default_label: str = "",
        test_fraction: float = 0.1,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        **kwargs,
    ) -> None:
        kwargs.setdefault("audio_dir", None)
        kwargs.setdefault("video_dir", ".")
        super().__init__(root, manifest=manifest or "", **kwargs)
        self.has_manifest = bool(manifest)
        self.default_label = default_label
        self.test_fraction = test_fraction
        self.extensions = tuple(e.lower() for e in extensions)

    def _record(self, pair: MediaPair, label: str, split: str) -> ClipRecord:
        return ClipRecord(id=pair.name, video=str(pair.video), audio=str(pair.audio), label=label, split=split)

    def list_records(self) -> list[ClipRecord]:
        if self.has_manifest:
            out = []
            for row in read_manifest(self.manifest):
                video = resolve_path(self.root, row["ytid"])
                if not video.suffix:
                    video = video.with_suffix(self.video_ext)
                rel = video.relative_to(self.root) if video.is_relative_to(self.root) else video
                out.append(self._record(MediaPair(str(rel.with_suffix("")), video, sidecar_audio(video)),
                                        row["class"], row["set"]))
            return out
        try:
            pairs = pair_videos(self.root, self.extensions, recursive=True)
        except FolderError as exc:
            raise FileNotFoundError(f"FolderDataModule: root {exc}") from exc
        out = []
        for pair in pairs:
            parts = pair.video.relative_to(self.root).parts
            split = SPLIT_ALIASES.get(parts[0].lower()) if len(parts) > 1 else None
            folders = parts[1:-1] if split else parts[:-1]
            label = folders[-1] if folders else self.default_label
            if split is None:
                split = "test" if int(stable_rank(str(Path(*parts)))[:8], 16) / 16**8 < self.test_fraction else "train"
            out.append(self._record(pair, label, split))
        if not out:
            raise ValueError(f"FolderDataModule: no videos with extensions {self.extensions} under {self.root}")
        return out
