"""Precision and memory settings: SDPA attention under the frame processor, half-precision backbones."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def bf16_model():
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens
    from tests.conftest import tiny_backbone

    torch.manual_seed(0)
    backbone = tiny_backbone(dtype="bfloat16")
    d = backbone.text_width
    return AudioToVideo(backbone, MelEncoder(n_mels=16, frame_rate=50.0), AudioMapper(16, 48, d),
                        TempoTokens(n_scales=2, pool=AttentivePool(d)), num_frames=4, fps=4.0).eval()


def test_frame_processor_wraps_sdpa(bf16_model):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from av_lightning.backbones.frame_attention import FrameConditioningProcessor

    procs = bf16_model.backbone.unet.attn_processors
    assert procs and all(isinstance(p, FrameConditioningProcessor) for p in procs.values())
    assert all(isinstance(p.inner, AttnProcessor2_0) for p in procs.values())  # torch SDPA underneath
    assert any(p.per_frame for p in procs.values())


def test_bfloat16_backbone_generates_on_cpu(bf16_model):
    from tests.helpers import sample_one as generate_video

    assert bf16_model.backbone.unet.dtype == torch.bfloat16
    frames = generate_video(bf16_model, 0.2 * torch.randn(16000), height=8, width=8, steps=1, guidance_scale=1.0,
                            progress=False)
    assert frames.shape == (4, 3, 8, 8) and frames.dtype == torch.uint8
    assert next(bf16_model.mapper.parameters()).dtype == torch.float32  # the adapter stays float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_long_video_on_gpu(dtype):
    """Three windows with a tiny latent backbone (VAE decoded in slices) in half precision on the GPU."""
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.backbones.tiny import tiny_configs
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens
    from tests.helpers import sample_one as generate_video

    torch.manual_seed(0)
    backbone = DiffusersT2V(**tiny_configs(pixel_space=False), dtype=dtype, vae_slice=2)
    d = backbone.text_width
    model = AudioToVideo(backbone, MelEncoder(n_mels=16, frame_rate=50.0),
                         AudioMapper(16, 48, d), TempoTokens(n_scales=2, pool=AttentivePool(d)),
                         num_frames=8, fps=8.0, steps=3, guidance_scale=3.0).eval().cuda()
    torch.cuda.reset_peak_memory_stats()
    frames = generate_video(model, 0.2 * torch.randn(16000 * 5 // 2), height=32, width=32, overlap=2, progress=False)
    assert frames.shape == (20, 3, 32, 32) and frames.dtype == torch.uint8
    assert frames.float().std() > 0  # not a constant (NaN/overflow) image
    assert torch.cuda.max_memory_allocated() < 2**30


from av_lightning.backbones.shapes import ZEROSCOPE_TEXT, ZEROSCOPE_UNET, ZEROSCOPE_VAE  # noqa: E402


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_full_size_memory_and_speed_on_gpu():
    """Full-size random parts in zeroscope's layout: 2.5 s of audio at 24 fps, 320×576, three windows.

    Prints seconds per sampling step and peak GPU memory per setting (docs/generation.md quotes them):
    ``pytest -m gpu -s tests/generation/test_precision.py``.
    """
    import time

    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens
    from tests.helpers import sample_one as generate_video

    audio = 0.2 * torch.randn(16000 * 5 // 2)
    results = []
    for dtype in ("float16", "bfloat16"):
        torch.manual_seed(0)
        with torch.device("cuda"):
            backbone = DiffusersT2V(unet=ZEROSCOPE_UNET, text_encoder=ZEROSCOPE_TEXT, vae=ZEROSCOPE_VAE,
                                    tokenizer_max_length=77, dtype=dtype, vae_slice=8)
            model = AudioToVideo(backbone, MelEncoder(n_mels=64, frame_rate=100.0), AudioMapper(64, 256, 1024),
                                 TempoTokens(n_scales=5, pool=AttentivePool(1024)), num_frames=24, fps=24.0,
                                 steps=3, guidance_scale=9.0).eval()
        generate_video(model, audio[:16000], height=320, width=576, steps=1, progress=False)  # warm-up
        for window_batch, vae_slice in ((6, 8), (None, 8), (6, 60)):  # all 3 windows x 2 rows; one window (default)
            backbone.vae_slice = vae_slice
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            latents = generate_video(model, audio, height=320, width=576, steps=3, window_batch=window_batch,
                                     progress=False, return_latents=True)
            torch.cuda.synchronize()
            sample_s = time.perf_counter() - start
            sample_peak = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            frames = backbone.decode_latents(latents[None])
            torch.cuda.synchronize()
            decode_s = time.perf_counter() - start
            decode_peak = torch.cuda.max_memory_allocated() / 2**30
            assert frames.shape == (1, 60, 3, 320, 576)
            row = dict(dtype=dtype, window_batch=window_batch, vae_slice=vae_slice, s_per_step=round(sample_s / 3, 3),
                       sample_peak_gib=round(sample_peak, 2), decode_s=round(decode_s, 2), decode_peak_gib=round(decode_peak, 2))
            results.append(row)
            print(row)
        del model, backbone
        torch.cuda.empty_cache()
    assert all(r["sample_peak_gib"] < 70 for r in results)
