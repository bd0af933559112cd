"""The batch every part of the project passes around: one typed dict, the same keys everywhere.

The DataModules (decoded clips), the feature cache, folder evaluation and the LightningModule read
and write these keys; each producer fills the ones it has. Default collation of the datasets'
items (one clip each, without the leading B) gives these shapes.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class ClipBatch(TypedDict, total=False):
    """A batch of B clips of F frames (all keys optional; which ones a producer fills is below).

    Keys:
        frames: uint8 ``(B, F, 3, H, W)``, the real clip (decoded clips; folder evaluation's
            ``real_dir``; the cache with ``store_frames``).
        audio: float32 ``(B, S)`` mono at the sample rate, exactly the frames' span
            (``S = round(F / fps · sample_rate)``).
        label: B class texts (the prompt's ``{label}``).
        id: B clip ids (file stems): name outputs and seed sampling (``AudioToVideo.clip_seeds``).
        start: float64 ``(B,)`` seconds into the file where the clip starts.
        latents: float ``(B, C, F_lat, h, w)``, cached frozen frame features.
        audio_states: float, cached frozen audio features (what the mapper reads).
        generated: uint8 ``(B, F, 3, H, W)``, videos made elsewhere, to be scored (folder evaluation).
    """

    frames: torch.Tensor
    audio: torch.Tensor
    label: list[str]
    id: list[str]
    start: torch.Tensor
    latents: torch.Tensor
    audio_states: torch.Tensor
    generated: torch.Tensor
