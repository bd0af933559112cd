"""CLIPSIM against a direct cosine computation with the same tiny CLIP."""

from __future__ import annotations

import pytest
import torch

from av_lightning.metrics.clipsim import CLIPSIM
from tests.metrics.metric_helpers import random_videos


def direct_clipsim(clip_dir, videos: torch.Tensor, texts: list[str]) -> float:
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(clip_dir).eval()
    tokenizer = CLIPTokenizer.from_pretrained(clip_dir)
    processor = CLIPImageProcessor.from_pretrained(clip_dir)
    total, count = 0.0, 0
    with torch.no_grad():
        for video, text in zip(videos, texts):
            tokens = tokenizer([text], return_tensors="pt")
            t = model.get_text_features(**tokens)
            t = (t if isinstance(t, torch.Tensor) else t.pooler_output)[0]
            for frame in video:
                pixels = processor(images=[frame.permute(1, 2, 0).numpy()], return_tensors="pt")[
                    "pixel_values"
                ]
                i = model.get_image_features(pixel_values=pixels)
                i = (i if isinstance(i, torch.Tensor) else i.pooler_output)[0]
                total += torch.nn.functional.cosine_similarity(i, t, dim=0).item()
                count += 1
    return total / count


def test_matches_direct_cosine(clip_dir):
    videos = random_videos(3, frames=4, size=40, seed=0)
    texts = ["playing drums", "a dog barking", "rain"]
    metric = CLIPSIM(clip_dir, frames_per_batch=5)  # chunks cross clip borders
    metric.update(videos[:1], texts[:1])
    metric.update_from_clips(fake=videos[1:], texts=texts[1:], fps=24.0)
    got = metric.compute()
    assert got.dtype == torch.float64
    assert abs(got.item() - direct_clipsim(clip_dir, videos, texts)) < 1e-5
    assert -1 <= got.item() <= 1  # a cosine, not x100


def test_prompt_template_and_errors(clip_dir):
    videos = random_videos(2, frames=2, size=32, seed=1)
    plain, templated = CLIPSIM(clip_dir), CLIPSIM(clip_dir, prompt_template="a video of {}")
    plain.update(videos, ["drums", "rain"])
    templated.update(videos, ["drums", "rain"])
    assert plain.compute().item() != templated.compute().item()
    with pytest.raises(ValueError, match="needs `texts`"):
        plain.update_from_clips(fake=videos)
    with pytest.raises(ValueError, match="one text per video"):
        plain.update(videos, ["only one"])
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        CLIPSIM(clip_dir / "missing")
