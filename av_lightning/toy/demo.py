"""``make demo``: train a TempoTokens adapter on the toy world and score it against the baselines.

Steps (all on the CPU; a fixed number of training steps, so every machine trains the same adapter):

1. write the toy world to ``data/toy`` when it is missing (``ToyWorldDataModule.prepare_data``);
2. ``lightning fit`` of ``configs/toy.yaml`` through the project's CLI (progress bar, TensorBoard
   logs under ``runs/toy/demo``), the frozen shipped toy backbone resolved from the package;
3. sample the held-out clips (fixed seed) with the text-only baseline (``a {label}``), the
   unconditional baseline (empty prompt), the adapter (``a <audio>``, audio only) and text+audio
   (``a {label} <audio>``, paper Table 2);
4. score AV-Align (paper mode) of ground truth and of each condition, and the analytic probe's
   class accuracy (the colour of the object's pixels) and event timing (the flash and the jump on
   the exact event frame, and jumps within ±1 frame) against the ground-truth events;
5. write ``docs/results/toy.md``, a contact sheet PNG and a few mp4 files with their audio.

    python -m av_lightning.toy.demo [--max-steps 300] [--sample-steps 8] [--guidance 3]
    python -m av_lightning.toy.demo --adapter runs/toy/demo/version_0/adapter.safetensors   # score, no training
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from av_lightning.pipeline import temporal_scale
from av_lightning.toy.timing import DEMO_STEPS

REPO = Path(__file__).resolve().parents[2]
CONDITIONS = (("text", "text-only baseline (`a {label}`)"), ("none", "unconditional baseline (empty prompt)"),
              ("audio", "adapter, audio only (`a <audio>`)"), ("text+audio", "adapter, text+audio (`a {label} <audio>`)"))
#: the demo's bars: adapter AV-Align >= text-only + margin and >= floor; adapter class accuracy >= class
BARS = {"margin": 0.2, "floor": 0.6, "class": 0.9}


def backbone_path() -> str:
    """Absolute path of the shipped toy backbone inside the installed package."""
    path = importlib.resources.files("av_lightning") / "assets/toy_backbone"
    if not Path(str(path)).is_dir():
        raise FileNotFoundError(f"the shipped toy backbone is missing at {path}; reinstall the package or run make toy-backbone")
    return str(path)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fit(configs: Sequence[str], overrides: Sequence[str] = (), run: bool = True):
    """``fit`` through the project's LightningCLI; returns the CLI (model, datamodule, trainer).

    ``run=False`` builds the same model, data and trainer without training."""
    from av_lightning.cli import cli_main

    args = (["fit"] if run else []) + [x for c in configs for x in ("--config", str(c))]
    args += [f"--model.init_args.backbone.init_args.pretrained={backbone_path()}", *overrides]
    return cli_main(args, run=run)


def training_text(trainer) -> str:
    """The optimizer and its schedule, e.g. ``AdamW, OneCycleLR (max_lr 0.004, 200 steps)``."""
    opt = trainer.optimizers[0]
    text = type(opt).__name__
    schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
    if not schedulers:
        return f"{text} lr {opt.param_groups[0]['lr']:g}"
    s = schedulers[0]
    # OneCycleLR keeps its peak in each group's max_lr; other schedules start from their base_lrs
    peak = max(g.get("max_lr", b) for g, b in zip(opt.param_groups, s.base_lrs))
    total = getattr(s, "total_steps", None)
    return f"{text}, {type(s).__name__} (peak lr {peak:g}" + (f", {total} steps)" if total else ")")


def step_overrides(configs: Sequence[str], max_steps: int, overrides: Sequence[str] = ()) -> list[str]:
    """``--trainer.max_steps`` and, when the configs' learning-rate schedule has a fixed length
    (OneCycleLR's ``total_steps``), the same length for the schedule, so it spans the run."""
    from av_lightning.cli import parse_configs

    out = [f"--trainer.max_steps={max_steps}"]
    schedule = parse_configs(configs, overrides).model.init_args.get("lr_scheduler")
    if schedule is not None and "total_steps" in (schedule.get("init_args") or {}):
        out.append(f"--model.init_args.lr_scheduler.init_args.total_steps={max_steps}")
    return out


def test_clips(datamodule, num: int) -> dict:
    """The first ``num`` test clips as one batch, with their event frames from the manifest."""
    from av_lightning.data.datamodules import read_manifest

    datamodule.setup("test")
    parts: list[dict] = []
    n = 0
    for batch in datamodule.test_dataloader():
        parts.append(batch)
        n += batch["frames"].shape[0]
        if n >= num:
            break
    out = {k: torch.cat([p[k] for p in parts])[:num] if torch.is_tensor(parts[0][k]) else
           [x for p in parts for x in p[k]][:num] for k in parts[0]}
    events = {r["ytid"]: [int(e) for e in str(r.get("events", "")).split()] for r in read_manifest(datamodule.manifest)}
    out["events"] = [events.get(i, []) for i in out["id"]]
    return out


def align(videos: torch.Tensor, audio: torch.Tensor, fps: float, sample_rate: int) -> dict:
    """AV-Align (paper mode) mean over clips with peaks, and the number of clips without any peak."""
    from av_lightning.metrics.alignment import align_clips

    clips = align_clips(videos, audio, fps=fps, sample_rate=sample_rate, mode="paper")
    scores = [c.score for c in clips if not c.empty]
    return {"av_align": float(np.mean(scores)) if scores else float("nan"), "av_align_empty": sum(c.empty for c in clips)}


def score(videos: torch.Tensor, clips: dict, fps: float, sample_rate: int) -> dict:
    from av_lightning.toy.probe import probe_summary

    out = align(videos, clips["audio"], fps, sample_rate)
    out.update(probe_summary(videos, clips["label"], clips["events"]))
    return out


def evaluate(model, clips: dict, modes: Sequence[str], sample_steps: int, guidance_scale: float, seed: int,
             temporal_guidance_scale: Optional[float] = None) -> dict:
    """Sample every clip once per conditioning mode (one batch per mode) and score it.

    ``temporal_guidance_scale`` applies to the audio modes (None: the model's; 0: off).

    Returns ``{mode: {"videos": uint8 (B, F, 3, H, W), "seconds": float, metric: value, ...}}``.
    """
    model.eval()
    H, W = clips["frames"].shape[-2:]
    fps, sr = model.hparams.fps, model.hparams.sample_rate
    batch = {"audio": clips["audio"], "label": list(clips["label"])}
    results = {}
    for mode in modes:
        t = time.time()
        # the unconditional branch and the condition coincide without a prompt: no CFG needed
        g = 1.0 if mode == "none" else guidance_scale
        videos = model.sample(batch, mode, height=H, width=W, steps=sample_steps, guidance_scale=g, seed=seed,
                              temporal_guidance_scale=temporal_guidance_scale)
        results[mode] = {"videos": videos, "seconds": time.time() - t, **score(videos, clips, fps, sr)}
        print(f"  {mode:>10}: AV-Align {results[mode]['av_align']:.3f}, class accuracy "
              f"{results[mode]['class_accuracy']:.3f} ({results[mode]['seconds']:.0f} s)", flush=True)
    return results


def upscale(frames: torch.Tensor, k: int) -> torch.Tensor:
    return frames.repeat_interleave(k, dim=-1).repeat_interleave(k, dim=-2)


def write_sheet(rows: Sequence[torch.Tensor], path: Path, zoom: int = 4) -> Path:
    """Rows of ``(F, 3, H, W)`` clips -> one PNG, one clip per row (with a 1-pixel gap per frame)."""
    from av_lightning.data.io import write_contact_sheet

    frames = torch.cat([upscale(r, zoom) for r in rows])
    frames = torch.nn.functional.pad(frames, (0, 1, 0, 1), value=255)
    return write_contact_sheet(frames, path, columns=rows[0].shape[0], max_frames=frames.shape[0])


def write_samples(clips: dict, results: dict, out: Path, fps: float, sr: int, n: int = 4) -> list[Path]:
    from av_lightning.data.io import write_video

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(n, len(clips["id"]))):
        for name, videos in [("gt", clips["frames"])] + [(m, r["videos"]) for m, r in results.items()]:
            p = out / f"{clips['id'][i]}_{name}.mp4"
            write_video(p, upscale(videos[i], 8), fps=fps, audio=clips["audio"][i], sample_rate=sr)
            paths.append(p)
    return paths


