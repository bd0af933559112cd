"""Every metric gives the same value in one process and in a two-process CPU DDP run."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp

from tests.metrics.metric_helpers import compute_all, ddp_batch, ddp_metrics, ddp_worker


def test_two_process_gloo_equals_single_process(tmp_path, clip_dir):
    metrics = ddp_metrics(str(clip_dir))
    for metric in metrics.values():
        metric.update_from_clips(**ddp_batch([0, 1]))
        metric.update_from_clips(**ddp_batch([2, 3]))
    single = compute_all(metrics)

    # fork after the single-process run: the children reuse the parent's imports and warmed-up
    # lazy modules (spawn re-imports torch, torchmetrics, transformers, librosa and madmom in each
    # child: about a minute on a small CI machine). The workers run single-threaded.
    out_file = tmp_path / "ddp.pt"
    mp.start_processes(
        ddp_worker,
        args=(2, str(tmp_path / "init"), str(clip_dir), str(out_file)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    distributed = torch.load(out_file, weights_only=True)

    for name, value in single.items():
        torch.testing.assert_close(
            distributed[name], value, rtol=1e-5, atol=1e-8, equal_nan=True, msg=name
        )
    assert single["av_align_reference"]["av_align_empty"] == 1
    assert distributed["av_align_per_clip"].shape == (4, 4)  # gathered from both processes
