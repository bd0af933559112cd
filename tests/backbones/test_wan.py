"""Wan 2.1 backbone: per-latent-frame cross-attention, temporal pooling and the text pathways, against
the stock diffusers transformer, hand-written attention and WanPipeline's own prompt encoding."""

from __future__ import annotations

import copy

import pytest
import torch

from av_lightning.backbones.wan import WanT2V
from av_lightning.backbones.wan_parts import tiny_wan_configs

N = tiny_wan_configs()["text_length"]


def tiny_wan(text_mode: str = "text_encoder", seed: int = 0, **kw) -> WanT2V:
    torch.manual_seed(seed)
    return WanT2V(**{**tiny_wan_configs(), **kw}, text_mode=text_mode)


def stock_transformer(bb: WanT2V):
    from diffusers import WanTransformer3DModel

    stock = WanTransformer3DModel(**bb.transformer.config)
    stock.load_state_dict(bb.transformer.state_dict())
    return stock.eval()


def stock_text_encoder(bb: WanT2V):
    from transformers import UMT5EncoderModel

    enc = UMT5EncoderModel(copy.deepcopy(bb.text_encoder.config))
    enc.load_state_dict(bb.text_encoder.state_dict())
    return enc.eval()


def wan_pipeline(bb: WanT2V, scheduler: str = "unipc", tokenizer=None):
    """WanPipeline over fresh copies of the backbone's parts (no hooks, stock processors)."""
    from diffusers import AutoencoderKLWan, WanPipeline

    vae = AutoencoderKLWan(**bb.vae.config)
    vae.load_state_dict(bb.vae.state_dict())
    return WanPipeline(tokenizer=tokenizer or copy.deepcopy(bb.tokenizer), text_encoder=stock_text_encoder(bb),
                       vae=vae.eval(), scheduler=bb.make_scheduler(scheduler), transformer=stock_transformer(bb))


@pytest.fixture(scope="module")
def bb():
    return tiny_wan()


def _inputs(bb, batch=2, frames=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, bb.latent_channels, frames, 4, 6, generator=g)
    t = torch.tensor([700.0, 250.0][:batch])
    cond = torch.randn(batch, frames, N, bb.text_width, generator=g)
    return latents, t, cond


def test_identical_frame_conditioning_reproduces_stock_transformer(bb):
    latents, t, cond = _inputs(bb)
    text = cond[:, 0]
    with torch.no_grad():
        ref = stock_transformer(bb)(latents, t, encoder_hidden_states=text).sample
        per_frame = bb.denoise(latents, t, text[:, None].expand(-1, latents.shape[2], -1, -1))
        shared = bb.denoise(latents, t, text)
    assert (ref - per_frame).abs().max() <= 1e-5
    assert torch.equal(shared, ref)  # the stock path is the library's processor untouched


def _attn2_io(bb, latents, t, cond):
    """Inputs and output of block 0's cross-attention for per-frame ``cond``."""
    seen = {}
    attn = bb.transformer.blocks[0].attn2
    h1 = attn.register_forward_pre_hook(lambda m, args: seen.update(x=args[0], ctx=args[1]))
    h2 = attn.register_forward_hook(lambda m, args, out: seen.update(out=out))
    try:
        with torch.no_grad():
            bb.denoise(latents, t, cond)
    finally:
        h1.remove()
        h2.remove()
    return seen


def _reference_attention(attn, x, ctx):
    """Softmax attention written out by hand (projections, RMS norms, heads), no diffusers dispatch."""
    q, k, v = attn.norm_q(attn.to_q(x)), attn.norm_k(attn.to_k(ctx)), attn.to_v(ctx)
    h = attn.heads
    q, k, v = (z.unflatten(-1, (h, -1)).transpose(0, 1) for z in (q, k, v))  # (heads, L, d)
    w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    return attn.to_out[0]((w @ v).transpose(0, 1).flatten(1))


