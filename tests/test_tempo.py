"""The method's plain modules against brute-force references."""

import itertools

import pytest
import torch

from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens, expanding_windows, pool_time, window_means


def brute_windows(a, radii, inclusive=True):
    B, F, D = a.shape
    out = torch.zeros(B, F, len(radii), D, dtype=torch.float64)
    for i in range(F):
        for r, j in enumerate(radii):
            lo = max(0, i - j)
            hi = min(F - 1, i + j) if inclusive else min(F, i + j) - 1
            out[:, i, r] = a[:, lo : hi + 1].double().mean(dim=1)
    return out


@pytest.mark.parametrize("F,n_scales", [(1, 1), (5, 3), (24, 5), (37, 6), (8, 0)])
def test_windows_equal_brute_force(F, n_scales):
    g = torch.Generator().manual_seed(F * 10 + n_scales)
    a = torch.randn(3, F, 7, generator=g)
    radii = [2**k for k in range(n_scales)]
    got = expanding_windows(a, n_scales=n_scales)
    assert got.shape == (3, F, n_scales, 7)
    torch.testing.assert_close(got.double(), brute_windows(a, radii), atol=1e-6, rtol=1e-6)


def test_windows_bounds_are_inclusive_and_half_open_variant():
    a = torch.arange(6, dtype=torch.float32).view(1, 6, 1)
    inc = window_means(a, [1])[0, :, 0, 0]
    # frame 0 covers 0..1, frame 5 covers 4..5, frame 2 covers 1..3
    assert inc.tolist() == pytest.approx([0.5, 1.0, 2.0, 3.0, 4.0, 4.5])
    half = window_means(a, [1], bounds="half_open")[0, :, 0, 0]
    # [max(i-1,0), min(i+1,6)): frame 0 -> {0}, frame 2 -> {1,2}
    assert half.tolist() == pytest.approx([0.0, 0.5, 1.5, 2.5, 3.5, 4.5])
    torch.testing.assert_close(window_means(a, [2, 8], bounds="half_open").double(), brute_windows(a, [2, 8], False))


def test_vec_mode_gives_every_frame_the_clip_mean():
    a = torch.randn(2, 9, 4)
    v = expanding_windows(a, mode="vec")
    assert v.shape == (2, 9, 1, 4)
    torch.testing.assert_close(v[:, 3, 0], a.mean(1))
    torch.testing.assert_close(v[:, 0], v[:, 8])


def test_pool_time_matches_area_weighted_loop():
    for T, F in [(6, 24), (50, 8), (7, 3), (24, 24)]:
        x = torch.randn(2, T, 3, dtype=torch.float64)
        got = pool_time(x, F)
        ref = torch.zeros(2, F, 3, dtype=torch.float64)
        for s in range(F):
            a0, a1 = s / F, (s + 1) / F
            w = torch.tensor([max(0.0, min(a1, (t + 1) / T) - max(a0, t / T)) for t in range(T)], dtype=torch.float64)
            ref[:, s] = (w[None, :, None] * x).sum(1) / w.sum()
        torch.testing.assert_close(got, ref)


def test_mapper_shapes_any_length_and_depth():
    for depth in (2, 3, 4):
        m = AudioMapper(in_features=12, hidden=16, out_features=8, depth=depth)
        n_linear = sum(isinstance(x, torch.nn.Linear) for x in m.modules())
        assert n_linear == depth
        for T in (3, 24, 100):
            assert m(torch.randn(2, T, 3, 4), num_frames=24).shape == (2, 24, 8)
    with pytest.raises(ValueError, match="in_features"):
        AudioMapper(in_features=12, hidden=16, out_features=8)(torch.randn(1, 5, 2, 5), 4)


def test_attentive_pool_weights_permutation_and_gradients():
    torch.manual_seed(0)
    pool = AttentivePool(dim=8, hidden=6, dropout=0.5).eval()
    a = torch.randn(3, 11, 8)
    pooled, w = pool(a, return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    assert (w > 0).all()
    perm = torch.randperm(11)
    pooled_p, w_p = pool(a[:, perm], return_weights=True)
    torch.testing.assert_close(pooled_p, pooled, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w_p, w[:, perm], atol=1e-6, rtol=1e-5)
    # gradients reach every parameter (training mode, dropout on)
    pool.train()
    pool(a).pow(2).sum().backward()
    for name, p in pool.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_attentive_pool_matches_explicit_formula():
    torch.manual_seed(1)
    pool = AttentivePool(dim=5, hidden=4).eval()
    a = torch.randn(1, 6, 5)
    U = [float(pool.unary_reduce(torch.relu(pool.unary_embed(a[0, u])))) for u in range(6)]
    P = []
    for u in range(6):
        x = pool.pair_x(a[0, u])
        P.append(sum(float(torch.cosine_similarity(x, pool.pair_y(a[0, i]), dim=0)) for i in range(6)) / 6)
    al, ac = pool.mix.weight[0].tolist()
    s = torch.tensor([al * U[u] + ac * P[u] for u in range(6)]).softmax(0)
    ref = (s[:, None] * a[0]).sum(0)
    torch.testing.assert_close(pool(a)[0], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("own,windows,pool", list(itertools.product([True, False], ["windows", "vec", "none"], [True, False])))
def test_tempo_tokens_kinds(own, windows, pool):
    kw = dict(own_token=own, windows=windows, n_scales=3, pool=AttentivePool(dim=4) if pool else None)
    if not own and windows == "none" and not pool:
        with pytest.raises(ValueError):
            TempoTokens(**kw)
        return
    t = TempoTokens(**kw).eval()
    a = torch.randn(2, 7, 4)
    out = t(a)
    assert out.shape == (2, 7, t.num_tokens, 4)
    k = 0
    if own:
        torch.testing.assert_close(out[:, :, 0], a)
        k = 1
    if windows == "windows":
        torch.testing.assert_close(out[:, :, k : k + 3], window_means(a, [1, 2, 4]))
    if pool:
        torch.testing.assert_close(out[:, 0, -1], out[:, 6, -1])
