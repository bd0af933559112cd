"""The toy backbone's gates, in the order the adapter depends on them.

(a) **Video coherence** (:func:`gate_video`): text-only samples (``a {class}``, classes in turn) with
    the demo's sampler (DDIM 8 steps, guidance 3): the fraction of frames showing one object of the
    prompted class (gate >= 0.9), with the flashes and jumps per clip beside the training data's.
(b) **Image captions** (:func:`gate_images`): single frames (F = 1) sampled with ``a struck
    {class}`` and ``a {class}``: the fraction showing one object of the right class that flashes
    exactly when the caption says struck (gate >= 0.9 for each caption). Also at further guidance
    scales (``--image-guidance``, default 1: the conditional model alone, no extrapolation), since a
    single frame has no other frames to pull its class back when guidance overshoots.
(c) **Per-frame text, the oracle** (:func:`gate_frame_text`): held-out clips (the toy world's test
    split, with their audio) sampled with one prompt per frame, ``a struck {class}`` on the clip's
    event frames and ``a {class}`` elsewhere (with ``a ringing {class}`` on the frame after each event
    for a backbone whose image captions name that frame, ``train.after_share`` > 0). The flash and the jump must both land on the exact
    event frame for >= 0.8 of events, while the same count against another clip's events (chance)
    stays <= 0.35; optical-flow peaks on the samples give AV-Align (paper) >= 0.7 against the
    clip's audio. The same scores for tokens fitted from the ground-truth events are
    :mod:`av_lightning.toy.controllability`. Both are sampled twice: with classifier-free guidance
    alone, and with the demo's sampler (``m + w_t (c - m)`` over the noisier half of the schedule,
    ``m`` the conditioning averaged over the frames, then ``u + w (c - u)``; ``--temporal-guidance``
    and ``--guidance``, 6 and 3 by default as in the demo).

    python -m av_lightning.toy.backbone_gate [--backbone DIR] [--oracle-steps 150] --report docs/results/toy_backbone.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from av_lightning.data.toyworld import CLASSES, NUM_FRAMES, toy_batch
from av_lightning.data.toyworld import prompt as class_prompt
from av_lightning.toy.timing import (
    DEMO_GUIDANCE,
    DEMO_STEPS,
    DEMO_TEMPORAL_GUIDANCE,
    DEMO_TEMPORAL_SPAN,
    TIMING_BARS,
    held_out_clips,
    sample_videos,
    timing_passed,
    timing_scores,
    timing_table,
)

BARS = {"coherent": 0.9, "images": 0.9, **TIMING_BARS}


def training_rates(n: int = 512, seed: int = 1) -> dict:
    """Probe jumps and flashes per clip on ground-truth clips (what the backbone should reproduce)."""
    from av_lightning.toy.probe import probe_summary

    batch = toy_batch(n, torch.Generator().manual_seed(seed))
    s = probe_summary(batch["frames"], batch["label"].tolist())
    return {"jumps_per_clip": s["jumps_per_clip"], "flashes_per_clip": s["flashes_per_clip"]}


def gate_video(backbone, n: int = 64, steps: int = DEMO_STEPS, guidance_scale: float = DEMO_GUIDANCE, seed: int = 0) -> dict:
    """Gate (a): text-only class prompts; coherence, class colour, flashes and jumps (module docstring)."""
    from av_lightning.toy.probe import probe_summary, probe_video

    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    videos = sample_videos(backbone, backbone.encode_text([class_prompt(c) for c in labels]), steps=steps,
                           guidance_scale=guidance_scale, seed=seed)
    out = probe_summary(videos, labels)
    probes = [probe_video(v) for v in videos]
    flashes = sum(len(p.flashes) for p in probes)
    # does the video prior tie the look to the motion? flashes with a jump on the same frame
    out["flashes_with_jump"] = sum(len(set(p.flashes) & set(p.jumps)) for p in probes) / max(1, flashes)
    out["per_class"] = {c: probe_summary(videos[[i for i, y in enumerate(labels) if y == c]], [c] * labels.count(c))
                        for c in CLASSES}
    out["train"] = training_rates()
    out.update(n=n, passed=out["coherent_fraction"] >= BARS["coherent"])
    return out


def gate_images(backbone, n: int = 64, steps: int = DEMO_STEPS, guidance_scale: float = DEMO_GUIDANCE, seed: int = 0) -> dict:
    """Gate (b): ``n`` images per caption kind; right class, one object, flashed iff struck."""
    from av_lightning.toy.probe import FLASH_THRESHOLD, probe_frame

    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    out = {"n": n}
    for kind, word in (("struck", "struck "), ("plain", "")):
        cond = backbone.encode_text([f"a {word}{c}" for c in labels])
        frames = sample_videos(backbone, cond, num_frames=1, steps=steps, guidance_scale=guidance_scale, seed=seed)[:, 0]
        probes = [probe_frame(f) for f in frames]
        right = [p.cls == CLASSES.index(c) and p.coherent for p, c in zip(probes, labels)]
        flashed = [p.cls is not None and p.flash >= FLASH_THRESHOLD for p in probes]
        out[kind] = {"controlled": float(np.mean([r and f == (kind == "struck") for r, f in zip(right, flashed)])),
                     "right_class": float(np.mean(right)), "flashed": float(np.mean(flashed)),
                     "mean_flash": float(np.mean([p.flash for p in probes]))}
    out["passed"] = min(out["struck"]["controlled"], out["plain"]["controlled"]) >= BARS["images"]
    return out


def frame_prompts(labels: Sequence[str], events: Sequence[Sequence[int]], num_frames: int = NUM_FRAMES,
                  ringing: bool = False) -> list[list[str]]:
    """One prompt per frame: ``a struck {class}`` on event frames, ``a {class}`` elsewhere; with
    ``ringing``, ``a ringing {class}`` on the frame after each event (the image captions of a backbone
    trained with ``train.after_share`` > 0)."""
    def word(f: int, ev: Sequence[int]) -> str:
        if f in ev:
            return "struck "
        return "ringing " if ringing and f - 1 in ev else ""

    return [[f"a {word(f, ev)}{y}" for f in range(num_frames)] for y, ev in zip(labels, events)]


def uses_ringing(recipe: Optional[dict]) -> bool:
    """Whether a backbone's ``recipe.json`` trained images of the frame after an event (``after_share`` > 0)."""
    return bool(recipe) and float(recipe.get("config", {}).get("train", {}).get("after_share", 0.0)) > 0


