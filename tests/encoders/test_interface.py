"""The AudioEncoder contract, checked on every encoder (tiny random models, no downloads)."""

import json

import pytest
import torch

NAMES = ["beats", "beats_shift2", "mel", "ast", "whisper"]


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_frame_rate(encoders, noise, name):
    enc = encoders[name]
    x = noise(2, 1.0)
    out = enc(x)
    b, t, lh, d = out.hidden_states.shape
    assert (b, lh, d) == (2, enc.num_layers, enc.hidden_size)
    assert enc.feature_size == lh * d
    assert out.mask.shape == (2, t) and out.mask.dtype == torch.bool and out.mask.all()
    assert out.frame_rate > 0
    # T' time steps cover the second at the reported rate (up to the last incomplete window)
    assert abs(t - out.frame_rate) <= 3, (t, out.frame_rate)
    assert torch.isfinite(out.hidden_states).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_frozen(encoders, noise, name):
    enc = encoders[name]
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    x = noise(1, 0.7, seed=3)
    torch.testing.assert_close(enc(x).hidden_states, enc(x).hidden_states, rtol=0, atol=0)
    json.dumps(enc.settings())


@pytest.mark.parametrize("name", NAMES)
def test_batch_with_padding_equals_single_runs(encoders, noise, name):
    enc = encoders[name]
    a, b = noise(1, 1.0, seed=1), noise(1, 0.6, seed=2)
    batch = torch.zeros(2, a.shape[1])
    batch[0], batch[1, : b.shape[1]] = a[0], b[0]
    batch[1, b.shape[1] :] = 0.3  # padding content must not matter
    out = enc(batch, lengths=torch.tensor([a.shape[1], b.shape[1]]))
    single_a, single_b = enc(a), enc(b)
    ta, tb = single_a.hidden_states.shape[1], single_b.hidden_states.shape[1]
    assert out.mask.sum(1).tolist() == [ta, tb]
    assert out.hidden_states.shape[1] == ta
    torch.testing.assert_close(
        out.hidden_states[0], single_a.hidden_states[0], atol=2e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        out.hidden_states[1, :tb], single_b.hidden_states[0], atol=2e-5, rtol=1e-4
    )
    assert (out.hidden_states[1, tb:] == 0).all()


BAD = {
    "stereo": (lambda noise: noise(2, 1.0).unsqueeze(0), {}, "mono"),
    "integer": (lambda noise: (noise(1, 1.0) * 32767).short(), {}, "float"),
    "nan": (lambda noise: noise(1, 1.0).index_fill(1, torch.tensor([5]), float("nan")), {}, "NaN"),
    "empty": (lambda noise: torch.zeros(1, 0), {}, "at least"),
    "empty_batch": (lambda noise: torch.zeros(0, 16000), {}, "non-empty"),
    "rate": (lambda noise: noise(1, 1.0), {"sample_rate": 44100}, "16000 Hz"),
    "lengths_shape": (lambda noise: noise(2, 1.0), {"lengths": torch.tensor([16000])}, "lengths"),
    "lengths_too_long": (
        lambda noise: noise(2, 1.0),
        {"lengths": torch.tensor([16000, 17000])},
        "length",
    ),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_says_what_was_expected(encoders, noise, name, case):
    make, kwargs, words = BAD[case]
    with pytest.raises((ValueError, TypeError), match=words):
        encoders[name](make(noise), **kwargs)


def test_encoders_build_from_yaml(tmp_path, small_beats_cfg):
    """LightningCLI-style: class_path + init_args of simple types for every encoder."""
    import yaml
    from jsonargparse import ArgumentParser

    from av_lightning.encoders import AudioEncoder, BEATsEncoder, BEATsModel, MelEncoder
    from av_lightning.encoders.beats import BEATsConfig

    path = tmp_path / "beats.pt"
    torch.save(
        {"cfg": small_beats_cfg, "model": BEATsModel(BEATsConfig(**small_beats_cfg)).state_dict()},
        path,
    )
    parser = ArgumentParser()
    parser.add_subclass_arguments(AudioEncoder, "encoder")
    for init in (
        {
            "class_path": "av_lightning.encoders.BEATsEncoder",
            "init_args": {"checkpoint": str(path), "time_shifts": 2},
        },
        {
            "class_path": "av_lightning.encoders.mel.MelEncoder",
            "init_args": {"n_mels": 32, "frame_rate": 8.0},
        },
    ):
        cfg = parser.parse_string(yaml.safe_dump({"encoder": init}))
        enc = parser.instantiate(cfg).encoder
        assert isinstance(enc, (BEATsEncoder, MelEncoder))
    assert enc.frame_rate == 8.0
