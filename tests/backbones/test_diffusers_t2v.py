"""Frozen backbone: prompt injection and per-frame cross-attention against stock references."""

import copy

import pytest
import torch

from av_lightning.backbones.prompt import PromptInjector
from av_lightning.backbones.tiny import TINY_TEXT_ENCODER, char_tokenizer
from tests.conftest import tiny_backbone


def _clip():
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(**dict(TINY_TEXT_ENCODER, bos_token_id=0, eos_token_id=1, pad_token_id=1))).eval()


def test_injection_equals_embedding_table_reference():
    tok, clip = char_tokenizer(48), _clip()
    inj = PromptInjector(tok, clip, "<audio>", num_tokens=3)
    prompts = ["a video of <audio> drums", "<audio>"]
    ids = inj.tokenize([inj.expand(p) for p in prompts])
    values = torch.randn(2, 3, 32, requires_grad=True)
    got = inj.encode(ids, values)
    for n in range(2):
        # Independent reference: write the rows into a copy of the embedding table, plain forward.
        ref_model = copy.deepcopy(clip)
        ref_model._forward_hooks.clear()
        emb = ref_model.get_input_embeddings()
        emb._forward_hooks.clear()
        with torch.no_grad():
            for k, tid in enumerate(inj.token_ids):
                emb.weight[tid] = values[n, k]
        ref = ref_model(input_ids=ids[n : n + 1]).last_hidden_state
        torch.testing.assert_close(got[n : n + 1], ref, atol=1e-5, rtol=1e-5)
    got.sum().backward()
    assert values.grad is not None and values.grad.abs().sum() > 0
    assert clip.get_input_embeddings().weight.grad is None
    assert not clip.get_input_embeddings().weight.requires_grad


def test_ids_come_from_tokenizer_and_bad_templates_fail():
    tok, clip = char_tokenizer(48), _clip()
    inj = PromptInjector(tok, clip, "<audio>", num_tokens=2)
    assert inj.token_ids == tok.convert_tokens_to_ids(["<audio_0>", "<audio_1>"])
    with pytest.raises(ValueError, match="exactly once"):
        inj.expand("a video of drums")
    with pytest.raises(ValueError, match="exactly once"):
        inj.expand("<audio> and <audio>")
    # the placeholder strings are now in the vocabulary: a second injector must refuse them
    with pytest.raises(ValueError, match="already exist"):
        PromptInjector(tok, clip, "<audio>", num_tokens=2)
    # a prompt truncated before its placeholder is caught
    long = "x " * 60 + "<audio>"
    with pytest.raises(ValueError, match="placeholder"):
        inj.placeholder_mask(inj.tokenize([inj.expand(long)]))


def test_plain_prompt_is_unchanged_by_hook():
    tok, clip = char_tokenizer(48), _clip()
    ids = tok(["a drum"], padding="max_length", max_length=48, return_tensors="pt").input_ids
    before = clip(input_ids=ids).last_hidden_state
    inj = PromptInjector(tok, clip, "<audio>", num_tokens=2)
    torch.testing.assert_close(inj.encode(ids), before)


@pytest.fixture(scope="module")
def bb():
    torch.manual_seed(0)
    return tiny_backbone(pixel_space=True)


def _stock_unet(bb):
    from diffusers import UNet3DConditionModel

    stock = UNet3DConditionModel(**bb.unet.config)
    stock.load_state_dict(bb.unet.state_dict())
    return stock.eval()


def test_identical_frame_conditioning_reproduces_stock_unet(bb):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 8, 8)
    t = torch.tensor([3, 700])
    text = torch.randn(2, 48, 32)
    stock = _stock_unet(bb)(x, t, encoder_hidden_states=text).sample
    per_frame = bb.denoise(x, t, text[:, None].expand(-1, 5, -1, -1).contiguous())
    torch.testing.assert_close(per_frame, stock, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bb.denoise(x, t, text), stock, atol=1e-5, rtol=1e-5)


def test_changing_one_frame_changes_that_frame_most(bb):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 6, 8, 8)
    t = torch.tensor([500])
    cond = torch.randn(1, 48, 32)[:, None].expand(-1, 6, -1, -1).clone()
    base = bb.denoise(x, t, cond)
    changed = cond.clone()
    changed[:, 4] = torch.randn(48, 32) * 3
    diff = (bb.denoise(x, t, changed) - base).abs().mean(dim=(0, 1, 3, 4))
    assert int(diff.argmax()) == 4
    assert diff[4] > 2 * diff[torch.arange(6) != 4].max()


def test_frame_kwarg_reaches_every_processor_without_warning(bb, caplog):
    import logging

    caplog.set_level(logging.WARNING)
    bb.denoise(torch.randn(1, 3, 2, 8, 8), torch.tensor([1]), torch.randn(1, 2, 48, 32))
    assert "are not expected" not in caplog.text
    assert bb.num_frame_layers >= 2


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(3)
    a, b = tiny_backbone(), tiny_backbone()
    b.load_state_dict(a.state_dict())
    b.enable_gradient_checkpointing()
    x = torch.randn(1, 3, 3, 8, 8)
    t = torch.tensor([10])
    grads = []
    for m in (a, b):
        cond = torch.randn(1, 3, 48, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
        m.denoise(x, t, cond).pow(2).mean().backward()
        grads.append(cond.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_latent_backbone_roundtrip_shapes_and_pretrained_load(tmp_path):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V

    torch.manual_seed(0)
    bb = tiny_backbone(pixel_space=False, sample_size=4)
    frames = torch.randint(0, 256, (1, 3, 3, 16, 16), dtype=torch.uint8)
    lat = bb.encode_frames(frames)
    assert lat.shape == (1, 4, 3, 8, 8)
    assert bb.decode_latents(lat).shape == (1, 3, 3, 16, 16)
    bb.save_pretrained(tmp_path / "t2v")
    loaded = DiffusersT2V(pretrained=str(tmp_path / "t2v"))
    assert loaded.vae is not None
    cond = torch.randn(1, 48, 32)
    torch.testing.assert_close(loaded.denoise(lat, torch.tensor([5]), cond), bb.denoise(lat, torch.tensor([5]), cond))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DiffusersT2V(pretrained=str(tmp_path / "missing"))


def test_mismatched_widths_fail():
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.backbones.tiny import tiny_configs

    cfg = tiny_configs(pixel_space=True)
    cfg["unet"]["cross_attention_dim"] = 16
    with pytest.raises(ValueError, match="cross_attention_dim"):
        DiffusersT2V(**cfg)
