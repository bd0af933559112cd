"""A folder of existing videos as test batches, to score them with no generation.

``lightning test --config configs/eval_folder.yaml --data.init_args.fake_dir=DIR`` reads every
``DIR/NAME.mp4`` (and, with ``real_dir``, the real ``REAL/NAME.mp4`` of the same name) and feeds
the clips to :class:`~av_lightning.evaluate.ScoreVideos`. Videos made by any method can be scored
this way.

Layout::

    FAKE/NAME.mp4     the clips to score (required)
    FAKE/NAME.wav     their audio (optional; else REAL/NAME.wav, else the mp4's own audio stream,
                      else the real mp4's)
    REAL/NAME.mp4     the matching real clip (optional; FVD's reference set)
    labels.csv        optional ``name,label`` rows (CLIPSIM's class texts), header optional

Clips are the first ``num_frames`` frames at ``fps`` from t = 0 and the audio over the same span at
``sample_rate`` (:mod:`av_lightning.data.io`). Files are paired by :mod:`~av_lightning.data.folders`
and checked by :mod:`~av_lightning.data.probing`, each file probed once.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from av_lightning.data.folders import FolderError, pair_videos
from av_lightning.data.io import Size, read_audio, read_frames
from av_lightning.data.probing import check_audio, check_video


@dataclass(frozen=True)
class FolderClip:
    """One scored clip: its name and files (``real`` None without ``real_dir``)."""

    name: str
    fake: Path
    real: Path | None
    audio: Path | None
    label: str | None


class VideoFolderDataset(Dataset):
    """Decodes :class:`FolderClip` s into the batch of :class:`VideoFolderDataModule`."""

    def __init__(self, clips: Sequence[FolderClip], num_frames: int, fps: float, size: Size, sample_rate: int):
        self.clips = list(clips)
        self.num_frames, self.fps, self.size, self.sample_rate = num_frames, fps, size, sample_rate

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        c = self.clips[i]
        item = {"generated": read_frames(c.fake, 0.0, self.num_frames, self.fps, self.size), "id": c.name}
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
        size: frame size policy of :func:`~av_lightning.data.io.read_frames` (int: short side then
            centre crop; ``[H, W]``; None: as stored, which must then be the same for every file).
        sample_rate: audio rate (Hz).
        batch_size / num_workers: DataLoader settings (``num_workers`` threads also probe files).
        labels_csv: optional ``name,label`` CSV; clips missing from it are skipped.
        audio: load audio (AV-Align needs it); False scores silent videos with video-only metrics.

    Batches: ``generated`` uint8 ``(B, F, 3, H, W)`` (the clips to score), ``frames`` (the real
    clips, with ``real_dir``) uint8 ``(B, F, 3, H', W')``, ``audio`` float32 ``(B, S)`` with
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

    # -- listing and probing ------------------------------------------------------------------
    def _candidates(self) -> list[FolderClip]:
        if not self.fake_dir.is_dir():
            raise FileNotFoundError(f"fake_dir {self.fake_dir} is not a folder; pass --data.init_args.fake_dir=DIR")
        if self.real_dir is not None and not self.real_dir.is_dir():
            raise FileNotFoundError(f"real_dir {self.real_dir} is not a folder; fix the path or leave it out")
        try:
            pairs = pair_videos(self.fake_dir, (".mp4",), audio_dirs=[self.real_dir] if self.real_dir else ())
        except FolderError as exc:
            raise FileNotFoundError(f"fake_dir {exc}") from exc
        if not pairs:
            raise FileNotFoundError(f"fake_dir {self.fake_dir} holds no .mp4 file to score")
        labels = read_labels(self.hparams.labels_csv) if self.hparams.labels_csv else None
        return [FolderClip(p.name, p.video, self.real_dir / f"{p.name}.mp4" if self.real_dir is not None else None,
                           p.audio if self.hparams.audio else None, labels.get(p.name) if labels is not None else None)
                for p in pairs]

    def _check(self, clip: FolderClip, need: float) -> tuple[FolderClip, str | None, dict]:
        """``(clip with its audio settled, why it cannot be scored or None, {"fake"|"real": (H, W)})``."""
        if self.hparams.labels_csv and clip.label is None:
            return clip, "no label in labels_csv", {}
        sizes, infos = {}, {}
        for what, path in (("fake", clip.fake), ("real", clip.real)):
            if path is None:
                continue
            if what == "real" and not path.is_file():
                return clip, "no real video", sizes
            problem, info = check_video(path, need)
            if problem is not None:
                text = {"no video": "has no video stream", "too short": f"shorter than {self.num_frames} frames"}
                return clip, f"{what} video {text.get(problem.kind, 'does not decode')}", sizes
            sizes[what], infos[path] = info.size, info
        if clip.audio is None:
            return clip, None, sizes
        audio = clip.audio
        if audio == clip.fake and not infos[audio].has_audio and clip.real is not None and infos[clip.real].has_audio:
            audio = clip.real  # no wav and a silent fake mp4: the real mp4's sound
        clip = FolderClip(clip.name, clip.fake, clip.real, audio, clip.label)
        problem, _ = check_audio(audio, need, infos.get(audio))
        if problem is None:
            return clip, None, sizes
        if problem.kind == "no audio":
            where = "fake or real mp4" if clip.real is not None else "mp4"
            return clip, f"no audio (no NAME.wav and no audio stream in the {where})", sizes
        if problem.kind == "too short":
            return clip, "audio shorter than the clip", sizes
        return clip, "non-finite audio" if problem.kind == "non-finite audio" else "audio does not decode", sizes

    def setup(self, stage: str | None = None) -> None:
        if self.clips:
            return
        candidates = self._candidates()
        need = self.num_frames / self.fps
        with ThreadPoolExecutor(max(1, self.hparams.num_workers)) as pool:
            checked = list(pool.map(lambda c: self._check(c, need), candidates))
        self.listed = len(candidates)
        self.clips = [c for c, problem, _ in checked if problem is None]
        self.skipped = [(c.name, problem) for c, problem, _ in checked if problem is not None]
        if self.size is None:
            self._check_sizes({c.name: sizes for c, problem, sizes in checked if problem is None})
        if self.skipped:
            counts = Counter(reason for _, reason in self.skipped)
            parts = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
            first = ", ".join(name for name, _ in self.skipped[:5])
            rank_zero_info(f"VideoFolderDataModule: skipped {len(self.skipped)} of {self.listed} clips in "
                           f"{self.fake_dir}: {parts} (first: {first})")
        if not self.clips:
            raise RuntimeError(f"no usable clip in {self.fake_dir}: all {self.listed} were skipped ({self.skipped[:3]} ...)")

    def _check_sizes(self, sizes: dict[str, dict]) -> None:
        """With ``size=None`` every kept clip must have one size per side, or batches cannot form."""
        for what in ("fake", "real"):
            seen: dict[tuple[int, int], str] = {}
            for name, by_side in sizes.items():
                if what in by_side:
                    seen.setdefault(by_side[what], name)
            if len(seen) > 1:
                (s1, n1), (s2, n2) = list(seen.items())[:2]
                raise ValueError(f"{what} videos differ in size ({n1}.mp4: {s1}, {n2}.mp4: {s2}); set "
                                 "--data.init_args.size (e.g. 256) so that clips can be batched")

    # -- loading ------------------------------------------------------------------------------
    def test_dataloader(self) -> DataLoader:
        ds = VideoFolderDataset(self.clips, self.num_frames, self.fps, self.size, self.sample_rate)
        return DataLoader(ds, batch_size=self.hparams.batch_size, shuffle=False, num_workers=self.hparams.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
