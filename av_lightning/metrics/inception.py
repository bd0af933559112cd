"""Video Inception Score with C3D trained on UCF-101 (StyleGAN-V protocol).

Classifier: StyleGAN-V's ``c3d_ucf101.pt`` (a TorchScript port of TGAN2's chainer C3D), called on
uint8 ``(B, 3, 16, H, W)`` clips with no keyword arguments; it already returns class
*probabilities* (101 classes), so they are not softmaxed again (``outputs="probs"``). Any
classifier module can be given, with ``outputs="logits"`` if it returns logits.

Score (Salimans et al. 2016): the N probability rows are cut into ``splits`` consecutive parts
``[i N / s, (i + 1) N / s)``; for each part ``exp(mean_x KL(p(y|x) || p(y)))`` with ``p(y)`` the
part's mean; the result is the mean and the standard deviation (``np.std``, ddof 0) over parts.

Order: StyleGAN-V shuffles the generated set with ``RandomState(42)`` before splitting. Here
the rows are first put in a canonical order (lexicographic), then shuffled with the same seed,
so the score does not depend on the order in which clips arrived or on how they were spread over
processes. ``shuffle_seed=None`` splits in arrival order instead.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from av_lightning.metrics.base import FrozenNet, PathLike, VideoMetric, check_videos, take_frames


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the Inception Score over ``splits`` consecutive parts.

    Args:
        probs: ``(N, C)`` class probabilities (rows sum to 1), N >= splits.
        splits: number of parts.

    Returns:
        ``(mean, std)`` float64 scalars.
    """
    probs = probs.to(torch.float64)
    n = probs.shape[0]
    if n < splits:
        raise RuntimeError(
            f"Inception Score with {splits} splits needs at least {splits} clips, got {n}"
        )
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(dim=0, keepdim=True)
        # 0 * log 0 = 0: classes with zero probability contribute nothing.
        kl = torch.where(part > 0, part * (part.log() - marginal.log()), torch.zeros_like(part))
        scores.append(kl.sum(dim=1).mean().exp())
    scores = torch.stack(scores)
    return scores.mean(), scores.std(unbiased=False)


def canonical_shuffle(probs: torch.Tensor, seed: int | None) -> torch.Tensor:
    """Rows of ``(N, C)`` in lexicographic order, then permuted by ``RandomState(seed)``
    (unchanged if ``seed`` is None)."""
    if seed is None:
        return probs
    array = probs.detach().cpu().to(torch.float64).numpy()
    order = np.lexsort(array.T[::-1])  # first column is the primary key
    perm = np.arange(len(order))
    np.random.RandomState(seed).shuffle(perm)
    return probs[torch.from_numpy(order[perm]).to(probs.device)]


class VideoInceptionScore(Metric, VideoMetric):
    """Inception Score of generated clips with a video classifier (C3D on UCF-101).

    Args:
        classifier: path to StyleGAN-V's ``c3d_ucf101.pt`` or any module mapping uint8
            ``(B, 3, T, H, W)`` to ``(B, C)`` probabilities or logits.
        outputs: ``"probs"`` (C3D's TorchScript) or ``"logits"`` (softmax applied here).
        num_frames: frames per clip (16); the first ``num_frames`` are used.
        allow_shorter: score shorter clips as they are instead of failing.
        splits: number of parts (10).
        shuffle_seed: seed of the shuffle before splitting (42 as StyleGAN-V); None: arrival order.
        classifier_kwargs: keyword arguments of each classifier call (none by default).
        persistent_net: keep the classifier's weights in ``state_dict`` (default: not).

    ``update(videos)`` / ``update_from_clips`` (uses ``fake``) store the probability rows;
    ``compute()`` returns ``{"is_mean": ..., "is_std": ...}`` (float64 scalars).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        classifier: nn.Module | PathLike,
        outputs: Literal["probs", "logits"] = "probs",
        num_frames: int = 16,
        allow_shorter: bool = False,
        splits: int = 10,
        shuffle_seed: int | None = 42,
        classifier_kwargs: dict[str, Any] | None = None,
        persistent_net: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if outputs not in ("probs", "logits"):
            raise ValueError(f"outputs must be 'probs' or 'logits', got {outputs!r}")
        self.classifier = FrozenNet(classifier, persistent=persistent_net)
        self.outputs = outputs
        self.num_frames = num_frames
        self.allow_shorter = allow_shorter
        self.splits = splits
        self.shuffle_seed = shuffle_seed
        self.classifier_kwargs = dict(classifier_kwargs or {})
        self.add_state("probs", default=[], dist_reduce_fx="cat")

    def class_probabilities(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` float64 class probabilities of uint8 ``(B, F, 3, H, W)`` videos."""
        check_videos(videos)
        clips = take_frames(videos, self.num_frames, self.allow_shorter).permute(0, 2, 1, 3, 4)
        out = self.classifier(clips.contiguous(), **self.classifier_kwargs)
        if out.ndim != 2:
            raise ValueError(f"classifier returned {tuple(out.shape)}, expected (B, num_classes)")
        out = out.to(torch.float64)
        if self.outputs == "logits":
            return out.softmax(dim=1)
        if out.min() < 0 or (out.sum(dim=1) - 1).abs().max() > 1e-3:
            raise ValueError(
                "classifier outputs are not probabilities (negative or rows not summing to 1); "
                "pass outputs='logits' if it returns logits"
            )
        return out

    def update(self, videos: torch.Tensor) -> None:
        """Add uint8 ``(B, F, 3, H, W)`` generated videos."""
        self.probs.append(self.class_probabilities(videos))

    def update_from_clips(
        self, fake, real=None, audio=None, texts=None, fps=None, sample_rate=None
    ) -> None:
        """Uses ``fake`` only."""
        self.update(fake)

    def compute(self) -> dict[str, torch.Tensor]:
        if not len(self.probs):
            raise RuntimeError("VideoInceptionScore.compute() called before any update")
        probs = canonical_shuffle(dim_zero_cat(self.probs), self.shuffle_seed)
        mean, std = inception_score(probs, self.splits)
        return {"is_mean": mean, "is_std": std}
