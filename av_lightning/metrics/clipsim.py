"""CLIPSIM: mean CLIP cosine similarity between generated frames and their class text.

For every generated frame ``x_{b,f}`` and the text ``t_b`` of its clip::

    CLIPSIM = mean_{b,f} cos(E_img(x_{b,f}), E_txt(t_b))

a plain cosine in [-1, 1] (not multiplied by 100 as CLIPScore is, not clipped at 0). Embeddings
are CLIP's projected features (``get_image_features`` / ``get_text_features``) of a transformers
``CLIPModel`` loaded from a local directory; frames are preprocessed by that directory's
``CLIPImageProcessor`` (resize, centre crop, normalise) and texts by its tokenizer (truncated to
the model's context length).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from av_lightning.metrics.base import FrozenNet, PathLike, VideoMetric, check_videos


def _embedding(out: Any) -> torch.Tensor:
    # transformers 4.x returns the projected tensor; 5.x a ModelOutput with it in pooler_output.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def load_clip(path: PathLike) -> tuple[nn.Module, Any, Any]:
    """``(CLIPModel, tokenizer, image_processor)`` from a local directory (no download)."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"CLIP model directory not found: {path} (save one with CLIPModel.save_pretrained, "
            "CLIPTokenizer.save_pretrained and CLIPImageProcessor.save_pretrained)"
        )
    model = CLIPModel.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    image_processor = CLIPImageProcessor.from_pretrained(path, local_files_only=True)
    return model, tokenizer, image_processor


class CLIPSIM(Metric, VideoMetric):
    """Mean cosine similarity between each generated frame and its clip's text.

    Args:
        model: local directory of a transformers CLIP model (weights, tokenizer, image
            processor), e.g. ``openai/clip-vit-base-patch32`` downloaded by the user.
        prompt_template: format string applied to each text (``"{}"``: the label itself).
        frames_per_batch: frames encoded at once (bounds memory).
        persistent_net: keep the CLIP weights in ``state_dict`` (default: not).

    ``update(videos, texts)`` takes uint8 ``(B, F, 3, H, W)`` and B strings;
    ``update_from_clips`` uses ``fake`` and ``texts``. ``compute()`` returns the mean cosine as a
    float64 scalar tensor.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        model: PathLike,
        prompt_template: str = "{}",
        frames_per_batch: int = 64,
        persistent_net: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_path = os.fspath(model)
        clip, self.tokenizer, self.image_processor = load_clip(self.model_path)
        self.clip = FrozenNet(clip, persistent=persistent_net)
        self.prompt_template = prompt_template
        self.frames_per_batch = frames_per_batch
        self.add_state("similarity_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_frames", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def _net_device(self) -> torch.device:
        return next(self.clip.module.parameters()).device

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """``(B, D)`` unit-norm text embeddings."""
        prompts = [self.prompt_template.format(t) for t in texts]
        tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self._net_device) for k, v in tokens.items()}
        with torch.no_grad():
            emb = _embedding(self.clip.module.get_text_features(**tokens))
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def image_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` unit-norm embeddings of uint8 ``(N, 3, H, W)`` frames."""
        out = []
        for chunk in frames.split(self.frames_per_batch):
            images = list(chunk.permute(0, 2, 3, 1).cpu().numpy())  # (H, W, 3) uint8 each
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                emb = _embedding(
                    self.clip.module.get_image_features(pixel_values=pixels.to(self._net_device))
                )
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1))
        return torch.cat(out)

    def update(self, videos: torch.Tensor, texts: Sequence[str]) -> None:
        """Add uint8 ``(B, F, 3, H, W)`` generated videos and their B texts."""
        check_videos(videos)
        if isinstance(texts, str) or len(texts) != videos.shape[0]:
            raise ValueError(f"need one text per video: {videos.shape[0]} videos, texts={texts!r}")
        b, f = videos.shape[:2]
        image = self.image_embeddings(videos.flatten(0, 1)).view(b, f, -1)
        text = self.text_embeddings(texts)
        cosine = torch.einsum("bfd,bd->bf", image.double(), text.double())
        self.similarity_sum += cosine.sum().to(self.device)
        self.num_frames += float(b * f)

    def update_from_clips(
        self, fake, real=None, audio=None, texts=None, fps=None, sample_rate=None
    ) -> None:
        """Uses ``fake`` and ``texts`` (required)."""
        self.update(fake, self._require("texts", texts))

    def compute(self) -> torch.Tensor:
        if self.num_frames == 0:
            raise RuntimeError("CLIPSIM.compute() called before any update")
        return self.similarity_sum / self.num_frames
