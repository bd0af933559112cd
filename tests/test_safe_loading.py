"""Every load path refuses a malicious pickle before it can run, and says which file and why."""

from pathlib import Path

import pytest
import torch

from av_lightning import cli
from av_lightning.data.io import write_audio
from tests.helpers import write_malicious_pickle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "sound.wav"
    write_audio(path, 0.5 * torch.randn(16000).clamp(-1, 1), 16000)
    return path


@pytest.mark.parametrize("suffix", [".ckpt", ".pt"])
def test_generate_refuses_a_malicious_checkpoint(tmp_path, wav, capsys, suffix):
    evil, marker = tmp_path / f"adapter{suffix}", tmp_path / "ran"
    write_malicious_pickle(evil, marker, {"state_dict": {}, "hyper_parameters": {}})
    assert cli.main(["generate", "--audio", str(wav), "--checkpoint", str(evil), "--out", str(tmp_path / "o.mp4"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"adapter{suffix}" in err and "convert it once" in err
    assert not marker.exists() and not (tmp_path / "o.mp4").exists()


def test_generate_names_a_corrupt_safetensors(tmp_path, wav, capsys):
    bad = tmp_path / "adapter.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    assert cli.main(["generate", "--audio", str(wav), "--checkpoint", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "adapter.safetensors is not a readable safetensors file" in err and "Traceback" not in err


def test_convert_official_refuses_a_malicious_pickle(tmp_path, capsys):
    evil, marker = tmp_path / "learned_embeds.pth", tmp_path / "ran"
    write_malicious_pickle(evil, marker, {"fc1.weight": torch.zeros(2, 2)})
    assert cli.main(["convert-official", str(evil), "--out", str(tmp_path / "a.safetensors")]) == 2
    assert "learned_embeds.pth holds objects other than tensors" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "a.safetensors").exists()


def test_ckpt_path_refuses_a_malicious_checkpoint(tmp_path):
    evil, marker = tmp_path / "last.ckpt", tmp_path / "ran"
    write_malicious_pickle(evil, marker, {"state_dict": {}, "global_step": 0})
    args = ["fit", "--config", str(ROOT / "configs/tiny.yaml"), f"--trainer.default_root_dir={tmp_path}/run",
            "--trainer.max_steps=1", "--trainer.callbacks=[]", "--trainer.logger=false",
            "--trainer.enable_checkpointing=false", f"--ckpt_path={evil}"]
    with pytest.raises(ValueError, match=r"last\.ckpt holds objects other than tensors"):
        cli.main(args)
    assert not marker.exists()
