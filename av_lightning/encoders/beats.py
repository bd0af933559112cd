"""BEATs audio encoder plugin (Chen et al. 2022, "BEATs: Audio Pre-Training with Acoustic Tokenizers").

Owns :class:`BEATsEncoder`, the frozen BEATs as an :class:`~av_lightning.encoders.base.AudioEncoder`:
input checks, long audio in windows on one patch grid, ``time_shifts`` (interleaved shifted copies
for a finer time axis), raw patch tokens for the official mapper, and AudioSet labels. It is also
the public import path of the BEATs names defined in the modules it builds on:

- :mod:`~av_lightning.encoders.beats_features`: kaldi fbank, 128 mel bins, 25 ms frames every
  10 ms, on the waveform scaled by 2^15, normalised as ``(fbank - 15.41663) / (2 * 6.55582)``:
  ``(B, N, 128)``, N = 1 + (S - 400) // 160.
- :mod:`~av_lightning.encoders.beats_model`: 16x16 patches (160 ms x 16 mel bins, ``T = N // 16``
  time steps x 8 frequency bands, time-major), LayerNorm, Linear 512 -> 768; a weight-normalised
  grouped Conv1d positional embedding (+ GELU), LayerNorm; ``encoder_layers`` post-LN layers with
  deep-norm residual scaling and a gated T5-bucket relative position bias; the fine-tuned model's
  527-way AudioSet predictor.
- :mod:`~av_lightning.encoders.beats_checkpoint`: reading ``{'cfg': dict, 'model': state_dict}``
  files such as ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`` safely and strictly.

Every architectural switch comes from the checkpoint's ``cfg``.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch
import torch.nn.functional as F

from av_lightning.encoders.base import (
    AudioEncoder,
    EncoderOutput,
    check_lengths,
    check_sample_rate,
    check_waveform,
)
from av_lightning.encoders.beats_checkpoint import (
    CHECKPOINT_NAME,
    PAPER_CHECKPOINT_CFG,
    load_beats_checkpoint,
    load_beats_state_dict,
    read_checkpoint_file,
)
from av_lightning.encoders.beats_features import (
    FBANK_MEAN,
    FBANK_STD,
    FRAME_SAMPLES,
    HOP_SAMPLES,
    SAMPLE_RATE,
    beats_fbank,
    num_fbank_frames,
    num_patch_steps,
)
from av_lightning.encoders.beats_model import (
    BEATsConfig,
    BEATsLayer,
    BEATsModel,
    BEATsTransformer,
    RelPosSelfAttention,
    TrimEven,
    WeightNormConv1d,
    relative_position_bucket,
)

__all__ = [
    "CHECKPOINT_NAME",
    "FBANK_MEAN",
    "FBANK_STD",
    "FRAME_SAMPLES",
    "HOP_SAMPLES",
    "PAPER_CHECKPOINT_CFG",
    "SAMPLE_RATE",
    "BEATsConfig",
    "BEATsEncoder",
    "BEATsLayer",
    "BEATsModel",
    "BEATsTransformer",
    "RelPosSelfAttention",
    "TrimEven",
    "WeightNormConv1d",
    "beats_fbank",
    "load_beats_checkpoint",
    "load_beats_state_dict",
    "num_fbank_frames",
    "num_patch_steps",
    "read_checkpoint_file",
    "relative_position_bucket",
]


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