def test_each_latent_frame_attends_to_its_own_tokens_only(bb):
    latents, t, cond = _inputs(bb, batch=2, frames=3)
    F, hw = latents.shape[2], (latents.shape[3] // 2) * (latents.shape[4] // 2)
    base = _attn2_io(bb, latents, t, cond)
    attn = bb.transformer.blocks[0].attn2
    # Brute force: frame f's queries against frame f's context rows, one frame at a time.
    with torch.no_grad():
        for b in range(2):
            for f in range(F):
                x = base["x"][b, f * hw : (f + 1) * hw]
                ctx = base["ctx"][b, f * N : (f + 1) * N]
                ref = _reference_attention(attn, x, ctx)
                torch.testing.assert_close(base["out"][b, f * hw : (f + 1) * hw], ref, atol=1e-5, rtol=1e-5)
    changed = cond.clone()
    changed[:, 1] = torch.randn_like(changed[:, 1])
    after = _attn2_io(bb, latents, t, changed)
    assert torch.equal(after["x"], base["x"])  # block 0's input does not see the text yet
    delta = (after["out"] - base["out"]).abs().unflatten(1, (F, hw)).amax(dim=(0, 2, 3))
    assert delta[1] > 1e-3
    assert delta[0] == 0 and delta[2] == 0


def test_pool_frames_groups_of_four(bb):
    x = torch.randn(2, 9, 3, 5)
    got = bb.pool_frames(x)
    ref = torch.stack([x[:, 0], x[:, 1:5].mean(1), x[:, 5:9].mean(1)], dim=1)
    torch.testing.assert_close(got, ref)
    with pytest.raises(ValueError, match="1 \\+ 4"):
        bb.pool_frames(torch.randn(1, 8, 3, 5))


def test_plain_prompts_match_wan_pipeline_encoding(bb):
    pipe = wan_pipeline(bb)
    prompts = ["a red  square", "", "drums &amp; bass"]
    ref, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=N, device="cpu")
    with torch.no_grad():
        got = bb.encode_text(prompts)
    assert got.shape == (3, N, bb.text_width)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert (got[1].abs().sum(-1) > 0).sum() == 1  # the empty prompt: one row (</s>), then zeros


def test_text_encoder_mode_injects_into_umt5_input_embeddings():
    bb = tiny_wan("text_encoder")
    inj = bb.add_placeholder("<audio>", 2)
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(1, 5, 2, bb.text_width, generator=g, requires_grad=True)
    cond = bb.encode_frame_prompts(["a video of <audio> drums"], tokens)  # (1, 2, N, d)
    pooled = [tokens[0, 0], tokens[0, 1:5].mean(0)]
    for f in range(2):
        # Reference: WanPipeline's encoding with the pooled tokens written into a copy of the embedding table.
        tok = copy.deepcopy(bb.tokenizer)
        pipe = wan_pipeline(bb, tokenizer=tok)
        with torch.no_grad():
            table = pipe.text_encoder.encoder.embed_tokens.weight
            table[inj.token_ids] = pooled[f].detach()
        ref, _ = pipe.encode_prompt(inj.expand("a video of <audio> drums"), do_classifier_free_guidance=False,
                                    max_sequence_length=N, device="cpu")
        torch.testing.assert_close(cond[0, f], ref[0], atol=1e-5, rtol=1e-5)
    cond.sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.parameters())


def test_direct_mode_tokens_are_context_rows():
    bb = tiny_wan("direct")
    assert bb.add_placeholder("<audio>", 3) is None
    vocab = len(bb.tokenizer)
    tokens = torch.randn(2, 9, 3, bb.text_width, requires_grad=True)
    cond = bb.encode_frame_prompts(["a <audio> drum", "<audio>"], tokens)  # (2, 3, N, d)
    assert len(bb.tokenizer) == vocab  # direct mode leaves the tokenizer alone
    pooled = bb.pool_frames(tokens)
    with torch.no_grad():
        text = bb.encode_text(["a drum", ""])
    for b in range(2):
        for f in range(3):
            torch.testing.assert_close(cond[b, f, :3], pooled[b, f])
            torch.testing.assert_close(cond[b, f, 3:], text[b, : N - 3])
    cond.sum().backward()
    assert tokens.grad is not None and all(p.grad is None for p in bb.parameters())


@pytest.mark.parametrize("scheduler", ["unipc", "euler"])
def test_sampling_loop_matches_wan_pipeline(bb, scheduler):
    from av_lightning.pipeline import sample

    prompt, steps, gs = "a red square", 4, 5.0
    pipe = wan_pipeline(bb, scheduler)
    ref = pipe(prompt=prompt, negative_prompt="", height=32, width=48, num_frames=9, num_inference_steps=steps,
               guidance_scale=gs, generator=torch.Generator().manual_seed(0), output_type="latent",
               max_sequence_length=N).frames
    with torch.no_grad():
        text, uncond = bb.encode_text([prompt]), bb.encode_text([""])
    shape = bb.latent_shape(1, 9, 32, 48)
    assert tuple(ref.shape) == shape
    per_frame = text[:, None].expand(-1, shape[2], -1, -1)
    for cond in (text, per_frame):
        got = sample(bb.denoise, bb.make_scheduler(scheduler), cond, shape, uncond=uncond, steps=steps,
                     guidance_scale=gs, generator=torch.Generator().manual_seed(0), progress=False)
        assert (got - ref).abs().max() <= 1e-4


