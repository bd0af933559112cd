"""Official adapters: key layout, conversion, and the compatibility mode against DESIGN §5 by hand."""

from __future__ import annotations

import math

import pytest
import torch

from av_lightning.official import convert_official, convert_state_dict, official_model_config
from tests.helpers import build as instantiate

# learned_embeds.pth as released (written out here: tests never read ../shared).
OFFICIAL_LAYOUT = """
fc1.weight 2304,9216
fc1.bias 2304
fc2.weight 2304,2304
fc2.bias 2304
fc3.weight 1024,2304
fc3.bias 1024
fc4.weight 1024,1024
fc4.bias 1024
fga.un_models.0.embed.weight 1024,1024,1
fga.un_models.0.embed.bias 1024
fga.un_models.0.feature_reduce.weight 1,1024,1
fga.un_models.0.feature_reduce.bias 1
fga.pp_models.0.embed_X.weight 1024,1024,1
fga.pp_models.0.embed_X.bias 1024
fga.pp_models.0.embed_Y.weight 1024,1024,1
fga.pp_models.0.embed_Y.bias 1024
fga.reduce_potentials.0.weight 1,2,1
"""


def layout(in_features: int = 9216, hidden: int = 2304, width: int = 1024) -> dict[str, tuple[int, ...]]:
    sizes = {"9216": in_features, "2304": hidden, "1024": width}
    out = {}
    for line in OFFICIAL_LAYOUT.strip().splitlines():
        key, dims = line.split()
        out[key] = tuple(sizes.get(d, int(d)) for d in dims.split(","))
    return out


