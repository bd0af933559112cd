"""AudioMapper: audio-encoder hidden states -> one pseudo-token per video frame (paper §3).

``Linear(Lh·d, hidden) → GELU → ... → Linear(hidden, d_t) → pool time to F → GELU → Linear(d_t, d_t)``.
The time pooling is area-weighted: segment ``s`` of ``F`` covers ``[s/F, (s+1)/F)`` of the clip,
and every encoder step contributes in proportion to its overlap with that span. It works for any
encoder length: shorter than ``F`` (BEATs gives 6.25 steps/s, fewer than 24 fps frames) repeats
steps, longer averages them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
from torch import nn


@lru_cache(maxsize=64)
def _overlap_matrix(num_in: int, num_out: int) -> torch.Tensor:
    """``(num_out, num_in)`` float64 overlap lengths of input steps with output segments."""
    edges_in = torch.arange(num_in + 1, dtype=torch.float64) / num_in
    edges_out = torch.arange(num_out + 1, dtype=torch.float64) / num_out
    lo = torch.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = torch.minimum(edges_out[1:, None], edges_in[None, 1:])
    return (hi - lo).clamp(min=0)


def pool_time(x: torch.Tensor, num_segments: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Area-weighted mean of ``x`` over ``num_segments`` equal spans of its time axis.

    Args:
        x: ``(B, T, D)`` features on a uniform time axis.
        num_segments: F, the number of output segments (video frames).
        mask: optional ``(B, T)`` bool, False on padded steps (they get no weight).

    Returns:
        ``(B, F, D)``.
    """
    B, T, _ = x.shape
    w = _overlap_matrix(T, num_segments).to(device=x.device, dtype=x.dtype)  # (F, T)
    w = w.unsqueeze(0).expand(B, -1, -1)
    if mask is not None:
        w = w * mask[:, None, :].to(x.dtype)
    denom = w.sum(dim=-1, keepdim=True)
    if (denom == 0).any():
        raise ValueError(
            "a frame's time span holds no valid audio step (padding mask is False there); "
            "give audio that covers every frame"
        )
    return torch.bmm(w / denom, x)


class AudioMapper(nn.Module):
    """MLP over concatenated encoder layers, time pooling to F segments, then a last projection.

    Args:
        in_features: ``Lh * d``, the concatenated width of the encoder layers (9216 for BEATs).
        hidden: width of the hidden layers (2304 at full size).
        out_features: ``d_t``, the text encoder's token width (1024 for zeroscope_v2_576w).
        depth: number of Linear layers in total, counting the last one after pooling
            (4 at full size; the paper's ablation compares 2 and 4). Must be >= 2.
    """

    def __init__(self, in_features: int = 9216, hidden: int = 2304, out_features: int = 1024, depth: int = 4):
        super().__init__()
        if depth < 2:
            raise ValueError(f"AudioMapper depth must be >= 2 (one layer before and one after pooling), got {depth}")
        self.in_features = in_features
        self.out_features = out_features
        widths = [in_features] + [hidden] * (depth - 2) + [out_features]
        layers: list[nn.Module] = []
        for k in range(depth - 1):
            if k > 0:
                layers.append(nn.GELU())
            layers.append(nn.Linear(widths[k], widths[k + 1]))
        self.pre = nn.Sequential(*layers)
        self.post = nn.Sequential(nn.GELU(), nn.Linear(out_features, out_features))

    def forward(
        self, hidden_states: torch.Tensor, num_frames: int, mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Map encoder states to frame tokens.

        Args:
            hidden_states: ``(B, T', Lh, d)`` (or already flat ``(B, T', Lh·d)``).
            num_frames: F.
            mask: optional ``(B, T')`` bool of valid steps.

        Returns:
            ``(B, F, d_t)`` per-frame tokens.
        """
        x = hidden_states.flatten(2) if hidden_states.dim() == 4 else hidden_states
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"AudioMapper expects encoder states (B, T', Lh, d) with Lh·d = {self.in_features}, "
                f"got shape {tuple(hidden_states.shape)}; set the mapper's in_features to the "
                "encoder's num_layers * hidden_size"
            )
        x = self.pre(x)
        x = pool_time(x, num_frames, mask)
        return self.post(x)
