"""Config dicts with the shapes of zeroscope_v2_576w (for random-weight benchmarks and memory checks).

UNet3DConditionModel: block widths 320/640/1280/1280, two layers per block, cross-attention width
1024, 64-channel attention heads; AutoencoderKL: 128/256/512/512, 4 latent channels (8× down);
text encoder: the OpenCLIP ViT-H text tower used by ModelScope (1024 wide, 23 layers, 16 heads).
The vocabulary is the character tokenizer's (the real one has 49408 tokens; it changes nothing
in the cost of a forward pass beyond the embedding lookup).
"""

ZEROSCOPE_UNET = dict(
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
    down_block_types=["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
    up_block_types=["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
    cross_attention_dim=1024, attention_head_dim=64, norm_num_groups=32, in_channels=4, out_channels=4, sample_size=32,
)
ZEROSCOPE_VAE = dict(
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, norm_num_groups=32, sample_size=768,
)
ZEROSCOPE_TEXT = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, vocab_size=520, hidden_act="gelu", projection_dim=1024,
    bos_token_id=0, eos_token_id=1, pad_token_id=1,
)
