"""The DataModules feed the real AudioToVideo module (decoded clips and the feature cache)."""

import lightning.pytorch as pl
import pytest

from av_lightning.data.datamodules import AudioSetDrumsDataModule
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
        dm = AudioSetDrumsDataModule(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache") if cached else None, **args)
        if cached:
            dm.build_cache(model, device="cpu")
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
