"""Score a folder of existing videos with the test metrics, with no generation.

``lightning test --config configs/eval_folder.yaml --data.init_args.fake_dir=DIR`` reads every
``DIR/NAME.mp4`` (and, with ``real_dir``, the real ``REAL/NAME.mp4`` of the same name), feeds the
clips to the metrics through the same ``update_from_clips`` call that
:class:`~av_lightning.module.AudioToVideo` uses after generating, and logs ``test/<key>`` for
every scalar the metrics return. Videos made by any method can be scored this way.

Layout::

    FAKE/NAME.mp4     the clips to score (required)
    FAKE/NAME.wav     their audio (optional; else REAL/NAME.wav, else the mp4's own audio stream)
    REAL/NAME.mp4     the matching real clip (optional; FVD's reference set)
    labels.csv        optional ``name,label`` rows (CLIPSIM's class texts), header optional

Clips are the first ``num_frames`` frames at ``fps`` from t = 0 (:func:`~.data.io.read_frames`)
and the audio over the same span at ``sample_rate`` (:func:`~.data.io.read_audio`).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader, Dataset

from av_lightning.data.io import MediaError, Size, probe, read_audio, read_frames

#: AAC streams may end a few ms early; read_audio zero-pads up to this much (seconds).
_AUDIO_SLACK = 0.025


@dataclass(frozen=True)
class FolderClip:
    """One scored clip: its name and files (``real`` None without ``real_dir``)."""

    name: str
    fake: Path
    real: Path | None
    audio: Path | None
    label: str | None


class VideoFolderDataset(Dataset):
    """Decodes :class:`FolderClip` s into the batch contract of :class:`VideoFolderDataModule`."""

    def __init__(self, clips: Sequence[FolderClip], num_frames: int, fps: float, size: Size, sample_rate: int):
        self.clips = list(clips)
        self.num_frames, self.fps, self.size, self.sample_rate = num_frames, fps, size, sample_rate

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        c = self.clips[i]
        item = {"fake": read_frames(c.fake, 0.0, self.num_frames, self.fps, self.size), "id": c.name}
        if c.real is not None:
            item["frames"] = read_frames(c.real, 0.0, self.num_frames, self.fps, self.size)
        if c.audio is not None:
            samples = round(self.num_frames / self.fps * self.sample_rate)
            item["audio"] = read_audio(c.audio, 0.0, samples, self.sample_rate)
        if c.label is not None:
            item["label"] = c.label
        return item


def read_labels(path: str | Path) -> dict[str, str]:
    """``name -> label`` from a ``name,label`` CSV (a first row ``name,label`` is a header)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels_csv {path} not found; give a CSV of name,label rows or leave it out")
    labels: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f)):
            if not row or (n == 0 and [x.strip().lower() for x in row[:2]] == ["name", "label"]):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}, row {n + 1}: expected name,label, got {row}")
            labels[Path(row[0].strip()).stem] = row[1].strip()
    return labels