def random_official(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.05 * torch.randn(s, generator=g) for k, s in shapes.items()}


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def reference_tokens(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """DESIGN §5 step by step for one clip: patch tokens ``(48, Lh·d)`` -> ``(24, 6, d_t)``."""
    x = x.double()
    p = {k: v.double() for k, v in sd.items()}
    h = gelu(x @ p["fc1.weight"].T + p["fc1.bias"])
    h = gelu(h @ p["fc2.weight"].T + p["fc2.bias"])
    h = h @ p["fc3.weight"].T + p["fc3.bias"]  # (48, d_t)
    segments = [(h[2 * s] + h[2 * s + 1]) / 2 for s in range(24)]
    a = torch.stack([gelu(s) @ p["fc4.weight"].T + p["fc4.bias"] for s in segments])  # (24, d_t)
    windows = {}
    for j in (1, 2, 4, 8):
        rows = []
        for i in range(24):
            lo, hi = max(i - j, 0), min(i + j, 24)
            total = torch.zeros_like(a[0])
            for k in range(lo, hi):
                total = total + a[k]
            rows.append(total / (hi - lo))
        windows[j] = rows
    # attentive token: 1x1 convolutions over the 24 segments
    emb = [a[u] @ p["fga.un_models.0.embed.weight"][:, :, 0].T + p["fga.un_models.0.embed.bias"] for u in range(24)]
    unary = [torch.relu(e) @ p["fga.un_models.0.feature_reduce.weight"][0, :, 0] + p["fga.un_models.0.feature_reduce.bias"][0]
             for e in emb]
    X = [a[u] @ p["fga.pp_models.0.embed_X.weight"][:, :, 0].T + p["fga.pp_models.0.embed_X.bias"] for u in range(24)]
    Y = [a[i] @ p["fga.pp_models.0.embed_Y.weight"][:, :, 0].T + p["fga.pp_models.0.embed_Y.bias"] for i in range(24)]
    pair = []
    for u in range(24):
        cos = [torch.dot(X[u], Y[i]) / (X[u].norm() * Y[i].norm()) for i in range(24)]
        pair.append(sum(cos) / 24)
    w_un, w_pair = p["fga.reduce_potentials.0.weight"][0, :, 0]
    pot = torch.stack([w_un * unary[u] + w_pair * pair[u] for u in range(24)])
    weights = torch.exp(pot - pot.max())
    weights = weights / weights.sum()
    att = sum(weights[u] * a[u] for u in range(24))
    return torch.stack([torch.stack([a[i], windows[1][i], windows[2][i], windows[4][i], windows[8][i], att])
                        for i in range(24)])


def official_modules(dims: dict | None = None):
    cfg = official_model_config(dims=dims)
    return instantiate(cfg["mapper"]).eval(), instantiate(cfg["tokens"]).eval()


def load_converted(mapper, tokens, state):
    mapper.load_state_dict({k[len("mapper."):]: v for k, v in state.items() if k.startswith("mapper.")})
    tokens.load_state_dict({k[len("tokens."):]: v for k, v in state.items() if k.startswith("tokens.")})


def test_layout_matches_converter():
    from av_lightning.official import OFFICIAL_SHAPES

    assert layout() == OFFICIAL_SHAPES


def test_full_size_conversion_covers_the_adapter():
    state = convert_state_dict({k: torch.zeros(s) for k, s in layout().items()})  # values do not matter here
    with torch.device("meta"):  # shapes only: no 35M-parameter initialisation
        mapper, tokens = official_modules()
    own = {**{f"mapper.{k}": v for k, v in mapper.state_dict().items()},
           **{f"tokens.{k}": v for k, v in tokens.state_dict().items()}}
    assert set(state) == set(own), "conversion must cover the adapter exactly (no missing or extra keys)"
    assert all(state[k].shape == own[k].shape for k in own)
    assert tokens.num_tokens == 6 and tokens.radii == [1, 2, 4, 8] and tokens.bounds == "half_open"


def check_tokens(dims: dict, seed: int = 0) -> None:
    sd = random_official(layout(**dims), seed)
    mapper, tokens = official_modules({"in_features": dims["in_features"], "hidden": dims["hidden"], "width": dims["width"]})
    load_converted(mapper, tokens, convert_state_dict(sd, shapes=layout(**dims)))
    x = torch.randn(1, 48, dims["in_features"], generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        got = tokens(mapper(x, 24))[0]  # what AudioToVideo(compat="official").audio_tokens computes
    want = reference_tokens(sd, x[0])
    assert got.shape == (24, 6, dims["width"])
    # float32 against a float64 reference over sums of up to 9216 products
    torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-4)


def test_tokens_match_design_small():
    check_tokens({"in_features": 96, "hidden": 48, "width": 40})


@pytest.mark.slow
def test_tokens_match_design_full_size():
    check_tokens({"in_features": 9216, "hidden": 2304, "width": 1024})


def test_no_dropout_at_inference():
    mapper, tokens = official_modules({"in_features": 32, "hidden": 16, "width": 8})
    a = mapper(torch.randn(1, 48, 32), 24)
    assert torch.equal(tokens(a), tokens(a))
    assert tokens.pool.dropout.p == 0.5 and not tokens.training


def test_bad_official_files(tmp_path):
    sd = random_official(layout(32, 16, 8))
    with pytest.raises(ValueError, match="missing keys.*fc4.bias"):
        convert_state_dict({k: v for k, v in sd.items() if k != "fc4.bias"}, shapes=layout(32, 16, 8))
    with pytest.raises(ValueError, match="unexpected shapes.*fc1.weight"):
        convert_state_dict(sd)  # small tensors against the full-size layout
    from av_lightning.commands.convert_official import main

    assert main([str(tmp_path / "nope.pth"), "--out", str(tmp_path / "a.safetensors")]) == 2


def test_compat_mode_end_to_end(tmp_path):
    """convert-official -> adapter file -> AudioToVideo(compat="official") on a tiny BEATs and backbone."""
    from av_lightning.adapters import read_checkpoint
    from av_lightning.encoders.beats import BEATsEncoder
    from av_lightning.module import AudioToVideo
    from tests.conftest import tiny_backbone
    from tests.encoders.conftest import SMALL_BEATS

    shapes = layout(in_features=2 * 16, hidden=24, width=32)  # 2 layers x 16 wide; CLIP width 32
    sd = random_official(shapes, seed=3)
    torch.save(sd, tmp_path / "learned_embeds.pth")
    path = convert_official(tmp_path / "learned_embeds.pth", tmp_path / "adapter.safetensors", shapes=shapes)
    hparams, meta = read_checkpoint(path)
    assert hparams["compat"] == "official" and meta["num_tokens"] == "6"
    rest = {k: v for k, v in hparams.items() if k not in ("backbone", "encoder", "mapper", "tokens")}
    encoder = BEATsEncoder(cfg=dict(SMALL_BEATS))
    model = AudioToVideo(tiny_backbone(), encoder, instantiate(hparams["mapper"]), instantiate(hparams["tokens"]), **rest)
    model.load_adapter(path)
    model.eval()
    audio = 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(2))
    got = model.audio_tokens({"audio": audio})[0]
    patches = encoder.patch_tokens(audio)[0]
    assert patches.shape == (48, 32)
    torch.testing.assert_close(got.double(), reference_tokens(sd, patches), rtol=1e-4, atol=1e-5)
    # the six tokens fill the placeholder in order: one prompt row per frame
    cond, _ = model.conditioning({"audio": audio}, "audio")
    assert cond.shape[:2] == (1, 24)
