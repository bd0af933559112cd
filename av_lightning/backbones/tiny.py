"""Tiny random text-to-video components built from config dicts (tests, demos, benchmarks).

Nothing here downloads: the tokenizer is a character-level CLIP BPE built in memory (every byte
is a token, no merges), and the UNet, text encoder and VAE are diffusers / transformers models
built from small configs.
"""

from __future__ import annotations

from typing import Optional


def byte_alphabet() -> list[str]:
    """The 256 printable characters CLIP's byte-level BPE uses for the 256 byte values."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def char_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer whose vocabulary is single characters (514 tokens + 2 specials)."""
    from transformers import CLIPTokenizer

    alphabet = byte_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in alphabet:
        vocab[c] = len(vocab)
    for c in alphabet:
        vocab[c + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = model_max_length
    return tok


TINY_TEXT_ENCODER = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=48, vocab_size=520, projection_dim=32,
    bos_token_id=0, eos_token_id=1, pad_token_id=1,
)

TINY_UNET = dict(
    block_out_channels=[32, 64],
    layers_per_block=1,
    down_block_types=["CrossAttnDownBlock3D", "DownBlock3D"],
    up_block_types=["UpBlock3D", "CrossAttnUpBlock3D"],
    cross_attention_dim=32,
    attention_head_dim=8,
    norm_num_groups=8,
    in_channels=4,
    out_channels=4,
    sample_size=8,
)

TINY_VAE = dict(
    block_out_channels=[16, 32],
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
    up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    latent_channels=4,
    norm_num_groups=8,
    sample_size=16,
)

TINY_SCHEDULER = dict(
    num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    clip_sample=False, prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1,
)


def tiny_configs(pixel_space: bool = False, prediction_type: str = "epsilon") -> dict[str, Optional[dict]]:
    """Config dicts of a tiny backbone: latent (with a tiny VAE) or pixel space (3 channels)."""
    unet = dict(TINY_UNET)
    if pixel_space:
        unet.update(in_channels=3, out_channels=3)
    return dict(
        unet=unet,
        text_encoder=dict(TINY_TEXT_ENCODER),
        vae=None if pixel_space else dict(TINY_VAE),
        scheduler=dict(TINY_SCHEDULER, prediction_type=prediction_type),
    )
