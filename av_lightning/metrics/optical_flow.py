"""Horn–Schunck optical flow in torch, batched over every frame pair of every video.

Horn & Schunck (1981) find the flow ``(u, v)`` that minimises, over the image,

    (I_x u + I_y v + I_t)^2 + alpha^2 (|grad u|^2 + |grad v|^2)

by Jacobi iterations of

    t     = (I_x ū + I_y v̄ + I_t) / (alpha^2 + I_x^2 + I_y^2)
    u, v  = ū - I_x t,  v̄ - I_y t

where ``ū, v̄`` are the weighted means of the 8 neighbours (weights 1/6 edge, 1/12 corner).
Here intensities are grayscale in [0, 1] (ITU-R BT.601 luma, as OpenCV's RGB2GRAY), spatial
derivatives are central differences of the mean of the two frames and ``I_t`` their difference;
borders replicate (Neumann boundary). Every step is a few shifted-slice additions over the whole
``(N, 2, H, W)`` flow, so all ``N`` pairs of a batch run together on the CPU or the GPU.

Units: flow in pixels of the input frames per frame step (the flow of a downscaled computation is
multiplied back by the scale factor).

Stages, so that a caller can split them (the ``av-align`` command prepares clips in worker
processes and solves them on the GPU in the main one): :func:`flow_input` (grayscale and
downscale), :func:`pair_magnitudes` (the flow of frame pairs and its mean magnitude) and
:func:`clip_trajectories` (clips of any lengths, their pairs solved together). On CPU tensors
the Jacobi iterations run in a compiled kernel (:mod:`~.horn_schunck_cpu`) that gives the same
flow as the torch loop, several times faster.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F

# BT.601 luma weights, the ones OpenCV's COLOR_RGB2GRAY uses.
_LUMA = (0.299, 0.587, 0.114)

#: ``"auto"``: the compiled kernel for CPU tensors when numba imports, the torch loop otherwise.
Backend = Literal["auto", "torch", "numba"]


@dataclass(frozen=True)
class HornSchunckParams:
    """Parameters of :func:`horn_schunck`.

    Attributes:
        alpha: smoothness weight, in intensity units of the [0, 1] grayscale image per pixel
            (0.05 here corresponds to about 13 on a 0–255 scale). Larger = smoother flow.
        iterations: Jacobi iterations; the flow spreads about one pixel per iteration from
            textured regions into flat ones.
        max_side: if set, frames are downscaled (area averaging) so that their longer side is at
            most this many pixels before the flow is computed; large motions become small ones
            (Horn–Schunck linearises the image, so it sees motions of about a pixel) and the
            cost drops quadratically. The flow is scaled back to input pixels.
        blur_sigma: standard deviation (pixels, after downscaling) of a Gaussian pre-blur that
            widens the range of motions the linearisation sees; 0 disables it.
    """

    alpha: float = 0.05
    iterations: int = 64
    max_side: int | None = 128
    blur_sigma: float = 1.0


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """Grayscale of RGB frames: ``(..., 3, H, W)`` uint8 or float in [0, 255] -> ``(..., H, W)``
    float32 in [0, 1]."""
    frames = frames.float()
    r, g, b = frames.unbind(dim=-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b) / 255.0


def gaussian_weights(sigma: float) -> list[float]:
    """Taps of the pre-blur: a Gaussian of ``sigma`` pixels over ``±round(3 sigma)``, summing to 1."""
    radius = max(1, round(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (coords / sigma) ** 2)
    return (k / k.sum()).tolist()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with replicate borders.

    A weighted sum of shifted slices rather than a convolution: for one-channel images on a CPU
    it is an order of magnitude faster, and its arithmetic does not depend on the convolution
    algorithm the backend picks.
    """
    weights = gaussian_weights(sigma)
    radius = (len(weights) - 1) // 2
    width, height = x.shape[-1], x.shape[-2]
    p = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = sum(w * p[..., :, i : i + width] for i, w in enumerate(weights))
    p = F.pad(x, (0, 0, radius, radius), mode="replicate")
    return sum(w * p[..., i : i + height, :] for i, w in enumerate(weights))


def _neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """Horn–Schunck's weighted mean of the 8 neighbours (1/6 edges, 1/12 corners) of
    ``(N, C, H, W)``, replicate borders.

    Written with shifted slices rather than a 3x3 convolution: on CPUs this is several times
    faster for one-channel images. With S the 3x3 box sum and C the 4-neighbour sum, the mean is
    ``(S + C - x) / 12``.
    """
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]  # (N, C, H, W + 2)
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    cross = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    return (box + cross - x) / 12.0


def _central_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences d/dx, d/dy of ``(N, 1, H, W)`` with replicate borders."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    ix = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    iy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return ix, iy


