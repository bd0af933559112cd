"""The audio-encoder interface shared by every encoder plugin.

An encoder maps mono 16 kHz waveforms ``(B, S)`` to hidden states of all its layers on a real
time axis, ``(B, T', Lh, d)``, together with the frame rate of ``T'`` in Hz. Encoders are frozen
feature extractors: the LightningModule never trains them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderOutput:
    """What an encoder returns.

    Attributes:
        hidden_states: ``(B, T', Lh, d)`` float, one vector per time step and layer.
        frame_rate: time steps per second of ``T'`` (Hz).
        mask: ``(B, T')`` bool, True where the time step covers real (unpadded) audio.
    """

    hidden_states: torch.Tensor
    frame_rate: float
    mask: torch.Tensor | None = None


class AudioEncoder(nn.Module):
    """Base class: subclasses implement :meth:`encode` and set ``num_layers``/``hidden_size``.

    ``min_samples`` is the shortest waveform (in samples) that yields at least one time step.
    """

    sample_rate: int = 16000
    min_samples: int = 1
    num_layers: int
    hidden_size: int

    @property
    def feature_size(self) -> int:
        """Width of the concatenated layers, ``Lh * d`` (the AudioMapper's input width)."""
        return self.num_layers * self.hidden_size

    def settings(self) -> dict:
        """A JSON-serialisable description of everything that changes the output (cache keys)."""
        return {"class": type(self).__name__}

    def encode(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        raise NotImplementedError

    def forward(
        self,
        waveform: torch.Tensor,
        lengths: torch.Tensor | None = None,
        sample_rate: int | None = None,
    ) -> EncoderOutput:
        """Encode ``waveform`` (B, S) mono; ``lengths`` (B,) real samples per item (None: all S).

        ``sample_rate`` (Hz), when given, must equal :attr:`sample_rate`: encoders never resample
        silently.
        """
        check_sample_rate(sample_rate, self.sample_rate)
        check_waveform(waveform, self.sample_rate, self.min_samples)
        lengths = check_lengths(lengths, waveform, self.min_samples, self.sample_rate)
        return self.encode(waveform, lengths)


def check_sample_rate(sample_rate: int | None, expected: int = 16000) -> None:
    """Raise unless ``sample_rate`` is None or ``expected`` (Hz)."""
    if sample_rate is not None and int(sample_rate) != expected:
        raise ValueError(
            f"expected audio at {expected} Hz, got {sample_rate} Hz; resample first, e.g. "
            f"torchaudio.functional.resample(x, {sample_rate}, {expected})"
        )


def check_lengths(
    lengths: torch.Tensor | None,
    waveform: torch.Tensor,
    min_samples: int = 1,
    sample_rate: int = 16000,
) -> torch.Tensor:
    """Validate ``lengths`` (B,) in samples for ``waveform`` (B, S); None means every item is S long.

    Returns a long tensor on ``waveform``'s device.
    """
    batch, num_samples = waveform.shape
    if lengths is None:
        return torch.full((batch,), num_samples, dtype=torch.long, device=waveform.device)
    lengths = torch.as_tensor(lengths, device=waveform.device)
    if lengths.shape != (batch,) or lengths.is_floating_point():
        raise ValueError(
            f"expected lengths as an integer tensor of shape ({batch},) (samples per item), got "
            f"shape {tuple(lengths.shape)} dtype {lengths.dtype}"
        )
    lengths = lengths.long()
    if (lengths > num_samples).any() or (lengths < min_samples).any():
        raise ValueError(
            f"expected every length in [{min_samples}, {num_samples}] samples (at least "
            f"{min_samples / sample_rate:.3f} s at {sample_rate} Hz, at most the padded width), got "
            f"{lengths.tolist()}"
        )
    return lengths


def check_waveform(waveform: torch.Tensor, sample_rate: int = 16000, min_samples: int = 1) -> None:
    """Raise a clear error unless ``waveform`` is a finite float ``(B, S)`` mono batch."""
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(
            f"expected a torch.Tensor waveform (B, S) at {sample_rate} Hz, got {type(waveform).__name__}"
        )
    if not waveform.is_floating_point():
        raise TypeError(
            f"expected a float waveform in [-1, 1] at {sample_rate} Hz, got dtype {waveform.dtype}; "
            "convert integer PCM with x.float() / 32768"
        )
    if waveform.dim() != 2:
        raise ValueError(
            f"expected a mono waveform batch of shape (B, S) at {sample_rate} Hz, got shape "
            f"{tuple(waveform.shape)}; mix stereo down with x.mean(dim=1) before encoding"
        )
    if waveform.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty batch (B, S) at {sample_rate} Hz, got shape {tuple(waveform.shape)}"
        )
    if waveform.shape[1] < min_samples:
        raise ValueError(
            f"expected at least {min_samples} samples ({min_samples / sample_rate:.3f} s at {sample_rate} Hz), "
            f"got {waveform.shape[1]}"
        )
    if not torch.isfinite(waveform).all():
        raise ValueError("waveform contains NaN or Inf values; clean the audio before encoding")
