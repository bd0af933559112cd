"""MelEncoder: frame grid, value range, frequency placement."""

import pytest
import torch
import torchaudio

from av_lightning.encoders.mel import SILENCE_VALUE, MelEncoder


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    return (amp * torch.sin(2 * torch.pi * freq * t))[None]


@pytest.mark.parametrize(
    "frame_rate, hop, win, frames",
    [(100.0, 160, 400, 98), (8.0, 2000, 4000, 7), (50.0, 320, 640, 49)],
)
def test_frame_grid(frame_rate, hop, win, frames):
    enc = MelEncoder(n_mels=32, frame_rate=frame_rate)
    assert (enc.hop, enc.win, enc.frame_rate) == (hop, win, 16000 / hop)
    out = enc(tone(440.0))
    assert out.hidden_states.shape == (1, frames, 1, 32)  # 1 + (S - win) // hop


def test_silence_floor_and_loud_range():
    enc = MelEncoder()
    silent = enc(torch.zeros(1, 16000)).hidden_states
    assert torch.all(silent == SILENCE_VALUE) and SILENCE_VALUE == -1.0
    loud = enc(tone(1000.0, amp=1.0)).hidden_states
    assert 0.5 < loud.max() < 2.0


@pytest.mark.parametrize("freq", [300.0, 1000.0, 4000.0])
def test_tone_lands_in_its_mel_band(freq):
    enc = MelEncoder(n_mels=64)
    band = int(enc(tone(freq)).hidden_states[0, :, 0].mean(0).argmax())
    fb = torchaudio.functional.melscale_fbanks(
        201, 0.0, 8000.0, 64, 16000, mel_scale="htk"
    )  # (freqs, mels)
    peak_hz = float(fb[:, band].argmax()) * 8000 / 200
    assert abs(peak_hz - freq) < 0.15 * freq + 80


def test_window_shorter_than_hop_is_refused():
    with pytest.raises(ValueError, match="shorter than the hop"):
        MelEncoder(frame_rate=8.0, win_ms=25.0)
