"""Which half of an event does the toy backbone's video prior read first, the look or the motion?

A world event is a look (a flash, the object grown) and a jump on the same frame. Per-frame prompts
can put the *look* on a chosen frame (image captions teach that); the jump then lands there only if
the video prior has learnt "a flashed frame is a jump frame". This check asks the prior directly,
without sampling: held-out clips are rendered three ways — whole, **flash only** (the look without
the jump: the object stays at rest) and **jump only** (the object keeps its colour and size) —
noised to one timestep, and the backbone's one-step
estimate of the clean clip (from its prediction, with the class caption) is read by the probe:

- on flash-only clips, does the estimate *add the jump* on the flashed frames (look → motion)?
- on jump-only clips, does it *add the flash* on the jump frames (motion → look)?

Each figure is the fraction of event frames with a jump (or a flash) on that exact frame, per
timestep, from the noisiest down. Whole clips show where the estimate recovers both halves at
all. A backbone whose prior only goes motion → look cannot pass gate (c) of
:mod:`av_lightning.toy.backbone_gate`: a prompt that forces the flash leaves the jump where the
initial noise put it.

    python -m av_lightning.toy.coupling [--backbone DIR] [--n 64] [--report R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from av_lightning.data import toyworld as tw

TIMESTEPS = (950, 850, 750, 650, 500, 350, 200)
VARIANTS = {"whole": dict(jump=True, flash=True), "flash only": dict(jump=False, flash=True),
            "jump only": dict(jump=True, flash=False)}


def variant_clips(n: int, seed: int = 5, params: Optional[dict] = None) -> dict:
    """``n`` clips (classes in turn) rendered whole, without the jump and without the look
    (``params``: :func:`~av_lightning.data.toyworld.sample_params` output to render instead).

    Returns:
        dict of ``frames`` (variant name -> uint8 ``(n, F, 3, H, W)``), ``labels`` (n class
        indices) and ``events`` (n sets of event frames).
    """
    if params is None:
        params = tw.sample_params(n, torch.Generator().manual_seed(seed), torch.arange(n) % len(tw.CLASSES))
    frames = {name: tw.render(params, **kw) for name, kw in VARIANTS.items()}
    events = [set(np.nonzero(e.numpy())[0].tolist()) for e in params["events"]]
    return {"frames": frames, "labels": params["label"].tolist(), "events": events}


def exact_rates(videos: torch.Tensor, events: Sequence[set]) -> dict:
    """Fractions of event frames with a jump, and with a flash, on that exact frame (probe)."""
    from av_lightning.toy.probe import probe_video

    probes = [probe_video(v) for v in videos]
    total = sum(len(e) for e in events)
    return {"jump": sum(len(set(p.jumps) & e) for p, e in zip(probes, events)) / total,
            "flash": sum(len(set(p.flashes) & e) for p, e in zip(probes, events)) / total}


def event_energy(n: int = 256, seed: int = 5, params: Optional[dict] = None) -> dict:
    """Per class, the squared pixel change (frames scaled to [-1, 1]) that each half of an event makes,
    per event: ``{class: {"look": e, "motion": e}}``. At a given noise level the half with more
    energy is visible first, so a denoiser decides it first and infers the other from it."""
    clips = variant_clips(n, seed, params)
    x = {k: v.float() / 127.5 - 1.0 for k, v in clips["frames"].items()}
    look = ((x["whole"] - x["jump only"]) ** 2).flatten(1).sum(1)
    motion = ((x["whole"] - x["flash only"]) ** 2).flatten(1).sum(1)
    count = torch.tensor([len(e) for e in clips["events"]], dtype=torch.float32)
    labels = torch.tensor(clips["labels"])
    return {c: {"look": float((look / count)[labels == i].mean()), "motion": float((motion / count)[labels == i].mean())}
            for i, c in enumerate(tw.CLASSES) if (labels == i).any()}


@torch.no_grad()
def coupling(backbone, n: int = 64, timesteps: Sequence[int] = TIMESTEPS, seed: int = 5) -> dict:
    """Per timestep and variant, the exact-frame jump and flash rates of the one-step estimates.

    Returns:
        ``{timestep: {variant: {"jump": r, "flash": r}}}`` (variants of :data:`VARIANTS`).
    """
    clips = variant_clips(n, seed)
    cond = backbone.encode_text([tw.prompt(tw.CLASSES[c]) for c in clips["labels"]])
    objective = backbone.objective
    clean = {name: backbone.encode_frames(frames.to(cond.device)) for name, frames in clips["frames"].items()}
    out = {}
    for t in timesteps:
        ts = torch.full((n,), int(t), device=cond.device)
        row = {}
        for name, x0 in clean.items():
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(t))).to(x0)
            noisy = objective.add_noise(x0, noise, ts)
            estimate = objective.predict_x0(noisy, backbone.denoise(noisy, ts, cond).float(), ts)
            row[name] = exact_rates(backbone.decode_latents(estimate).cpu(), clips["events"])
        out[int(t)] = row
    return out


def table(result: dict) -> list[str]:
    """Markdown rows: per timestep, jump / flash rates of each variant's estimate."""
    lines = ["| timestep | whole: jump / flash | flash only: jump added | flash only: flash kept | "
             "jump only: flash added | jump only: jump kept |", "|---|---|---|---|---|---|"]
    for t, r in result.items():
        w, f, j = r["whole"], r["flash only"], r["jump only"]
        lines.append(f"| {t} | {w['jump']:.2f} / {w['flash']:.2f} | **{f['jump']:.2f}** | {f['flash']:.2f} | "
                     f"**{j['flash']:.2f}** | {j['jump']:.2f} |")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.demo import backbone_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default=None, help="diffusers folder (default: the shipped toy backbone)")
    p.add_argument("--n", type=int, default=64, help="clips")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--report", default=None, help="markdown file to write the table to")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = DiffusersT2V(pretrained=args.backbone or backbone_path())
    result = coupling(backbone, args.n, seed=args.seed)
    energy = event_energy()
    lines = table(result) + ["", "Energy of each half of an event (sum of squared pixel changes, frames in [-1, 1], per event):",
                             "", "| class | look (flash) | motion (jump) |", "|---|---|---|"]
    lines += [f"| {c} | {e['look']:.1f} | {e['motion']:.1f} |" for c, e in energy.items()]
    print("\n".join(lines))
    if args.report:
        head = [f"Backbone `{args.backbone or 'av_lightning/assets/toy_backbone'}`, {args.n} clips, "
                f"`python -m av_lightning.toy.coupling {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(), ""]
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text("\n".join(head + lines) + "\n")
    return {"coupling": result, "energy": energy}


if __name__ == "__main__":
    main()
