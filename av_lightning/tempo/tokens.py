"""TempoTokens: the per-frame token sets injected into the prompt.

For frame ``i``: ``[a_i, w_{r1}(i), w_{r2}(i), ..., a_att]`` — the frame's own token, window means
of growing radius, and the attentive-pooled clip token. Which kinds are on is configurable, so the
paper's ablations are a few config keys.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import nn

from av_lightning.tempo.attention_pool import AttentivePool
from av_lightning.tempo.windows import expanding_windows, window_radii


class TempoTokens(nn.Module):
    """Builds ``(B, F, K, d_t)`` token sets from per-frame tokens ``(B, F, d_t)``.

    Args:
        own_token: include each frame's own token ``a_i``.
        windows: ``"windows"`` (expanding windows), ``"vec"`` (one clip mean for every frame) or
            ``"none"``.
        n_scales: number of window radii ``1, 2, 4, ...`` (5 is the paper's best).
        radii: explicit radii in frames, overriding ``n_scales``.
        bounds: ``"inclusive"`` (this project) or ``"half_open"`` (the official adapters).
        pool: attentive pooling module adding a clip token, or None for no pooled token.
    """

    def __init__(
        self,
        own_token: bool = True,
        windows: Literal["windows", "vec", "none"] = "windows",
        n_scales: int = 5,
        radii: Optional[Sequence[int]] = None,
        bounds: Literal["inclusive", "half_open"] = "inclusive",
        pool: Optional[AttentivePool] = None,
    ):
        super().__init__()
        self.own_token = own_token
        self.windows = windows
        self.radii = list(radii) if radii is not None else window_radii(n_scales)
        self.bounds = bounds
        self.pool = pool
        if self.num_tokens == 0:
            raise ValueError("TempoTokens with no token kind enabled: turn on own_token, windows or pool")

    @property
    def num_tokens(self) -> int:
        """K, tokens per frame."""
        n_win = {"windows": len(self.radii), "vec": 1, "none": 0}[self.windows]
        return int(self.own_token) + n_win + int(self.pool is not None)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """``(B, F, D)`` -> ``(B, F, K, D)``."""
        parts = []
        if self.own_token:
            parts.append(a.unsqueeze(2))
        if self.windows != "none":
            parts.append(expanding_windows(a, mode=self.windows, radii=self.radii, bounds=self.bounds))
        if self.pool is not None:
            if self.pool.dim != a.shape[-1]:
                raise ValueError(f"pool width {self.pool.dim} does not match token width {a.shape[-1]}")
            parts.append(self.pool(a)[:, None, None, :].expand(-1, a.shape[1], 1, -1))
        return torch.cat(parts, dim=2)
