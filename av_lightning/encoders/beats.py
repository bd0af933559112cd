"""BEATs audio encoder (Chen et al. 2022, "BEATs: Audio Pre-Training with Acoustic Tokenizers").

Written for this project from the paper and public descriptions (ESPnet's
``espnet2/asr/encoder/beats_encoder.py``); the module tree reproduces the state-dict keys of the
authors' checkpoints (``{'cfg': dict, 'model': state_dict}``), so a released file such as
``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`` loads as is.

Pipeline, for a 16 kHz waveform:

1. kaldi fbank, 128 mel bins, 25 ms frames every 10 ms, on the waveform scaled by 2^15, normalised
   as ``(fbank - 15.41663) / (2 * 6.55582)``: ``(B, N, 128)``, N = 1 + (S - 400) // 160.
2. 16x16 patches (Conv2d, stride 16): 160 ms x 16 mel bins each, ``T = N // 16`` time steps x
   ``128 / 16 = 8`` frequency bands, flattened time-major, LayerNorm, Linear 512 -> 768.
3. A weight-normalised grouped Conv1d positional embedding (+ GELU) added to the tokens, LayerNorm.
4. ``encoder_layers`` post-LN transformer layers with deep-norm residual scaling and a relative
   position bias (T5 buckets) computed once by the first layer and gated per layer and head by the
   query (``gru_rel_pos``, as in WavLM).
5. Fine-tuned checkpoints: a Linear predictor over 527 AudioSet classes, logits averaged over the
   tokens, then a sigmoid.

Every architectural switch comes from the checkpoint's ``cfg``. Dropout is left out: the encoder is
a frozen feature extractor and always runs as in eval mode.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.compliance import kaldi

from av_lightning.encoders.base import (
    AudioEncoder,
    EncoderOutput,
    check_lengths,
    check_sample_rate,
    check_waveform,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_SAMPLES = 400  # 25 ms kaldi frame
HOP_SAMPLES = 160  # 10 ms kaldi frame shift
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
CHECKPOINT_NAME = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
# The cfg stored in BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (the paper's encoder): used to
# build random full-size models for benchmarks and tests; real checkpoints always bring their own.
PAPER_CHECKPOINT_CFG = {
    "input_patch_size": 16,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": True,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "finetuned_model": True,
    "predictor_class": 527,
}

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


# --------------------------------------------------------------------------- timing helpers


def num_fbank_frames(num_samples: torch.Tensor | int) -> torch.Tensor | int:
    """Kaldi frames (25 ms every 10 ms, ``snip_edges``) in ``num_samples`` samples at 16 kHz."""
    if isinstance(num_samples, torch.Tensor):
        return torch.where(
            num_samples >= FRAME_SAMPLES,
            1 + torch.div(num_samples - FRAME_SAMPLES, HOP_SAMPLES, rounding_mode="floor"),
            torch.zeros_like(num_samples),
        )
    return 0 if num_samples < FRAME_SAMPLES else 1 + (num_samples - FRAME_SAMPLES) // HOP_SAMPLES


def num_patch_steps(num_samples: torch.Tensor | int, patch: int = 16) -> torch.Tensor | int:
    """Patch time steps (each ``patch`` fbank frames) that lie entirely inside ``num_samples``."""
    frames = num_fbank_frames(num_samples)
    if isinstance(frames, torch.Tensor):
        return torch.div(frames, patch, rounding_mode="floor")
    return frames // patch


def beats_fbank(waveform: torch.Tensor, num_mel_bins: int = 128) -> torch.Tensor:
    """Normalised kaldi fbank of a float waveform in [-1, 1].

    Args:
        waveform: ``(B, S)`` at 16 kHz.
    Returns:
        ``(B, N, num_mel_bins)`` with N = 1 + (S - 400) // 160 frames (10 ms apart).
    """
    banks = [
        kaldi.fbank(
            w.unsqueeze(0) * 2**15,  # BEATs was trained on int16-scaled input
            num_mel_bins=num_mel_bins,
            sample_frequency=SAMPLE_RATE,
            frame_length=1000 * FRAME_SAMPLES / SAMPLE_RATE,
            frame_shift=1000 * HOP_SAMPLES / SAMPLE_RATE,
        )
        for w in waveform.float()
    ]
    return (torch.stack(banks) - FBANK_MEAN) / (2 * FBANK_STD)


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
        """Hidden states of every layer for normalised fbank frames.

        Args:
            fbank: ``(B, N, num_mel_bins)`` from :func:`beats_fbank`.
            steps: ``(B,)`` number of real patch time steps per item (the rest is padding).
        Returns:
            ``encoder_layers`` tensors ``(B, T * bands, d)``, tokens in time-major order.
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


