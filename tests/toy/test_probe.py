"""The analytic probe reads ground-truth clips exactly."""

from __future__ import annotations

import torch

from av_lightning.data import toyworld as tw
from av_lightning.toy.probe import class_accuracy, coherent_fraction, probe_frame, probe_summary, probe_video


def test_probe_on_ground_truth_clips():
    clips = [tw.toy_clip(seed) for seed in range(48)]
    videos = torch.stack([c["frames"] for c in clips])
    labels = [c["label"] for c in clips]
    assert class_accuracy(videos, labels) >= 0.99
    assert coherent_fraction(videos, labels) >= 0.99
    for c in clips:
        assert probe_video(c["frames"]).jumps == c["events"]
    summary = probe_summary(videos, [f"a {y}" for y in labels], [c["events"] for c in clips])
    assert summary["events_exact"] == 1.0 and summary["event_precision"] == 1.0


def test_probe_on_a_batch_from_the_device_generator():
    b = tw.toy_batch(32, torch.Generator().manual_seed(4))
    assert coherent_fraction(b["frames"], b["label"].tolist()) >= 0.99
    for video, ev in zip(b["frames"], b["events"]):
        assert probe_video(video).jumps == torch.nonzero(ev).flatten().tolist()


def test_probe_rejects_empty_and_split_frames():
    frame = torch.full((3, 16, 16), 20, dtype=torch.uint8)
    empty = probe_frame(frame)
    assert empty.cls is None and not empty.coherent
    frame[:, 1:4, 1:4] = torch.tensor([220, 40, 40], dtype=torch.uint8)[:, None, None]
    frame[:, 10:13, 10:13] = torch.tensor([220, 40, 40], dtype=torch.uint8)[:, None, None]
    two = probe_frame(frame)
    assert two.blobs == 2 and two.cls == tw.CLASSES.index("drum") and not two.coherent