class VideoFolderDataModule(pl.LightningDataModule):
    """Test batches from a folder of videos (and optionally their real counterparts).

    Args:
        fake_dir: folder of ``NAME.mp4`` clips to score.
        real_dir: folder of real ``NAME.mp4`` clips with the same names, or None.
        num_frames: F, frames per clip (from t = 0).
        fps: frame rate the clips are read at (Hz; frames are resampled to it).
        size: frame size policy of :func:`~.data.io.read_frames` (int: short side then centre
            crop; ``[H, W]``; None: as stored, which must then be the same for every file).
        sample_rate: audio rate (Hz).
        batch_size / num_workers: DataLoader settings (``num_workers`` threads also probe files).
        labels_csv: optional ``name,label`` CSV; clips missing from it are skipped.
        audio: load audio (AV-Align needs it); False scores silent videos with video-only metrics.

    Batches: ``fake`` uint8 ``(B, F, 3, H, W)``, ``frames`` (the real clips, with ``real_dir``)
    uint8 ``(B, F, 3, H', W')``, ``audio`` float32 ``(B, S)`` with
    ``S = round(F / fps * sample_rate)``, ``label`` list[str] (with ``labels_csv``), ``id``
    list[str].

    ``setup`` probes every file once and skips, with one summary line (``self.skipped`` lists
    ``(name, reason)``), clips that do not decode, are shorter than F frames, lack a real
    counterpart, audio or label. Nothing is substituted; a clip that still fails when read raises
    with its file name. A folder with no mp4, or with no usable clip, is an error.
    """

    def __init__(
        self,
        fake_dir: str,
        real_dir: str | None = None,
        num_frames: int = 16,
        fps: float = 24.0,
        size: int | list[int] | None = None,
        sample_rate: int = 16000,
        batch_size: int = 8,
        num_workers: int = 0,
        labels_csv: str | None = None,
        audio: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.fake_dir = Path(fake_dir)
        self.real_dir = Path(real_dir) if real_dir else None
        self.num_frames, self.fps, self.sample_rate = num_frames, fps, sample_rate
        self.size = size
        self.clips: list[FolderClip] = []
        self.skipped: list[tuple[str, str]] = []
        self.listed = 0

    # -- listing --------------------------------------------------------------------------------
    def _candidates(self) -> list[FolderClip]:
        if not self.fake_dir.is_dir():
            raise FileNotFoundError(f"fake_dir {self.fake_dir} is not a folder; pass --data.init_args.fake_dir=DIR")
        if self.real_dir is not None and not self.real_dir.is_dir():
            raise FileNotFoundError(f"real_dir {self.real_dir} is not a folder; fix the path or leave it out")
        videos = sorted(self.fake_dir.glob("*.mp4"))
        if not videos:
            raise FileNotFoundError(f"fake_dir {self.fake_dir} holds no .mp4 file to score")
        labels = read_labels(self.hparams.labels_csv) if self.hparams.labels_csv else None
        out = []
        for video in videos:
            name = video.stem
            real = self.real_dir / f"{name}.mp4" if self.real_dir is not None else None
            audio = None
            if self.hparams.audio:
                wavs = [d / f"{name}.wav" for d in (self.fake_dir, self.real_dir) if d is not None]
                audio = next((w for w in wavs if w.is_file()), video)
            label = labels.get(name) if labels is not None else None
            out.append(FolderClip(name, video, real, audio, label))
        return out

    def _problem(self, clip: FolderClip, need: float) -> str | None:
        """Why ``clip`` cannot be scored (a short reason), or None."""
        if self.hparams.labels_csv and clip.label is None:
            return "no label in labels_csv"
        files = [("fake", clip.fake)] + ([("real", clip.real)] if clip.real is not None else [])
        for what, path in files:
            if what == "real" and not path.is_file():
                return "no real video"
            try:
                info = probe(path)
            except MediaError:
                return f"{what} video does not decode"
            if info.size is None:
                return f"{what} file has no video stream"
            if info.video_duration is not None and info.video_duration + 1e-3 < need:
                return f"{what} video shorter than {self.num_frames} frames"
            self._sizes[(what, clip.name)] = info.size
        if clip.audio is not None:
            try:
                ainfo = probe(clip.audio)
            except MediaError:
                return "audio does not decode"
            if not ainfo.has_audio:
                where = "fake or real mp4" if clip.real is not None else "mp4"
                return f"no audio (no NAME.wav and no audio stream in the {where})"
            if ainfo.audio_duration is not None and ainfo.audio_duration + _AUDIO_SLACK < need:
                return "audio shorter than the clip"
        return None

    def setup(self, stage: str | None = None) -> None:
        if self.clips:
            return
        candidates = self._candidates()
        need = self.num_frames / self.fps
        self._sizes: dict[tuple[str, str], tuple[int, int]] = {}  # (fake|real, name) -> (H, W)
        with ThreadPoolExecutor(max(1, self.hparams.num_workers)) as pool:
            candidates = list(pool.map(self._with_mp4_audio, candidates))
            problems = list(pool.map(lambda c: self._problem(c, need), candidates))
        self.listed = len(candidates)
        self.clips = [c for c, p in zip(candidates, problems) if p is None]
        self.skipped = [(c.name, p) for c, p in zip(candidates, problems) if p is not None]
        if self.size is None:
            self._check_sizes()
        if self.skipped:
            counts = Counter(reason for _, reason in self.skipped)
            parts = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
            first = ", ".join(name for name, _ in self.skipped[:5])
            rank_zero_info(f"VideoFolderDataModule: skipped {len(self.skipped)} of {self.listed} clips in "
                           f"{self.fake_dir}: {parts} (first: {first})")
        if not self.clips:
            raise RuntimeError(f"no usable clip in {self.fake_dir}: all {self.listed} were skipped ({self.skipped[:3]} ...)")

    def _check_sizes(self) -> None:
        """With ``size=None`` every kept clip must have one size per side, or batches cannot form."""
        for what in ("fake", "real"):
            seen: dict[tuple[int, int], str] = {}
            for c in self.clips:
                if (what, c.name) in self._sizes:
                    seen.setdefault(self._sizes[(what, c.name)], c.name)
            if len(seen) > 1:
                (s1, n1), (s2, n2) = list(seen.items())[:2]
                raise ValueError(f"{what} videos differ in size ({n1}.mp4: {s1}, {n2}.mp4: {s2}); set "
                                 "--data.init_args.size (e.g. 256) so that clips can be batched")

    def _with_mp4_audio(self, clip: FolderClip) -> FolderClip:
        """Without a wav, prefer the fake mp4's own audio, else the real mp4's."""
        if clip.audio is None or clip.audio.suffix != ".mp4":
            return clip
        for path in (clip.fake, clip.real):
            if path is None or not path.is_file():
                continue
            try:
                if probe(path, decode_check=False).has_audio:
                    return FolderClip(clip.name, clip.fake, clip.real, path, clip.label)
            except MediaError:
                continue
        return clip

    # -- loading --------------------------------------------------------------------------------
    def test_dataloader(self) -> DataLoader:
        ds = VideoFolderDataset(self.clips, self.num_frames, self.fps, self.size, self.sample_rate)
        return DataLoader(ds, batch_size=self.hparams.batch_size, shuffle=False, num_workers=self.hparams.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def compute_metrics(metrics: Sequence[nn.Module], reset: bool = True) -> dict[str, torch.Tensor]:
    """Every scalar the metrics compute, as ``{key: scalar tensor}`` (then reset them).

    A metric returning a dict contributes its scalar entries (``is_mean``, ``av_align``, ...); one
    returning a single value contributes it under its class name (``FVD``, ``CLIPSIM``). A key
    already taken by an earlier metric (e.g. AV-Align in paper and in reference mode) gets the
    metric's index in ``metrics`` appended, ``av_align_1``: logging it twice would make
    Lightning report the mean of the two.
    """
    results: dict[str, torch.Tensor] = {}
    for i, metric in enumerate(metrics):
        value = metric.compute()
        items = value.items() if isinstance(value, dict) else [(type(metric).__name__, value)]
        for key, v in items:
            if torch.is_tensor(v) and v.numel() == 1:
                results[f"{key}_{i}" if key in results else key] = v.reshape(())
        if reset:
            metric.reset()
    return results


class ScoreVideos(pl.LightningModule):
    """Runs metrics over existing clips (``fake``, and ``frames`` as the real set) in ``lightning test``.

    Args:
        metrics: metrics with ``update_from_clips`` (``av_lightning.metrics``).
        num_frames / fps / sample_rate: the clip geometry (linked from the data by the CLI);
            ``fps`` and ``sample_rate`` are passed to the metrics.
        report: write the results here at the end of the test epoch: Markdown for ``*.md``,
            JSON otherwise (float64 values, clip and skip counts).

    Nothing trains: ``lightning test`` runs it without a checkpoint. Keys are those of
    :func:`compute_metrics` (a repeated key gets the metric's index appended).
    """

    def __init__(
        self,
        metrics: Sequence[nn.Module],
        num_frames: int = 16,
        fps: float = 24.0,
        sample_rate: int = 16000,
        report: str | None = None,
    ):
        super().__init__()
        if not metrics:
            raise ValueError("ScoreVideos needs at least one metric (model.init_args.metrics)")
        self.save_hyperparameters(ignore=["metrics"])
        self.metrics = nn.ModuleList(metrics)
        self.results: dict[str, float] = {}
        self._clips = 0

    def configure_optimizers(self):
        return None

    def test_step(self, batch: dict, batch_idx: int) -> None:
        fake = batch["fake"]
        if fake.shape[1] != self.hparams.num_frames:
            raise ValueError(f"batch['fake'] has {fake.shape[1]} frames, ScoreVideos is set to num_frames={self.hparams.num_frames}")
        for metric in self.metrics:
            metric.update_from_clips(fake=fake, real=batch.get("frames"), audio=batch.get("audio"),
                                     texts=batch.get("label"), fps=self.hparams.fps,
                                     sample_rate=self.hparams.sample_rate)
        self._clips += fake.shape[0]

    def on_test_epoch_end(self) -> None:
        results = compute_metrics(self.metrics)
        for key, value in results.items():
            # Metrics already synchronise their states across processes in compute().
            self.log(f"test/{key}", value.float(), sync_dist=False)
        self.results = {k: float(v) for k, v in results.items()}
        if self.hparams.report and self.trainer.is_global_zero:
            self.write_report(self.hparams.report)
        self._clips = 0

    def write_report(self, path: str) -> Path:
        """Write :attr:`results` with the data's folders and counts (Markdown or JSON)."""
        dm = getattr(self.trainer, "datamodule", None)
        info = {
            "fake_dir": str(getattr(dm, "fake_dir", "")) or None,
            "real_dir": str(dm.real_dir) if getattr(dm, "real_dir", None) else None,
            "clips": self._clips,  # this process's count (all clips on one device)
            "skipped": len(getattr(dm, "skipped", [])),
            "num_frames": self.hparams.num_frames, "fps": self.hparams.fps, "sample_rate": self.hparams.sample_rate,
            "metrics": [type(m).__name__ for m in self.metrics],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".md":
            lines = ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {'nan' if math.isnan(v) else f'{v:.6g}'} |" for k, v in self.results.items()]
            lines += ["", ", ".join(f"{k}: {v}" for k, v in info.items())]
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_text(json.dumps({"results": self.results, **info}, indent=2) + "\n")
        rank_zero_info(f"ScoreVideos: wrote {path}")
        return path
