"""Check a written toy world: AV-Align and probe figures of its ground-truth clips, read back from
the files through the project's DataModule (so the mp4/wav round trip is part of the check).

    python -m av_lightning.toy.check_world --root data/toy --split test --mode paper
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch


def check_world(root, split: str = "test", mode: str = "paper", limit: Optional[int] = None) -> dict:
    """AV-Align (``mode``) and probe summary of the ``split`` clips of a written world.

    Returns:
        dict of ``av_align`` (mean over scored clips), ``av_align_empty`` (clips with no peak on
        either side), ``clips``, and the probe's :func:`~av_lightning.toy.probe.probe_summary`
        (``event_exact_recall``: events whose flash and jump the probe finds on the event frame).
    """
    from av_lightning.data.datamodules import AudioVideoDataModule
    from av_lightning.data.toyworld import FPS, NUM_FRAMES, SAMPLE_RATE, SIZE, check_version
    from av_lightning.metrics.alignment import align_clips
    from av_lightning.toy.probe import probe_summary

    root = Path(root)
    check_version(root)
    events = {r["ytid"]: [int(e) for e in r["events"].split()] for r in csv.DictReader(open(root / "toy.csv"))}
    dm = AudioVideoDataModule(str(root), manifest="toy.csv", fps=FPS, num_frames=NUM_FRAMES, size=SIZE,
                              batch_size=32, num_workers=0, val_size=0, eval_start="start")
    dm.setup("test" if split == "test" else "fit")
    frames, audio, labels, ids = [], [], [], []
    for batch in torch.utils.data.DataLoader(dm.dataset(split), batch_size=32):
        frames.append(batch["frames"])
        audio.append(batch["audio"])
        labels += batch["label"]
        ids += batch["id"]
        if limit is not None and len(ids) >= limit:
            break
    frames, audio = torch.cat(frames)[:limit], torch.cat(audio)[:limit]
    labels, ids = labels[:limit], ids[:limit]
    scores = np.array([c.score for c in align_clips(frames, audio, fps=FPS, sample_rate=SAMPLE_RATE, mode=mode)])
    out = {"clips": len(ids), "mode": mode, "av_align": float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan"),
           "av_align_empty": int(np.isnan(scores).sum()), "av_align_min": float(np.nanmin(scores))}
    out.update(probe_summary(frames, labels, [events[i] for i in ids]))
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description="AV-Align and probe figures of a written toy world's clips.")
    parser.add_argument("--root", default="data/toy")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--mode", default="paper", choices=["paper", "reference"])
    parser.add_argument("--limit", type=int, default=None, help="at most this many clips")
    args = parser.parse_args(argv)
    result = check_world(args.root, args.split, args.mode, args.limit)
    print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
