"""The whole toy path on a CPU: world files -> toy backbone -> a few adapter steps -> generation ->
AV-Align and the probe."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from av_lightning.data import toyworld as tw
from tests.toy.test_train_backbone import TINY


def test_toy_path_end_to_end(tmp_path):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.metrics.av_align import AVAlign
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens
    from av_lightning.toy.probe import probe_summary
    from av_lightning.toy.train_backbone import train_backbone

    pl.seed_everything(0)
    bb_dir = tmp_path / "backbone"
    train_backbone(TINY, bb_dir, steps=2, device="cpu", log=lambda *a: None)
    backbone = DiffusersT2V(pretrained=str(bb_dir))
    d = backbone.text_width
    encoder = MelEncoder(n_mels=16, frame_rate=24.0)
    module = AudioToVideo(
        backbone=backbone, encoder=encoder,
        mapper=AudioMapper(in_features=encoder.feature_size, hidden=32, out_features=d, depth=4),
        tokens=TempoTokens(n_scales=2, pool=AttentivePool(dim=d, hidden=16)),
        num_frames=tw.NUM_FRAMES, fps=tw.FPS, steps=2, guidance_scale=2.0, text_audio_prompt="a <audio> {label}",
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
    )
    dm = tw.ToyWorldDataModule(str(tmp_path / "toy"), num_train=8, num_test=2, batch_size=2, val_size=0)
    trainer = pl.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 3

    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    videos = module.sample(batch, steps=2)
    assert videos.shape == (2, tw.NUM_FRAMES, 3, tw.SIZE, tw.SIZE) and videos.dtype == torch.uint8
    metric = AVAlign(mode="paper")
    metric.update(videos, batch["audio"], tw.FPS, tw.SAMPLE_RATE)
    score = metric.compute()["av_align"]
    assert math.isnan(score) or 0.0 <= score <= 1.0
    summary = probe_summary(videos, batch["label"])
    assert 0.0 <= summary["coherent_fraction"] <= 1.0
