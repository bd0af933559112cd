"""Parameter-free log-mel encoder: the toy world's and the ablations' audio features.

Frame m covers samples ``[m * hop, m * hop + win)`` (no centring, no edge padding), so a frame
depends only on real audio and a batch gives the same frames as single runs. Values are
``(dB + 40) / 40`` with the power floored at -80 dB: digital silence maps to -1, a full-scale tone to
about +1; no per-clip statistics, so loudness is kept.
"""

from __future__ import annotations

import torch
import torchaudio

from av_lightning.encoders.base import AudioEncoder, EncoderOutput

_FLOOR_DB = -80.0
_OFFSET_DB = 40.0
_SCALE_DB = 40.0
SILENCE_VALUE = (_FLOOR_DB + _OFFSET_DB) / _SCALE_DB  # -1.0: features of digital silence


class MelEncoder(AudioEncoder):
    """Log-mel frames as hidden states ``(B, T', 1, n_mels)`` (one "layer").

    T' = 1 + (S - win) // hop for S samples; ``frame_rate`` = 16000 / hop Hz; frame m starts at
    m / frame_rate seconds.

    Args:
        n_mels: mel bands (the hidden width d).
        frame_rate: frames per second (Hz); hop = round(16000 / frame_rate) samples, and the
            reported rate is exactly 16000 / hop. 100 Hz = 10 ms hop; 8 Hz matches 8 fps video.
        win_ms: analysis window (ms); None: max(25 ms, 2 hops), so slow frame rates still see all
            of the audio.
        f_min, f_max: mel range (Hz); f_max None = 8000 (Nyquist).
    """

    def __init__(
        self,
        n_mels: int = 64,
        frame_rate: float = 100.0,
        win_ms: float | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
    ):
        super().__init__()
        if n_mels < 1 or frame_rate <= 0:
            raise ValueError(
                f"expected n_mels >= 1 and frame_rate > 0 Hz, got {n_mels}, {frame_rate}"
            )
        self.hop = max(1, round(self.sample_rate / frame_rate))
        self.win = round(win_ms * self.sample_rate / 1000) if win_ms else max(400, 2 * self.hop)
        if self.win < self.hop:
            raise ValueError(
                f"win_ms={win_ms} is shorter than the hop ({1000 * self.hop / self.sample_rate:.1f} ms): "
                "frames would skip audio; use a longer window or leave win_ms unset"
            )
        self.n_mels, self.f_min = n_mels, float(f_min)
        self.f_max = float(f_max) if f_max is not None else self.sample_rate / 2
        self.num_layers, self.hidden_size = 1, n_mels
        self.min_samples = self.win
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.win,
            win_length=self.win,
            hop_length=self.hop,
            f_min=self.f_min,
            f_max=self.f_max,
            n_mels=n_mels,
            power=2.0,
            normalized=True,  # window-energy normalised: the scale does not depend on win
            center=False,
            mel_scale="htk",
        )

        self.eval()

    def train(self, mode: bool = True) -> MelEncoder:
        return super().train(False)  # parameter-free feature extractor: always eval

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def settings(self) -> dict:
        return {
            "class": type(self).__name__,
            "n_mels": self.n_mels,
            "hop": self.hop,
            "win": self.win,
            "f_min": self.f_min,
            "f_max": self.f_max,
        }

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames that lie entirely inside ``num_samples`` (0 when shorter than a window)."""
        return torch.where(
            num_samples >= self.win,
            1 + torch.div(num_samples - self.win, self.hop, rounding_mode="floor"),
            torch.zeros_like(num_samples),
        )

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """``(B, S)`` 16 kHz -> ``(B, T', 1, n_mels)`` at :attr:`frame_rate`; call via ``forward``."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[1], device=waveform.device)
        power = self.mel(waveform.float()).transpose(1, 2)  # (B, T', n_mels)
        db = 10 * torch.log10(power.clamp(min=10 ** (_FLOOR_DB / 10)))
        feats = (db + _OFFSET_DB) / _SCALE_DB
        frames = self.num_frames(lengths)
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None]
        feats = feats * mask[..., None]
        return EncoderOutput(feats.unsqueeze(2).to(waveform.dtype), self.frame_rate, mask)
