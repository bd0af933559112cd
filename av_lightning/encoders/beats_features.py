"""BEATs input features: the kaldi fbank and the sample/frame/patch arithmetic of its time axis.

Owns the first stage of BEATs: a 16 kHz waveform in [-1, 1] -> normalised 128-bin kaldi fbank
``(B, N, 128)`` (25 ms frames every 10 ms, N = 1 + (S - 400) // 160), and the counts that follow
from it (fbank frames, whole 16-frame patch steps). The network that reads the fbank is
:mod:`av_lightning.encoders.beats_model`.
"""

from __future__ import annotations

import torch
from torchaudio.compliance import kaldi

SAMPLE_RATE = 16000
FRAME_SAMPLES = 400  # 25 ms kaldi frame
HOP_SAMPLES = 160  # 10 ms kaldi frame shift
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582


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
