"""The toy world: four shapes with their own colours and sounds, flashing and jumping on their sound's onsets.

The smallest world that still tests the method's claim (audio drives *when* things move, the
class of the sound decides *what* is seen), cheap enough to train a text-to-video backbone and an
adapter on a CPU.

Geometry (all module constants): a clip is ``NUM_FRAMES = 12`` RGB frames of ``SIZE x SIZE =
16 x 16`` pixels at ``FPS = 6`` (2 s), with ``SAMPLE_RATE = 16000`` Hz mono audio (32000 samples).
One object per clip on a dark, static, slightly noisy background:

=====  ==============  ===============  ==========================================
class  shape           colour (RGB)     sound at each event
=====  ==============  ===============  ==========================================
drum   5x5 square      (220, 40, 40)    low noise thump (low-passed noise + 70 Hz)
bell   disc, r^2 <= 10 (235, 215, 40)   decaying 880 Hz tone (tau 70 ms)
clap   7x7 cross       (40, 200, 60)    short bright noise burst (tau 15 ms)
bass   9x3 bar         (50, 90, 240)    110 Hz pluck (4 harmonics, tau 60 ms)
=====  ==============  ===============  ==========================================

Events: 1 to ``MAX_EVENTS = 3`` event frames in ``[FIRST_EVENT, NUM_FRAMES - 2] = [2, 10]``, at
least ``MIN_GAP = 3`` frames apart (the number of events is uniform, then the set is uniform among
the valid sets of that size). At event frame ``e`` the sound starts at ``e / FPS`` seconds and the
object jumps up ``JUMP = (3, 1)`` pixels: 3 px at frame ``e``, 1 px at ``e + 1``, back at
``e + 2``; the motion per frame step is 3, 2, 1 px, so the optical-flow peak is at ``e``, on the
onset. The event is also seen in the object itself (its *look*): at ``e`` its colour is mixed
``FLASH = 0.85`` of the way towards white (a flash), and at ``e`` and ``e + 1`` it is grown by
:data:`GROW` pixels on each side (its mask dilated: one pixel all round for the drum, bell and clap,
two pixels lengthwise for the bass bar, a string that blurs as it rings). A single frame tells
whether it is an event frame (what image captions such as ``"a struck drum"`` describe), and the
look changes about as much as the jump does (squared pixel change per event; the bass bar's look
a third of its jump), so a video model sees the look as early as the motion as noise is removed.
The flash lasts that one frame: a fading flash at ``e + 1`` (0.3) moved the optical-flow peak of
the thin bass bar to ``e + 1`` in one clip of eight (ground-truth AV-Align 0.87 for bass against
0.995 for the others). The growth lasts two frames for the same reason: shrinking back at ``e + 1``
together with the fall made that step's flow the larger one for the bass bar (the bar grown all
round for one frame: the flow peak on ``e`` in 0.58 of bass clips; lengthwise for two frames: 1.0).
Frame 1 and frame F-1 are excluded because AV-Align's trajectory repeats its first entry
(``[flow(0,1), flow(0,1), ...]``) and a peak needs a neighbour on each side.

Object positions are uniform over the centres that keep the object, its jump and its growth inside
the frame.

Everything is deterministic from a seed. Two generators share one renderer:

- :func:`toy_clip` — one clip (frames, audio, label, events) on the CPU, from an integer seed;
- :func:`toy_batch` — a batch of frames and labels drawn straight on any device (backbone training).

:func:`write_toy_world` writes the world in the datasets' layout (``ROOT/video/ID.mp4`` with the
audio muxed in, ``ROOT/audio/ID.wav``, ``ROOT/toy.csv`` = ``ytid,start_time,class,set,events``),
and :class:`ToyWorldDataModule` reads it through :class:`AudioVideoDataModule`, writing it on
first use. ``ROOT/world.json`` records :data:`WORLD_VERSION`; a folder written by another version of
this module (or by one without the file) is refused, never silently reused. Command line::

    python -m av_lightning.data.toyworld --root data/toy --train 512 --test 64 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from av_lightning.data.datamodules import AudioVideoDataModule

CLASSES: tuple[str, ...] = ("drum", "bell", "clap", "bass")
COLOURS: dict[str, tuple[int, int, int]] = {
    "drum": (220, 40, 40),
    "bell": (235, 215, 40),
    "clap": (40, 200, 60),
    "bass": (50, 90, 240),
}
#: Half extents (rows, columns) of each shape around its centre pixel.
HALF_EXTENT: dict[str, tuple[int, int]] = {"drum": (2, 2), "bell": (3, 3), "clap": (3, 3), "bass": (1, 4)}

SIZE = 16
NUM_FRAMES = 12
FPS = 6.0
SAMPLE_RATE = 16000
NUM_SAMPLES = round(NUM_FRAMES / FPS * SAMPLE_RATE)
#: Upward displacement (pixels) at the event frame and the frame after it.
JUMP = (3, 1)
#: Fraction of the way from the class colour to white at the event frame.
FLASH = 0.85
#: Pixels (rows, columns) the object grows by on each side at the event frame and the one after it.
GROW: dict[str, tuple[int, int]] = {"drum": (1, 1), "bell": (1, 1), "clap": (1, 1), "bass": (0, 2)}
#: Bumped whenever a change of this module changes the clips a seed gives (world.json).
WORLD_VERSION = 3
WORLD_FILE = "world.json"
MIN_GAP = 3
MAX_EVENTS = 3
FIRST_EVENT = 2
LAST_EVENT = NUM_FRAMES - 2
#: Background: per-clip grey level range and static per-pixel noise amplitude (uint8 levels).
BACKGROUND_LEVELS = (12, 32)
BACKGROUND_NOISE = 3


def prompt(label: str) -> str:
    """The text prompt of a class (what the toy backbone is trained on): ``"a drum"``."""
    return f"a {label}"


def event_sets() -> list[tuple[int, ...]]:
    """Every valid set of event frames (sorted tuples), by size then lexicographically."""
    frames = range(FIRST_EVENT, LAST_EVENT + 1)
    out = []
    for n in range(1, MAX_EVENTS + 1):
        out += [c for c in itertools.combinations(frames, n) if all(b - a >= MIN_GAP for a, b in zip(c, c[1:]))]
    return out


_EVENT_SETS = event_sets()


@functools.lru_cache(maxsize=8)
def _event_table(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(M, F)`` bool event masks, and per size n (1..MAX_EVENTS) the first row and the count
    (built once per device: the training loop draws a batch per step)."""
    table = torch.zeros(len(_EVENT_SETS), NUM_FRAMES, dtype=torch.bool)
    for i, s in enumerate(_EVENT_SETS):
        table[i, list(s)] = True
    sizes = torch.tensor([len(s) for s in _EVENT_SETS])
    counts = torch.stack([(sizes == n).sum() for n in range(1, MAX_EVENTS + 1)])
    offsets = torch.cumsum(counts, 0) - counts
    return table.to(device), offsets.to(device), counts.to(device)


