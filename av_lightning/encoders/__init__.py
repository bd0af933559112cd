"""Frozen audio encoders (plugins): waveform (B, S) at 16 kHz -> hidden states (B, T', Lh, d).

Chosen in YAML by class path, e.g. ``model.encoder.class_path: av_lightning.encoders.BEATsEncoder``.
"""

from av_lightning.encoders.base import AudioEncoder, EncoderOutput, check_waveform
from av_lightning.encoders.beats import BEATsConfig, BEATsEncoder, BEATsModel, load_beats_checkpoint
from av_lightning.encoders.hf import HFAudioEncoder
from av_lightning.encoders.labels import audioset_labels
from av_lightning.encoders.mel import MelEncoder

__all__ = [
    "AudioEncoder",
    "BEATsConfig",
    "BEATsEncoder",
    "BEATsModel",
    "EncoderOutput",
    "HFAudioEncoder",
    "MelEncoder",
    "audioset_labels",
    "check_waveform",
    "load_beats_checkpoint",
]