def horn_schunck(
    first: torch.Tensor,
    second: torch.Tensor,
    alpha: float = HornSchunckParams.alpha,
    iterations: int = HornSchunckParams.iterations,
    blur_sigma: float = 0.0,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Horn–Schunck flow from ``first`` to ``second`` for a batch of grayscale pairs.

    Args:
        first, second: ``(N, H, W)`` float grayscale images in [0, 1].
        alpha: smoothness weight (see :class:`HornSchunckParams`).
        iterations: number of Jacobi iterations.
        blur_sigma: Gaussian pre-blur in pixels (0: none).
        backend: where the iterations run (:data:`Backend`); ``"numba"`` needs CPU tensors.

    Returns:
        ``(N, 2, H, W)`` flow ``(u, v)`` in pixels, on the input's device: a point at ``(x, y)``
        in ``first`` is at ``(x + u, y + v)`` in ``second``.
    """
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(
            f"expected two (N, H, W) batches of equal shape, got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    if iterations < 1 or alpha <= 0:
        raise ValueError(f"need iterations >= 1 and alpha > 0, got {iterations}, {alpha}")
    a = first.unsqueeze(1).float()
    b = second.unsqueeze(1).float()
    if blur_sigma > 0:
        a, b = _gaussian_blur(a, blur_sigma), _gaussian_blur(b, blur_sigma)
    return _solve(a, b, alpha, iterations, backend)


def _pair_terms(a: torch.Tensor, b: torch.Tensor, alpha: float) -> tuple[torch.Tensor, ...]:
    """``ix, iy, it, 1 / (alpha^2 + ix^2 + iy^2)`` of ``(N, 1, H, W)`` (blurred) pairs."""
    ix, iy = _central_gradients(0.5 * (a + b))
    return ix, iy, b - a, 1.0 / (alpha**2 + ix**2 + iy**2)


def _solve(a: torch.Tensor, b: torch.Tensor, alpha: float, iterations: int, backend: Backend) -> torch.Tensor:
    """``(N, 2, H, W)`` flow of ``(N, 1, H, W)`` (blurred) pairs."""
    ix, iy, it, inv_denom = _pair_terms(a, b, alpha)
    if _use_kernel(backend, a.device):
        from av_lightning.metrics.horn_schunck_cpu import jacobi_iterations

        arrays = [x[:, 0].numpy() for x in (ix, iy, it, inv_denom)]
        return torch.from_numpy(jacobi_iterations(*arrays, iterations))
    grads = torch.cat([ix, iy], dim=1)  # (N, 2, H, W)
    flow = torch.zeros_like(grads)  # (N, 2, H, W): u, v
    for _ in range(iterations):
        mean = _neighbour_mean(flow)
        t = (ix * mean[:, :1] + iy * mean[:, 1:] + it) * inv_denom
        flow = mean - grads * t
    return flow


def _magnitudes(flow: torch.Tensor, scale: float) -> torch.Tensor:
    """``(N,)`` mean magnitude of ``(N, 2, H, W)`` flow, times ``scale``."""
    # sqrt(u^2 + v^2) by hand: vector_norm over the channel dim is slow on CPUs.
    return torch.sqrt(flow[:, 0] * flow[:, 0] + flow[:, 1] * flow[:, 1]).mean(dim=(1, 2)) * scale


def _use_kernel(backend: Backend, device: torch.device) -> bool:
    if backend == "torch":
        return False
    if backend == "numba":
        if device.type != "cpu":
            raise ValueError(f"backend='numba' runs on CPU tensors, got tensors on {device}")
        return True
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'torch' or 'numba', got {backend!r}")
    return device.type == "cpu" and _numba_available()


@lru_cache(maxsize=1)
def _numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def _downscale(gray: torch.Tensor, max_side: int | None) -> tuple[torch.Tensor, float]:
    """Area-downscale ``(N, H, W)`` so that max(H, W) <= max_side; returns (images, scale) where
    ``scale`` = input pixels per output pixel."""
    h, w = gray.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return gray, 1.0
    scale = max(h, w) / max_side
    size = (max(1, round(h / scale)), max(1, round(w / scale)))
    out = F.interpolate(gray.unsqueeze(1), size=size, mode="area").squeeze(1)
    return out, w / size[1]


def flow_input(videos: torch.Tensor, max_side: int | None) -> tuple[torch.Tensor, float]:
    """Grayscale frames at the size the flow is computed at.

    Args:
        videos: uint8 ``(..., F, 3, H, W)``.
        max_side: longest side after area downscaling (None: keep the size).

    Returns:
        ``(gray, scale)``: float32 ``(..., F, h, w)`` in [0, 1] on the input's device, and the
        input pixels per flow pixel.
    """
    lead = videos.shape[:-3]
    gray, scale = _downscale(to_gray(videos).reshape(-1, *videos.shape[-2:]), max_side)
    return gray.view(*lead, *gray.shape[-2:]), scale


def pair_magnitudes(
    first: torch.Tensor,
    second: torch.Tensor,
    params: HornSchunckParams = HornSchunckParams(),
    scale: float = 1.0,
    chunk_pairs: int = 512,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Mean flow magnitude of each pair, in input pixels.

    Args:
        first, second: ``(N, h, w)`` float grayscale in [0, 1] (from :func:`flow_input`).
        params: Horn–Schunck settings (``max_side`` is not used here: the images are given at
            the flow's size).
        scale: input pixels per pixel of ``first`` (from :func:`flow_input`).
        chunk_pairs: at most this many pairs are solved at once (bounds the memory: about 12
            floats per pixel per pair).
        backend: :data:`Backend`.

    Returns:
        ``(N,)`` float32 pixels per frame, on the input's device.
    """
    a, b = first.unsqueeze(1).float(), second.unsqueeze(1).float()
    if params.blur_sigma > 0:
        a, b = _gaussian_blur(a, params.blur_sigma), _gaussian_blur(b, params.blur_sigma)
    return _blurred_pair_magnitudes(a, b, params, scale, chunk_pairs, backend)


def _blurred_pair_magnitudes(a, b, params, scale, chunk_pairs, backend) -> torch.Tensor:
    mags = [
        _magnitudes(_solve(a[i : i + chunk_pairs], b[i : i + chunk_pairs], params.alpha, params.iterations,
                           backend).to(a.device), scale)
        for i in range(0, a.shape[0], chunk_pairs)
    ]
    return torch.cat(mags) if mags else a.new_zeros(0)


def flow_magnitude_trajectory(
    videos: torch.Tensor,
    params: HornSchunckParams = HornSchunckParams(),
    chunk_pairs: int = 512,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Mean Horn–Schunck flow magnitude between consecutive frames, for a batch of videos.

    Args:
        videos: uint8 ``(B, F, 3, H, W)``, F >= 2, on any device (the flow runs there).
        params: Horn–Schunck settings.
        chunk_pairs: at most this many frame pairs are solved at once (bounds the memory:
            about 12 floats per pixel per pair).
        backend: :data:`Backend`.

    Returns:
        ``(B, F)`` float32, pixels per frame. Entry ``i >= 1`` is the mean magnitude of the flow
        from frame ``i - 1`` to frame ``i``; entry 0 repeats entry 1 (the authors' convention:
        ``[flow(0, 1)] + [flow(i - 1, i) for i >= 1]``).
    """
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"videos must be (B, F, 3, H, W), got {tuple(videos.shape)}")
    if videos.shape[1] < 2:
        raise ValueError(f"need at least 2 frames for optical flow, got {videos.shape[1]}")
    gray, scale = flow_input(videos, params.max_side)
    return torch.stack(clip_trajectories(list(gray), [scale] * len(gray), params, chunk_pairs, backend))


def clip_trajectories(
    grays: Sequence[torch.Tensor],
    scales: Sequence[float],
    params: HornSchunckParams = HornSchunckParams(),
    chunk_pairs: int = 512,
    backend: Backend = "auto",
) -> list[torch.Tensor]:
    """Trajectories of clips of any lengths; the frame pairs of clips of one size are solved
    together.

    Args:
        grays: clip ``c`` as float ``(F_c, h_c, w_c)`` grayscale, F_c >= 2 (:func:`flow_input`).
        scales: input pixels per flow pixel of each clip.
        params, chunk_pairs, backend: as :func:`flow_magnitude_trajectory`.

    Returns:
        clip ``c``'s ``(F_c,)`` float32 trajectory (the convention of
        :func:`flow_magnitude_trajectory`), on its device.
    """
    out: list[torch.Tensor | None] = [None] * len(grays)
    groups: dict[tuple, list[int]] = {}
    for c, gray in enumerate(grays):
        if gray.ndim != 3 or gray.shape[0] < 2:
            raise ValueError(f"clip {c}: need (F >= 2, h, w) grayscale frames, got {tuple(gray.shape)}")
        if _use_kernel(backend, gray.device):
            out[c] = _clip_trajectory_cpu(gray, float(scales[c]), params)
        else:
            groups.setdefault((tuple(gray.shape[1:]), float(scales[c]), gray.device), []).append(c)
    for (_, scale, _), members in groups.items():
        # Each frame is blurred once, not once per pair it belongs to.
        frames = torch.cat([grays[c] for c in members]).unsqueeze(1).float()
        if params.blur_sigma > 0:
            frames = _gaussian_blur(frames, params.blur_sigma)
        starts = torch.cumsum(torch.tensor([0] + [grays[c].shape[0] for c in members]), 0).tolist()
        first = torch.cat([frames[s : e - 1] for s, e in zip(starts, starts[1:])])
        second = torch.cat([frames[s + 1 : e] for s, e in zip(starts, starts[1:])])
        steps = _blurred_pair_magnitudes(first, second, params, scale, chunk_pairs, backend)
        for c, part in zip(members, steps.split([grays[c].shape[0] - 1 for c in members])):
            out[c] = torch.cat([part[:1], part])
    return out


def _clip_trajectory_cpu(gray: torch.Tensor, scale: float, params: HornSchunckParams) -> torch.Tensor:
    from av_lightning.metrics.horn_schunck_cpu import clip_magnitudes

    weights = gaussian_weights(params.blur_sigma) if params.blur_sigma > 0 else []
    steps = torch.from_numpy(clip_magnitudes(gray.float().numpy(), weights, params.alpha, params.iterations))
    steps = (steps * scale).float()
    return torch.cat([steps[:1], steps])
