"""Weight files are read safely: malicious pickles never run, corrupt files name themselves."""

import os

import pytest
import torch
from safetensors.torch import save_file

from av_lightning.weights import WeightsError, load_safetensors, load_torch, load_weights, safetensors_metadata
from tests.helpers import write_malicious_pickle


def test_plain_checkpoints_load(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"lr": 1e-3, "name": "x"}}, tmp_path / "a.ckpt")
    assert load_torch(tmp_path / "a.ckpt")["hyper_parameters"]["name"] == "x"
    save_file({"w": torch.arange(3.0)}, tmp_path / "a.safetensors", metadata={"k": "v"})
    assert torch.equal(load_weights(tmp_path / "a.safetensors")["w"], torch.arange(3.0))
    assert safetensors_metadata(tmp_path / "a.safetensors") == {"k": "v"}


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    write_malicious_pickle(tmp_path / "evil.ckpt", marker, {"state_dict": {"w": torch.ones(1)}})
    with pytest.raises(WeightsError, match=r"evil\.ckpt holds objects other than tensors.*convert it once"):
        load_torch(tmp_path / "evil.ckpt", "adapter")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", os.urandom(300), b"not a checkpoint at all"])
def test_corrupt_torch_files_name_themselves(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(WeightsError, match=r"bad\.pt is not a readable torch file"):
        load_torch(bad)


def test_truncated_files_name_themselves(tmp_path):
    torch.save({"w": torch.ones(100)}, tmp_path / "full.pt")
    save_file({"w": torch.ones(100)}, tmp_path / "full.safetensors")
    for name in ("full.pt", "full.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut_full\.pt is not a readable torch file"):
        load_torch(tmp_path / "cut_full.pt")
    with pytest.raises(WeightsError, match=r"cut_full\.safetensors is not a readable safetensors file"):
        load_safetensors(tmp_path / "cut_full.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(64))
    with pytest.raises(WeightsError, match=r"junk\.safetensors is not a readable safetensors file"):
        safetensors_metadata(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_torch(tmp_path / "missing.pt")
