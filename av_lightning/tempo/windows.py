"""Expanding context windows over per-frame audio tokens (paper eq. 2-3).

For frame ``i`` and radius ``j`` the window covers frames ``max(0, i-j) .. min(F-1, i+j)``
(inclusive bounds) and its token is their mean. Radii grow as powers of two. Every window is
read off one cumulative sum, so the cost is O(B·F·D) per radius with no loop over frames.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch


def window_radii(n_scales: int) -> list[int]:
    """Radii ``1, 2, 4, ..., 2**(n_scales-1)`` in frames."""
    if n_scales < 0:
        raise ValueError(f"n_scales must be >= 0, got {n_scales}")
    return [2**k for k in range(n_scales)]


def window_means(
    a: torch.Tensor,
    radii: Sequence[int],
    bounds: Literal["inclusive", "half_open"] = "inclusive",
) -> torch.Tensor:
    """Mean of ``a`` over a window of each radius around every frame.

    Args:
        a: ``(B, F, D)`` per-frame tokens.
        radii: window radii in frames.
        bounds: ``"inclusive"`` covers ``[max(0, i-j), min(F-1, i+j)]``; ``"half_open"`` covers
            ``[max(0, i-j), min(F, i+j))`` (the released official adapters were trained so).

    Returns:
        ``(B, F, len(radii), D)`` window tokens.
    """
    if a.dim() != 3:
        raise ValueError(f"expected per-frame tokens (B, F, D), got shape {tuple(a.shape)}")
    B, F, D = a.shape
    if len(radii) == 0:
        return a.new_zeros(B, F, 0, D)
    # Prefix sums with a leading zero: sum(a[lo:hi]) = c[hi] - c[lo]. Accumulate in float64 so the
    # subtraction of two large prefix sums loses nothing for long clips.
    c = torch.nn.functional.pad(a.to(torch.float64).cumsum(dim=1), (0, 0, 1, 0))
    i = torch.arange(F, device=a.device)
    r = torch.as_tensor(list(radii), device=a.device)
    lo = (i[:, None] - r[None, :]).clamp(min=0)  # (F, R)
    if bounds == "inclusive":
        hi = (i[:, None] + r[None, :]).clamp(max=F - 1) + 1  # exclusive end
    elif bounds == "half_open":
        hi = (i[:, None] + r[None, :]).clamp(max=F)
    else:
        raise ValueError(f"bounds must be 'inclusive' or 'half_open', got {bounds!r}")
    sums = c[:, hi] - c[:, lo]  # (B, F, R, D)
    counts = (hi - lo).to(torch.float64)[None, :, :, None]
    return (sums / counts).to(a.dtype)


def expanding_windows(
    a: torch.Tensor,
    n_scales: int = 5,
    mode: Literal["windows", "vec", "none"] = "windows",
    radii: Optional[Sequence[int]] = None,
    bounds: Literal["inclusive", "half_open"] = "inclusive",
) -> torch.Tensor:
    """Context tokens for every frame.

    Args:
        a: ``(B, F, D)`` per-frame tokens.
        n_scales: number of radii ``2**k``, k = 0..n_scales-1 (ignored when ``radii`` is given).
        mode: ``"windows"`` (expanding windows), ``"vec"`` (every frame gets the mean of all
            frames: the paper's single-vector ablation) or ``"none"``.
        radii: explicit radii in frames, overriding ``n_scales``.
        bounds: see :func:`window_means`.

    Returns:
        ``(B, F, R, D)`` with R = number of radii, 1 for ``"vec"`` and 0 for ``"none"``.
    """
    if mode == "windows":
        return window_means(a, list(radii) if radii is not None else window_radii(n_scales), bounds)
    if mode == "vec":
        return a.mean(dim=1, keepdim=True).unsqueeze(1).expand(-1, a.shape[1], 1, -1)
    if mode == "none":
        return a.new_zeros(a.shape[0], a.shape[1], 0, a.shape[2])
    raise ValueError(f"mode must be 'windows', 'vec' or 'none', got {mode!r}")