def table(gt: dict, results: dict, labels: dict) -> str:
    """Two markdown tables: AV-Align and class, then event timing against the ground-truth events."""
    rows = [("ground truth", gt)] + [(labels[m], results[m]) for m in results]
    lines = ["| | AV-Align (paper) | class accuracy | one object of the class | jumps per clip | flashes per clip |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['av_align']:.3f} | {r['class_accuracy']:.3f} | {r['coherent_fraction']:.3f} | "
              f"{r['jumps_per_clip']:.2f} | {r['flashes_per_clip']:.2f} |" for name, r in rows]
    lines += ["", "Event timing against the clip's ground-truth events (recall / precision):", "",
              "| | flash and jump on the event frame (recall) | flash, exact frame | jump, exact frame | jump ±1 frame |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['event_exact_recall']:.3f} | {r['flash_exact_recall']:.3f} / {r['flash_exact_precision']:.3f} | "
              f"{r['jump_exact_recall']:.3f} / {r['jump_exact_precision']:.3f} | "
              f"{r['event_recall']:.3f} / {r['event_precision']:.3f} |" for name, r in rows]
    return "\n".join(lines)


def temporal_text(args) -> str:
    """The report's words for the audio rows' temporal guidance ('' when it is plain CFG)."""
    if not args.temporal_guidance:
        return ""
    return (f"; the two adapter rows with temporal guidance {args.temporal_guidance:g} in the noisier half of the "
            f"steps (the timing, the part of the conditioning that differs between frames, guided against the "
            f"clip-mean tokens: `av_lightning/pipeline.py`; `--temporal-guidance 0` samples them with "
            f"classifier-free guidance only)")


