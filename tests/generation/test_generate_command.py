"""``av-lightning generate`` end to end on tiny random parts, and its errors on bad input."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from av_lightning.adapters import AdapterError, load_model
from av_lightning.commands.generate import GenerationError, load_audio, load_init_frames, main
from av_lightning.data.io import probe, write_audio
from tests.helpers import build as instantiate
from tests.helpers import sample_one


def tiny_hparams(width: int = 32) -> dict:
    """Model hyper-parameters as LightningCLI saves them (sub-modules as class_path / init_args)."""
    from av_lightning.backbones.tiny import tiny_configs

    cfg = tiny_configs(pixel_space=True)
    cfg["unet"].update(sample_size=8, cross_attention_dim=width)
    cfg["text_encoder"].update(hidden_size=width, projection_dim=width)
    return {
        "_class_path": "av_lightning.module.AudioToVideo",
        "backbone": {"class_path": "av_lightning.backbones.diffusers_t2v.DiffusersT2V", "init_args": {"pretrained": None, **cfg}},
        "encoder": {"class_path": "av_lightning.encoders.mel.MelEncoder", "init_args": {"n_mels": 16, "frame_rate": 50.0}},
        "mapper": {"class_path": "av_lightning.tempo.AudioMapper",
                   "init_args": {"in_features": 16, "hidden": 48, "out_features": width, "depth": 4}},
        "tokens": {"class_path": "av_lightning.tempo.TempoTokens",
                   "init_args": {"n_scales": 2, "pool": {"class_path": "av_lightning.tempo.AttentivePool",
                                                         "init_args": {"dim": width, "hidden": 24}}}},
        "num_frames": 4, "fps": 4.0, "steps": 2, "guidance_scale": 2.0,
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
    }


def tone(seconds: float, amplitude: float = 0.3) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    return amplitude * torch.sin(2 * math.pi * 330 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 2 * t))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved tiny backbone, an adapter with the CLI-style config in its metadata, one without, a YAML."""
    import yaml
    from safetensors.torch import save_file

    from av_lightning.module import AudioToVideo

    root = tmp_path_factory.mktemp("gen")
    hp = tiny_hparams()
    torch.manual_seed(0)
    backbone = instantiate(hp["backbone"])
    backbone.save_pretrained(root / "backbone")  # before the placeholder tokens are added
    model = AudioToVideo(backbone, instantiate(hp["encoder"]), instantiate(hp["mapper"]), instantiate(hp["tokens"]),
                         num_frames=4, fps=4.0, steps=2, guidance_scale=2.0)
    model.save_adapter(root / "plain.safetensors")  # built in Python: no sub-module configs inside
    state = {k: v.contiguous() for k, v in model.trainable_state_dict().items()}
    save_file(state, os.fspath(root / "adapter.safetensors"),
              metadata={"format": "av_lightning.adapter/1", "text_width": "32", "hparams": json.dumps(hp)})
    torch.save({"state_dict": state, "hyper_parameters": hp}, root / "last.ckpt")
    init_args = {k: v for k, v in hp.items() if k not in ("_class_path", "num_frames", "fps")}
    (root / "train.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "av_lightning.module.AudioToVideo", "init_args": init_args},
        "data": {"class_path": "av_lightning.data.synthetic.SyntheticDataModule", "init_args": {"num_frames": 4, "fps": 4.0}},
    }))
    write_audio(root / "song.wav", tone(2.5))
    return root


def test_generate_long_audio_with_text_and_contact_sheet(files, tmp_path):
    out = tmp_path / "song.mp4"
    rc = main(["--audio", str(files / "song.wav"), "--checkpoint", str(files / "adapter.safetensors"),
               "--backbone", str(files / "backbone"), "--out", str(out), "--prompt", "on the moon",
               "--steps", "2", "--device", "cpu", "--contact-sheet", "--no-progress"])
    assert rc == 0
    info = probe(out)
    assert info.has_audio and abs(info.video_duration - 2.5) < 0.05  # 10 frames at 4 fps, 3 windows of 4
    assert abs(info.audio_duration - 2.5) < 0.1
    from PIL import Image

    assert Image.open(out.with_suffix(".png")).size == (8 * 8, 2 * 8)  # 10 frames, 8 per row


