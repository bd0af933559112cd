"""Shared test helpers: small synthetic mp4/wav files, official-layout datasets, tiny encoders.

Import with ``from tests.data.av_media_helpers import ...`` (pytest runs with the repository
root on ``sys.path`` and ``--import-mode=importlib``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningModule

from av_lightning.data.io import write_audio, write_video
from av_lightning.encoders.base import AudioEncoder, EncoderOutput


def synthetic_frames(seconds: float, fps: float, size=(48, 64), flash_at: float | None = None, seed: int = 0) -> np.ndarray:
    """uint8 ``(F, H, W, 3)``: a dim moving gradient; with ``flash_at`` the frame showing that
    time (``floor(t * fps)``) is all white."""
    n = round(seconds * fps)
    h, w = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, size=(1, 1, 3))
    x = np.arange(w)[None, None, :, None]
    k = np.arange(n)[:, None, None, None]
    frames = (base + (x + 3 * k) % 40 + np.zeros((n, h, w, 3))).astype(np.uint8)
    if flash_at is not None:
        frames[int(np.floor(flash_at * fps + 1e-9))] = 255
    return frames


def synthetic_audio(seconds: float, sample_rate: int, channels: int = 1, click_at: float | None = None, seed: int = 0) -> np.ndarray:
    """float32 ``(C, S)``: quiet noise; with ``click_at`` one sample of amplitude 0.9 at that time."""
    n = round(seconds * sample_rate)
    rng = np.random.default_rng(seed)
    audio = (0.01 * rng.standard_normal((channels, n))).astype(np.float32)
    if click_at is not None:
        audio[:, round(click_at * sample_rate)] = 0.9
    return audio


def write_clip(
    path,
    seconds: float = 1.5,
    fps: float = 30,
    size=(48, 64),
    sample_rate: int = 44100,
    channels: int = 2,
    audio: bool = True,
    flash_at: float | None = None,
    click_at: float | None = None,
    seed: int = 0,
) -> Path:
    """Write a small mp4 (H.264, AAC unless ``audio=False``)."""
    frames = synthetic_frames(seconds, fps, size, flash_at, seed)
    sound = synthetic_audio(seconds, sample_rate, channels, click_at, seed) if audio else None
    return write_video(path, frames, fps, audio=sound, sample_rate=sample_rate)


def write_wav(path, seconds: float = 1.5, sample_rate: int = 44100, channels: int = 2, click_at=None, seed: int = 0) -> Path:
    return write_audio(path, synthetic_audio(seconds, sample_rate, channels, click_at, seed), sample_rate)


def make_official_dataset(
    root,
    rows: Sequence[tuple[str, int, str, str]],
    csv_name: str = "metadata.csv",
    name_pattern: str = "{ytid}",
    header: bool = False,
    separate_audio: bool = True,
    seconds: float = 1.5,
    fps: float = 30,
) -> Path:
    """Write ``root/video/NAME.mp4`` (+ ``root/audio/NAME.wav``) and a ``ytid,start_time,class,set`` CSV.

    Args:
        rows: ``(ytid, start_time, class, set)`` tuples.
        name_pattern: file stem from the row, as in the DataModules.
        header: write a header row.
        separate_audio: write the audio as a wav (the mp4 then has no audio stream).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / csv_name, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(["ytid", "start_time", "class", "set"])
        for i, (ytid, start, label, split) in enumerate(rows):
            w.writerow([ytid, start, label, split])
            name = name_pattern.format(ytid=ytid, start_time=start, **{"class": label, "set": split})
            write_clip(root / "video" / f"{name}.mp4", seconds=seconds, fps=fps, audio=not separate_audio, seed=i)
            if separate_audio:
                write_wav(root / "audio" / f"{name}.wav", seconds=seconds, seed=i)
    return root / csv_name


class TinyAudioEncoder(AudioEncoder):
    """A real (tiny) encoder: 40 ms frames at 50 Hz, fixed random projection to (Lh, d)."""

    def __init__(self, num_layers: int = 2, hidden_size: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.num_layers, self.hidden_size, self.seed = num_layers, hidden_size, seed
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(640, num_layers * hidden_size, generator=g) / 25)

    def settings(self) -> dict:
        return {"class": "TinyAudioEncoder", "num_layers": self.num_layers, "hidden_size": self.hidden_size, "seed": self.seed}

    def encode(self, waveform, lengths=None) -> EncoderOutput:
        frames = waveform.unfold(1, 640, 320)  # (B, T', 640)
        h = (frames @ self.proj).view(waveform.shape[0], frames.shape[1], self.num_layers, self.hidden_size)
        return EncoderOutput(hidden_states=h, frame_rate=50.0)


def tiny_encode_frames(frames: torch.Tensor) -> torch.Tensor:
    """A tiny frozen 'VAE': uint8 ``(B, F, 3, H, W)`` -> float ``(B, 4, F, H/8, W/8)``."""
    b, f, c, h, w = frames.shape
    x = frames.float().div(127.5).sub(1).reshape(b * f, c, h, w)
    x = torch.nn.functional.avg_pool2d(x, 8)
    weight = torch.linspace(-1, 1, 12).view(4, 3, 1, 1)
    x = torch.nn.functional.conv2d(x, weight)
    return x.view(b, f, 4, h // 8, w // 8).permute(0, 2, 1, 3, 4).contiguous()


TINY_FRAMES_SETTINGS = {"class": "tiny_encode_frames", "channels": 4, "downsample": 8}


class TinyModel(LightningModule):
    """A feature source for the cache (what ``av-lightning cache`` needs from a model): a tiny frozen
    frame encoder and a :class:`TinyAudioEncoder`."""

    def __init__(self, encoder_seed: int = 0, num_frames: int = 24, fps: float = 24.0, sample_rate: int = 16000) -> None:
        super().__init__()
        self.encoder = TinyAudioEncoder(seed=encoder_seed)

    def feature_settings(self) -> dict:
        return {"frames": dict(TINY_FRAMES_SETTINGS), "audio": {**self.encoder.settings(), "features": "hidden_states"}}

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        return tiny_encode_frames(frames)

    def audio_features(self, audio: torch.Tensor):
        out = self.encoder(audio)
        return out.hidden_states, out.mask
