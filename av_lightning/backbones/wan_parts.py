"""Config dicts of Wan 2.1 text-to-video parts: tiny random ones and the 1.3B model's shapes.

Nothing here downloads. The tiny tokenizer is a character-level umT5-style (Unigram, SentencePiece
metaspace) tokenizer built in memory; the tiny transformer, VAE and text encoder are the diffusers /
transformers classes built from small configs (tests, ``configs/tiny_wan.yaml``). The ``WAN_1_3B_*``
dicts hold the shapes of Wan2.1-T2V-1.3B-Diffusers (random-weight benchmarks, memory checks):
transformer 12 heads × 128, 30 layers, FFN 8960, text width 4096; VAE 16 latent channels, 4× in
time and 8× in space; text encoder umT5-XXL (24 layers, 4096 wide, 64 heads, FFN 10240).
"""

from __future__ import annotations

import string

#: WanPipeline's prompt length: the umT5 states are zero-padded to this many rows.
WAN_TEXT_LENGTH = 512

#: The scheduler of Wan2.1-T2V-1.3B-Diffusers (``scheduler/scheduler_config.json``): UniPC on flow
#: sigmas, shift 3 (the 480p setting).
WAN_SCHEDULER = dict(
    _class_name="UniPCMultistepScheduler", num_train_timesteps=1000, prediction_type="flow_prediction",
    use_flow_sigmas=True, flow_shift=3.0, solver_order=2, solver_type="bh2", predict_x0=True,
    lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace", steps_offset=0,
    beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
)

TINY_WAN_TRANSFORMER = dict(
    patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
    text_dim=16, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
TINY_WAN_VAE = dict(
    base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
    latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.5, 2.0, 1.0],
)
TINY_WAN_TEXT_ENCODER = dict(
    vocab_size=192, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, relative_attention_num_buckets=8,
    feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)
TINY_WAN_TEXT_LENGTH = 32

WAN_1_3B_TRANSFORMER = dict(
    patch_size=[1, 2, 2], num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6, rope_max_seq_len=1024,
)
WAN_VAE = dict(
    base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True],
)
UMT5_XXL = dict(
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)


def char_tokenizer(max_length: int = TINY_WAN_TEXT_LENGTH):
    """A umT5-style tokenizer whose pieces are single characters, with and without the word-start
    marker (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, as umT5); 150 pieces."""
    from transformers import T5Tokenizer

    chars = string.ascii_letters + string.digits + ".,!?'-:;()\""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    tok.model_max_length = max_length
    return tok


def tiny_wan_configs() -> dict:
    """Config dicts of a tiny Wan backbone (``WanT2V(**tiny_wan_configs())``); builds in well under a second."""
    return dict(
        transformer=dict(TINY_WAN_TRANSFORMER), vae=dict(TINY_WAN_VAE),
        text_encoder=dict(TINY_WAN_TEXT_ENCODER), text_length=TINY_WAN_TEXT_LENGTH, size=(32, 32),
    )
