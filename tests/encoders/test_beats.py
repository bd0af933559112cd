"""BEATs written for this project: checkpoint format, independent checks, time axis, labels."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from av_lightning.encoders.beats import (
    BEATsConfig,
    BEATsEncoder,
    BEATsModel,
    beats_fbank,
    load_beats_state_dict,
    num_patch_steps,
    relative_position_bucket,
)
from av_lightning.weights import WeightsError
from tests.helpers import write_malicious_pickle

FIXTURES = Path(__file__).with_name("fixtures")


def reference_listing() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (a shipped copy)."""
    listing = {}
    for line in (FIXTURES / "beats_state_dict.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        listing[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return listing


def save_checkpoint(path: Path, cfg: dict, model: BEATsModel) -> Path:
    torch.save({"cfg": cfg, "model": model.state_dict()}, path)
    return path


# ----------------------------------------------------------------------------- checkpoint format


def test_full_size_checkpoint_matches_reference_listing_and_loads(tmp_path, full_beats_cfg, noise):
    with torch.device("meta"):
        model = BEATsModel(BEATsConfig.from_dict(full_beats_cfg))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    listing = reference_listing()
    assert shapes == listing
    # the file the authors ship: {'cfg', 'model'} with every listed key (random weights here)
    g = torch.Generator().manual_seed(0)
    state = {k: 0.02 * torch.randn(shape, generator=g) for k, shape in listing.items()}
    for k in state:  # like the real file: 12 copies of the one relative-position table
        if k.endswith("relative_attention_bias.weight"):
            state[k] = state["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    path = tmp_path / "BEATs_full.pt"
    torch.save({"cfg": full_beats_cfg, "model": state}, path)
    del state
    enc = BEATsEncoder.from_checkpoint(path)  # strict: no missing, no unexpected keys
    assert (enc.num_layers, enc.hidden_size, enc.feature_size) == (12, 768, 9216)
    tokens = enc.patch_tokens(noise(1, 1.0))
    assert tokens.shape == (1, 48, 9216)  # DESIGN §5: 6 time steps x 8 bands, 12 layers x 768
    assert torch.isfinite(tokens).all()


def test_small_checkpoint_is_deterministic_in_eval(tmp_path, small_beats_cfg, noise):
    enc = BEATsEncoder(cfg=small_beats_cfg, seed=7)
    path = save_checkpoint(tmp_path / "small.pt", small_beats_cfg, enc.model)
    a = BEATsEncoder.from_checkpoint(path)
    x = noise(2, 1.3)
    ref = enc(x).hidden_states
    torch.testing.assert_close(a(x).hidden_states, ref, rtol=0, atol=0)
    torch.testing.assert_close(a(x).hidden_states, ref, rtol=0, atol=0)
    assert a.settings()["checkpoint"] == str(path.resolve())


@pytest.mark.parametrize(
    "blob, words",
    [
        ({"model": {}}, "expected a dict with keys 'cfg'"),
        ({"state_dict": {}, "hyper_parameters": {}}, "is not a BEATs checkpoint"),
        ([1, 2, 3], "is not a BEATs checkpoint"),
    ],
)
def test_other_files_are_rejected(tmp_path, blob, words):
    path = tmp_path / "other.pt"
    torch.save(blob, path)
    with pytest.raises(ValueError, match=words):
        BEATsEncoder.from_checkpoint(path)


def test_unsafe_pickle_is_refused_before_it_runs(tmp_path, small_beats_cfg):
    """A checkpoint whose unpickling would run code: named, explained, and nothing ran."""
    model = BEATsModel(BEATsConfig.from_dict(small_beats_cfg))
    path, marker = tmp_path / "BEATs_trap.pt", tmp_path / "marker"
    write_malicious_pickle(path, marker, {"cfg": small_beats_cfg, "model": model.state_dict()})
    with pytest.raises(WeightsError) as err:
        BEATsEncoder(checkpoint=str(path))
    msg = str(err.value)
    assert str(path) in msg and "cannot be loaded safely" in msg
    assert "torch.save({'cfg'" in msg  # how to convert a trusted file
    assert not marker.exists()


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncated, _garbage, _empty])
def test_corrupt_file_is_named(tmp_path, small_beats_cfg, damage):
    model = BEATsModel(BEATsConfig.from_dict(small_beats_cfg))
    path = save_checkpoint(tmp_path / "BEATs_bad.pt", small_beats_cfg, model)
    damage(path)
    with pytest.raises(WeightsError) as err:
        BEATsEncoder.from_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "not a readable checkpoint" in msg and "Download" in msg


