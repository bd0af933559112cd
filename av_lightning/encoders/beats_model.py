"""The BEATs network (Chen et al. 2022): architecture config, transformer layers, patch model.

Owns everything between the normalised fbank and the hidden states of every layer: the
:class:`BEATsConfig` read from a checkpoint's ``cfg``, the 16x16 patch embedding, the
weight-normalised conv positional embedding, the post-LN / deep-norm transformer layers with the
gated T5-bucket relative position bias, and the fine-tuned model's AudioSet predictor. The module
tree reproduces the state-dict keys of the authors' checkpoints. Written for this project from the
paper and ESPnet's public ``espnet2/asr/encoder/beats_encoder.py``.

Dropout is left out: the network serves as a frozen feature extractor and always runs as in eval
mode.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from av_lightning.encoders.beats_features import HOP_SAMPLES

log = logging.getLogger(__name__)

# cfg keys that only matter for training (dropouts, layer drop, gradient tricks): accepted, unused.
_TRAINING_ONLY_KEYS = {
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "encoder_layerdrop",
    "dropout_input",
    "layer_wise_gradient_decay_ratio",
    "predictor_dropout",
}


@dataclass
class BEATsConfig:
    """Architecture of a BEATs model; defaults are those of the public BEATs code."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_class: int = 527
    num_mel_bins: int = 128

    @classmethod
    def from_dict(cls, cfg: dict) -> BEATsConfig:
        """Build from a checkpoint's ``cfg``; training-only keys are ignored, unknown keys logged."""
        if not isinstance(cfg, dict):
            raise TypeError(f"expected the BEATs cfg as a dict, got {type(cfg).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known - _TRAINING_ONLY_KEYS)
        if unknown:
            log.warning("BEATs cfg keys not used by this implementation: %s", unknown)
        config = cls(**{k: v for k, v in cfg.items() if k in known})
        config.validate()
        return config

    def validate(self) -> None:
        if self.activation_fn not in _ACTIVATIONS:
            raise ValueError(
                f"BEATs cfg activation_fn={self.activation_fn!r} is not supported; expected one of "
                f"{sorted(_ACTIVATIONS)}"
            )
        if self.deep_norm and self.layer_norm_first:
            raise ValueError(
                "BEATs cfg: deep_norm requires layer_norm_first=False (post-LN layers)"
            )
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                "BEATs cfg: encoder_embed_dim must be divisible by encoder_attention_heads"
            )
        if self.num_mel_bins % self.input_patch_size:
            raise ValueError("BEATs cfg: num_mel_bins must be a multiple of input_patch_size")

    @property
    def freq_bands(self) -> int:
        """Frequency patches per time step (8 for 128 bins, 16x16 patches)."""
        return self.num_mel_bins // self.input_patch_size

    @property
    def step_samples(self) -> int:
        """Samples between consecutive patch time steps (2560 = 160 ms)."""
        return self.input_patch_size * HOP_SAMPLES


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x.float()).type_as(x)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x.float(), approximate="tanh").type_as(x)


_ACTIVATIONS = {
    "gelu": _gelu,
    "gelu_accurate": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int = 320, max_distance: int = 800
) -> torch.Tensor:
    """Bidirectional T5 bucket of ``key - query`` offsets.

    Half of the buckets are for positive offsets; in each half, offsets below a quarter of
    ``num_buckets`` get their own bucket, larger ones share log-spaced buckets up to
    ``max_distance``, beyond which everything falls into the last bucket.
    """
    half = num_buckets // 2
    bucket = (relative_position > 0).long() * half
    distance = relative_position.abs()
    exact = half // 2
    # clamp(min=1) keeps log() finite; those entries are taken from the exact branch anyway
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(distance < exact, distance, large)


