import csv

import pytest
import torch

from av_lightning.data.datamodules import (
    AudioVideoDataModule,
    FolderDataModule,
    VGGSoundDataModule,
    read_manifest,
)
from av_lightning.data.io import MediaError
from tests.data.av_media_helpers import make_official_dataset, write_clip

SMALL = {"fps": 24, "num_frames": 8, "size": 32, "batch_size": 2, "num_workers": 0, "val_size": 1}
ROWS = [("-aa", 10, "dog barking", "train"), ("bb", 0, "dog barking", "train"), ("cc", 30, "drums", "train"),
        ("dd", 5, "drums", "train"), ("gg", 3, "dog barking", "train"), ("ee", 40, "dog barking", "test"), ("ff", 7, "drums", "test")]


def check_batch(batch, b=2, f=8):
    assert batch["frames"].shape == (b, f, 3, 32, 32) and batch["frames"].dtype == torch.uint8
    assert batch["audio"].shape == (b, round(f / 24 * 16000)) and batch["audio"].dtype == torch.float32
    assert isinstance(batch["label"], list) and all(isinstance(x, str) for x in batch["label"])
    assert isinstance(batch["id"], list) and len(batch["id"]) == b
    assert batch["start"].shape == (b,) and batch["start"].is_floating_point()


@pytest.fixture(scope="module")
def vggsound_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vggsound")
    make_official_dataset(root, ROWS, csv_name="vggsound.csv", name_pattern="{ytid}_{start_time:06d}", header=False)
    return root


def test_manifest_with_and_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("ytid,start_time,class,set\nx,30,a b,train\n")
    (tmp_path / "b.csv").write_text("x,30,a b,train\n")
    assert read_manifest(tmp_path / "a.csv") == read_manifest(tmp_path / "b.csv")
    assert read_manifest(tmp_path / "b.csv")[0] == {"ytid": "x", "start_time": 30, "class": "a b", "set": "train"}


def test_vggsound_layout_batches_and_stable_test_split(vggsound_root):
    dm = VGGSoundDataModule(str(vggsound_root), min_clips_per_class=0, **SMALL)
    dm.setup("fit")
    assert {r.id for r in dm.records["train"]} | {r.id for r in dm.records["val"]} == {
        "-aa_000010", "bb_000000", "cc_000030", "dd_000005", "gg_000003"}
    assert len(dm.records["val"]) == 1 and len(dm.records["train"]) == 4
    check_batch(next(iter(dm.train_dataloader())))
    check_batch(next(iter(dm.val_dataloader())), b=1)
    dm.setup("test")
    test1 = [next(iter(dm.test_dataloader()))]
    dm2 = VGGSoundDataModule(str(vggsound_root), min_clips_per_class=0, **SMALL)
    dm2.setup("test")
    test2 = [next(iter(dm2.test_dataloader()))]
    assert test1[0]["id"] == test2[0]["id"] == ["ee_000040", "ff_000007"]
    assert torch.equal(test1[0]["frames"], test2[0]["frames"]) and torch.equal(test1[0]["audio"], test2[0]["audio"])
    assert test1[0]["label"] == ["dog barking", "drums"]
    pred = next(iter(dm.predict_dataloader()))
    assert pred["id"] == test1[0]["id"]


def test_training_starts_reproducible_per_epoch(vggsound_root):
    dm = VGGSoundDataModule(str(vggsound_root), min_clips_per_class=0, seed=3, **SMALL)
    dm.setup("fit")
    ds = dm.dataset("train")
    n = len(ds)
    assert ds[0]["start"] == ds[0]["start"]
    assert [ds[i]["start"] for i in range(n)] != [ds[n + i]["start"] for i in range(n)]  # epoch 1 differs
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    ids_starts = [(i, s) for b in loader for i, s in zip(b["id"], b["start"].tolist())]
    loader.sampler.set_epoch(1)
    assert ids_starts == [(i, s) for b in loader for i, s in zip(b["id"], b["start"].tolist())]


def test_vggsound_min_clips_per_class_and_classes(vggsound_root):
    dm = VGGSoundDataModule(str(vggsound_root), min_clips_per_class=3, **SMALL)  # drums has 2 training rows
    dm.setup("test")
    assert {r.label for r in dm.records["test"]} == {"dog barking"}
    dm = VGGSoundDataModule(str(vggsound_root), min_clips_per_class=0, classes=["drums"], **SMALL)
    dm.setup("test")
    assert [r.id for r in dm.records["test"]] == ["ff_000007"]


@pytest.mark.parametrize("csv_name", ["audioset_drums.csv", "landscape.csv"])
def test_drums_and_landscape_layouts(tmp_path, csv_name):
    rows = [(f"id{i}", 0, "drums" if csv_name.startswith("audioset") else "waterfall", "train" if i < 3 else "test") for i in range(5)]
    make_official_dataset(tmp_path, rows, csv_name=csv_name, header=True, separate_audio=False)
    dm = AudioVideoDataModule(str(tmp_path), manifest=csv_name, **SMALL)
    dm.setup("fit")
    check_batch(next(iter(dm.train_dataloader())))
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    check_batch(batch)
    assert batch["id"] == ["id3", "id4"]


def test_folder_datamodule_labels_from_subfolders(tmp_path):
    for split in ("train", "test"):
        for label in ("rain", "fire"):
            for i in range(2):
                write_clip(tmp_path / split / label / f"{label}{i}.mp4", seed=i)
    dm = FolderDataModule(str(tmp_path), **SMALL)
    dm.setup("fit")
    dm.setup("test")
    assert sorted({r.label for r in dm.records["test"]}) == ["fire", "rain"]
    assert len(dm.records["train"]) + len(dm.records["val"]) == 4
    check_batch(next(iter(dm.train_dataloader())))
    batch = next(iter(dm.test_dataloader()))
    check_batch(batch)
    assert batch["id"] == ["test/fire/fire0", "test/fire/fire1"]