def test_model_entry_must_be_a_state_dict(tmp_path, small_beats_cfg):
    path = tmp_path / "listy.pt"
    torch.save({"cfg": small_beats_cfg, "model": [torch.zeros(2)]}, path)
    with pytest.raises(ValueError, match="must be a state dict"):
        BEATsEncoder.from_checkpoint(path)


def test_wrong_keys_are_listed(tmp_path, small_beats_cfg):
    model = BEATsModel(BEATsConfig.from_dict(small_beats_cfg))
    state = model.state_dict()
    state.pop("predictor.bias")
    state["decoder.weight"] = torch.zeros(3)
    state["encoder.layer_norm.weight"] = torch.zeros(5)
    path = tmp_path / "bad.pt"
    torch.save({"cfg": small_beats_cfg, "model": state}, path)
    with pytest.raises(ValueError) as err:
        BEATsEncoder.from_checkpoint(path)
    msg = str(err.value)
    assert (
        "predictor.bias" in msg and "decoder.weight" in msg and "encoder.layer_norm.weight" in msg
    )


def test_constructor_needs_one_source(small_beats_cfg, tmp_path):
    with pytest.raises(ValueError, match="exactly one of checkpoint"):
        BEATsEncoder()
    with pytest.raises(ValueError, match="exactly one of checkpoint"):
        BEATsEncoder(checkpoint="x.pt", cfg=small_beats_cfg)
    with pytest.raises(FileNotFoundError, match="BEATs_iter3_plus_AS2M"):
        BEATsEncoder(checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="activation_fn"):
        BEATsEncoder(cfg=dict(small_beats_cfg, activation_fn="glu"))
    with pytest.raises(ValueError, match="time_shifts"):
        BEATsEncoder(cfg=small_beats_cfg, time_shifts=0)


# ----------------------------------------------------------------------------- independent checks


def _fixture_maker():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fixture_maker", FIXTURES / "make_espnet_fixture.py"
    )
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    return maker


def test_matches_espnet_on_the_same_weights():
    """Oracle: ESPnet's BEATs on small random weights, both fed ESPnet's stored fbank.

    The fixture (``fixtures/make_espnet_fixture.py``) stores the fbank ESPnet computed beside the
    layer outputs it gave on that fbank, so this compares the networks alone: no FFT runs here and
    the result does not depend on the CPU's SIMD path.
    """
    blob = torch.load(FIXTURES / "beats_espnet_small.pt", weights_only=True)
    model = BEATsModel(BEATsConfig.from_dict(blob["cfg"])).eval()
    load_beats_state_dict(model, blob["model"])
    fbank = blob["fbank"]
    assert fbank.shape == (2, 48, 128)  # 0.5 s: 1 + (8000 - 400) // 160 frames
    steps = num_patch_steps(torch.tensor([8000] * 2))
    with torch.no_grad():
        got = torch.stack(model(fbank, steps), dim=2)
    torch.testing.assert_close(got, blob["layers"], atol=1e-5, rtol=1e-5)


def test_fbank_matches_espnet_on_loud_bins():
    """Our fbank of the fixture's waveform against ESPnet's stored one, where float32 FFT rounding
    cannot matter: bins with log energy > 10 (int16 scale). Near-silent bins differ by up to 0.04
    between MKL's AVX-512 and SSE4.2 paths, these bins by 2.3e-5 at most (tolerance 1e-3)."""
    blob = torch.load(FIXTURES / "beats_espnet_small.pt", weights_only=True)
    ours = beats_fbank(_fixture_maker().test_waveform())
    loud = blob["fbank"] * (2 * 6.55582) + 15.41663 > 10
    assert loud.float().mean() > 0.25  # a quarter of all bins: chirp and tone, both clips
    torch.testing.assert_close(ours[loud], blob["fbank"][loud], atol=1e-3, rtol=0)


