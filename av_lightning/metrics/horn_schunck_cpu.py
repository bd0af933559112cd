"""Horn–Schunck flow compiled for the CPU (numba): one pass per Jacobi iteration, one pair at a time.

The torch functions of :mod:`~.optical_flow` run each iteration as a dozen whole-tensor
operations; on a CPU the flow of every pair then streams through memory a dozen times per
iteration. Here one pair's images stay in the cache while its iterations run, and the arithmetic
is the torch functions' in the same order, in float32 (blur, gradients, Jacobi updates), so both
give the same flow up to the last rounding of the mean magnitude (tested): the CPU and the GPU
share one definition of paper mode's video peaks.

numba ships with librosa, which the metrics already need; :mod:`~.optical_flow` imports this
module only for CPU tensors. Kernels are compiled on first use and cached on disk
(``cache=True``, next to this file or in numba's user cache), so later processes load them.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always")
def _replicate_border(p, h, w):
    for x in range(1, w + 1):
        p[0, x] = p[1, x]
        p[h + 1, x] = p[h, x]
    for y in range(h + 2):
        p[y, 0] = p[y, 1]
        p[y, w + 1] = p[y, w]


@numba.njit(inline="always")
def _neighbour_mean_row(p, y, w, column_sums, out):
    # Row y of optical_flow._neighbour_mean on the padded image p, same operation order:
    # 3x3 box sum from column sums, plus the 4-neighbour cross, minus the centre, / 12.
    above, centre, below = p[y], p[y + 1], p[y + 2]
    for x in range(w + 2):
        column_sums[x] = above[x] + centre[x] + below[x]
    twelve = np.float32(12.0)
    for x in range(w):
        box = column_sums[x] + column_sums[x + 1] + column_sums[x + 2]
        cross = above[x + 1] + below[x + 1] + centre[x] + centre[x + 2]
        out[x] = (box + cross - centre[x + 1]) / twelve


@numba.njit(cache=True, error_model="numpy")
def _solve_pair(ix, iy, it, inv_denom, iterations, u0, v0, u1, v1, column_sums, mean_u, mean_v):
    """Jacobi iterations from zero flow for one pair of ``(h, w)`` terms; the flow ends in the
    interiors of ``u0``, ``v0`` (``(h + 2, w + 2)``, replicate-padded). The other arrays are
    scratch rows: ``(w + 2,)``, then two ``(w,)``."""
    h, w = ix.shape
    u0[:] = 0
    v0[:] = 0
    for _ in range(iterations):
        for y in range(h):
            _neighbour_mean_row(u0, y, w, column_sums, mean_u)
            _neighbour_mean_row(v0, y, w, column_sums, mean_v)
            gx, gy, gt, gi = ix[y], iy[y], it[y], inv_denom[y]
            out_u, out_v = u1[y + 1], v1[y + 1]
            for x in range(w):
                step = (gx[x] * mean_u[x] + gy[x] * mean_v[x] + gt[x]) * gi[x]
                out_u[x + 1] = mean_u[x] - gx[x] * step
                out_v[x + 1] = mean_v[x] - gy[x] * step
        _replicate_border(u1, h, w)
        _replicate_border(v1, h, w)
        u0, u1 = u1, u0
        v0, v1 = v1, v0
    if iterations % 2:  # the result is in the caller's u1/v1 buffers: copy it back
        u1[:] = u0
        v1[:] = v0


@numba.njit(cache=True, error_model="numpy")
def _jacobi(ix, iy, it, inv_denom, iterations):
    n, h, w = ix.shape
    out = np.empty((n, 2, h, w), np.float32)
    u0, v0 = np.empty((h + 2, w + 2), np.float32), np.empty((h + 2, w + 2), np.float32)
    u1, v1 = np.empty((h + 2, w + 2), np.float32), np.empty((h + 2, w + 2), np.float32)
    scratch = (np.empty(w + 2, np.float32), np.empty(w, np.float32), np.empty(w, np.float32))
    for k in range(n):
        _solve_pair(ix[k], iy[k], it[k], inv_denom[k], iterations, u0, v0, u1, v1, *scratch)
        out[k, 0] = u0[1 : h + 1, 1 : w + 1]
        out[k, 1] = v0[1 : h + 1, 1 : w + 1]
    return out


@numba.njit(cache=True, error_model="numpy")
def _blur(src, weights, tmp, out):
    """optical_flow._gaussian_blur of one ``(h, w)`` image: horizontal then vertical weighted sums
    of replicate-clamped neighbours, summed in tap order."""
    h, w = src.shape
    radius = (weights.size - 1) // 2
    for y in range(h):
        for x in range(w):
            acc = weights[0] * src[y, min(max(x - radius, 0), w - 1)]
            for i in range(1, weights.size):
                acc = acc + weights[i] * src[y, min(max(x - radius + i, 0), w - 1)]
            tmp[y, x] = acc
    for y in range(h):
        for x in range(w):
            acc = weights[0] * tmp[min(max(y - radius, 0), h - 1), x]
            for i in range(1, weights.size):
                acc = acc + weights[i] * tmp[min(max(y - radius + i, 0), h - 1), x]
            out[y, x] = acc


@numba.njit(cache=True, error_model="numpy")
def _pair_terms(a, b, alpha2, ix, iy, it, inv_denom):
    """optical_flow._pair_terms for one pair of ``(h, w)`` (blurred) images."""
    h, w = a.shape
    half = np.float32(0.5)
    one = np.float32(1.0)
    for y in range(h):
        for x in range(w):
            it[y, x] = b[y, x] - a[y, x]
    # Central differences of the mean image, replicate borders (index clamping).
    for y in range(h):
        up, down = max(y - 1, 0), min(y + 1, h - 1)
        for x in range(w):
            left, right = max(x - 1, 0), min(x + 1, w - 1)
            gx = half * (half * (a[y, right] + b[y, right]) - half * (a[y, left] + b[y, left]))
            gy = half * (half * (a[down, x] + b[down, x]) - half * (a[up, x] + b[up, x]))
            ix[y, x] = gx
            iy[y, x] = gy
            inv_denom[y, x] = one / (alpha2 + gx * gx + gy * gy)


@numba.njit(cache=True, error_model="numpy")
def _clip_magnitudes(gray, weights, alpha2, iterations):
    f, h, w = gray.shape
    blurred = np.empty_like(gray)
    if weights.size:
        tmp = np.empty((h, w), np.float32)
        for k in range(f):
            _blur(gray[k], weights, tmp, blurred[k])
    else:
        blurred[:] = gray
    ix, iy = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    it, inv_denom = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    u0, v0 = np.empty((h + 2, w + 2), np.float32), np.empty((h + 2, w + 2), np.float32)
    u1, v1 = np.empty((h + 2, w + 2), np.float32), np.empty((h + 2, w + 2), np.float32)
    scratch = (np.empty(w + 2, np.float32), np.empty(w, np.float32), np.empty(w, np.float32))
    out = np.empty(f - 1, np.float64)
    for k in range(f - 1):
        _pair_terms(blurred[k], blurred[k + 1], alpha2, ix, iy, it, inv_denom)
        _solve_pair(ix, iy, it, inv_denom, iterations, u0, v0, u1, v1, *scratch)
        total = 0.0
        for y in range(1, h + 1):
            for x in range(1, w + 1):
                total += np.sqrt(u0[y, x] * u0[y, x] + v0[y, x] * v0[y, x])
        out[k] = total / (h * w)
    return out


def jacobi_iterations(
    ix: np.ndarray, iy: np.ndarray, it: np.ndarray, inv_denom: np.ndarray, iterations: int
) -> np.ndarray:
    """Horn–Schunck's Jacobi iterations from zero flow, for N pairs.

    Args:
        ix, iy: ``(N, H, W)`` float32 spatial derivatives of the pair's mean image.
        it: ``(N, H, W)`` float32 temporal difference (second - first).
        inv_denom: ``(N, H, W)`` float32 ``1 / (alpha^2 + ix^2 + iy^2)``.
        iterations: number of iterations.

    Returns:
        ``(N, 2, H, W)`` float32 flow ``(u, v)`` in pixels.
    """
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (ix, iy, it, inv_denom)]
    return _jacobi(*arrays, int(iterations))


def clip_magnitudes(gray: np.ndarray, blur_weights: np.ndarray, alpha: float, iterations: int) -> np.ndarray:
    """Mean flow magnitude of each consecutive frame pair of one clip.

    Args:
        gray: ``(F, h, w)`` float32 grayscale in [0, 1], F >= 2.
        blur_weights: the Gaussian pre-blur's taps (empty: no blur).
        alpha: smoothness weight.
        iterations: Jacobi iterations.

    Returns:
        ``(F - 1,)`` float64 pixels (of ``gray``) per frame: entry ``k`` is the pair ``(k, k+1)``.
    """
    weights = np.asarray(blur_weights, dtype=np.float32)
    return _clip_magnitudes(np.ascontiguousarray(gray, dtype=np.float32), weights, np.float32(alpha**2),
                            int(iterations))