@pytest.fixture
def broken_root(tmp_path):
    rows = [(f"ok{i}", 0, "a", "train") for i in range(3)] + [("ok3", 0, "a", "test")]
    rows += [("corrupt", 0, "a", "train"), ("silent", 0, "a", "train"), ("short", 0, "a", "train"), ("missing", 0, "a", "train")]
    with open(tmp_path / "metadata.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    for i in range(4):
        write_clip(tmp_path / "video" / f"ok{i}.mp4", seed=i)
    (tmp_path / "video" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    write_clip(tmp_path / "video" / "silent.mp4", audio=False)
    write_clip(tmp_path / "video" / "short.mp4", seconds=0.2)
    return tmp_path


def test_bad_files_are_skipped_and_counted(broken_root, tmp_path_factory, capsys):
    log_dir = tmp_path_factory.mktemp("logs")
    dm = AudioVideoDataModule(str(broken_root), manifest="metadata.csv", log_dir=str(log_dir), **{**SMALL, "val_size": 0})
    dm.setup("fit")
    out = capsys.readouterr().out
    assert "skipped 4 of 7: " in out and "1 missing" in out and "1 no audio" in out
    assert "1 too short" in out and "1 decode error" in out and "skipped.csv" in out
    assert sorted(r.id for r in dm.records["train"]) == ["ok0", "ok1", "ok2"]
    with open(log_dir / "skipped.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["id"]: r["reason"] for r in rows} == {
        "corrupt": "decode error", "silent": "no audio", "short": "too short", "missing": "missing"}
    # a clip that breaks after setup raises with its file name; nothing is substituted
    (broken_root / "video" / "ok1.mp4").write_bytes(b"broken now")
    ds = dm.dataset("train")
    idx = [r.id for r in ds.records].index("ok1")
    with pytest.raises(MediaError, match="ok1.mp4"):
        ds[idx]


def test_empty_split_is_an_error(tmp_path):
    with open(tmp_path / "metadata.csv", "w") as f:
        f.write("a,0,x,train\nb,0,x,test\n")
    write_clip(tmp_path / "video" / "b.mp4")
    dm = AudioVideoDataModule(str(tmp_path), manifest="metadata.csv", **{**SMALL, "val_size": 0})
    with pytest.raises(ValueError, match="train split is empty"):
        dm.setup("fit")
    dm.setup("test")
    assert len(dm.records["test"]) == 1


def test_probe_results_are_cached_until_a_file_changes(broken_root, tmp_path_factory, capsys):
    kwargs = dict(manifest="metadata.csv", log_dir=str(tmp_path_factory.mktemp("logs")), **{**SMALL, "val_size": 0})
    AudioVideoDataModule(str(broken_root), **kwargs).setup("fit")
    assert (broken_root / "probe_cache.json").is_file()
    assert "skipped 4 of 7" in capsys.readouterr().out
    write_clip(broken_root / "video" / "short.mp4", seconds=1.5)  # fixed: now long enough
    dm = AudioVideoDataModule(str(broken_root), **kwargs)
    dm.setup("fit")
    assert "skipped 3 of 7" in capsys.readouterr().out
    assert "short" in {r.id for r in dm.records["train"]}


def _write_nan_wav(path, seconds=1.5, sample_rate=16000):
    from av_lightning.data.io import write_audio

    audio = 0.1 * torch.randn(round(seconds * sample_rate))
    audio[1000:1010] = float("nan")
    audio[2000] = float("inf")
    return write_audio(path, audio, sample_rate, codec="pcm_f32le")


def test_non_finite_audio_is_skipped_and_counted(tmp_path, capsys):
    rows = [(f"ok{i}", 0, "a", "train") for i in range(3)] + [("nan", 0, "a", "train"), ("t0", 0, "a", "test")]
    make_official_dataset(tmp_path, rows, csv_name="metadata.csv")
    _write_nan_wav(tmp_path / "audio" / "nan.wav")  # replaces the good wav
    dm = AudioVideoDataModule(str(tmp_path), manifest="metadata.csv", log_dir=str(tmp_path / "logs"),
                                 **{**SMALL, "val_size": 0})
    dm.setup("fit")
    assert "skipped 1 of 4: 1 non-finite audio" in capsys.readouterr().out
    assert sorted(r.id for r in dm.records["train"]) == ["ok0", "ok1", "ok2"]
    with open(tmp_path / "logs" / "skipped.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["id"] == "nan" and row["reason"] == "non-finite audio" and "nan.wav" in row["detail"]
    # the clip reader refuses it too, naming the file (a file that changed after probing)
    from av_lightning.data.io import NonFiniteAudioError, read_audio

    with pytest.raises(NonFiniteAudioError, match=r"nan\.wav: the audio holds 11 NaN or Inf samples"):
        read_audio(tmp_path / "audio" / "nan.wav", 0.0, 16000, 16000)


def test_skip_counts_are_per_split(broken_root, tmp_path_factory, capsys):
    dm = AudioVideoDataModule(str(broken_root), manifest="metadata.csv", log_dir=str(tmp_path_factory.mktemp("l")),
                                 **{**SMALL, "val_size": 0})
    dm.setup("fit")
    assert "skipped 4 of 7" in capsys.readouterr().out
    (broken_root / "video" / "ok3.mp4").write_bytes(b"broken")  # the one test clip
    with pytest.raises(ValueError, match="test split is empty"):
        dm.setup("test")
    out = capsys.readouterr().out
    assert "skipped 1 of 1: 1 decode error (test 1 of 1)" in out, out
