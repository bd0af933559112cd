"""Fréchet Video Distance (Unterthiner et al. 2018) under the StyleGAN-V protocol.

Features: the I3D TorchScript released with StyleGAN-V (``i3d_torchscript.pt``, a port of the
tf.hub I3D of the original FVD code), called on uint8 ``(B, 3, T, H, W)`` clips with
``rescale=True, resize=True, return_features=True``; T = 16 frames, the first 16 of each clip.
Any ``nn.Module`` mapping such clips to ``(B, D)`` features can be given instead.

Statistics: float64 sufficient statistics ``(Σx, Σxxᵀ, n)`` per side, summed over processes.
Mean ``μ = Σx / n`` and covariance ``Σ = Σxxᵀ / n − μμᵀ`` (divided by n, as StyleGAN-V's
``FeatureStats.get_mean_cov``). Distance::

    FVD = |μ_r − μ_f|² + tr Σ_r + tr Σ_f − 2 tr (Σ_r Σ_f)^{1/2}

with ``tr (Σ_r Σ_f)^{1/2} = Σ_i sqrt(λ_i(Σ_r Σ_f))``: the eigenvalues of the product of two PSD
matrices are real and non-negative, so no matrix square root is needed (float64 throughout).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from av_lightning.metrics.base import FrozenNet, PathLike, VideoMetric, check_videos, take_frames

#: StyleGAN-V's call of the I3D TorchScript: features before the logits.
I3D_KWARGS = {"rescale": True, "resize": True, "return_features": True}


def mean_cov(
    total: torch.Tensor, outer: torch.Tensor, n: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (divided by n) from sums of x and x xᵀ."""
    mu = total / n
    return mu, outer / n - torch.outer(mu, mu)


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> torch.Tensor:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Args:
        mu1, mu2: ``(D,)`` means.
        sigma1, sigma2: ``(D, D)`` covariances (symmetric positive semi-definite).

    Returns:
        A float64 scalar tensor.
    """
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    eigenvalues = torch.linalg.eigvals(sigma1 @ sigma2)
    # Round-off can make tiny eigenvalues slightly negative or complex: their root is ~0 anyway.
    trace_sqrt = eigenvalues.sqrt().real.sum()
    diff = mu1 - mu2
    return diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt


def _load_stats(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".npz"):
        with np.load(path) as data:
            stats = {k: torch.from_numpy(np.asarray(data[k])) for k in data.files}
    else:
        stats = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"mu", "sigma", "num"} - set(stats)
    if missing:
        raise ValueError(
            f"{path}: real-video statistics need keys mu, sigma, num; missing {sorted(missing)}"
        )
    return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in stats.items()}


class FVD(Metric, VideoMetric):
    """Fréchet Video Distance between generated and real clips.

    Args:
        feature_extractor: path to StyleGAN-V's ``i3d_torchscript.pt``, or any ``nn.Module``
            mapping uint8 ``(B, 3, T, H, W)`` to ``(B, D)`` features.
        num_frames: frames per clip (16 in the protocol); the first ``num_frames`` are used.
        allow_shorter: score clips shorter than ``num_frames`` as they are instead of failing.
        extractor_kwargs: keyword arguments of each extractor call; default :data:`I3D_KWARGS`
            for a TorchScript path, none for a module.
        num_features: D; inferred with one forward pass on a zero 112×112 clip if None
            (I3D resizes its input itself).
        reset_real_features: if False (default) the real statistics survive ``reset()`` and real
            clips given after it are ignored, so the real set is encoded once (as torchmetrics'
            FID keeps them); set True to score against a different real set after a reset.
        real_stats_path: ``.npz`` or ``.pt`` file of real statistics (``mu``, ``sigma``, ``num``).
            If it exists it is loaded and real updates are ignored; if not, the statistics of the
            real clips seen are written there at the first ``compute()`` (by rank 0).
        persistent_net: keep the extractor's weights in ``state_dict`` (default: not).

    ``update(videos, real)`` adds uint8 ``(B, F, 3, H, W)`` clips to one side;
    ``update_from_clips`` adds ``real`` (when given) to the real side and ``fake`` to the generated
    side. ``compute()`` returns the FVD as a float64 scalar tensor.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        feature_extractor: nn.Module | PathLike,
        num_frames: int = 16,
        allow_shorter: bool = False,
        extractor_kwargs: dict[str, Any] | None = None,
        num_features: int | None = None,
        reset_real_features: bool = False,
        real_stats_path: PathLike | None = None,
        persistent_net: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from_path = isinstance(feature_extractor, (str, os.PathLike))
        self.extractor = FrozenNet(feature_extractor, persistent=persistent_net)
        self.extractor_kwargs = (
            dict(I3D_KWARGS if from_path else {})
            if extractor_kwargs is None
            else dict(extractor_kwargs)
        )
        self.num_frames = num_frames
        self.allow_shorter = allow_shorter
        self.reset_real_features = reset_real_features
        self.real_stats_path = os.fspath(real_stats_path) if real_stats_path is not None else None
        if num_features is None:
            dummy = torch.zeros(1, 3, num_frames, 112, 112, dtype=torch.uint8)
            num_features = int(self.extractor(dummy, **self.extractor_kwargs).shape[-1])
        self.num_features = num_features
        for side in ("real", "fake"):
            self.add_state(
                f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(
                f"{side}_outer",
                torch.zeros(num_features, num_features, dtype=torch.float64),
                dist_reduce_fx="sum",
            )
            self.add_state(
                f"{side}_num", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum"
            )
        self._cached_real: dict[str, torch.Tensor] | None = None
        self._real_kept = False
        if self.real_stats_path is not None and os.path.isfile(self.real_stats_path):
            self._cached_real = _load_stats(self.real_stats_path)

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` float64 features of uint8 ``(B, F, 3, H, W)`` videos."""
        check_videos(videos)
        clips = take_frames(videos, self.num_frames, self.allow_shorter).permute(0, 2, 1, 3, 4)
        feats = self.extractor(clips.contiguous(), **self.extractor_kwargs)
        if feats.ndim != 2 or feats.shape[1] != self.num_features:
            raise ValueError(
                f"feature extractor returned {tuple(feats.shape)}, expected (B, {self.num_features})"
            )
        return feats.to(torch.float64)

    def update(self, videos: torch.Tensor, real: bool) -> None:
        """Add uint8 ``(B, F, 3, H, W)`` videos to the real (``real=True``) or generated side."""
        if real and (self._cached_real is not None or self._real_kept):
            return  # real statistics from real_stats_path, or kept from before reset()
        feats = self.features(videos)
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + feats.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + feats.T @ feats)
        setattr(self, f"{side}_num", getattr(self, f"{side}_num") + feats.shape[0])

    def update_from_clips(
        self, fake, real=None, audio=None, texts=None, fps=None, sample_rate=None
    ) -> None:
        """Generated side from ``fake``; real side from ``real`` when it is given."""
        if real is not None:
            self.update(real, real=True)
        self.update(fake, real=False)

    def real_statistics(self) -> dict[str, torch.Tensor]:
        """``mu (D,)``, ``sigma (D, D)``, ``num ()`` of the real side (float64)."""
        if self._cached_real is not None:
            return {k: v.to(self.device) for k, v in self._cached_real.items()}
        mu, sigma = mean_cov(self.real_sum, self.real_outer, self.real_num)
        return {"mu": mu, "sigma": sigma, "num": self.real_num.clone()}

    def save_real_statistics(self, path: PathLike) -> None:
        """Write the real statistics to ``.npz`` (numpy) or any other suffix (``torch.save``)."""
        stats = {k: v.detach().cpu() for k, v in self.real_statistics().items()}
        path = os.fspath(path)
        if path.endswith(".npz"):
            np.savez(path, **{k: v.numpy() for k, v in stats.items()})
        else:
            torch.save(stats, path)

    def compute(self) -> torch.Tensor:
        real = self.real_statistics()
        for side, num in (("real", real["num"]), ("generated", self.fake_num)):
            if num < 2:
                raise RuntimeError(f"FVD needs at least 2 {side} clips, got {int(num)}")
        if (
            self._cached_real is None
            and self.real_stats_path is not None
            and (
                not torch.distributed.is_available()
                or not torch.distributed.is_initialized()
                or torch.distributed.get_rank() == 0
            )
        ):
            self.save_real_statistics(self.real_stats_path)
        mu_f, sigma_f = mean_cov(self.fake_sum, self.fake_outer, self.fake_num)
        return frechet_distance(real["mu"], real["sigma"], mu_f, sigma_f)

    def reset(self) -> None:
        if self.reset_real_features:
            super().reset()
            return
        kept = {k: getattr(self, k).clone() for k in ("real_sum", "real_outer", "real_num")}
        super().reset()
        for k, v in kept.items():
            setattr(self, k, v)
        # The real set was encoded: later real clips (the same test set again) are not re-added.
        self._real_kept = bool(self.real_num > 0)