def test_fbank_is_torchaudio_kaldi(noise):
    x = noise(2, 0.5)
    got = beats_fbank(x)
    for i in range(2):
        direct = torchaudio.compliance.kaldi.fbank(
            x[i : i + 1] * 32768,
            num_mel_bins=128,
            sample_frequency=16000,
            frame_length=25,
            frame_shift=10,
        )
        torch.testing.assert_close(got[i], (direct - 15.41663) / (2 * 6.55582))
    assert got.shape == (2, 1 + (8000 - 400) // 160, 128)


def kaldi_fbank_float64(x: np.ndarray, num_mel_bins: int = 128) -> np.ndarray:
    """BEATs' normalised fbank of one 16 kHz clip in float64, from Kaldi's definition.

    25 ms frames every 10 ms (snip edges), each: DC removed, pre-emphasis 0.97, Povey window
    (Hann^0.85), zero-padded to 512, power spectrum; triangular bins on the mel scale
    1127 ln(1 + f / 700) between 20 Hz and 8 kHz (Nyquist bin excluded); log floored at float32 eps.
    """
    frame, hop, nfft, rate = 400, 160, 512, 16000
    x = np.asarray(x, dtype=np.float64) * 32768
    frames = np.stack([x[m * hop : m * hop + frame] for m in range(1 + (len(x) - frame) // hop)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / (frame - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, n=nfft)) ** 2  # (N, 257)

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)

    low, delta = mel(20.0), (mel(rate / 2) - mel(20.0)) / (num_mel_bins + 1)
    bin_mel = mel(np.arange(nfft // 2) * rate / nfft)
    banks = np.zeros((num_mel_bins, nfft // 2 + 1))
    for b in range(num_mel_bins):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        rise, fall = (bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre)
        banks[b, : nfft // 2] = np.clip(np.minimum(rise, fall), 0.0, None)
    energy = np.maximum(power @ banks.T, np.finfo(np.float32).eps)
    return (np.log(energy) - 15.41663) / (2 * 6.55582)


def test_fbank_matches_float64_definition(noise):
    """float32 fbank against the float64 formula on white noise (every bin well above the float32
    rounding floor): measured max 1.9e-5 (MKL AVX-512 path), 1.8e-5 (SSE4.2), tolerance 1e-4."""
    x = noise(2, 0.5, seed=3)
    got = beats_fbank(x).double().numpy()
    want = np.stack([kaldi_fbank_float64(w) for w in x.double().numpy()])
    assert got.shape == want.shape == (2, 48, 128)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def brute_force_bucket(offset: int, num_buckets: int, max_distance: int) -> int:
    """T5 bidirectional bucket of one key-minus-query offset, from the formula, one number at a time."""
    half = num_buckets // 2
    bucket = half if offset > 0 else 0
    distance = abs(offset)
    exact = half // 2
    if distance < exact:
        return bucket + distance
    # float32 like the model: truncation of log-spaced positions
    scaled = (
        torch.tensor(math.log(distance / exact) / math.log(max_distance / exact)).float().item()
    )
    large = exact + int(scaled * (half - exact))
    return bucket + min(large, half - 1)


@pytest.mark.parametrize("num_buckets, max_distance", [(320, 800), (32, 64)])
def test_relative_position_bucket_matches_brute_force(num_buckets, max_distance):
    offsets = torch.arange(-1200, 1201)
    got = relative_position_bucket(offsets, num_buckets, max_distance).tolist()
    want = [brute_force_bucket(o, num_buckets, max_distance) for o in offsets.tolist()]
    mismatches = [(o, g, w) for o, g, w in zip(offsets.tolist(), got, want) if g != w]
    assert not mismatches, mismatches[:5]


def test_weight_norm_conv_equals_torch_weight_norm(small_beats_cfg):
    conv_module = BEATsModel(BEATsConfig.from_dict(small_beats_cfg)).encoder.pos_conv[0]
    ref = torch.nn.Conv1d(16, 16, 8, padding=4, groups=4)
    ref = torch.nn.utils.parametrizations.weight_norm(ref, dim=2)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(conv_module.weight_g)
        ref.parametrizations.weight.original1.copy_(conv_module.weight_v)
        ref.bias.copy_(conv_module.bias)
    x = torch.randn(2, 16, 11)
    torch.testing.assert_close(conv_module(x), ref(x))


# ----------------------------------------------------------------------------- time axis


@pytest.mark.parametrize("seconds, steps", [(0.5, 3), (1.0, 6), (10.0, 62)])
def test_documented_shapes(encoders, noise, seconds, steps):
    enc = encoders["beats"]
    x = noise(1, seconds)
    out = enc(x)
    assert out.hidden_states.shape == (1, steps, 2, 16)
    assert out.frame_rate == 6.25
    assert enc.patch_tokens(x).shape == (1, steps * 8, 2 * 16)


def test_patch_tokens_are_time_major_and_average_to_hidden_states(encoders, noise):
    enc = encoders["beats"]
    x = noise(1, 1.0)
    tokens = enc.patch_tokens(x).view(1, 6, 8, 2, 16)  # (B, T, bands, Lh, d): t * 8 + f
    torch.testing.assert_close(tokens.mean(dim=2), enc(x).hidden_states)


def test_long_audio_is_chunked_on_one_grid(small_beats_cfg, noise):
    chunked = BEATsEncoder(cfg=small_beats_cfg, chunk_seconds=2.0)
    x = noise(2, 5.0)
    out = chunked(x)
    assert out.hidden_states.shape[1] == num_patch_steps(x.shape[1]) == 31
    # each window holds 12 steps (1.92 s) and starts where the previous one's steps end
    for first in (0, 12, 24):
        start = first * 2560
        alone = chunked(x[:, start : start + 32000]).hidden_states
        n = min(12, alone.shape[1])
        torch.testing.assert_close(
            out.hidden_states[:, first : first + n], alone[:, :n], atol=1e-5, rtol=1e-5
        )


def expected_shift_steps(num_samples: int, n: int) -> int:
    return sum(num_patch_steps(num_samples - round(i * 2560 / n)) for i in range(n))


@pytest.mark.parametrize("n, seconds", [(2, 0.5), (3, 1.0), (4, 1.0), (4, 10.0)])
def test_time_shifts_count(small_beats_cfg, noise, n, seconds):
    enc = BEATsEncoder(cfg=small_beats_cfg, time_shifts=n)
    out = enc(noise(1, seconds))
    assert out.frame_rate == 6.25 * n
    assert out.hidden_states.shape[1] == expected_shift_steps(int(seconds * 16000), n)
    assert out.mask.all()


def test_shifted_copies_interleave_in_time_order(small_beats_cfg, noise):
    """Step k * n + i of the interleaved axis is step k of the audio advanced by i / n of a step."""
    n = 4
    shifted = BEATsEncoder(cfg=small_beats_cfg, time_shifts=n)
    plain = BEATsEncoder(cfg=small_beats_cfg)
    x = noise(1, 1.5)
    out = shifted(x).hidden_states
    for i in range(n):
        copy = plain(x[:, i * 640 :]).hidden_states
        torch.testing.assert_close(out[:, i::n][:, : copy.shape[1]], copy)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_impulse_lands_on_the_nearest_step(small_beats_cfg, n):
    """Where a click changes the hidden states most is where the time axis says it is."""
    enc = BEATsEncoder(cfg=small_beats_cfg, time_shifts=n)
    positions = list(range(3000, 28000, 2300))
    clicks = torch.zeros(len(positions) + 1, 32000)  # the last row stays silent
    for row, p in enumerate(positions):
        clicks[row, p] = 0.5
    states = enc(clicks).hidden_states
    step = 2560 / n  # samples between steps; step m covers [m * step, m * step + 2800)
    for row, p in enumerate(positions):
        change = (states[row] - states[-1])[:, 0].norm(dim=-1)
        centres = torch.arange(change.shape[0]) * step + 1400
        nearest = int((centres - p).abs().argmin())
        assert abs(int(change.argmax()) - nearest) <= 1, (p, int(change.argmax()), nearest)
        weight = change**4
        centroid = float((weight * centres).sum() / weight.sum())
        assert abs(centroid - p) < step / 2, (p, centroid)


# ----------------------------------------------------------------------------- labels


def test_predict_labels(encoders, noise):
    enc = encoders["beats"]
    labels = enc.predict_labels(noise(2, 1.0), top_k=3)
    assert len(labels) == 2 and all(len(item) == 3 for item in labels)
    for item in labels:
        probs = [p for _, p in item]
        assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
        assert all(isinstance(name, str) and name for name, _ in item)
    probs = enc.predict_proba(noise(2, 1.0))
    assert probs.shape == (2, 527)


def test_predict_proba_ignores_padding(encoders, noise):
    enc = encoders["beats"]
    a = noise(1, 0.8, seed=4)
    batch = torch.cat([a, torch.ones(1, 8000)], dim=1)
    torch.testing.assert_close(
        enc.predict_proba(batch, lengths=torch.tensor([a.shape[1]])),
        enc.predict_proba(a),
        atol=1e-6,
        rtol=1e-5,
    )


def test_labels_need_a_predictor(small_beats_cfg, noise):
    enc = BEATsEncoder(cfg=dict(small_beats_cfg, finetuned_model=False))
    with pytest.raises(ValueError, match="finetuned_model"):
        enc.predict_labels(noise(1, 1.0))


def test_too_short_audio_says_how_long(encoders):
    with pytest.raises(ValueError, match="at least 2800 samples"):
        encoders["beats"](torch.zeros(1, 2000))
