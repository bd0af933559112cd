"""Fixtures of the metric tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The metric tests run many small tensor ops (Horn–Schunck iterations); on a 2-core machine
    # shared with other jobs, OpenMP's two-thread pool spins and is ~10x slower than one thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP saved to disk (model, tokenizer, image processor)."""
    from tests.metrics.metric_helpers import make_clip_dir

    return make_clip_dir(tmp_path_factory.mktemp("tiny_clip"))
