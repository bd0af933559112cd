"""The DataModules feed the real AudioToVideo module (decoded clips and the feature cache)."""

import lightning.pytorch as pl
import pytest

from av_lightning.data.cache import build_cache
from av_lightning.data.datamodules import AudioVideoDataModule
from tests.conftest import tiny_module
from tests.data.av_media_helpers import make_official_dataset


@pytest.mark.slow
def test_fit_from_files_and_from_cache(tmp_path):
    rows = [(f"d{i}", 0, "drums", "train" if i < 4 else "test") for i in range(5)]
    make_official_dataset(tmp_path / "data", rows, csv_name="audioset_drums.csv", seconds=1.5)
    args = {"num_frames": 4, "fps": 4.0, "size": 8, "batch_size": 2, "num_workers": 0, "val_size": 0, "train_starts": 1}
    losses = {}

    class FirstLoss(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.setdefault(cached, float(outputs["loss"] if isinstance(outputs, dict) else outputs))

    for cached in (False, True):
        model = tiny_module(num_frames=4, fps=4.0)
        dm = AudioVideoDataModule(str(tmp_path / "data"), manifest="audioset_drums.csv", cache_dir=str(tmp_path / "cache") if cached else None, **args)
        if cached:
            build_cache(dm, model, device="cpu")
        pl.seed_everything(0)
        trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             callbacks=[FirstLoss()])
        trainer.fit(model, datamodule=dm)
        if cached:
            batch = next(iter(dm.train_dataloader()))
            assert "latents" in batch and "audio_states" in batch and "frames" not in batch
    # same clips, same frozen features, same noise: the first step's loss is the same
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_official_mode_trains_the_same_from_the_cache_as_from_files(tmp_path):
    """compat="official" reads BEATs' raw patch tokens: the cache must hold those (not the
    time-averaged hidden states, which are as wide), under a key that says so."""
    import json

    import torch

    from av_lightning.encoders.beats import BEATsEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens
    from tests.conftest import tiny_backbone
    from tests.encoders.conftest import SMALL_BEATS

    rows = [(f"d{i}", 0, "drums", "train") for i in range(2)] + [("t0", 0, "drums", "test")]
    make_official_dataset(tmp_path / "data", rows, csv_name="audioset_drums.csv", seconds=1.5)
    args = {"num_frames": 24, "fps": 24.0, "size": 8, "batch_size": 2, "num_workers": 0, "val_size": 0, "train_starts": 1}

    def model():
        torch.manual_seed(0)
        d = 32
        return AudioToVideo(tiny_backbone(), BEATsEncoder(cfg=dict(SMALL_BEATS)),
                            AudioMapper(in_features=2 * 16, hidden=24, out_features=d, depth=4),
                            TempoTokens(own_token=True, radii=[1, 2, 4, 8], bounds="half_open", pool=AttentivePool(dim=d)),
                            compat="official", num_frames=24, fps=24.0, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))

    weights = {}
    for cached in (False, True):
        m = model()
        dm = AudioVideoDataModule(str(tmp_path / "data"), manifest="audioset_drums.csv", cache_dir=str(tmp_path / "cache") if cached else None, **args)
        if cached:
            folder = build_cache(dm, m, device="cpu")
            assert json.loads((folder / "settings.json").read_text())["features"]["audio"]["features"] == "patch_tokens"
        pl.seed_everything(0)
        trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        trainer.fit(m, datamodule=dm)
        if cached:
            assert next(iter(dm.train_dataloader()))["audio_states"].shape[1:] == (48, 32)  # patch tokens
        weights[cached] = m.trainable_state_dict()
    for k, v in weights[False].items():
        torch.testing.assert_close(weights[True][k], v, rtol=1e-5, atol=1e-6)