def verdict(results: dict) -> str:
    """The demo's bars (:data:`BARS`), met or not, with the numbers."""
    a, t = results["audio"], results["text"]
    margin, floor, cls = (a["av_align"] - t["av_align"] >= BARS["margin"], a["av_align"] >= BARS["floor"],
                          a["class_accuracy"] >= BARS["class"])
    def word(ok: bool) -> str:
        return "met" if ok else "NOT met"
    return (f"adapter (audio only) − text-only AV-Align = {a['av_align'] - t['av_align']:+.3f} (bar +{BARS['margin']}: "
            f"{word(margin)}); adapter AV-Align {a['av_align']:.3f} (bar {BARS['floor']}: {word(floor)}); adapter class "
            f"accuracy {a['class_accuracy']:.3f} (bar {BARS['class']}: {word(cls)})")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", action="append", default=None, help="LightningCLI YAML (default configs/toy.yaml; repeat to overlay)")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (default: the config's)")
    p.add_argument("--max-time", type=float, default=None,
                   help="optional training wall-clock limit in minutes (off: a fixed number of steps)")
    p.add_argument("--num-test", type=int, default=64, help="held-out clips to sample")
    p.add_argument("--sample-steps", type=int, default=DEMO_STEPS, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the config's guidance_scale)")
    p.add_argument("--temporal-guidance", type=float, default=None,
                   help="temporal guidance scale of the adapter rows (default: the config's temporal_guidance_scale; "
                        "0: classifier-free guidance only)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--adapter", default=None, help="score this saved adapter (.safetensors) instead of training one")
    p.add_argument("--report", default=str(REPO / "docs/results/toy.md"), help="markdown report ('' for none)")
    p.add_argument("--samples", default="runs/toy/samples", help="mp4 output folder")
    args, overrides = p.parse_known_args(argv)
    configs = args.config or [str(REPO / "configs/toy.yaml")]
    t0 = time.time()
    load0 = load_average()
    train_over = list(overrides)
    if args.max_steps is not None:
        train_over += step_overrides(configs, args.max_steps, overrides)
    if args.max_time is not None:
        minutes = int(args.max_time)
        seconds = round((args.max_time - minutes) * 60)
        train_over.append(f"--trainer.max_time=00:{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}")
    if args.adapter:  # score a saved adapter: the config's model, data and sampler, no training
        adapter = Path(args.adapter)
        if not adapter.is_file():
            raise SystemExit(f"--adapter {adapter}: no such file (the demo writes runs/toy/demo/version_N/adapter.safetensors)")
        cli = fit(configs, train_over, run=False)
        model, data, trainer = cli.model, cli.datamodule, cli.trainer
        data.prepare_data()
        model.load_adapter(adapter)
        t_fit, steps_done, log_dir = time.time() - t0, None, str(adapter.parent)
        training = f"none: the saved adapter `{adapter}` was scored"
    else:
        cli = fit(configs, train_over)
        model, data, trainer = cli.model, cli.datamodule, cli.trainer
        t_fit = time.time() - t0
        steps_done = trainer.global_step
        log_dir = trainer.log_dir
        adapter = Path(log_dir) / "adapter.safetensors"
        model.save_adapter(adapter)
        print(f"trained {steps_done} steps in {t_fit:.0f} s; adapter {adapter}", flush=True)
        training = (f"{steps_done} steps (max_steps {trainer.max_steps}), batch {data.batch_size}, "
                    f"{training_text(trainer)}, {t_fit:.0f} s including the world check and model load")

    clips = test_clips(data, args.num_test)
    fps, sr = model.hparams.fps, model.hparams.sample_rate
    gt = score(clips["frames"], clips, fps, sr)
    print(f"  ground truth: AV-Align {gt['av_align']:.3f}", flush=True)
    if args.guidance is None:
        args.guidance = float(model.hparams.guidance_scale)
    if args.temporal_guidance is None:
        args.temporal_guidance = model.hparams.get("temporal_guidance_scale")
    args.temporal_guidance = temporal_scale("audio", args.temporal_guidance) or 0.0
    results = evaluate(model, clips, [m for m, _ in CONDITIONS], args.sample_steps, args.guidance, args.seed,
                       args.temporal_guidance)
    t_total = time.time() - t0
    load1 = load_average()

    # the contact sheet goes beside the report (docs/results by default), else beside the mp4 files
    results_dir = Path(args.report).parent if args.report else Path(args.samples)
    results_dir.mkdir(parents=True, exist_ok=True)
    sheet = write_sheet([c for i in range(min(4, len(clips["id"]))) for c in (clips["frames"][i], results["text"]["videos"][i],
                                                       results["audio"]["videos"][i])],
                        results_dir / "toy_contact_sheet.png")
    samples = write_samples(clips, results, Path(args.samples), fps, sr)
    labels = dict(CONDITIONS)
    tab = table(gt, results, labels)
    print(tab)
    print(verdict(results))
    if args.report:
        from av_lightning.data.toyworld import FLASH
        from av_lightning.toy.probe import FLASH_THRESHOLD

        hp = model.hparams
        Path(args.report).write_text(f"""# Toy world: TempoTokens adapter vs baselines

Written by `make demo` (`python -m av_lightning.toy.demo`). The adapter (mel encoder → AudioMapper →
TempoTokens, `{type(model.tokens).__name__}` windows={model.tokens.windows!r}) was trained against the
frozen shipped toy backbone (`av_lightning/assets/toy_backbone`, its text-only quality gate in
[toy_backbone.md](toy_backbone.md)); {len(clips['id'])} held-out test clips were sampled once per condition
with DDIM {args.sample_steps} steps, guidance {args.guidance} (none for the unconditional baseline), seed {args.seed}{temporal_text(args)}.

{tab}

{verdict(results)}.

- AV-Align: paper mode (SuperFlux onsets, Horn–Schunck flow peaks, ±1 frame), mean over clips with
  peaks; clips without any peak: GT {gt['av_align_empty']}, text {results['text']['av_align_empty']},
  uncond {results['none']['av_align_empty']}, audio {results['audio']['av_align_empty']}, text+audio
  {results['text+audio']['av_align_empty']}.
- class accuracy: fraction of frames whose object colour is the clip's class (`av_lightning/toy/probe.py`);
  flash: the object's colour at least {FLASH_THRESHOLD:.3g} of the way to white (events flash {FLASH:g}); jump: the centroid
  moves >= 2 px, a local maximum. "Exact frame" counts only the event frame itself (chance about 0.27
  on these clips), ±1 frame about 0.6.

![contact sheet](toy_contact_sheet.png)

Contact sheet: for 4 test clips, rows ground truth / text-only / adapter, audio only (12 frames each, ×4).
mp4 files with their audio (GT and each condition, ×8): `{args.samples}/` (not committed).

The backbone's gates (coherence, image captions, and the oracle: per-frame text and tokens fitted from
the ground-truth events): [toy_backbone.md](toy_backbone.md). Earlier configurations and what each
changed: [toy_history.md](toy_history.md).

## Run

| | |
|---|---|
| command | `make demo` = `python -m av_lightning.toy.demo {' '.join(argv or [])}`|
| configs | {', '.join(f'`{os.path.relpath(c, REPO)}`' for c in configs)} |
| training | {training} |
| prompts | audio `{hp.audio_prompt}`, text `{hp.text_prompt}`, text+audio `{hp.text_audio_prompt}` |
| sampling seconds | {', '.join(f"{m} {r['seconds']:.0f}" for m, r in results.items())} |
| wall time | {t_total:.0f} s ({t_total / 60:.1f} min) |
| load average (1, 5, 15 min) | start {load0}; end {load1} (2 CPU cores, shared with other work: timings are noisy) |
| TensorBoard | `tensorboard --logdir {os.path.relpath(log_dir, os.getcwd())}` |
| adapter | `{os.path.relpath(adapter, os.getcwd())}` |
""")
    print(f"\nresults: {args.report}\ncontact sheet: {sheet}\nsamples: {args.samples}/ ({len(samples)} mp4)\n"
          f"logs: {log_dir} (tensorboard --logdir {log_dir})\nadapter: {adapter}\nwall time {t_total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