# --------------------------------------------------------------------------- checkpoint loading


def load_beats_checkpoint(path: str | os.PathLike) -> BEATsModel:
    """Build a :class:`BEATsModel` from a ``{'cfg': dict, 'model': state_dict}`` file.

    Raises with the file name and what was expected when the file is not a BEATs checkpoint or its
    weights do not match the architecture its cfg describes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"BEATs checkpoint {path!r} not found; download {CHECKPOINT_NAME} from the BEATs authors' "
            "release and set model.encoder.init_args.checkpoint to its local path"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "cfg" not in blob or "model" not in blob:
        found = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(
            f"{path} is not a BEATs checkpoint: expected a dict with keys 'cfg' (architecture) and "
            f"'model' (state dict) as in {CHECKPOINT_NAME}, found {found}"
        )
    with torch.device("meta"):  # no throw-away random init: the checkpoint's tensors are used as is
        model = BEATsModel(BEATsConfig.from_dict(blob["cfg"]))
    load_beats_state_dict(model, blob["model"], source=path)
    return model


def load_beats_state_dict(model: BEATsModel, state: dict, source: str = "state dict") -> None:
    """Load ``state`` strictly, failing with the missing/unexpected/mis-shaped keys listed."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:

        def show(keys: list[str]) -> str:
            return (
                ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
                or "none"
            )

        raise ValueError(
            f"{source} does not match the BEATs architecture of its cfg: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}; wrong shapes: {show(wrong)}. Expected a BEATs "
            f"checkpoint such as {CHECKPOINT_NAME}"
        )
    model.load_state_dict(state, strict=True, assign=any(p.is_meta for p in model.parameters()))
    tables = [k for k in state if k.endswith("self_attn.relative_attention_bias.weight")]
    if any(not torch.equal(state[k], state[tables[0]]) for k in tables[1:]):
        log.warning(
            "%s: the per-layer relative position tables differ; BEATs uses the first layer's",
            source,
        )


# --------------------------------------------------------------------------- the encoder plugin


