"""Tiny encoders built from config dicts, shared by the encoder tests (no downloads)."""

import pytest
import torch

from av_lightning.encoders.beats import PAPER_CHECKPOINT_CFG

SMALL_BEATS = {
    "input_patch_size": 16,
    "embed_dim": 24,
    "conv_bias": False,
    "encoder_layers": 2,
    "encoder_embed_dim": 16,
    "encoder_ffn_embed_dim": 32,
    "encoder_attention_heads": 2,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "deep_norm": True,
    "conv_pos": 8,
    "conv_pos_groups": 4,
    "relative_position_embedding": True,
    "num_buckets": 32,
    "max_distance": 64,
    "gru_rel_pos": True,
    "finetuned_model": True,
    "predictor_class": 527,
}

FULL_BEATS = dict(PAPER_CHECKPOINT_CFG)


def _noise(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(seconds * 16000), generator=g)


@pytest.fixture(scope="session")
def noise():
    """``noise(batch, seconds, seed=0)`` -> (batch, S) white noise at 16 kHz, std 0.1."""
    return _noise


@pytest.fixture(scope="session")
def small_beats_cfg():
    return dict(SMALL_BEATS)


@pytest.fixture(scope="session")
def full_beats_cfg():
    return dict(FULL_BEATS)


@pytest.fixture(scope="session")
def ast_dir(tmp_path_factory):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    path = tmp_path_factory.mktemp("ast")
    torch.manual_seed(0)
    cfg = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=128,
        num_mel_bins=32,
        patch_size=16,
        frequency_stride=16,
        time_stride=16,
    )
    ASTModel(cfg).save_pretrained(path)
    ASTFeatureExtractor(num_mel_bins=32, max_length=128).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    path = tmp_path_factory.mktemp("whisper")
    torch.manual_seed(0)
    cfg = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=50,
        max_target_positions=16,
        vocab_size=100,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=2,
    )
    WhisperModel(cfg).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=16, chunk_length=1).save_pretrained(path)  # 1 s window
    return str(path)


@pytest.fixture(scope="session")
def encoders(ast_dir, whisper_dir):
    """One of each encoder, by name."""
    from av_lightning.encoders import BEATsEncoder, HFAudioEncoder, MelEncoder

    return {
        "beats": BEATsEncoder(cfg=SMALL_BEATS),
        "beats_shift2": BEATsEncoder(cfg=SMALL_BEATS, time_shifts=2),
        "mel": MelEncoder(n_mels=16),
        "ast": HFAudioEncoder(ast_dir),
        "whisper": HFAudioEncoder(whisper_dir),
    }
