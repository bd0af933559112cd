"""A small in-memory synthetic audio-visual dataset for smoke runs (``configs/tiny.yaml``).

Each clip is a coloured square on a dark background that jumps a few pixels at random frames;
the audio has a short click at the start of each of those frames. Deterministic from a seed.
"""

from __future__ import annotations

from typing import Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from av_lightning.data.clips import ResumableFit

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}


def synthetic_clip(seed: int, num_frames: int, fps: float, size: int, sample_rate: int) -> dict:
    """One clip: ``frames`` uint8 (F, 3, H, W), ``audio`` float (S,), ``label``, ``events`` (frame ids)."""
    g = torch.Generator().manual_seed(seed)
    names = list(COLOURS)
    label = names[int(torch.randint(len(names), (1,), generator=g))]
    n_events = int(torch.randint(1, max(2, num_frames // 4), (1,), generator=g))
    events = sorted(set(torch.randint(1, num_frames, (n_events,), generator=g).tolist()))
    side = max(2, size // 4)
    x0, y0 = (int(v) for v in torch.randint(0, size - side - 2, (2,), generator=g))
    frames = torch.full((num_frames, 3, size, size), 16, dtype=torch.uint8)
    colour = torch.tensor(COLOURS[label], dtype=torch.uint8)[:, None, None]
    for f in range(num_frames):
        dy = 2 if f in events else (1 if f - 1 in events else 0)
        frames[f, :, y0 + dy : y0 + dy + side, x0 : x0 + side] = colour
    samples = round(num_frames / fps * sample_rate)
    audio = 0.01 * torch.randn(samples, generator=g)
    click = max(1, sample_rate // 100)
    for f in events:
        s = round(f / fps * sample_rate)
        audio[s : s + click] += 0.8 * torch.randn(min(click, samples - s), generator=g)
    return {"frames": frames, "audio": audio.clamp(-1, 1), "label": f"a {label} square", "events": events}


class SyntheticDataset(Dataset):
    def __init__(self, num_clips: int, seed: int, num_frames: int, fps: float, size: int, sample_rate: int):
        self.clips = [synthetic_clip(seed + i, num_frames, fps, size, sample_rate) for i in range(num_clips)]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int) -> dict:
        i = int(key) % len(self.clips)  # EpochSampler keys are epoch * len + index
        c = self.clips[i]
        return {"frames": c["frames"], "audio": c["audio"], "label": c["label"], "id": f"synthetic_{i:04d}",
                "start": 0.0}


class SyntheticDataModule(ResumableFit, pl.LightningDataModule):
    """In-memory synthetic clips; batches follow the project's batch contract.

    Args:
        num_train / num_val / num_test: clips per split.
        num_frames / fps / size / sample_rate: clip geometry (frames, Hz, pixels, Hz).
        batch_size: clips per batch.
        seed: base seed; splits use disjoint seeds.
    """

    def __init__(self, num_train: int = 16, num_val: int = 4, num_test: int = 4, num_frames: int = 8, fps: float = 8.0,
                 size: int = 16, sample_rate: int = 16000, batch_size: int = 4, seed: int = 0, num_workers: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.num_frames, self.fps, self.sample_rate = num_frames, fps, sample_rate
        self.splits: dict[str, SyntheticDataset] = {}

    def setup(self, stage: Optional[str] = None) -> None:
        h = self.hparams
        geo = (h.num_frames, h.fps, h.size, h.sample_rate)
        if not self.splits:
            self.splits = {
                "train": SyntheticDataset(h.num_train, h.seed, *geo),
                "val": SyntheticDataset(h.num_val, h.seed + 100_000, *geo),
                "test": SyntheticDataset(h.num_test, h.seed + 200_000, *geo),
            }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.splits[split]
        sampler = self.train_sampler(ds, self.hparams.seed, self.hparams.batch_size) if shuffle else None
        return DataLoader(ds, batch_size=self.hparams.batch_size, sampler=sampler,
                          num_workers=self.hparams.num_workers, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