def gate_frame_text(backbone, clips: dict, steps: int = DEMO_STEPS, guidance_scale: float = DEMO_GUIDANCE, seed: int = 0,
                    ringing: bool = False, temporal_guidance_scale: Optional[float] = None) -> dict:
    """Gate (c) with text: per-frame prompts from the clips' events (:func:`frame_prompts`), scored by
    :func:`timing_scores`; with ``temporal_guidance_scale``, sampled with the demo's temporal guidance
    against the prompts' frame mean (:func:`~av_lightning.pipeline.frame_mean`)."""
    prompts = frame_prompts(clips["label"], clips["events"], ringing=ringing)
    B, F = len(prompts), len(prompts[0])
    cond = backbone.encode_text([p for row in prompts for p in row]).unflatten(0, (B, F))  # (B, F, N, d)
    videos = sample_videos(backbone, cond, steps=steps, guidance_scale=guidance_scale, seed=seed,
                           temporal_guidance_scale=temporal_guidance_scale)
    out = timing_scores(videos, clips)
    out.update(n=B, passed=timing_passed(out), ringing=ringing, temporal_guidance_scale=temporal_guidance_scale or 0.0)
    return out


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _theirs(guidance: float) -> str:
    return " (the demo's)" if guidance == DEMO_GUIDANCE else ""


