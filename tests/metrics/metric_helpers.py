"""Tiny feature networks, a tiny offline CLIP and synthetic clips for the metric tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from av_lightning.metrics._synthetic import render_clip

EVENTS = (5, 13, 22, 30, 39)  # frame indices of the synthetic hits (48 frames at 24 fps)
FPS = 24.0
SAMPLE_RATE = 16000


class TinyVideoNet(nn.Module):
    """uint8 ``(B, 3, T, H, W)`` -> ``(B, out)`` features, probabilities or logits."""

    def __init__(self, out: int = 8, head: str = "features", seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.drop = nn.Dropout(0.5)  # would change outputs if the net ever left eval mode
        self.fc = nn.Linear(6, out)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x.float() / 127.5 - 1)).mean(dim=(2, 3, 4))
        out = self.fc(self.drop(h))
        return out.softmax(dim=1) if self.head == "probs" else out


def random_videos(n: int, frames: int = 16, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 ``(n, frames, 3, size, size)`` smooth-ish random videos."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 3, size, size, generator=g)
    noise = 0.3 * torch.rand(n, frames, 3, size, size, generator=g)
    return ((base + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def av_batch(
    shift: int = 0, seeds=(0, 1, 2), silent: bool = False, events=EVENTS, background: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic clips: uint8 ``(B, 48, 3, 64, 64)`` and float ``(B, 32000)`` at 16 kHz.

    ``silent``: static video (first frame repeated) and all-zero audio. ``background``: noise
    under the clicks (see :func:`~av_lightning.metrics._synthetic.render_audio`).
    """
    videos, audio = [], []
    for seed in seeds:
        frames, wave = render_clip(
            events, audio_shift_frames=shift, seed=seed, fps=FPS, sample_rate=SAMPLE_RATE,
            background=background,
        )
        if silent:
            frames = np.repeat(frames[:1], len(frames), axis=0)
            wave = np.zeros_like(wave)
        videos.append(torch.from_numpy(frames).permute(0, 3, 1, 2))
        audio.append(torch.from_numpy(wave))
    return torch.stack(videos), torch.stack(audio)


def write_test_clip(path, frames: np.ndarray, fps: float = FPS, audio=None, sample_rate: int = SAMPLE_RATE) -> Path:
    """uint8 ``(F, H, W, 3)`` frames as an H.264 mp4 with full-resolution colour (yuv444p, CRF 10),
    so that decoded frames stay within a level or two of the rendered ones; optional AAC audio."""
    from av_lightning.data.io import write_video

    return write_video(path, frames, fps, audio=audio, sample_rate=sample_rate, crf=10, pix_fmt="yuv444p")


def make_clip_dir(path: Path, seed: int = 0) -> Path:
    """A tiny random CLIP (model, byte-level tokenizer with no merges, image processor) saved
    to ``path``, loadable offline with ``from_pretrained(path)``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    from av_lightning.backbones.tiny import byte_alphabet

    chars = byte_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab=os.fspath(path / "vocab.json"), merges=os.fspath(path / "merges.txt")
    )
    tokenizer.save_pretrained(path)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(path)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(path)
    return path


def ddp_metrics(clip_dir: str) -> dict:
    """Every metric, built identically in every process."""
    from av_lightning.metrics import CLIPSIM, FVD, AVAlign, VideoInceptionScore

    return {
        "fvd": FVD(TinyVideoNet(out=8), num_features=8),
        "is": VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=2),
        "clipsim": CLIPSIM(clip_dir),
        "av_align_paper": AVAlign(mode="paper"),
        "av_align_reference": AVAlign(mode="reference"),
    }


def ddp_batch(indices) -> dict:
    """The clips ``indices`` of a fixed 4-clip test set (16 frames of 32x32; clip 3 is silent)."""
    videos, audio = [], []
    for i in indices:
        v, a = av_batch(shift=(0, 5, 1, 0)[i], seeds=(i,), silent=i == 3)
        videos.append(v[:, :16, :, ::2, ::2])
        audio.append(a[:, : int(16 / FPS * SAMPLE_RATE)])
    return {
        "fake": torch.cat(videos),
        "real": torch.cat(videos).flip(1),
        "audio": torch.cat(audio),
        "texts": [("drums", "rain", "dog", "car")[i] for i in indices],
        "fps": FPS,
        "sample_rate": SAMPLE_RATE,
    }


def compute_all(metrics: dict) -> dict:
    return {name: metric.compute() for name, metric in metrics.items()}


def ddp_worker(rank: int, world_size: int, init_file: str, clip_dir: str, out_file: str) -> None:
    """One process of the two-process CPU DDP check: update with this rank's half, compute."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        metrics = ddp_metrics(clip_dir)
        for metric in metrics.values():
            metric.update_from_clips(**ddp_batch([2 * rank, 2 * rank + 1]))
        results = compute_all(metrics)
        results["av_align_per_clip"] = metrics["av_align_reference"].per_clip()
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()
