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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# BT.601 luma weights, the ones OpenCV's COLOR_RGB2GRAY uses.
_LUMA = (0.299, 0.587, 0.114)


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
    w = torch.tensor(_LUMA, dtype=torch.float32, device=frames.device)
    return torch.einsum("...chw,c->...hw", frames.float(), w) / 255.0


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, 1, H, W)`` with replicate borders."""
    radius = max(1, round(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (coords / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


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
) -> torch.Tensor:
    """Horn–Schunck flow from ``first`` to ``second`` for a batch of grayscale pairs.

    Args:
        first, second: ``(N, H, W)`` float grayscale images in [0, 1].
        alpha: smoothness weight (see :class:`HornSchunckParams`).
        iterations: number of Jacobi iterations.
        blur_sigma: Gaussian pre-blur in pixels (0: none).

    Returns:
        ``(N, 2, H, W)`` flow ``(u, v)`` in pixels: a point at ``(x, y)`` in ``first`` is at
        ``(x + u, y + v)`` in ``second``.
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
    ix, iy = _central_gradients(0.5 * (a + b))
    grads = torch.cat([ix, iy], dim=1)  # (N, 2, H, W)
    it = b - a
    inv_denom = 1.0 / (alpha**2 + ix**2 + iy**2)
    flow = torch.zeros_like(grads)  # (N, 2, H, W): u, v
    for _ in range(iterations):
        mean = _neighbour_mean(flow)
        t = (ix * mean[:, :1] + iy * mean[:, 1:] + it) * inv_denom
        flow = mean - grads * t
    return flow


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


def flow_magnitude_trajectory(
    videos: torch.Tensor,
    params: HornSchunckParams = HornSchunckParams(),
    chunk_pairs: int = 512,
) -> torch.Tensor:
    """Mean Horn–Schunck flow magnitude between consecutive frames, for a batch of videos.

    Args:
        videos: uint8 ``(B, F, 3, H, W)``, F >= 2, on any device (the flow runs there).
        params: Horn–Schunck settings.
        chunk_pairs: at most this many frame pairs are solved at once (bounds the memory:
            about 12 floats per pixel per pair).

    Returns:
        ``(B, F)`` float32, pixels per frame. Entry ``i >= 1`` is the mean magnitude of the flow
        from frame ``i - 1`` to frame ``i``; entry 0 repeats entry 1 (the authors' convention:
        ``[flow(0, 1)] + [flow(i - 1, i) for i >= 1]``).
    """
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"videos must be (B, F, 3, H, W), got {tuple(videos.shape)}")
    bsz, frames = videos.shape[:2]
    if frames < 2:
        raise ValueError(f"need at least 2 frames for optical flow, got {frames}")
    gray, scale = _downscale(to_gray(videos).flatten(0, 1), params.max_side)
    gray = gray.view(bsz, frames, *gray.shape[-2:])
    first = gray[:, :-1].flatten(0, 1)
    second = gray[:, 1:].flatten(0, 1)
    mags = []
    for start in range(0, first.shape[0], chunk_pairs):
        flow = horn_schunck(
            first[start : start + chunk_pairs],
            second[start : start + chunk_pairs],
            alpha=params.alpha,
            iterations=params.iterations,
            blur_sigma=params.blur_sigma,
        )
        mags.append(torch.linalg.vector_norm(flow, dim=1).mean(dim=(1, 2)) * scale)
    steps = torch.cat(mags).view(bsz, frames - 1)
    return torch.cat([steps[:, :1], steps], dim=1)