def test_folder_loads_once_and_skips_bad_files(files, tmp_path, monkeypatch, capsys):
    import av_lightning.adapters as gen

    folder = tmp_path / "in"
    folder.mkdir()
    write_audio(folder / "a.wav", tone(1.0))
    write_audio(folder / "b.wav", tone(1.25, 0.2))
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav")
    nan = tone(1.0)
    nan[100] = float("nan")
    write_audio(folder / "nan.wav", nan, codec="pcm_f32le")
    calls = []
    real = gen.load_model
    monkeypatch.setattr(gen, "load_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    rc = main(["--audio", str(folder), "--checkpoint", str(files / "last.ckpt"), "--backbone", str(files / "backbone"),
               "--out", str(tmp_path / "out"), "--steps", "1", "--device", "cpu", "--no-progress"])
    assert rc == 1 and calls == [1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4"]
    err = capsys.readouterr().err
    assert "broken.wav" in err and "nan.wav" in err and "NaN or Inf" in err and "2 of 4 file(s) failed" in err


def test_config_yaml_as_model_source(files, tmp_path, capsys):
    common = ["--audio", str(files / "song.wav"), "--checkpoint", str(files / "plain.safetensors"),
              "--backbone", str(files / "backbone"), "--steps", "1", "--device", "cpu", "--no-progress",
              "--out", str(tmp_path / "x.mp4")]
    assert main(common) == 2
    assert "--config" in capsys.readouterr().err
    assert main(common + ["--config", str(files / "train.yaml"), "--num-frames", "8"]) == 0


def test_init_image_is_animated(files, tmp_path):
    from PIL import Image

    model = load_model(files / "adapter.safetensors", backbone=files / "backbone")
    img = torch.zeros(8, 8, 3, dtype=torch.uint8)
    img[:, :4] = 255
    Image.fromarray(img.numpy()).save(tmp_path / "init.png")
    init = load_init_frames(tmp_path / "init.png", 4, 4.0, 8, 8)
    assert init.shape == (4, 3, 8, 8)
    audio = tone(1.0)
    kw = dict(height=8, width=8, steps=4, progress=False)
    near = generate_video_err(model, audio, init, 0.25, kw)
    far = generate_video_err(model, audio, init, 1.0, kw)
    assert near < 0.5 * far, (near, far)


def generate_video_err(model, audio, init, strength, kw) -> float:
    out = sample_one(model, audio, init_frames=init[None], strength=strength, **kw)
    return (out.float() - init.float()).abs().mean().item()


def test_bad_audio_is_a_clear_error(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(GenerationError, match="broken.wav"):
        load_audio(tmp_path / "broken.wav", 16000, 4.0)
    write_audio(tmp_path / "silence.wav", torch.zeros(16000))
    with pytest.raises(GenerationError, match="silence.wav.*silent"):
        load_audio(tmp_path / "silence.wav", 16000, 4.0)
    write_audio(tmp_path / "blip.wav", tone(0.1))
    with pytest.raises(GenerationError, match="blip.wav.*shorter than one video frame"):
        load_audio(tmp_path / "blip.wav", 16000, 4.0)  # a frame lasts 0.25 s
    assert load_audio(tmp_path / "blip.wav", 16000, 24.0).shape == (1600,)


def test_checkpoint_for_another_backbone_width(files, tmp_path, capsys):
    torch.manual_seed(0)
    instantiate(tiny_hparams(width=16)["backbone"]).save_pretrained(tmp_path / "narrow")
    with pytest.raises(AdapterError, match=r"adapter.safetensors.*32 wide.*16 wide.*--backbone"):
        load_model(files / "adapter.safetensors", backbone=tmp_path / "narrow")
    rc = main(["--audio", str(files / "song.wav"), "--checkpoint", str(files / "adapter.safetensors"),
               "--backbone", str(tmp_path / "narrow"), "--device", "cpu"])
    assert rc == 2 and "16 wide" in capsys.readouterr().err


def test_temporal_guidance_flag_reaches_the_sampler(files, tmp_path):
    from av_lightning.data.io.read import read_video_file

    frames = {}
    for name, extra in (("plain", []), ("temporal", ["--temporal-guidance", "6"])):
        out = tmp_path / f"{name}.mp4"
        rc = main(["--audio", str(files / "song.wav"), "--checkpoint", str(files / "adapter.safetensors"),
                   "--backbone", str(files / "backbone"), "--out", str(out), "--steps", "2", "--guidance", "2",
                   "--device", "cpu", "--no-progress", *extra])
        assert rc == 0
        frames[name] = read_video_file(out)[0].astype(int)
    assert abs(frames["plain"] - frames["temporal"]).max() > 8