class BEATsEncoder(AudioEncoder):
    """Frozen BEATs as an :class:`AudioEncoder`: hidden states of all layers on a time axis.

    Output of :meth:`forward` for ``(B, S)`` at 16 kHz: ``hidden_states`` ``(B, T', Lh, d)`` with
    Lh = ``encoder_layers`` (12) and d = ``encoder_embed_dim`` (768), the 8 frequency patches of a
    time step averaged; ``frame_rate`` = 6.25 Hz x ``time_shifts``; ``mask`` ``(B, T')``. With
    ``time_shifts = 1``, T' = (1 + (S - 400) // 160) // 16 (1 s -> 6, 10 s -> 62); time step m
    covers samples [2560 m, 2560 m + 2800), i.e. starts at m / frame_rate seconds.

    Args:
        checkpoint: local path of a BEATs ``.pt`` file (``{'cfg', 'model'}``), e.g.
            ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`` from the BEATs authors' release.
        cfg: architecture dict for random weights (tests); exactly one of ``checkpoint``/``cfg``.
        time_shifts: n >= 1; encode n copies, copy i starting i x 160 / n ms into the audio, and
            interleave their steps in time order: n x the frame rate, n x the compute.
        chunk_seconds: audio longer than this is encoded in consecutive windows of this length
            whose patch grids line up, and the time steps concatenated (attention stays inside a
            window; BEATs was trained on 10 s clips).
        seed: seed of the random weights when ``cfg`` is given.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        cfg: dict | None = None,
        time_shifts: int = 1,
        chunk_seconds: float = 10.0,
        seed: int = 0,
    ):
        super().__init__()
        if (checkpoint is None) == (cfg is None):
            raise ValueError(
                "BEATsEncoder needs exactly one of checkpoint=/path/to/"
                + CHECKPOINT_NAME
                + " (pretrained weights, from the BEATs authors' release) or cfg={...} (random weights "
                f"for tests); got checkpoint={checkpoint!r}, cfg={'given' if cfg is not None else None}"
            )
        if time_shifts < 1:
            raise ValueError(f"time_shifts must be a positive integer, got {time_shifts}")
        if checkpoint is not None:
            self.model = load_beats_checkpoint(checkpoint)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = BEATsModel(BEATsConfig.from_dict(cfg))
        self.checkpoint, self.seed = checkpoint, seed
        self.time_shifts = int(time_shifts)
        self.chunk_seconds = float(chunk_seconds)
        cfg_ = self.model.cfg
        self.num_layers = cfg_.encoder_layers
        self.hidden_size = cfg_.encoder_embed_dim
        self.freq_bands = cfg_.freq_bands
        self.step_samples = cfg_.step_samples
        self.min_samples = FRAME_SAMPLES + (cfg_.input_patch_size - 1) * HOP_SAMPLES  # one patch
        self.window_samples = round(self.chunk_seconds * SAMPLE_RATE)
        self.window_steps = num_patch_steps(self.window_samples, cfg_.input_patch_size)
        if self.window_steps < 1:
            raise ValueError(
                f"chunk_seconds={chunk_seconds} is shorter than one BEATs patch "
                f"({self.min_samples / SAMPLE_RATE:.3f} s); use 10.0"
            )
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> BEATsEncoder:
        """Load a BEATs checkpoint file (see the class docstring for ``kwargs``)."""
        return cls(checkpoint=os.fspath(path), **kwargs)

    def train(self, mode: bool = True) -> BEATsEncoder:
        # frozen feature network: never leaves eval mode
        return super().train(False)

    @property
    def frame_rate(self) -> float:
        """Time steps per second of :meth:`forward`'s output (6.25 Hz x ``time_shifts``)."""
        return SAMPLE_RATE / self.step_samples * self.time_shifts

    @property
    def has_predictor(self) -> bool:
        return self.model.predictor is not None

    def settings(self) -> dict:
        return {
            "class": type(self).__name__,
            "checkpoint": None if self.checkpoint is None else os.path.abspath(self.checkpoint),
            "cfg": asdict(self.model.cfg),
            "time_shifts": self.time_shifts,
            "chunk_seconds": self.chunk_seconds,
            "seed": None if self.checkpoint is not None else self.seed,
        }

    # ------------------------------------------------------------------ internals

    def _window(
        self, waveform: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One window: ``(B, T, bands, Lh, d)`` patch states and ``(B,)`` real steps per item."""
        patch = self.model.cfg.input_patch_size
        steps = num_patch_steps(lengths, patch)
        fbank = beats_fbank(waveform, self.model.cfg.num_mel_bins)
        layers = self.model(fbank.to(self._dtype()), steps)
        b, t = waveform.shape[0], fbank.shape[1] // patch
        states = torch.stack(layers, dim=2).view(
            b, t, self.freq_bands, self.num_layers, self.hidden_size
        )
        return states, steps

    def _dtype(self) -> torch.dtype:
        return self.model.patch_embedding.weight.dtype

    def _patch_states(
        self, waveform: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All windows: ``(B, T, bands, Lh, d)`` (zeros where padded) and ``(B,)`` real steps.

        Windows start every ``window_steps`` patches, so the concatenated steps keep one grid.
        """
        steps = num_patch_steps(lengths, self.model.cfg.input_patch_size)
        total = int(steps.max()) if steps.numel() else 0
        b = waveform.shape[0]
        out = waveform.new_zeros(b, total, self.freq_bands, self.num_layers, self.hidden_size)
        for first in range(0, total, self.window_steps):
            start = first * self.step_samples
            chunk = waveform[:, start : start + self.window_samples]
            chunk_lengths = (lengths - start).clamp(0, chunk.shape[1])
            states, _ = self._window(chunk, chunk_lengths)
            n = min(states.shape[1], self.window_steps, total - first)
            out[:, first : first + n] = states[:, :n].to(out.dtype)
        valid = torch.arange(total, device=waveform.device)[None, :] < steps[:, None]
        return out * valid[:, :, None, None, None], steps

    # ------------------------------------------------------------------ public API

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """``(B, S)`` 16 kHz -> ``EncoderOutput`` (see the class docstring); call via ``forward``."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], device=waveform.device)
        n, b, num_samples = self.time_shifts, waveform.shape[0], waveform.shape[1]
        # copy i starts i/n of a step later; the copies run as one batch (right-padded, masked)
        shifts = [round(i * self.step_samples / n) for i in range(n)]
        shifts = [s for s in shifts if num_samples - s >= self.min_samples]
        batch = torch.cat([F.pad(waveform[:, s:], (0, s)) for s in shifts])
        batch_lengths = torch.cat([(lengths - s).clamp(min=0) for s in shifts])
        states, steps = self._patch_states(batch, batch_lengths)
        states = states.mean(dim=2)
        copies = [
            (states[i * b : (i + 1) * b], steps[i * b : (i + 1) * b]) for i in range(len(shifts))
        ]
        # copy i's step k starts at (k + i / n) steps: output index k * n + i. A later copy has at
        # most one step fewer, so each item's real steps form a prefix of the interleaved axis.
        steps = torch.stack([s for _, s in copies], dim=1)  # (B, copies)
        total = int(steps.sum(dim=1).max())
        width = copies[0][0].shape[1] * n
        hidden = copies[0][0].new_zeros(b, width, self.num_layers, self.hidden_size)
        for i, (states, _) in enumerate(copies):
            hidden[:, i::n][:, : states.shape[1]] = states
        mask = torch.zeros(b, width, dtype=torch.bool, device=waveform.device)
        index = torch.arange(width, device=waveform.device)
        for i in range(len(copies)):
            mask |= ((index % n) == i)[None, :] & ((index // n)[None, :] < steps[:, i : i + 1])
        return EncoderOutput(hidden[:, :total], self.frame_rate, mask[:, :total])

    @torch.no_grad()
    def patch_tokens(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor | None = None,
        sample_rate: int | None = None,
    ) -> torch.Tensor:
        """Raw patch tokens of all layers, the input of the official TempoTokens mapper.

        Args:
            waveform: ``(B, S)`` at 16 kHz; ``lengths`` ``(B,)`` samples (padded tokens are zero).
        Returns:
            ``(B, P, Lh * d)`` with P = T x bands in time-major order (token ``t * 8 + f``), layers
            concatenated first to last: 1 s -> ``(B, 48, 9216)`` at full size. ``time_shifts`` is
            not applied here.
        """
        lengths = self._checked(waveform, lengths, sample_rate)
        states, _ = self._patch_states(waveform, lengths)
        b, t = states.shape[:2]
        return states.reshape(b, t * self.freq_bands, self.num_layers * self.hidden_size)

    def _checked(self, waveform, lengths, sample_rate) -> torch.Tensor:
        """The checks of :meth:`AudioEncoder.forward` for the other public methods."""
        check_sample_rate(sample_rate, self.sample_rate)
        check_waveform(waveform, self.sample_rate, self.min_samples)
        return check_lengths(lengths, waveform, self.min_samples, self.sample_rate)

    @torch.no_grad()
    def predict_proba(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor | None = None,
        sample_rate: int | None = None,
    ) -> torch.Tensor:
        """AudioSet class probabilities ``(B, predictor_class)`` (sigmoid, multi-label).

        The predictor's logits are averaged over all real tokens of the clip, then squashed.
        """
        if not self.has_predictor:
            raise ValueError(
                "this BEATs model has no AudioSet predictor (cfg finetuned_model=False); load a "
                f"fine-tuned checkpoint such as {CHECKPOINT_NAME}"
            )
        lengths = self._checked(waveform, lengths, sample_rate)
        states, steps = self._patch_states(waveform, lengths)
        logits = self.model.predictor(states[:, :, :, -1])  # (B, T, bands, C)
        valid = (torch.arange(states.shape[1], device=states.device)[None, :] < steps[:, None]).to(
            logits.dtype
        )
        logits = (logits * valid[:, :, None, None]).sum(dim=(1, 2)) / (
            valid.sum(1) * self.freq_bands
        )[:, None]
        return torch.sigmoid(logits)

    def predict_labels(
        self,
        waveform: torch.Tensor,
        top_k: int = 5,
        lengths: torch.Tensor | None = None,
        sample_rate: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        """The ``top_k`` AudioSet labels of each clip as ``(name, probability)``, most likely first."""
        from av_lightning.encoders.labels import audioset_labels

        probs = self.predict_proba(waveform, lengths, sample_rate)
        names = audioset_labels()
        if len(names) != probs.shape[1]:
            raise ValueError(
                f"the predictor has {probs.shape[1]} classes but the AudioSet label list has {len(names)}"
            )
        top = probs.topk(min(top_k, probs.shape[1]), dim=1)
        return [
            [(names[j], float(p)) for p, j in zip(vals.tolist(), idx.tolist())]
            for vals, idx in zip(top.values, top.indices)
        ]
