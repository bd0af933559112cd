"""The method on the Wan backbone: gradients, adapters, `lightning fit` and `av-lightning generate`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from av_lightning.backbones.wan import WanT2V
from av_lightning.backbones.wan_parts import tiny_wan_configs
from tests.conftest import tiny_batch

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false", "--data.init_args.num_train=4", "--data.init_args.num_val=2",
        "--data.init_args.batch_size=2", "--model.init_args.steps=2"]


def wan_module(text_mode: str = "text_encoder", seed: int = 0, **kw):
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens

    torch.manual_seed(seed)
    backbone = WanT2V(**tiny_wan_configs(), text_mode=text_mode)
    d = backbone.text_width
    encoder = MelEncoder(n_mels=16, frame_rate=50.0)
    return AudioToVideo(
        backbone=backbone, encoder=encoder,
        mapper=AudioMapper(in_features=encoder.feature_size, hidden=32, out_features=d, depth=4),
        tokens=TempoTokens(n_scales=2, pool=AttentivePool(dim=d, hidden=16)),
        num_frames=9, fps=8.0, steps=2, guidance_scale=2.0, scheduler="unipc",
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), **kw,
    )


@pytest.mark.parametrize("text_mode", ["text_encoder", "direct"])
@pytest.mark.parametrize("conditioning", ["audio", "text+audio"])
def test_gradients_reach_only_the_adapter(text_mode, conditioning):
    model = wan_module(text_mode, conditioning=conditioning).train()
    model.setup("fit")
    batch = tiny_batch(2, num_frames=9, fps=8.0, size=32)
    out = model.diffusion_loss(batch, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all(n.startswith(("mapper.", "tokens.")) for n in with_grad)
    assert all(p.grad is None for p in model.backbone.parameters())
    assert sum(float(p.grad.abs().sum()) for n, p in model.named_parameters() if n in with_grad) > 0
    # the frozen parts stay in eval mode under a training parent
    bb = model.backbone
    assert not any(m.training for part in (bb.transformer, bb.vae, bb.text_encoder) for m in part.modules())


def test_adapter_save_load_and_cached_latents(tmp_path):
    model = wan_module(seed=0).eval()
    batch = tiny_batch(1, num_frames=9, fps=8.0, size=32)
    path = tmp_path / "adapter.safetensors"
    model.save_adapter(path)
    other = wan_module(seed=1).eval()
    assert any(not torch.equal(a, b) for a, b in zip(model.trainable_state_dict().values(),
                                                     other.trainable_state_dict().values()))
    other.load_adapter(path)
    for k, v in model.trainable_state_dict().items():
        torch.testing.assert_close(other.trainable_state_dict()[k], v)
    with torch.no_grad():
        torch.testing.assert_close(other.audio_tokens(batch), model.audio_tokens(batch))
    # latents cached on disk stand in for frames: F_lat = 3 latent frames for 9 video frames
    cached = {**batch, "latents": model.backbone.encode_frames(batch["frames"])}
    cached.pop("frames")
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    with torch.no_grad():
        torch.testing.assert_close(model.diffusion_loss(cached, generator=g[0])["loss"],
                                   model.diffusion_loss(batch, generator=g[1])["loss"])
    with pytest.raises(ValueError, match="3 for this backbone"):
        model.check_batch({**cached, "latents": cached["latents"].repeat(1, 1, 3, 1, 1)})


def test_generate_decodes_1_plus_4k_frames():
    model = wan_module("direct").eval()
    batch = tiny_batch(2, num_frames=9, fps=8.0, size=32)
    videos = model.sample(batch, height=32, width=32, steps=2)
    assert videos.shape == (2, 9, 3, 32, 32) and videos.dtype == torch.uint8
    latents = model.sample(batch, height=32, width=32, steps=2, return_latents=True)
    assert latents.shape == model.backbone.latent_shape(2, 9, 32, 32)


def _tone(seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    return 0.3 * torch.sin(2 * math.pi * 330 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))


@pytest.mark.parametrize("text_mode", ["text_encoder", "direct"])
def test_lightning_fit_then_generate_writes_mp4_with_audio(text_mode, tmp_path):
    from av_lightning.cli import cli_main
    from av_lightning.commands.generate import main as generate
    from av_lightning.data.io import probe, write_audio

    cli_main(["fit", "--config", str(ROOT / "configs/tiny_wan.yaml"), f"--trainer.default_root_dir={tmp_path}/run",
              f"--model.init_args.backbone.init_args.text_mode={text_mode}", "--trainer.callbacks=[]", *FAST])
    ckpts = sorted((tmp_path / "run").rglob("*.ckpt"))
    assert ckpts, "fit wrote no checkpoint"
    write_audio(tmp_path / "song.wav", _tone(2.3))
    out = tmp_path / "song.mp4"
    rc = generate(["--audio", str(tmp_path / "song.wav"), "--checkpoint", str(ckpts[-1]), "--out", str(out),
                   "--steps", "2", "--device", "cpu", "--no-progress"])
    assert rc == 0
    info = probe(out)
    # 2.3 s at 8 fps = 18 whole frames -> 17 = 1 + 4·4 (Wan makes 1 + 4k), two windows of 9 frames
    assert info.num_frames == 17 and info.size == (32, 32) and info.has_audio
    assert abs(info.audio_duration - 17 / 8) < 0.05
