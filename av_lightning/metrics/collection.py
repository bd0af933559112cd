"""Reading a list of metrics out: every scalar they compute, under one key each.

Shared by :class:`~av_lightning.module.AudioToVideo` (after sampling the test split) and
:class:`~av_lightning.evaluate.ScoreVideos` (a folder of existing videos).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def compute_metrics(metrics: Sequence[nn.Module], reset: bool = True) -> dict[str, torch.Tensor]:
    """Every scalar the metrics compute, as ``{key: scalar tensor}`` (then reset them).

    A metric returning a dict contributes its scalar entries (``is_mean``, ``av_align``, ...); one
    returning a single value contributes it under its class name (``FVD``, ``CLIPSIM``). A key
    already taken by an earlier metric (e.g. AV-Align in paper and in reference mode) gets the
    metric's index in ``metrics`` appended, ``av_align_1``: logging it twice would make
    Lightning report the mean of the two.
    """
    results: dict[str, torch.Tensor] = {}
    for i, metric in enumerate(metrics):
        value = metric.compute()
        items = value.items() if isinstance(value, dict) else [(type(metric).__name__, value)]
        for key, v in items:
            if torch.is_tensor(v) and v.numel() == 1:
                results[f"{key}_{i}" if key in results else key] = v.reshape(())
        if reset:
            metric.reset()
    return results