# --------------------------------------------------------------------------- modules


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight normalisation over every dim but 2 (the kernel position).

    ``weight = weight_g * weight_v / ||weight_v||`` with the norm taken over output and input
    channels, one norm per kernel tap. Kept as plain parameters so the state-dict keys are the
    checkpoint's ``weight_g`` (1, 1, K), ``weight_v`` (C, C / groups, K) and ``bias`` (C,).
    """

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.groups = groups
        self.padding = kernel_size // 2
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel_size) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))

    def weight(self) -> torch.Tensor:
        norm = self.weight_v.norm(dim=(0, 1), keepdim=True)
        return self.weight_g * self.weight_v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C, T + 1 - K % 2)``."""
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class TrimEven(nn.Module):
    """Drop the extra last step that symmetric padding gives an even kernel ("same" output)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] - self.remove]


class RelPosSelfAttention(nn.Module):
    """Multi-head self-attention with an optional gated relative position bias."""

    def __init__(self, cfg: BEATsConfig, has_bias_table: bool):
        super().__init__()
        d, self.heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.head_dim = d // self.heads
        self.gated = cfg.gru_rel_pos
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, self.heads)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        if self.gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.heads, 1, 1))

    def position_bias(self, length: int) -> torch.Tensor:
        """``(H, T, T)`` bias of query i for key j from this layer's bucket table."""
        pos = torch.arange(length, device=self.relative_attention_bias.weight.device)
        buckets = relative_position_bucket(
            pos[None, :] - pos[:, None], self.num_buckets, self.max_distance
        )
        return self.relative_attention_bias(buckets).permute(2, 0, 1)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``x`` (B, T, d); ``key_mask`` (B, T) True = attend; ``bias`` (H, T, T) or None."""
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        attn_bias = x.new_zeros(b, 1, 1, t)
        if key_mask is not None:
            attn_bias = attn_bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        if bias is not None:
            if self.gated:
                # per (query, head) gate from the query itself: 2 sigmoid gates of 4 summed units
                gate_a, gate_b = torch.sigmoid(
                    self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1)
                ).chunk(2, dim=-1)
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias
            attn_bias = attn_bias + bias
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class BEATsLayer(nn.Module):
    """Transformer layer: post-LN with deep-norm residual scaling (alpha = (2 L)^(1/4)), or pre-LN."""

    def __init__(self, cfg: BEATsConfig, has_bias_table: bool):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = RelPosSelfAttention(cfg, has_bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.activation = _ACTIVATIONS[cfg.activation_fn]
        self.pre_norm = cfg.layer_norm_first
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, bias: torch.Tensor | None):
        if self.pre_norm:
            x = x + self.self_attn(self.self_attn_layer_norm(x), key_mask, bias)
            return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, key_mask, bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(self.activation(self.fc1(x))))


class BEATsTransformer(nn.Module):
    """Conv positional embedding + transformer layers (``encoder.*`` keys)."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups),
            TrimEven(cfg.conv_pos),
            nn.GELU(),
        )
        self.relative = cfg.relative_position_embedding
        self.layers = nn.ModuleList(
            BEATsLayer(cfg, self.relative) for _ in range(cfg.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(d)
        self.pre_norm = cfg.layer_norm_first

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """``x`` (B, N, d) tokens, ``key_mask`` (B, N) True = real. Returns each layer's (B, N, d)."""
        if key_mask is not None:
            x = x * key_mask[..., None]  # padded tokens must not leak into the positional conv
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.pre_norm:
            x = self.layer_norm(x)
        # The bias table of the first layer serves every layer (the checkpoint stores one copy per
        # layer, all equal); each layer gates it with its own query.
        bias = self.layers[0].self_attn.position_bias(x.shape[1]) if self.relative else None
        outputs = []
        for layer in self.layers:
            x = layer(x, key_mask, bias)
            outputs.append(x)
        if self.pre_norm:
            outputs[-1] = self.layer_norm(outputs[-1])
        return outputs


class BEATsModel(nn.Module):
    """The BEATs network with the checkpoint's module tree (keys of ``checkpoint['model']``)."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(
            1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        if cfg.embed_dim != cfg.encoder_embed_dim:
            self.post_extract_proj = nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
        else:
            self.post_extract_proj = None
        self.encoder = BEATsTransformer(cfg)
        if cfg.finetuned_model:
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)
        else:
            self.predictor = None

    def forward(self, fbank: torch.Tensor, steps: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states of every layer for normalised fbank frames (the precomputed-fbank entry).

        Args:
            fbank: ``(B, N, num_mel_bins)`` float, the normalised kaldi fbank of
                :func:`~av_lightning.encoders.beats_features.beats_fbank` (10 ms frames) or one
                computed elsewhere the same way; N >= ``input_patch_size`` (16), frames past the
                last whole patch are dropped.
            steps: ``(B,)`` integer number of real patch time steps per item (the rest is padding),
                e.g. ``num_patch_steps(lengths)``.
        Returns:
            ``encoder_layers`` tensors ``(B, T * bands, d)`` with T = N // 16 and bands =
            num_mel_bins // 16 (8), tokens in time-major order (token ``t * bands + f``).
        """
        x = self.patch_embedding(fbank.unsqueeze(1))  # (B, E, T, bands)
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        num_steps = fbank.shape[1] // self.cfg.input_patch_size
        time_index = torch.arange(num_steps, device=x.device).repeat_interleave(self.cfg.freq_bands)
        key_mask = time_index[None, :] < steps[:, None]
        # an item with no real step (a chunk past its end) attends everywhere; its output is dropped
        key_mask = key_mask | ~key_mask.any(dim=1, keepdim=True)
        return self.encoder(x, None if bool(key_mask.all()) else key_mask)
