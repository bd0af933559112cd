"""Shared fixtures: tiny real components built from config dicts (no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)  # tests run beside each other and beside subprocesses: one thread each


def tiny_backbone(pixel_space: bool = True, prediction_type: str = "epsilon", sample_size: int = 8, **kw):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.backbones.tiny import tiny_configs

    cfg = tiny_configs(pixel_space=pixel_space, prediction_type=prediction_type)
    cfg["unet"]["sample_size"] = sample_size
    cfg.update(kw)
    return DiffusersT2V(**cfg)


def tiny_module(
    num_frames: int = 4, fps: float = 4.0, n_mels: int = 16, conditioning: str = "audio", lr: float = 1e-3,
    pixel_space: bool = True, prediction_type: str = "epsilon", seed: int = 0, **kw,
):
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens

    torch.manual_seed(seed)
    backbone = tiny_backbone(pixel_space=pixel_space, prediction_type=prediction_type)
    d = backbone.text_width
    encoder = MelEncoder(n_mels=n_mels, frame_rate=50.0)
    return AudioToVideo(
        backbone=backbone, encoder=encoder,
        mapper=AudioMapper(in_features=encoder.feature_size, hidden=48, out_features=d, depth=4),
        tokens=TempoTokens(n_scales=2, pool=AttentivePool(dim=d, hidden=24)),
        conditioning=conditioning, num_frames=num_frames, fps=fps, steps=3, guidance_scale=2.0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr), **kw,
    )


def tiny_batch(batch_size: int = 2, num_frames: int = 4, fps: float = 4.0, size: int = 8, seed: int = 0) -> dict:
    from av_lightning.data.synthetic import synthetic_clip

    clips = [synthetic_clip(seed + i, num_frames, fps, size, 16000) for i in range(batch_size)]
    return {
        "frames": torch.stack([c["frames"] for c in clips]),
        "audio": torch.stack([c["audio"] for c in clips]),
        "label": [c["label"] for c in clips],
        "id": [f"clip{i}" for i in range(batch_size)],
    }


@pytest.fixture
def module():
    return tiny_module()


@pytest.fixture
def batch():
    return tiny_batch()
