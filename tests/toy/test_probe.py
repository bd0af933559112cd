"""The analytic probe reads ground-truth clips exactly."""

from __future__ import annotations

import numpy as np
import torch

from av_lightning.data import toyworld as tw
from av_lightning.toy.probe import (
    _recall_precision,
    class_accuracy,
    classify_colour,
    coherent_fraction,
    probe_frame,
    probe_summary,
    probe_video,
)


def test_probe_on_ground_truth_clips():
    clips = [tw.toy_clip(seed) for seed in range(48)]
    videos = torch.stack([c["frames"] for c in clips])
    labels = [c["label"] for c in clips]
    assert class_accuracy(videos, labels) >= 0.99
    assert coherent_fraction(videos, labels) >= 0.99
    for c in clips:
        probe = probe_video(c["frames"])
        assert probe.jumps == c["events"] and probe.flashes == c["events"]
        # the flash fraction is read back from the colour: FLASH on event frames, 0 elsewhere
        want = np.array([tw.FLASH if f in c["events"] else 0.0 for f in range(tw.NUM_FRAMES)])
        assert np.abs(probe.flash - want).max() < 0.01
    summary = probe_summary(videos, [f"a {y}" for y in labels], [c["events"] for c in clips])
    assert summary["events_exact"] == 1.0 and summary["event_precision"] == 1.0
    for key in ("jump_exact_recall", "jump_exact_precision", "flash_exact_recall", "flash_exact_precision",
                "event_exact_recall"):
        assert summary[key] == 1.0, key


def test_exact_and_tolerant_recall_count_by_hand():
    # one clip, events at 3 and 7; the video jumps at 4 and 7 and flashes at 3 only
    jumps, flashes, events = [[4, 7]], [[3]], [[3, 7]]
    assert _recall_precision(jumps, events, 1) == (1.0, 1.0)
    assert _recall_precision(jumps, events, 0) == (0.5, 0.5)
    assert _recall_precision(flashes, events, 0) == (0.5, 1.0)
    assert _recall_precision([[]], events, 0) == (0.0, 0.0)


def test_flash_colour_reads_class_and_fraction():
    for k, c in enumerate(tw.CLASSES):
        colour = np.array(tw.COLOURS[c], dtype=np.float64)
        for a in (0.0, 0.3, 0.6):
            cls, flash = classify_colour(colour + a * (255 - colour))
            assert cls == k and abs(flash - a) < 1e-9


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
