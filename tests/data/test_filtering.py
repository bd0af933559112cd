import csv
import json

import numpy as np
import pytest
import torch

from av_lightning.commands.filter_vggsound import main as filter_main
from av_lightning.data.datamodules import VGGSoundDataModule
from av_lightning.data.filtering import FIELDS, read_filter_csv
from av_lightning.data.io import write_audio, write_video
from tests.data.av_media_helpers import make_official_dataset

AUDIO_CLASSES = ["Drum", "Dog", "Rain", "Speech"]
IMAGE_CLASSES = ["drum kit", "dog", "umbrella", "person"]


def write_clip_tokenizer(path):
    """A byte-level CLIP BPE tokenizer with no merges (every character is a token)."""
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to 256+n
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(b) for b in bs] + [chr(256 + n) for n in range(256 - len(bs))]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTForAudioClassification,
        CLIPConfig,
        CLIPModel,
        CLIPTokenizer,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    ast = ASTForAudioClassification(ASTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_length=64,
        num_mel_bins=32, patch_size=16, frequency_stride=16, time_stride=16, initializer_range=1.0,
        id2label=dict(enumerate(AUDIO_CLASSES)), label2id={n: i for i, n in enumerate(AUDIO_CLASSES)}))
    ast.save_pretrained(d / "ast")
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(d / "ast")
    vit = ViTForImageClassification(ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8, initializer_range=1.0,
        id2label=dict(enumerate(IMAGE_CLASSES)), label2id={n: i for i, n in enumerate(IMAGE_CLASSES)}))
    vit.save_pretrained(d / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d / "vit")
    (d / "clip").mkdir()
    vocab = write_clip_tokenizer(d / "clip")
    CLIPTokenizer(str(d / "clip" / "vocab.json"), str(d / "clip" / "merges.txt")).save_pretrained(d / "clip")
    clip = CLIPModel(CLIPConfig(
        text_config={"vocab_size": vocab, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 64, "projection_dim": 8,
                         "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "image_size": 32, "patch_size": 16, "projection_dim": 8},
        projection_dim=8))
    clip.save_pretrained(d / "clip")
    return d


@pytest.fixture(scope="module")
def vgg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vgg")
    rows = [(f"v{i}", 10 * i, "playing drums" if i % 2 else "dog barking", "train" if i < 4 else "test") for i in range(6)]
    make_official_dataset(root, rows, csv_name="vggsound.csv", name_pattern="{ytid}_{start_time:06d}", seconds=1.0)
    # diverse content so that the random classifiers disagree between clips
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (20, 20, 20), (128, 64, 0)]
    t = np.arange(16000) / 16000
    for i, (ytid, start, _, _) in enumerate(rows):
        frames = np.broadcast_to(np.array(colors[i], np.uint8), (24, 32, 32, 3))
        tone = np.sin(2 * np.pi * 150 * (i + 1) ** 2 * t) * (0.8 if i % 3 else 0.1)
        write_video(root / "video" / f"{ytid}_{start:06d}.mp4", frames, 24)
        write_audio(root / "audio" / f"{ytid}_{start:06d}.wav", tone.astype(np.float32), 16000)
    (root / "video" / "v5_000050.mp4").write_bytes(b"broken")
    return root


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(root, models, out, threshold, *extra):
    return filter_main(["--root", str(root), "--out", str(out), "--audio-model", str(models / "ast"),
                        "--image-model", str(models / "vit"), "--clip-model", str(models / "clip"),
                        "--threshold", str(threshold), *extra])


def test_filter_is_deterministic_resumable_and_thresholded(vgg_root, tiny_models, tmp_path, capsys):
    out1, out2 = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run(vgg_root, tiny_models, out1, 0.0) == 0
    assert "scored 6 clips" in capsys.readouterr().out
    # resumable: a partial file is completed, and the result equals a fresh run
    rows = read_rows(out1)
    with open(out2, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows[:2])
    assert run(vgg_root, tiny_models, out2, 0.0) == 0
    assert "scored 4 clips (2 already" in capsys.readouterr().out
    assert out1.read_text() == out2.read_text()

    assert [r["id"] for r in rows] == [f"v{i}_{10 * i:06d}" for i in range(6)]
    broken = rows[5]
    assert broken["keep"] == "0" and "v5_000050.mp4" in broken["error"]
    good = rows[:5]
    assert all(r["audio_label"] in AUDIO_CLASSES and r["image_label"] in IMAGE_CLASSES for r in good)
    sims = [float(r["similarity"]) for r in good]
    assert all(-1.0 <= s <= 1.0 for s in sims)
    # the threshold: between the smallest and largest similarity, only those above are kept
    threshold = (min(sims) + max(sims)) / 2
    out3 = tmp_path / "c.csv"
    run(vgg_root, tiny_models, out3, threshold)
    kept = {r["id"] for r in read_rows(out3) if r["keep"] == "1"}
    assert kept == {r["id"] for r, s in zip(good, sims) if s >= threshold} and 0 < len(kept) < 5
    assert read_filter_csv(out3) == kept == read_filter_csv(out1, threshold)

    # the DataModule applies it
    dm = VGGSoundDataModule(str(vgg_root), filter_csv=str(out3), min_clips_per_class=0, val_size=0, num_workers=0,
                            size=32, num_frames=8)
    listed = {r.id for r in dm.select(dm.list_records())}
    assert listed == kept
