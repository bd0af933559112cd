"""An analytic probe of toy-world videos: which object is in each frame, whether it flashes, and when it jumps.

No learned model: the toy world is simple enough to read off directly (see
:mod:`av_lightning.data.toyworld`).

Per frame (:func:`probe_frame`): the background is the per-channel median of the frame (the object
covers well under half of it); object pixels are those farther than ``threshold`` (Euclidean
RGB distance, uint8 levels) from the background. Their mean colour ``x`` is matched against each
class's *flash segment*, the colours ``c + a (255 - c)`` for ``a`` in [0, 1] (the class colour ``c``
mixed towards white, as :data:`~av_lightning.data.toyworld.FLASH` does at events): the class is the
segment nearest to ``x``, and ``flash`` is its ``a`` (least squares, clipped to [0, 1]). A frame
*shows the event look* when ``flash >= FLASH_THRESHOLD`` (half the event level ``FLASH``). The frame is *coherent* when its object pixels form exactly one 8-connected blob
whose size is plausible (``min_pixels`` to ``max_pixels``) — one object, not a smear, not
fragments.

Per video (:func:`probe_video`): the per-frame results plus the object's centroid track; a
*jump* is a frame ``f >= 1`` whose centroid displacement from frame ``f - 1`` is at least
``jump_threshold`` pixels and is a local maximum of the displacement (not smaller than the step
before, larger than the step after), so a 3-2-1 px jump-and-return counts once, at its onset
frame.

Against known events (:func:`probe_summary`): jump and flash recall / precision within ±1 frame,
and on the *exact* event frame (±1 frame scores about 0.6 by chance on these clips; the exact frame
about 0.27), and both together (``event_exact_recall``: the flash and the jump on the event frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch
from scipy import ndimage

from av_lightning.data.toyworld import CLASSES, COLOURS, FLASH

#: Euclidean RGB distance (uint8 levels) from the background above which a pixel is the object.
THRESHOLD = 80.0
MIN_PIXELS = 12
MAX_PIXELS = 90
JUMP_THRESHOLD = 2.0
#: Flash fraction from which a frame shows the event look (module docstring).
FLASH_THRESHOLD = FLASH / 2
_PALETTE = np.array([COLOURS[c] for c in CLASSES], dtype=np.float64)  # (4, 3)
_TO_WHITE = 255.0 - _PALETTE  # (4, 3) direction of each class's flash segment
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class FrameProbe:
    """What :func:`probe_frame` finds in one frame.

    Attributes:
        pixels: object pixel count.
        blobs: number of 8-connected object blobs.
        bbox: ``(top, left, bottom, right)`` inclusive pixel bounds of the object, or None.
        centroid: ``(row, column)`` mean object pixel position, or None.
        colour: mean object RGB, or None.
        cls: index into :data:`CLASSES` of the nearest flash segment, or None without object pixels.
        coherent: exactly one blob of plausible size.
        flash: fraction of the way from the class colour to white (0 without object pixels).
    """

    pixels: int
    blobs: int
    bbox: Optional[tuple[int, int, int, int]]
    centroid: Optional[tuple[float, float]]
    colour: Optional[tuple[float, float, float]]
    cls: Optional[int]
    coherent: bool
    flash: float = 0.0


@dataclass
class VideoProbe:
    """What :func:`probe_video` finds in one video of F frames.

    Attributes:
        frames: the F :class:`FrameProbe` results.
        classes: ``(F,)`` class index per frame, -1 where no object was found.
        coherent: ``(F,)`` bool.
        centroids: ``(F, 2)`` float (row, column), NaN where no object was found.
        displacement: ``(F,)`` centroid displacement from the previous frame, pixels (entry 0 and
            entries next to an empty frame are NaN).
        jumps: frames where the object jumps (module docstring).
        flash: ``(F,)`` flash fraction per frame.
        flashes: frames showing the event look (``flash >= FLASH_THRESHOLD``).
    """

    frames: list[FrameProbe]
    classes: np.ndarray
    coherent: np.ndarray
    centroids: np.ndarray
    displacement: np.ndarray
    jumps: list[int] = field(default_factory=list)
    flash: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flashes: list[int] = field(default_factory=list)

    def majority_class(self) -> int:
        """The most frequent per-frame class (-1 when no frame has an object)."""
        found = self.classes[self.classes >= 0]
        return int(np.bincount(found).argmax()) if found.size else -1


def _hwc(frame) -> np.ndarray:
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"expected a frame (3, H, W), got shape {arr.shape}")
    return arr.transpose(1, 2, 0).astype(np.float64)


def classify_colour(colour: np.ndarray) -> tuple[int, float]:
    """Nearest class flash segment of a mean RGB colour ``(3,)``: ``(class index, flash fraction)``."""
    a = np.clip(((colour - _PALETTE) * _TO_WHITE).sum(-1) / (_TO_WHITE ** 2).sum(-1), 0.0, 1.0)  # (4,)
    residual = np.linalg.norm(colour - (_PALETTE + a[:, None] * _TO_WHITE), axis=-1)
    cls = int(residual.argmin())
    return cls, float(a[cls])


def probe_frame(frame, threshold: float = THRESHOLD, min_pixels: int = MIN_PIXELS,
                max_pixels: int = MAX_PIXELS) -> FrameProbe:
    """Probe one uint8 frame ``(3, H, W)`` (module docstring)."""
    img = _hwc(frame)
    background = np.median(img.reshape(-1, 3), axis=0)
    mask = np.linalg.norm(img - background, axis=-1) > threshold
    pixels = int(mask.sum())
    if pixels == 0:
        return FrameProbe(0, 0, None, None, None, None, False)
    _, blobs = ndimage.label(mask, structure=_EIGHT)
    rows, cols = np.nonzero(mask)
    colour = img[mask].mean(axis=0)
    cls, flash = classify_colour(colour)
    return FrameProbe(
        pixels=pixels,
        blobs=int(blobs),
        bbox=(int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())),
        centroid=(float(rows.mean()), float(cols.mean())),
        colour=tuple(float(c) for c in colour),
        cls=cls,
        coherent=blobs == 1 and min_pixels <= pixels <= max_pixels,
        flash=flash,
    )


def find_jumps(displacement: np.ndarray, threshold: float = JUMP_THRESHOLD) -> list[int]:
    """Frames ``f`` with ``d[f] >= threshold``, ``d[f] >= d[f-1]`` and ``d[f] > d[f+1]`` (NaN = 0)."""
    d = np.nan_to_num(np.asarray(displacement, dtype=np.float64), nan=0.0)
    prev = np.concatenate([[0.0], d[:-1]])
    nxt = np.concatenate([d[1:], [0.0]])
    return [int(f) for f in np.nonzero((d >= threshold) & (d >= prev) & (d > nxt))[0]]


def probe_video(video, jump_threshold: float = JUMP_THRESHOLD, **frame_kwargs) -> VideoProbe:
    """Probe a uint8 video ``(F, 3, H, W)``: per-frame class, coherence, centroid, and jumps."""
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"expected a video (F, 3, H, W), got shape {tuple(video.shape)}")
    frames = [probe_frame(f, **frame_kwargs) for f in video]
    classes = np.array([-1 if p.cls is None else p.cls for p in frames], dtype=np.int64)
    coherent = np.array([p.coherent for p in frames], dtype=bool)
    centroids = np.array([p.centroid if p.centroid is not None else (np.nan, np.nan) for p in frames], dtype=np.float64)
    displacement = np.full(len(frames), np.nan)
    displacement[1:] = np.linalg.norm(centroids[1:] - centroids[:-1], axis=-1)
    flash = np.array([p.flash for p in frames], dtype=np.float64)
    flashes = [int(f) for f in np.nonzero(flash >= FLASH_THRESHOLD)[0]]
    return VideoProbe(frames, classes, coherent, centroids, displacement, find_jumps(displacement, jump_threshold),
                      flash, flashes)


def _label_index(label: Union[str, int]) -> int:
    if isinstance(label, str):
        name = label[2:] if label.startswith("a ") else label
        if name not in CLASSES:
            raise ValueError(f"unknown toy label {label!r}; expected one of {CLASSES} (or 'a <class>')")
        return CLASSES.index(name)
    return int(label)


def _probes(videos) -> list[VideoProbe]:
    if isinstance(videos, torch.Tensor) and videos.ndim != 5:
        raise ValueError(f"expected videos (B, F, 3, H, W), got shape {tuple(videos.shape)}")
    return [probe_video(v) for v in videos]


def class_accuracy(videos, labels: Sequence[Union[str, int]]) -> float:
    """Fraction of frames whose probed class is the clip's label (a frame without object is wrong).

    Args:
        videos: uint8 ``(B, F, 3, H, W)`` (or a list of ``(F, 3, H, W)``).
        labels: B class names (``"drum"`` or ``"a drum"``) or indices.
    """
    hits = [(p.classes == _label_index(y)) for p, y in zip(_probes(videos), labels)]
    return float(np.concatenate(hits).mean())


def coherent_fraction(videos, labels: Sequence[Union[str, int]]) -> float:
    """Fraction of frames showing exactly one plausible object of the clip's class."""
    hits = [(p.classes == _label_index(y)) & p.coherent for p, y in zip(_probes(videos), labels)]
    return float(np.concatenate(hits).mean())