def _images_verdict(b: dict, guidance: float, more: Sequence[dict]) -> str:
    verdicts = [f"{_mark(b['passed'])} at guidance {guidance:g}{_theirs(guidance)}"]
    verdicts += [f"{_mark(r['passed'])} at guidance {r['guidance']:g}" for r in more]
    return "; ".join(verdicts)


def sampler_name(r: dict, guidance: float) -> str:
    """How a gate (c) result was sampled, in words."""
    wt = r.get("temporal_guidance_scale") or 0.0
    if not wt:
        return f"classifier-free guidance {guidance:g}"
    return (f"the demo's sampler: temporal guidance {wt:g} over the noisier {DEMO_TEMPORAL_SPAN:g} of the "
            f"schedule, then classifier-free guidance {guidance:g}")


def _timing_verdict(results: Sequence[dict], guidance: float) -> str:
    return "; ".join(f"{_mark(timing_passed(r))} with {sampler_name(r, guidance).split(':')[0]}" for r in results)


def write_report(path, backbone_path: str, a: dict, b: dict, c, oracle: Optional[dict], settings: dict,
                 recipe: Optional[dict] = None, more_images: Sequence[dict] = ()) -> None:
    """The gates' markdown page (``docs/results/toy_backbone.md``). ``c``: gate (c)'s per-frame text
    result, or a list of them (one per sampler); ``oracle["result"]`` likewise."""
    from av_lightning.toy.probe import FLASH_THRESHOLD

    cs = list(c) if isinstance(c, (list, tuple)) else [c]
    g = settings["guidance"]

    tr = a["train"]
    lines = [
        "# Toy backbone: the gates", "",
        f"Written by `python -m av_lightning.toy.backbone_gate {settings['argv']}` ({settings['seconds'] / 60:.1f} min "
        f"on this machine's CPU, shared with other work). Backbone: `{backbone_path}`. Every sample: DDIM "
        f"{settings['steps']} steps, seed {settings['seed']}, classifier-free guidance {settings['guidance']:g}"
        f"{_theirs(settings['guidance'])} unless a section says otherwise; read by the analytic probe (`av_lightning/toy/probe.py`).", "",
        f"## (a) Video coherence, text only: {_mark(a['passed'])}", "",
        f"{a['n']} samples of `a {{class}}`, classes in turn.", "",
        "| figure | samples | training clips |", "|---|---|---|",
        f"| frames with one object of the prompted class (gate >= {BARS['coherent']}) | {a['coherent_fraction']:.3f} | 1.000 |",
        f"| frames whose object colour is the prompted class | {a['class_accuracy']:.3f} | 1.000 |",
        f"| jumps per clip | {a['jumps_per_clip']:.2f} | {tr['jumps_per_clip']:.2f} |",
        f"| flashes per clip | {a['flashes_per_clip']:.2f} | {tr['flashes_per_clip']:.2f} |",
        f"| flashes with a jump on the same frame | {a['flashes_with_jump']:.2f} | 1.00 |", "",
        "| class | one object of the class | jumps per clip | flashes per clip |", "|---|---|---|---|",
        *[f"| {k} | {v['coherent_fraction']:.3f} | {v['jumps_per_clip']:.2f} | {v['flashes_per_clip']:.2f} |"
          for k, v in a["per_class"].items()], "",
        f"## (b) Image captions control single frames: {_images_verdict(b, settings['guidance'], more_images)}", "",
        f"{b['n']} single frames (F = 1) per caption, classes in turn. Controlled: one object of the right class, "
        f"flashed (flash fraction >= {FLASH_THRESHOLD:.3g}) exactly when the caption says struck (gate >= {BARS['images']} for each).", "",
        "| caption | controlled | right class, one object | flashed | mean flash fraction |", "|---|---|---|---|---|",
        *[f"| `a {w}{{class}}` | {b[k]['controlled']:.3f} | {b[k]['right_class']:.3f} | {b[k]['flashed']:.3f} | "
          f"{b[k]['mean_flash']:.2f} |" for k, w in (("struck", "struck "), ("plain", ""))], "",
    ]
    if more_images:
        lines += [
            "The same captions and samples at other guidance scales (`--image-guidance`):", "",
            "| guidance | controlled: struck / plain | right class, one object: struck / plain | flashed: struck / plain |",
            "|---|---|---|---|",
            *[f"| {r['guidance']:g} | {r['struck']['controlled']:.3f} / {r['plain']['controlled']:.3f} | "
              f"{r['struck']['right_class']:.3f} / {r['plain']['right_class']:.3f} | "
              f"{r['struck']['flashed']:.3f} / {r['plain']['flashed']:.3f} |" for r in more_images], "",
        ]
    lines += [
        f"## (c) The oracle: per-frame text prompts: {_timing_verdict(cs, g)}", "",
        f"The first {cs[0]['n']} test clips of the toy world (the demo's), sampled with `a struck {{class}}` on their "
        "event frames" + (", `a ringing {class}` on the frame after each" if cs[0].get("ringing") else "")
        + " and `a {class}` on the others. Bars: flash, jump and both on the exact event frame >= "
        f"{BARS['event_exact']} of events; chance (another clip's events) <= {BARS['chance']}; AV-Align >= "
        f"{BARS['av_align']}. Ground truth scores 1.0 on every probe figure. With the demo's sampler, `m` is the "
        "per-frame prompts' text states averaged over the clip's frames (the demo averages the audio tokens).", "",
    ]
    for r in cs:
        lines += [f"Sampled with {sampler_name(r, g)}: {_mark(timing_passed(r))}.", "", *timing_table(r), ""]
    if oracle is not None:
        rs = oracle["result"] if isinstance(oracle["result"], (list, tuple)) else [oracle["result"]]
        st = oracle["settings"]
        lines += [
            f"## (c) The oracle: tokens fitted from ground-truth events: {_timing_verdict(rs, g)}", "",
            f"`av_lightning.toy.controllability` (mode `{st['mode']}`): {st['state_tokens']} learnt tokens per event "
            "state (quiet, event frame, the frame after) and one per class, fitted by the adapter's denoising loss "
            f"from the ground-truth events of fresh clips ({st['steps']} steps, batch {st['batch_size']}, lr {st['lr']:g}; "
            f"final loss {oracle['final_loss']:.4f}), prompt `a <audio>`, then the same clips as above sampled with "
            "their own events' tokens (with the demo's sampler, `m` has every frame's tokens replaced by their mean "
            "over the clip, as in the demo).", "",
        ]
        for r in rs:
            lines += [f"Sampled with {sampler_name(r, g)}: {_mark(timing_passed(r))}.", "", *timing_table(r), ""]
    if recipe:
        lines += [
            "## Training", "",
            f"- command: `{recipe.get('command', '')}`; init: `{recipe.get('init')}`",
            f"- device: {recipe.get('device')}; seed {recipe.get('seed')}; {recipe.get('steps')} steps in "
            f"{len(recipe.get('sittings', []))} sitting(s), {recipe.get('seconds', 0) / 60:.0f} min",
            f"- video loss: first {recipe.get('first_loss', float('nan')):.4f}, final "
            f"{recipe.get('final_loss', float('nan')):.4f}; image loss per log interval: first "
            f"{(recipe.get('image_loss_curve') or [float('nan')])[0]:.4f}, final "
            f"{(recipe.get('image_loss_curve') or [float('nan')])[-1]:.4f}", "",
        ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import json

    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.demo import backbone_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default=None, help="diffusers folder (default: the shipped toy backbone)")
    p.add_argument("--n", type=int, default=64, help="samples per gate")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="DDIM steps (the demo's)")
    p.add_argument("--guidance", type=float, default=DEMO_GUIDANCE, help="CFG scale (the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--oracle-steps", type=int, default=0, help="also fit oracle tokens this many steps (0: skip)")
    p.add_argument("--report", default=None, help="markdown report (e.g. docs/results/toy_backbone.md)")
    p.add_argument("--image-guidance", type=float, nargs="*", default=[1.0],
                   help="gate (b) also at these CFG scales (default 1: the conditional model alone)")
    p.add_argument("--temporal-guidance", type=float, default=DEMO_TEMPORAL_GUIDANCE,
                   help="gate (c) also with the demo's temporal guidance at this scale (0: classifier-free guidance only)")
    p.add_argument("--ringing", choices=("auto", "on", "off"), default="auto",
                   help="gate (c): 'a ringing {class}' on the frame after each event (auto: when the backbone's "
                        "recipe.json trained such captions)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    path = args.backbone or backbone_path()
    backbone = DiffusersT2V(pretrained=path).to(args.device)
    kw = dict(steps=args.steps, guidance_scale=args.guidance, seed=args.seed)
    recipe_path = Path(path) / "recipe.json"
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else None
    ringing = uses_ringing(recipe) if args.ringing == "auto" else args.ringing == "on"
    a = gate_video(backbone, args.n, **kw)
    print(f"(a) coherent {a['coherent_fraction']:.3f}, flashes/clip {a['flashes_per_clip']:.2f}, jumps/clip "
          f"{a['jumps_per_clip']:.2f}, flashes with a jump {a['flashes_with_jump']:.2f}", flush=True)
    b = gate_images(backbone, args.n, **kw)
    print(f"(b) struck {b['struck']}, plain {b['plain']}", flush=True)
    more_images = []
    for g in args.image_guidance:
        if g != args.guidance:
            more_images.append(dict(gate_images(backbone, args.n, **{**kw, "guidance_scale": g}), guidance=g))
            print(f"(b) at guidance {g:g}: struck {more_images[-1]['struck']}, plain {more_images[-1]['plain']}", flush=True)
    clips = held_out_clips(args.n)
    samplers = [None] + ([args.temporal_guidance] if args.temporal_guidance else [])
    c = [gate_frame_text(backbone, clips, **kw, ringing=ringing, temporal_guidance_scale=wt) for wt in samplers]
    for r in c:
        print(f"(c) text, {sampler_name(r, args.guidance)}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if isinstance(v, float)), flush=True)
    oracle = None
    if args.oracle_steps:
        from av_lightning.toy import controllability as ctl

        settings = dict(mode="class+state", steps=args.oracle_steps, batch_size=16, lr=1e-2, state_tokens=6)
        tokens, losses = ctl.train_oracle(backbone, settings["mode"], args.oracle_steps, settings["batch_size"],
                                          settings["lr"], state_tokens=settings["state_tokens"])
        rs = [ctl.evaluate_oracle(backbone, tokens, clips, **kw, temporal_guidance_scale=wt) for wt in samplers]
        oracle = {"result": rs, "settings": settings, "final_loss": float(np.mean(losses[-50:]))}
        for r in rs:
            print(f"(c) tokens, {sampler_name(r, args.guidance)}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in r.items() if isinstance(v, float)), flush=True)
    if args.report:
        shown = " ".join(argv if argv is not None else sys.argv[1:])
        settings = dict(argv=shown, seconds=time.time() - t0, steps=args.steps, guidance=args.guidance, seed=args.seed)
        write_report(args.report, args.backbone or "av_lightning/assets/toy_backbone", a, b, c, oracle, settings, recipe,
                     more_images)
        print(f"report: {args.report}")
    return {"video": a, "images": b, "images_more_guidance": more_images, "frame_text": c, "oracle": oracle}


if __name__ == "__main__":
    main()
