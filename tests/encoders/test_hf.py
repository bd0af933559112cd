"""HFAudioEncoder against the transformers models called directly (tiny random configs)."""

import pytest
import torch

from av_lightning.encoders.hf import HFAudioEncoder, describe_time_axis


def test_ast_averages_frequency_patches(ast_dir, noise):
    from transformers import ASTFeatureExtractor, ASTModel

    enc = HFAudioEncoder(ast_dir)
    x = noise(1, 1.0)
    out = enc(x)
    assert out.frame_rate == 100 / 16 and out.hidden_states.shape == (
        1,
        6,
        2,
        32,
    )  # (98 - 16) // 16 + 1
    model, fe = (
        ASTModel.from_pretrained(ast_dir).eval(),
        ASTFeatureExtractor.from_pretrained(ast_dir),
    )
    with torch.no_grad():
        hs = model(
            **fe([x[0].numpy()], sampling_rate=16000, return_tensors="pt"),
            output_hidden_states=True,
        ).hidden_states
    f, t = (32 - 16) // 16 + 1, (128 - 16) // 16 + 1
    want = torch.stack([h[:, 2:].reshape(1, f, t, 32).mean(1) for h in hs[1:]], dim=2)[:, :6]
    torch.testing.assert_close(out.hidden_states, want, atol=1e-5, rtol=1e-5)
    assert "frequency patches averaged" in describe_time_axis(enc)


def test_whisper_uses_the_encoder(whisper_dir, noise):
    from transformers import WhisperFeatureExtractor, WhisperModel

    enc = HFAudioEncoder(whisper_dir)
    x = noise(1, 0.5)
    out = enc(x)
    assert out.frame_rate == 50.0 and out.hidden_states.shape == (1, 25, 2, 32)
    model, fe = (
        WhisperModel.from_pretrained(whisper_dir).eval(),
        WhisperFeatureExtractor.from_pretrained(whisper_dir),
    )
    with torch.no_grad():
        feats = fe([x[0].numpy()], sampling_rate=16000, return_tensors="pt").input_features
        hs = model.encoder(feats, output_hidden_states=True).hidden_states
    torch.testing.assert_close(
        out.hidden_states, torch.stack(hs[1:], dim=2)[:, :25], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(
    "name, seconds, steps", [("ast", 3.0, (298 - 16) // 16 + 1), ("whisper", 2.5, 125)]
)
def test_long_audio_is_chunked(encoders, noise, name, seconds, steps):
    out = encoders[name](noise(1, seconds))
    assert out.hidden_states.shape[1] == steps and out.mask.all()


def test_layer_selection(ast_dir, encoders, noise):
    last = HFAudioEncoder(ast_dir, layers=[-1])
    x = noise(1, 1.0)
    assert last.num_layers == 1
    torch.testing.assert_close(
        last(x).hidden_states[:, :, 0], encoders["ast"](x).hidden_states[:, :, -1]
    )


def test_generic_family_takes_tokens_as_time(tmp_path, noise):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    Wav2Vec2Model(cfg).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=False).save_pretrained(
        tmp_path
    )
    enc = HFAudioEncoder(str(tmp_path))
    out = enc(noise(2, 0.25), lengths=torch.tensor([4000, 3000]))
    assert out.frame_rate == 1600.0  # 16 kHz / (5 * 2)
    assert out.hidden_states.shape[2:] == (2, 16)
    assert out.mask.sum(1).tolist() == [399, 299]  # the model's own conv output lengths
    assert "tokens as time" in describe_time_axis(enc)


def test_missing_model_fails_with_the_path(tmp_path):
    with pytest.raises(OSError, match="nothing-here"):
        HFAudioEncoder(str(tmp_path / "nothing-here"), local_files_only=True)