def _recall_precision(found: Sequence[Sequence[int]], events: Sequence[Sequence[int]], tol: int) -> tuple[float, float]:
    """Events with a found frame within ``tol`` frames, and found frames within ``tol`` of an event."""
    hit = sum(any(abs(j - e) <= tol for j in f) for f, ev in zip(found, events) for e in ev)
    true = sum(any(abs(j - e) <= tol for e in ev) for f, ev in zip(found, events) for j in f)
    return hit / max(1, sum(len(e) for e in events)), true / max(1, sum(len(f) for f in found))


def probe_summary(videos, labels: Sequence[Union[str, int]], events: Optional[Sequence[Sequence[int]]] = None) -> dict:
    """All probe figures of a set of clips in one pass.

    Returns:
        dict of ``class_accuracy``, ``coherent_fraction``, ``jumps_per_clip`` and
        ``flashes_per_clip`` (means) and, with ``events``: ``events_exact`` (fraction of clips whose
        jumps equal their events); ``event_recall`` / ``event_precision`` (jumps within ±1 frame of
        an event); ``jump_exact_recall`` / ``jump_exact_precision`` and ``flash_exact_recall`` /
        ``flash_exact_precision`` (on the event frame itself); ``flash_recall`` /
        ``flash_precision`` (±1 frame); ``event_exact_recall`` (events with both the flash and the
        jump on the event frame).
    """
    probes = _probes(videos)
    idx = [_label_index(y) for y in labels]
    cls = np.concatenate([p.classes == y for p, y in zip(probes, idx)])
    coh = np.concatenate([(p.classes == y) & p.coherent for p, y in zip(probes, idx)])
    out = {"class_accuracy": float(cls.mean()), "coherent_fraction": float(coh.mean()),
           "jumps_per_clip": float(np.mean([len(p.jumps) for p in probes])),
           "flashes_per_clip": float(np.mean([len(p.flashes) for p in probes]))}
    if events is not None:
        jumps, flashes = [p.jumps for p in probes], [p.flashes for p in probes]
        out["events_exact"] = float(np.mean([list(j) == list(e) for j, e in zip(jumps, events)]))
        out["event_recall"], out["event_precision"] = _recall_precision(jumps, events, 1)
        out["jump_exact_recall"], out["jump_exact_precision"] = _recall_precision(jumps, events, 0)
        out["flash_recall"], out["flash_precision"] = _recall_precision(flashes, events, 1)
        out["flash_exact_recall"], out["flash_exact_precision"] = _recall_precision(flashes, events, 0)
        both = [sorted(set(j) & set(f)) for j, f in zip(jumps, flashes)]
        out["event_exact_recall"] = _recall_precision(both, events, 0)[0]
    return out
