"""Wan 2.1 backbone loads the diffusers layout (written here by WanPipeline itself) and writes one
that WanPipeline loads back."""

from __future__ import annotations

import json

import pytest
import torch

from av_lightning.backbones.wan import WanT2V
from tests.backbones.test_wan import N, _inputs, tiny_wan, wan_pipeline


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A WanPipeline of tiny random parts saved by diffusers (the real Wan2.1-T2V-Diffusers layout)."""
    root = tmp_path_factory.mktemp("wan") / "Wan-tiny-Diffusers"
    bb = tiny_wan(seed=4)
    wan_pipeline(bb).save_pretrained(root)
    return bb, root


def test_pipeline_layout_has_every_part(saved):
    _, root = saved
    index = json.loads((root / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (root / part).is_dir() and part in index


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loads_wan_pipeline_directory(saved, dtype):
    bb, root = saved
    loaded = WanT2V(pretrained=str(root), text_length=N, dtype=dtype, size=(32, 48))
    assert loaded.transformer.dtype == getattr(torch, dtype)
    assert loaded.vae.dtype == torch.float32  # the VAE stays float32 unless asked
    assert loaded.flow_shift == bb.flow_shift and loaded.temporal_factor == 4
    assert all(not p.requires_grad for p in loaded.parameters())
    latents, t, cond = _inputs(bb)
    with torch.no_grad():
        ref, got = bb.denoise(latents, t, cond), loaded.denoise(latents, t, cond)
        text_ref, text_got = bb.encode_text(["a drum"]), loaded.encode_text(["a drum"])
    tol = 1e-6 if dtype == "float32" else 0.1
    assert (ref - got).abs().max() <= tol
    if dtype == "float32":
        torch.testing.assert_close(text_got, text_ref)
    frames = torch.randint(0, 256, (1, 5, 3, 32, 48), dtype=torch.uint8)
    torch.testing.assert_close(loaded.encode_frames(frames), bb.encode_frames(frames))


def test_save_pretrained_round_trip(saved, tmp_path):
    bb = tiny_wan(seed=5)
    bb.save_pretrained(tmp_path / "wan")
    files = sorted(str(f.relative_to(tmp_path / "wan")) for f in (tmp_path / "wan").rglob("*") if f.is_file())
    assert files == sorted(str(f.relative_to(saved[1])) for f in saved[1].rglob("*") if f.is_file())
    again = WanT2V(pretrained=str(tmp_path / "wan"), text_length=N)
    assert again.make_scheduler().config.flow_shift == bb.flow_shift
    latents, t, cond = _inputs(bb)
    with torch.no_grad():
        torch.testing.assert_close(again.denoise(latents, t, cond), bb.denoise(latents, t, cond))
    bb.add_placeholder("<audio>", 2)
    with pytest.raises(RuntimeError, match="before registering"):
        bb.save_pretrained(tmp_path / "again")


def test_wan_pipeline_loads_a_saved_backbone(tmp_path):
    pytest.importorskip("accelerate", reason="diffusers loads WanTransformer3DModel only with accelerate installed")
    from diffusers import WanPipeline

    bb = tiny_wan(seed=6)
    bb.save_pretrained(tmp_path / "wan")
    pipe = WanPipeline.from_pretrained(tmp_path / "wan", local_files_only=True)
    torch.testing.assert_close(pipe.transformer.state_dict(), bb.transformer.state_dict())


def test_missing_weights_name_the_folder(saved, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(saved[1], root)
    (root / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="transformer.*safetensors"):
        WanT2V(pretrained=str(root), text_length=N)