def jump_offsets(events: torch.Tensor) -> torch.Tensor:
    """Upward displacement per frame ``(B, F)`` long, from event masks ``(B, F)`` bool."""
    e = events.long()
    out = JUMP[0] * e
    out[:, 1:] = torch.maximum(out[:, 1:], JUMP[1] * e[:, :-1])
    return out


def frame_states(events: torch.Tensor) -> torch.Tensor:
    """``(B, F)`` bool event masks -> ``(B, F)`` long: 0 quiet, 1 event frame, 2 the frame after it."""
    e = events.long()
    after = torch.zeros_like(e)
    after[:, 1:] = e[:, :-1]
    return torch.where(e == 1, 1, torch.where(after == 1, 2, 0))


def flash_levels(events: torch.Tensor) -> torch.Tensor:
    """Flash fraction per frame ``(B, F)`` float, from event masks ``(B, F)`` bool."""
    return FLASH * events.float()


def sample_params(batch_size: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> dict:
    """Random clip parameters on the generator's device.

    Returns:
        dict of ``label`` (B,) long, ``events`` (B, F) bool, ``cy``/``cx`` (B,) long centre
        pixel (rest position), ``level`` (B,) long background grey level, ``noise`` (B, H, W)
        long static background noise.
    """
    device = generator.device
    B = batch_size
    if labels is None:
        labels = torch.randint(len(CLASSES), (B,), generator=generator, device=device)
    labels = labels.to(device).long()
    table, offsets, counts = _event_table(torch.device(device))
    n = torch.randint(MAX_EVENTS, (B,), generator=generator, device=device)
    u = torch.rand(B, generator=generator, device=device)
    row = offsets[n] + (u * counts[n]).long().clamp(max=counts[n] - 1)
    events = table[row]
    half = torch.tensor([HALF_EXTENT[c] for c in CLASSES], device=device)[labels]  # (B, 2)
    half = half + torch.tensor([GROW[c] for c in CLASSES], device=device)[labels]
    ry, rx = half[:, 0], half[:, 1]
    # rest centre (half extents grown): row in [ry + jump, SIZE-1-ry], column in [rx, SIZE-1-rx]
    lo_y, hi_y = ry + JUMP[0], SIZE - 1 - ry
    lo_x, hi_x = rx, SIZE - 1 - rx
    uy, ux = torch.rand(2, B, generator=generator, device=device)
    cy = lo_y + (uy * (hi_y - lo_y + 1)).long().clamp(max=(hi_y - lo_y))
    cx = lo_x + (ux * (hi_x - lo_x + 1)).long().clamp(max=(hi_x - lo_x))
    lv = BACKGROUND_LEVELS
    level = torch.randint(lv[0], lv[1] + 1, (B,), generator=generator, device=device)
    noise = torch.randint(-BACKGROUND_NOISE, BACKGROUND_NOISE + 1, (B, SIZE, SIZE), generator=generator, device=device)
    return {"label": labels, "events": events, "cy": cy, "cx": cx, "level": level, "noise": noise}


def shape_masks(label: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Whether each pixel is inside the shape of ``label``.

    Args:
        label: class index, broadcastable against ``dy``/``dx``.
        dy, dx: pixel offsets (rows, columns) from the shape's centre, long.
    """
    dy, dx = torch.broadcast_tensors(dy, dx)
    ay, ax = dy.abs(), dx.abs()
    square = (ay <= 2) & (ax <= 2)
    disc = dy * dy + dx * dx <= 10
    cross = ((ax <= 1) & (ay <= 3)) | ((ay <= 1) & (ax <= 3))
    bar = (ay <= 1) & (ax <= 4)
    masks = torch.stack([square, disc, cross, bar])  # order of CLASSES
    idx = label.expand(dy.shape).unsqueeze(0)
    return masks.gather(0, idx).squeeze(0)


def grow_masks(label: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """The object masks ``(B, F, H, W)`` bool dilated by each clip's :data:`GROW` (``label`` (B,))."""
    out = inside.clone()
    x = inside.float()
    for k, name in enumerate(CLASSES):
        gy, gx = GROW[name]
        rows = label == k
        if rows.any():
            out[rows] = torch.nn.functional.max_pool2d(x[rows], (2 * gy + 1, 2 * gx + 1), 1, (gy, gx)) > 0
    return out


def render(params: dict, jump: bool = True, flash: bool = True) -> torch.Tensor:
    """Frames ``(B, F, 3, H, W)`` uint8 from :func:`sample_params` output (on its device).

    ``jump=False`` or ``flash=False`` leaves that half of the event out (the object stays at rest,
    or keeps its colour and size): clips that no world clip is, for probing what a model ties to
    what (:mod:`av_lightning.toy.coupling`).
    """
    label, events = params["label"], params["events"]
    device = label.device
    B = label.shape[0]
    rows = torch.arange(SIZE, device=device).view(1, 1, SIZE, 1)
    cols = torch.arange(SIZE, device=device).view(1, 1, 1, SIZE)
    lift = jump_offsets(events) if jump else torch.zeros(events.shape, dtype=torch.long, device=device)
    cy = params["cy"].view(B, 1, 1, 1) - lift.view(B, NUM_FRAMES, 1, 1)
    cx = params["cx"].view(B, 1, 1, 1)
    inside = shape_masks(label.view(B, 1, 1, 1), rows - cy, cols - cx)  # (B, F, H, W)
    if flash:
        grown = frame_states(events) > 0  # the event frame and the frame after it
        inside = torch.where(grown.view(B, NUM_FRAMES, 1, 1), grow_masks(label, inside), inside)
    bg = (params["level"].view(B, 1, 1) + params["noise"]).clamp(0, 255)  # (B, H, W)
    bg = bg.view(B, 1, 1, SIZE, SIZE).expand(B, NUM_FRAMES, 3, SIZE, SIZE)
    colour = torch.tensor([COLOURS[c] for c in CLASSES], device=device, dtype=torch.float32)[label].view(B, 1, 3, 1, 1)
    mix = (flash_levels(events) * float(flash)).view(B, NUM_FRAMES, 1, 1, 1)
    colour = (colour + mix * (255.0 - colour)).round().long()  # (B, F, 3, 1, 1)
    frames = torch.where(inside.unsqueeze(2), colour, bg)
    return frames.to(torch.uint8)


def toy_batch(batch_size: int, generator: torch.Generator, device=None, labels: Optional[torch.Tensor] = None) -> dict:
    """A batch drawn on the generator's device, without audio (for backbone training).

    Returns:
        dict of ``frames`` uint8 ``(B, F, 3, H, W)``, ``label`` long ``(B,)`` (index into
        :data:`CLASSES`), ``events`` bool ``(B, F)``.
    """
    if device is not None and torch.device(device) != generator.device:
        raise ValueError(f"the generator lives on {generator.device}, not on {device}; create it with device={device}")
    p = sample_params(batch_size, generator, labels)
    return {"frames": render(p), "label": p["label"], "events": p["events"]}


# ------------------------------------------------------------------------------------------------
# audio


def _sound(label: str, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The sound of one event of class ``label``: float32 (n,) starting at its onset."""
    # Every sound ends within 0.3 s (before the clip ends, even for an event at the last event
    # frame) with a smooth fade: an abrupt stop would itself read as an onset.
    n = int(0.3 * sample_rate)
    t = np.arange(n) / sample_rate
    attack = np.minimum(1.0, t / 0.002) * np.where(t < 0.15, 1.0, 0.5 + 0.5 * np.cos(np.pi * (t - 0.15) / 0.15))
    if label == "drum":
        noise = rng.standard_normal(n + 15)
        low = np.convolve(noise, np.ones(16) / 16, mode="valid")[:n]  # ~1 kHz low-pass
        out = 2.0 * low * np.exp(-t / 0.03) + 0.8 * np.sin(2 * np.pi * 70 * t) * np.exp(-t / 0.06)
    elif label == "bell":
        out = 0.5 * np.sin(2 * np.pi * 880 * t) * np.exp(-t / 0.07)
    elif label == "clap":
        noise = rng.standard_normal(n + 1)
        out = 0.5 * np.diff(noise) * np.exp(-t / 0.015)  # first difference: a bright high-pass
    elif label == "bass":
        out = sum(np.sin(2 * np.pi * 110 * k * t) / k for k in range(1, 5)) * 0.35 * np.exp(-t / 0.06)
    else:
        raise ValueError(f"unknown toy class {label!r}; expected one of {CLASSES}")
    return (attack * out).astype(np.float32)


def render_audio(label: str, events: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Mono audio ``(NUM_SAMPLES,)`` float32 in [-1, 1]: quiet noise plus one sound per event
    starting at ``e / FPS`` seconds."""
    audio = 1e-3 * rng.standard_normal(NUM_SAMPLES)
    for e in events:
        s = round(e / FPS * SAMPLE_RATE)
        snd = _sound(label, rng) * rng.uniform(0.6, 1.0)
        m = min(snd.shape[0], NUM_SAMPLES - s)
        audio[s : s + m] += snd[:m]
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def toy_clip(seed: int, cls: Union[str, int, None] = None) -> dict:
    """One clip, deterministic from ``seed``.

    Args:
        seed: integer seed.
        cls: class name or index; None draws it from the seed.

    Returns:
        dict of ``frames`` uint8 ``(F, 3, H, W)``, ``audio`` float32 ``(S,)`` at 16 kHz,
        ``label`` (class name), ``events`` (sorted list of event frames).
    """
    g = torch.Generator().manual_seed(int(seed))
    labels = None
    if cls is not None:
        idx = CLASSES.index(cls) if isinstance(cls, str) else int(cls)
        labels = torch.tensor([idx])
    p = sample_params(1, g, labels)
    label = CLASSES[int(p["label"][0])]
    events = torch.nonzero(p["events"][0]).flatten().tolist()
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7])
    return {"frames": render(p)[0], "audio": torch.from_numpy(render_audio(label, events, rng)), "label": label,
            "events": events}


# ------------------------------------------------------------------------------------------------
# files


def clip_seed(seed: int, split: str, index: int) -> int:
    """The seed of clip ``index`` of ``split`` in a world of seed ``seed`` (splits disjoint)."""
    return (seed * 1_000_003 + {"train": 0, "test": 500_000, "val": 900_000}[split] + index) & 0x7FFFFFFF


def check_version(root: Union[str, Path]) -> dict:
    """The ``world.json`` of a written world; raises when it is missing or of another version."""
    root = Path(root)
    path = root / WORLD_FILE
    fix = f"delete {root} (it is rewritten on first use) or run: python -m av_lightning.data.toyworld --root {root}"
    if not path.is_file():
        raise ValueError(f"{root} holds a toy world without {WORLD_FILE} (written before version {WORLD_VERSION}: its "
                         f"objects do not flash); {fix}")
    info = json.loads(path.read_text())
    if info.get("version") != WORLD_VERSION:
        raise ValueError(f"{path}: toy world version {info.get('version')!r}, this code writes version {WORLD_VERSION}; {fix}")
    return info


def write_toy_world(root: Union[str, Path], num_train: int = 512, num_test: int = 64, seed: int = 0,
                    crf: int = 0, progress: bool = True) -> Path:
    """Write the world in the datasets' layout; returns the manifest path.

    Classes cycle through :data:`CLASSES` so both splits are balanced. Clip ``ID`` =
    ``toy_{split}_{index:05d}``; files ``ROOT/video/ID.mp4`` (H.264 at ``crf``, 0 = lossless
    luma, AAC audio muxed) and ``ROOT/audio/ID.wav`` (16-bit PCM); manifest ``ROOT/toy.csv``
    with columns ``ytid,start_time,class,set,events`` (events: space-separated frame indices).
    """
    from tqdm.auto import tqdm

    from av_lightning.data.io import write_audio, write_video

    root = Path(root)
    rows = []
    jobs = [("train", i) for i in range(num_train)] + [("test", i) for i in range(num_test)]
    for split, i in tqdm(jobs, desc=f"writing toy world to {root}", unit="clip", disable=not progress):
        clip = toy_clip(clip_seed(seed, split, i), CLASSES[i % len(CLASSES)])
        cid = f"toy_{split}_{i:05d}"
        write_video(root / "video" / f"{cid}.mp4", clip["frames"], FPS, audio=clip["audio"], sample_rate=SAMPLE_RATE, crf=crf)
        write_audio(root / "audio" / f"{cid}.wav", clip["audio"], SAMPLE_RATE)
        rows.append([cid, 0, clip["label"], split, " ".join(map(str, clip["events"]))])
    manifest = root / "toy.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ytid", "start_time", "class", "set", "events"])
        writer.writerows(rows)
    info = {"version": WORLD_VERSION, "seed": seed, "train": num_train, "test": num_test, "crf": crf}
    (root / WORLD_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return manifest


class ToyWorldDataModule(AudioVideoDataModule):
    """The toy world through the datasets' DataModule; ``prepare_data`` writes it if missing.

    Args:
        root: world folder (written on first use when ``root/toy.csv`` is missing).
        num_train, num_test, world_seed: world size and seed (used only when writing it).
        Everything else: :class:`AudioVideoDataModule` (defaults set to the toy geometry).
    """

    default_manifest = "toy.csv"

    def __init__(self, root: str = "data/toy", num_train: int = 512, num_test: int = 64, world_seed: int = 0,
                 fps: float = FPS, num_frames: int = NUM_FRAMES, size: Union[int, tuple[int, int], None] = SIZE,
                 batch_size: int = 8, num_workers: int = 0, val_size: float = 8, eval_start: str = "start",
                 **kwargs) -> None:
        super().__init__(root=root, fps=fps, num_frames=num_frames, size=size, batch_size=batch_size,
                         num_workers=num_workers, val_size=val_size, eval_start=eval_start, **kwargs)
        self.num_train, self.num_test, self.world_seed = num_train, num_test, world_seed

    def prepare_data(self) -> None:
        if not self.manifest.is_file():
            write_toy_world(self.root, self.num_train, self.num_test, self.world_seed)
        check_version(self.root)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write the toy world (mp4 + wav + toy.csv) in the datasets' layout.")
    parser.add_argument("--root", default="data/toy", help="output folder")
    parser.add_argument("--train", type=int, default=512, help="training clips")
    parser.add_argument("--test", type=int, default=64, help="test clips")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--crf", type=int, default=0, help="x264 quality (0 = lossless luma)")
    args = parser.parse_args(argv)
    manifest = write_toy_world(args.root, args.train, args.test, args.seed, crf=args.crf)
    print(f"wrote {args.train} train + {args.test} test clips; manifest {manifest}")


if __name__ == "__main__":
    main()
