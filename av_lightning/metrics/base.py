"""Pieces shared by the video metrics: the ``update_from_clips`` entry point and frozen networks.

The LightningModule holds a list of metrics and calls, for each one and each test batch::

    metric.update_from_clips(fake=videos, real=real_or_None, audio=audio_or_None,
                             texts=labels_or_None, fps=fps, sample_rate=sample_rate)

with ``videos`` uint8 ``(B, F, 3, H, W)``, ``audio`` float ``(B, S)`` mono at ``sample_rate`` Hz
and ``texts`` a ``list[str]`` of class labels. Each metric maps that call to its own ``update``
(:class:`VideoMetric`), so the module needs no per-metric code.

Feature networks (I3D, C3D, CLIP) are wrapped in :class:`FrozenNet`: always in eval mode, no
gradients, moved with the metric by ``.to()``, and by default kept out of ``state_dict`` so that a
Lightning checkpoint of the adapter does not carry a copy of the I3D weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

PathLike = str | os.PathLike


class VideoMetric:
    """Mixin: the uniform entry point the LightningModule calls on every metric.

    Subclasses (which are also :class:`torchmetrics.Metric`) implement :meth:`update_from_clips`
    by picking the inputs they need and calling their own ``update``. Inputs a metric needs but
    does not receive raise ``ValueError`` naming the metric and the missing argument.
    """

    def update_from_clips(
        self,
        fake: torch.Tensor,
        real: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        texts: Sequence[str] | None = None,
        fps: float | None = None,
        sample_rate: int | None = None,
    ) -> None:
        """Update the metric from one batch of generated clips.

        Args:
            fake: generated videos, uint8 ``(B, F, 3, H, W)``.
            real: the matching real videos, uint8 ``(B', F', 3, H', W')``, or None.
            audio: the conditioning audio, float ``(B, S)`` mono, or None.
            texts: one class label per generated clip, or None.
            fps: frame rate of ``fake`` (frames per second).
            sample_rate: sample rate of ``audio`` (Hz).
        """
        raise NotImplementedError

    def _require(self, name: str, value: Any) -> Any:
        if value is None:
            raise ValueError(
                f"{type(self).__name__}.update_from_clips needs `{name}`, but it was None."
            )
        return value


def check_videos(videos: torch.Tensor, name: str = "videos") -> torch.Tensor:
    """Validate a batch of videos: uint8 ``(B, F, 3, H, W)``; returns it unchanged."""
    if not isinstance(videos, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(videos).__name__}")
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"{name} must have shape (B, F, 3, H, W), got {tuple(videos.shape)}")
    if videos.dtype != torch.uint8:
        raise ValueError(
            f"{name} must be uint8 in [0, 255], got {videos.dtype}; convert with "
            "(x.clamp(0, 1) * 255).round().to(torch.uint8)"
        )
    return videos


def take_frames(videos: torch.Tensor, num_frames: int, allow_shorter: bool) -> torch.Tensor:
    """The first ``num_frames`` frames of uint8 ``(B, F, 3, H, W)`` videos.

    Raises ``ValueError`` when ``F < num_frames`` unless ``allow_shorter`` (then all F frames are
    used as they are; networks like I3D accept any length, but scores are then not comparable
    with published 16-frame numbers).
    """
    frames = videos.shape[1]
    if frames < num_frames and not allow_shorter:
        raise ValueError(
            f"clips have {frames} frames but the protocol needs {num_frames}; generate longer "
            "clips, or pass allow_shorter=True to score them as they are"
        )
    return videos[:, :num_frames]


class FrozenNet(nn.Module):
    """A frozen feature network: eval mode forever, no gradients, optionally not in state_dict.

    Args:
        net: the network, or a path to a TorchScript file (loaded with ``torch.jit.load`` on the
            CPU; the metric's ``.to(device)`` moves it).
        persistent: when False (default) the network is hidden from ``state_dict``,
            ``parameters()`` and ``load_state_dict`` (it is not a registered submodule), so
            checkpoints of a module holding the metric stay small and load strictly. ``.to()``,
            ``.cuda()`` and friends still move it.

    A network given by path is not pickled: the path is, and the file is loaded again on
    unpickling (TorchScript modules do not pickle).
    """

    def __init__(self, net: nn.Module | PathLike, persistent: bool = False) -> None:
        super().__init__()
        self.path: str | None = None
        if isinstance(net, (str, os.PathLike)):
            self.path = os.fspath(net)
            net = self._load(self.path)
        if not isinstance(net, nn.Module):
            raise TypeError(f"expected an nn.Module or a path, got {type(net).__name__}")
        self.persistent = persistent
        self._attach(self._freeze(net))

    @staticmethod
    def _load(path: str) -> nn.Module:
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"feature network not found: {path} (see docs/metrics.md for where to get it)"
            )
        return torch.jit.load(path, map_location="cpu")

    @staticmethod
    def _freeze(net: nn.Module) -> nn.Module:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def _attach(self, net: nn.Module) -> None:
        if self.persistent:
            self.add_module("net", net)
        else:
            # Outside self._modules: invisible to state_dict/parameters/load_state_dict.
            object.__setattr__(self, "_hidden_net", net)

    @property
    def module(self) -> nn.Module:
        """The wrapped network."""
        return self._modules["net"] if self.persistent else self.__dict__["_hidden_net"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> FrozenNet:
        # The wrapper follows its parent's mode; the network inside never leaves eval mode
        # (dropout/batch-norm statistics in I3D/C3D/CLIP must not change under `model.train()`).
        self.training = mode
        self.module.eval()
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> FrozenNet:
        super()._apply(fn, recurse)
        if not self.persistent:
            object.__setattr__(self, "_hidden_net", self.__dict__["_hidden_net"]._apply(fn))
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.path is not None:
            state.pop("_hidden_net", None)
            state["_modules"] = {k: v for k, v in state["_modules"].items() if k != "net"}
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.path is not None:
            self._attach(self._freeze(self._load(self.path)))

    def extra_repr(self) -> str:
        return f"path={self.path!r}, persistent={self.persistent}"
