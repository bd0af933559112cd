"""Per-latent-frame cross-attention for diffusers' ``WanTransformer3DModel``.

Every Wan block reads the text through ``attn2(x, context, None, None)``: no mask and no extra
keyword reaches the processor. :class:`FrameCrossAttention` therefore reads the layout from the
context's shape. The backbone lays the conditioning out as ``(B, F_lat · N, D)`` (latent frame f's
N tokens at rows ``f·N … f·N + N − 1``, N fixed per model); the video tokens are frame-major
(patch ``(1, 2, 2)``), so latent frame f's queries are the contiguous rows ``f·HW … f·HW + HW − 1``.
Regrouping both into ``B·F_lat`` independent batches, ``(B·F_lat, HW, D)`` queries against
``(B·F_lat, N, D)`` context, makes each frame attend to its own tokens only, with no mask built;
the attention itself (projections, norms, the dispatched kernel, output projection) is the
library's own processor, called on the regrouped views. A context of exactly N rows (one prompt
for the whole video) goes to that processor unchanged: the stock path.

``set_attention_backend`` keeps working: the backend attribute it sets is forwarded to the wrapped
processor.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class FrameCrossAttention:
    """Wraps a block's stock ``attn2`` processor.

    Args:
        inner: the processor it replaces (``WanAttnProcessor``); it does the attention.
        tokens_per_frame: N, the context rows of one latent frame (the padded prompt length).
    """

    def __init__(self, inner, tokens_per_frame: int):
        if tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame must be >= 1, got {tokens_per_frame}")
        self.inner = inner
        self.tokens_per_frame = int(tokens_per_frame)

    # diffusers' set_attention_backend / context parallelism write these on the processor.
    @property
    def _attention_backend(self):
        return getattr(self.inner, "_attention_backend", None)

    @_attention_backend.setter
    def _attention_backend(self, backend) -> None:
        self.inner._attention_backend = backend

    @property
    def _parallel_config(self):
        return getattr(self.inner, "_parallel_config", None)

    @_parallel_config.setter
    def _parallel_config(self, config) -> None:
        self.inner._parallel_config = config

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        rotary_emb=None,
    ) -> torch.Tensor:
        """``hidden_states`` ``(B, F_lat·HW, D)``; ``encoder_hidden_states`` ``(B, N, D)`` (shared) or
        ``(B, F_lat·N, D)`` (per latent frame). Returns ``(B, F_lat·HW, D)``."""
        N = self.tokens_per_frame
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] == N:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        B, Q, D = hidden_states.shape
        S = encoder_hidden_states.shape[1]
        frames = S // N
        if S % N or Q % frames:
            raise ValueError(
                f"per-frame context of {S} rows is not F_lat × {N} for {Q} video tokens; lay the conditioning out "
                f"as (B, F_lat, {N}, d) with F_lat the latent frame count"
            )
        if attention_mask is not None or rotary_emb is not None:
            raise ValueError("per-frame cross-attention takes no attention mask or rotary embedding")
        x = hidden_states.reshape(B * frames, Q // frames, D)
        ctx = encoder_hidden_states.reshape(B * frames, N, encoder_hidden_states.shape[-1])
        out = self.inner(attn, x, ctx, None, None)
        return out.reshape(B, Q, out.shape[-1])


def install_frame_cross_attention(transformer: nn.Module, tokens_per_frame: int) -> int:
    """Wrap the ``attn2`` processor of every block of a ``WanTransformer3DModel``; returns the count.

    Set per module (``block.attn2.set_processor``): the model's ``set_attn_processor`` takes only a
    dict that names every processor.
    """
    count = 0
    for i, block in enumerate(transformer.blocks):
        attn = block.attn2
        if getattr(attn, "add_k_proj", None) is not None:
            raise ValueError(
                f"block {i} has image-context projections (an image-to-video Wan); per-frame text conditioning "
                "supports the text-to-video models only"
            )
        proc = attn.processor
        inner = proc.inner if isinstance(proc, FrameCrossAttention) else proc
        attn.set_processor(FrameCrossAttention(inner, tokens_per_frame))
        count += 1
    if count == 0:
        raise ValueError("the transformer has no blocks with cross-attention to condition per frame")
    return count
