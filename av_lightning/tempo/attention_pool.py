"""Attentive pooling of per-frame tokens into one clip token (paper eq. 4-6).

Each segment ``u`` gets a unary potential ``v·relu(V a_u)`` (how salient it is on its own) and a
pairwise potential ``mean_i cos(W1 a_u, W2 a_i)`` (how much it agrees with the rest). The two are
mixed by learned weights ``(α_l, α_c)``, a softmax over the F segments turns them into weights,
and the clip token is the weighted sum of the segments.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class AttentivePool(nn.Module):
    """Args:
        dim: token width ``d_t``.
        hidden: width of the unary and pairwise embeddings (``dim`` when None).
        dropout: dropout on the unary hidden layer, active in training only.
    """

    def __init__(self, dim: int = 1024, hidden: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden = hidden or dim
        self.dim = dim
        self.unary_embed = nn.Linear(dim, hidden)
        self.unary_reduce = nn.Linear(hidden, 1)
        self.pair_x = nn.Linear(dim, hidden)
        self.pair_y = nn.Linear(dim, hidden)
        # (α_l, α_c): weights of the unary and pairwise potentials, no bias.
        self.mix = nn.Linear(2, 1, bias=False)
        nn.init.ones_(self.mix.weight)
        self.dropout = nn.Dropout(dropout)

    def potentials(self, a: torch.Tensor) -> torch.Tensor:
        """``(B, F, D)`` -> ``(B, F)`` mixed potentials before the softmax."""
        unary = self.unary_reduce(self.dropout(F.relu(self.unary_embed(a)))).squeeze(-1)
        x = F.normalize(self.pair_x(a), dim=-1)
        y = F.normalize(self.pair_y(a), dim=-1)
        pairwise = torch.einsum("bud,bid->bu", x, y) / a.shape[1]  # mean over i of cos(x_u, y_i)
        return self.mix(torch.stack([unary, pairwise], dim=-1)).squeeze(-1)

    def forward(self, a: torch.Tensor, return_weights: bool = False):
        """Args:
            a: ``(B, F, D)`` per-frame tokens.

        Returns:
            ``(B, D)`` pooled token (and ``(B, F)`` weights summing to one if ``return_weights``).
        """
        weights = self.potentials(a).softmax(dim=-1)
        pooled = torch.einsum("bf,bfd->bd", weights, a)
        return (pooled, weights) if return_weights else pooled