def test_latents_roundtrip_normalised_as_wan_pipeline(bb):
    frames = torch.randint(0, 256, (2, 9, 3, 32, 48), dtype=torch.uint8)
    z = bb.encode_frames(frames)
    assert z.shape == bb.latent_shape(2, 9, 32, 48)
    mean = torch.tensor(bb.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(bb.vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        raw = bb.vae.encode(frames[:1].permute(0, 2, 1, 3, 4).float() / 127.5 - 1).latent_dist.mean
        torch.testing.assert_close(z[:1], (raw - mean) / std, atol=1e-5, rtol=1e-5)
        video = bb.decode_latents(z)
        ref = bb.vae.decode(z[1:] * std + mean).sample  # WanPipeline's de-normalisation
    assert video.shape == frames.shape and video.dtype == torch.uint8
    ref = ((ref.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 1, 3, 4)
    assert (video[1:].int() - ref.int()).abs().max() <= 1


def test_gradient_checkpointing_gives_same_gradients():
    grads = []
    for ckpt in (False, True):
        bb = tiny_wan(gradient_checkpointing=ckpt)
        bb.add_placeholder("<audio>", 2)
        tokens = torch.randn(1, 5, 2, bb.text_width, generator=torch.Generator().manual_seed(0), requires_grad=True)
        latents, t, _ = _inputs(bb, batch=1, frames=2)
        with torch.enable_grad():
            bb.denoise(latents, t, bb.encode_frame_prompts(["<audio>"], tokens)).square().mean().backward()
        grads.append(tokens.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_set_attention_backend_reaches_the_frame_processors(bb, monkeypatch):
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    latents, t, cond = _inputs(bb)
    with torch.no_grad():
        before = bb.denoise(latents, t, cond)
    math_backend = AttentionBackendName._NATIVE_MATH
    calls = []
    inner_fn = _AttentionBackendRegistry._backends[math_backend]

    def counted(*args, **kwargs):
        calls.append(kwargs["key"].shape)
        return inner_fn(*args, **kwargs)

    monkeypatch.setitem(_AttentionBackendRegistry._backends, math_backend, counted)
    bb.transformer.set_attention_backend("_native_math")
    try:
        with torch.no_grad():
            after = bb.denoise(latents, t, cond)
    finally:
        bb.transformer.reset_attention_backend()
    n_blocks, frames = len(bb.transformer.blocks), latents.shape[2]
    # every attn1 and attn2 went through the chosen kernel; attn2 with (B·F_lat, N) keys
    assert len(calls) == 2 * n_blocks
    assert sum(tuple(s[:2]) == (2 * frames, N) for s in calls) == n_blocks
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_bad_inputs_fail_clearly(bb, tmp_path):
    latents, t, cond = _inputs(bb)
    with pytest.raises(ValueError, match="latent frames"):
        bb.denoise(latents, t, cond[:, :2])
    with pytest.raises(ValueError, match="rows per frame"):
        bb.denoise(latents, t, cond[:, :, :-1])
    with pytest.raises(ValueError, match="1 \\+ 4"):
        bb.encode_frames(torch.zeros(1, 8, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="multiples of 16"):
        bb.latent_shape(1, 9, 24, 32)
    with pytest.raises(RuntimeError, match="add_placeholder"):
        tiny_wan().encode_frame_prompts(["<audio>"], torch.zeros(1, 5, 2, bb.text_width))
    direct = tiny_wan("direct")
    direct.add_placeholder("<audio>", 2)
    with pytest.raises(ValueError, match="exactly once"):
        direct.encode_frame_prompts(["drums"], torch.zeros(1, 5, 2, bb.text_width))
    with pytest.raises(ValueError, match="sampler"):
        bb.make_scheduler("ddim")
    with pytest.raises(FileNotFoundError, match="Wan2.1-T2V-1.3B-Diffusers"):
        WanT2V(pretrained=str(tmp_path / "missing"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "transformer").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks"):
        WanT2V(pretrained=str(tmp_path / "half"))


def test_placeholders_beyond_the_table_resize_it_and_the_hook_follows():
    cfg = tiny_wan_configs()
    cfg["text_encoder"]["vocab_size"] = len(tiny_wan().tokenizer)  # no spare rows for the placeholders
    bb = tiny_wan(**cfg)
    bb.add_placeholder("<audio>", 2)
    te = bb.text_encoder
    assert te.shared.num_embeddings == cfg["text_encoder"]["vocab_size"] + 2
    assert te.encoder.embed_tokens is te.shared and not te.shared.weight.requires_grad
    tokens = torch.randn(1, 5, 2, bb.text_width, requires_grad=True)
    cond = bb.encode_frame_prompts(["<audio>"], tokens)
    assert (bb.encode_frame_prompts(["<audio>"], 2 * tokens) - cond).abs().max() > 1e-3
    cond.sum().backward()
    assert tokens.grad.abs().sum() > 0
