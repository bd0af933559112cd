"""The full-size Wan model file composes into a dataset config through the CLI's --print_config
(parsed, nothing instantiated), and its widths fit umT5-XXL and the 1.3B transformer."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from av_lightning.backbones.wan_parts import UMT5_XXL, WAN_1_3B_TRANSFORMER

REPO = Path(__file__).resolve().parents[2]


def print_config(*args: str) -> dict:
    from av_lightning.cli import cli_main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None), buf.getvalue()
    return yaml.safe_load(buf.getvalue())


def test_wan_model_file_composes_with_a_dataset_config(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "wan_1_3b.yaml").write_text((REPO / "configs/model/wan_1_3b.yaml").read_text())
    (tmp_path / "wan_data.yaml").write_text(yaml.safe_dump({
        "model": "model/wan_1_3b.yaml",
        "data": {"class_path": "av_lightning.data.datamodules.AudioVideoDataModule",
                 "init_args": {"root": "/path/to/audioset_drums", "num_frames": 81, "fps": 16.0, "size": [480, 832],
                               "batch_size": 1}},
    }))
    cfg = print_config("--config", str(tmp_path / "wan_data.yaml"))
    model = cfg["model"]["init_args"]
    bb = model["backbone"]
    assert bb["class_path"] == "av_lightning.backbones.wan.WanT2V"
    assert bb["init_args"]["size"] in ([480, 832], (480, 832))
    assert bb["init_args"]["dtype"] == "bfloat16" and bb["init_args"]["gradient_checkpointing"] is True
    data = cfg["data"]["init_args"]  # the CLI links num_frames / fps from here into the model
    assert (data["num_frames"] - 1) % 4 == 0 and data["num_frames"] / data["fps"] == pytest.approx(5.0625)
    d = UMT5_XXL["d_model"]
    assert d == WAN_1_3B_TRANSFORMER["text_dim"]
    assert model["mapper"]["init_args"]["out_features"] == d
    assert model["tokens"]["init_args"]["pool"]["init_args"]["dim"] == d
    assert model["scheduler"] == "unipc"


def test_wan_drums_overlay_keeps_the_drums_dataset():
    cfg = print_config("--config", str(REPO / "configs/drums.yaml"), "--config", str(REPO / "configs/wan_drums.yaml"))
    assert cfg["model"]["init_args"]["backbone"]["class_path"] == "av_lightning.backbones.wan.WanT2V"
    data = cfg["data"]["init_args"]
    assert data["manifest"] == "audioset_drums.csv" and data["root"] == "/path/to/audioset_drums"
    assert (data["num_frames"], data["fps"], list(data["size"])) == (81, 16.0, [480, 832])
    assert cfg["trainer"]["strategy"] == "ddp" and cfg["trainer"]["devices"] == 2
