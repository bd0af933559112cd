"""Per-frame cross-attention for diffusers' ``UNet3DConditionModel``.

The stock UNet repeats ``encoder_hidden_states`` (B, N, d) over frames (row ``b·F + f`` holds
item b, frame f), so every frame sees the same prompt. :class:`FrameConditioningProcessor`
wraps the UNet's own attention processor: on spatial cross-attention layers it replaces the
repeated states with per-frame conditioning ``frame_hidden_states`` (B, F, N, d) passed through
``cross_attention_kwargs``; everywhere else it passes through unchanged. diffusers forwards a
``cross_attention_kwargs`` key only to processors whose ``__call__`` names it, so every processor
in the UNet is wrapped. The attention math itself stays the library's.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

FRAME_KWARG = "frame_hidden_states"
_TEMPORAL_PARTS = ("temp_attentions", "transformer_in")


class FrameConditioningProcessor:
    """Wraps a diffusers attention processor.

    Args:
        inner: the processor it replaces (its ``__call__`` does the attention).
        per_frame: True on spatial cross-attention layers (the ones that read the prompt).
    """

    def __init__(self, inner, per_frame: bool):
        self.inner = inner
        self.per_frame = per_frame

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        frame_hidden_states: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if self.per_frame and frame_hidden_states is not None:
            B, F, N, d = frame_hidden_states.shape
            if hidden_states.shape[0] != B * F:
                raise ValueError(
                    f"frame conditioning (B={B}, F={F}) does not match the UNet's {hidden_states.shape[0]} "
                    "rows of batch × frames"
                )
            # Row b·F + f is item b, frame f: the order in which the UNet folds frames into the batch.
            encoder_hidden_states = frame_hidden_states.reshape(B * F, N, d).to(hidden_states.dtype)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def is_spatial_cross_attention(name: str, module: nn.Module) -> bool:
    """True for the prompt-reading cross-attention of the spatial transformer blocks."""
    return bool(getattr(module, "is_cross_attention", False)) and not any(p in name for p in _TEMPORAL_PARTS)


def install_frame_attention(unet: nn.Module) -> int:
    """Wrap every attention processor of ``unet``; returns the number of per-frame layers."""
    processors = {}
    per_frame = 0
    modules = dict(unet.named_modules())
    for name, proc in unet.attn_processors.items():
        inner = proc.inner if isinstance(proc, FrameConditioningProcessor) else proc
        module = modules[name[: -len(".processor")]]
        spatial = is_spatial_cross_attention(name, module)
        per_frame += int(spatial)
        processors[name] = FrameConditioningProcessor(inner, per_frame=spatial)
    if per_frame == 0:
        raise ValueError("the UNet has no spatial cross-attention layer to condition per frame")
    unet.set_attn_processor(processors)
    return per_frame
