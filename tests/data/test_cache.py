import os

import pytest
import torch

from av_lightning.data.cache import CacheError, build_cache
from av_lightning.data.datamodules import AudioVideoDataModule
from tests.data.av_media_helpers import TinyModel, make_official_dataset, tiny_encode_frames

ARGS = {"fps": 24, "num_frames": 8, "size": 32, "batch_size": 2, "num_workers": 0, "val_size": 1, "train_starts": 2, "seed": 5}


@pytest.fixture(scope="module")
def drums_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("drums")
    rows = [(f"d{i}", 0, "drums", "train" if i < 4 else "test") for i in range(6)]
    make_official_dataset(root, rows, csv_name="audioset_drums.csv", separate_audio=True)
    return root


def batches(dm, split, epoch=0):
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    if split == "train":
        loader.sampler.set_epoch(epoch)
    return list(loader)


def test_cached_batches_equal_uncached(drums_root, tmp_path):
    source = TinyModel()
    enc = source.encoder
    plain = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", **ARGS)
    cached = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", cache_dir=str(tmp_path / "cache"), **ARGS)
    folder = build_cache(cached, source, shard_size=3, device="cpu")
    assert len(list(folder.glob("shard-*.safetensors"))) == 3  # 3 train files x 2 starts + 1 val = 7 clips
    plain.setup("fit")
    cached.expect_cache(source.feature_settings())
    cached.setup("fit")
    for split, epoch in [("train", 0), ("train", 1), ("val", 0)]:
        for a, b in zip(batches(plain, split, epoch), batches(cached, split, epoch), strict=True):
            assert a["id"] == b["id"] and a["label"] == b["label"]
            assert torch.equal(a["start"], b["start"])
            assert torch.equal(a["audio"], b["audio"])
            assert torch.equal(tiny_encode_frames(a["frames"]), b["latents"])
            assert torch.equal(enc(a["audio"]).hidden_states, b["audio_states"])
            assert "frames" not in b
    # a second build finds everything cached and computes nothing
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("shard-*")}
    assert build_cache(cached, source, device="cpu") == folder
    assert mtimes == {p: p.stat().st_mtime_ns for p in folder.glob("shard-*")}


def test_changed_setting_or_file_invalidates(drums_root, tmp_path):
    cache_dir = tmp_path / "cache"
    dm = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", cache_dir=str(cache_dir), **ARGS)
    old = build_cache(dm, TinyModel(encoder_seed=0), device="cpu")
    changed = TinyModel(encoder_seed=1)
    dm.expect_cache(changed.feature_settings())
    with pytest.raises(CacheError, match="no feature cache .* current settings"):
        dm.make_dataset("train")
    new = build_cache(dm, changed, device="cpu")
    assert new != old
    item = dm.make_dataset("train")[0]
    assert torch.equal(item["audio_states"], changed.encoder(item["audio"][None]).hidden_states[0])
    # another clip shape is another cache too
    other = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", cache_dir=str(cache_dir), **{**ARGS, "num_frames": 12})
    other.expect_cache(changed.feature_settings())
    other.setup("fit")
    with pytest.raises(CacheError):
        other.train_dataloader()
    # a file changed on disk since caching is stale
    wav = drums_root / "audio" / "d0.wav"
    st = wav.stat()
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        with pytest.raises(CacheError, match="stale"):
            dm.make_dataset("train")
    finally:
        os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cache_command_from_yaml_overlays(drums_root, tmp_path, capsys):
    from av_lightning.commands.cache import main

    base = tmp_path / "base.yaml"
    base.write_text(f"""
model:
  class_path: tests.data.av_media_helpers.TinyModel
  init_args: {{encoder_seed: 0}}
data:
  class_path: av_lightning.data.AudioVideoDataModule
  init_args: {{root: "{drums_root}", manifest: audioset_drums.csv, fps: 24, num_frames: 8, size: 32, batch_size: 2, num_workers: 0,
              val_size: 1, train_starts: 2, seed: 5, cache_dir: "{tmp_path / 'cache'}"}}
""")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model:\n  init_args:\n    encoder_seed: 3\n")
    assert main(["--config", str(base), "--config", str(overlay), "--device", "cpu"]) == 0
    assert "features in" in capsys.readouterr().out
    dm = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", cache_dir=str(tmp_path / "cache"), **ARGS)
    dm.expect_cache(TinyModel(encoder_seed=3).feature_settings())
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["latents"].shape == (2, 4, 8, 4, 4) and batch["audio_states"].shape[0] == 2
    dm.expect_cache(TinyModel(encoder_seed=0).feature_settings())
    with pytest.raises(CacheError):
        dm.train_dataloader()


def test_stored_frames_and_mixed_storage_options(drums_root, tmp_path):
    source = TinyModel()
    dm = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", cache_dir=str(tmp_path / "cache"), **ARGS)
    build_cache(dm, source, device="cpu", store_frames=True, splits=["val"])
    dm.expect_cache(source.feature_settings())
    cached = next(iter(dm.val_dataloader()))
    plain = AudioVideoDataModule(str(drums_root), manifest="audioset_drums.csv", **ARGS)
    plain.setup("fit")
    assert torch.equal(cached["frames"], next(iter(plain.val_dataloader()))["frames"])
    with pytest.raises(CacheError, match="store_frames"):
        build_cache(dm, source, device="cpu", store_frames=False)
