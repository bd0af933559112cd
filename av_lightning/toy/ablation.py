"""``make ablation``: the paper's Tables 2-4 as config overlays over one base config, over seeds.

Each ``configs/ablation/*.yaml`` holds only the keys it changes (conditioning text / audio /
text+audio; ``vec`` or 1-5 window scales; a 2- or 4-layer mapper). For every overlay and every
seed this trains the adapter with ``base + overlay`` through the project's LightningCLI for a fixed
number of steps (``--max-steps``, default the base config's; nothing trains for text-only conditioning), samples the first
``--num-test`` test clips in the run's conditioning mode and scores AV-Align (paper mode) and, on
the toy world, the probe's class accuracy and event timing. An overlay whose every key already
has that value in the base (on the toy base: ``win5``, ``mapper4`` and ``cond_audio`` are the base
itself) is trained once per seed and its row shared. Rows are means ± standard deviations over
the seeds (the seed of the adapter's initialisation, its training noise and the sampling noise).
The table and a PNG with error bars go to ``docs/results/ablation.md``, rewritten after every
run, so an interrupted sweep leaves what finished.

    python -m av_lightning.toy.ablation --config configs/toy.yaml [--only win1 win5] [--seeds 0 1 2]
    make ablation CONFIG=configs/vggsound.yaml      # the same overlays on a real dataset
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from av_lightning.pipeline import temporal_scale
from av_lightning.toy.demo import REPO, align, backbone_path, load_average, step_overrides, test_clips

# (overlay, table, row label) in the order of the paper's tables
OVERLAYS = [
    ("cond_text", "Table 2: conditioning", "text"),
    ("cond_audio", "Table 2: conditioning", "audio"),
    ("cond_text_audio", "Table 2: conditioning", "text+audio"),
    ("vec", "Table 3: context", "vec"),
    ("win1", "Table 3: context", "win. 1-res."),
    ("win2", "Table 3: context", "win. 2-res."),
    ("win3", "Table 3: context", "win. 3-res."),
    ("win4", "Table 3: context", "win. 4-res."),
    ("win5", "Table 3: context", "win. 5-res."),
    ("mapper2", "Table 4: mapper", "2 layers"),
    ("mapper4", "Table 4: mapper", "4 layers"),
]
RUN_ORDER = [o for o, _, _ in OVERLAYS]
TOY_BACKBONE = "av_lightning/assets/toy_backbone"
#: figures averaged over seeds (when measured)
FIGURES = ("av_align", "class_accuracy", "event_exact_recall", "jump_exact_recall", "flash_exact_recall",
           "event_recall", "event_precision")


def _leaves(tree, prefix: tuple = ()) -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(_leaves(v, prefix + (k,)))
    return out


def is_base(base: str, overlay: Path) -> bool:
    """Whether every key the overlay sets already has that value in the base config (a no-op)."""
    have = _leaves(yaml.safe_load(Path(base).read_text()) or {})
    want = _leaves(yaml.safe_load(Path(overlay).read_text()) or {})
    return all(have.get(k, object()) == v for k, v in want.items())


def run_one(base: str, overlay: Path, name: str, seed: int, args, log_root: str, adapter: str | None = None,
            trained: dict | None = None) -> dict:
    """Train (unless nothing trains) and evaluate one overlay with one seed; returns the run's figures.

    A trained adapter is written to ``<log_root>/<name>_s<seed>/adapter.safetensors`` (the row's
    ``adapter``). Given ``adapter`` (that file, from an earlier sweep) nothing trains: the adapter is
    loaded and only sampled, and ``trained`` (the earlier row) supplies the training figures."""
    from av_lightning.cli import cli_main

    text = Path(base).read_text()
    is_toy = TOY_BACKBONE in text
    configs = ["--config", base, "--config", str(overlay)]
    over = [f"--seed_everything={seed}", f"--model.init_args.seed={seed}"]
    if args.max_steps is not None:
        over += step_overrides([base, str(overlay)], args.max_steps)
    if args.device:
        over.append(f"--trainer.accelerator={args.device}")
    if "TensorBoardLogger" in text:  # one log folder per overlay and seed
        over += [f"--trainer.logger.init_args.save_dir={log_root}", f"--trainer.logger.init_args.name={name}_s{seed}"]
    if is_toy:
        over.append(f"--model.init_args.backbone.init_args.pretrained={backbone_path()}")
    t0 = time.time()
    cli = cli_main([*configs, *over], run=False)
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    mode = model.hparams.conditioning
    saved = None
    if adapter is not None:
        model.load_adapter(adapter)  # refuses an adapter whose keys or shapes do not fit base + overlay
        saved = Path(adapter)
    elif mode in ("audio", "text+audio"):
        out = Path(log_root) / f"{name}_s{seed}"
        for cb in trainer.checkpoint_callbacks:  # not the base config's folder, which its own training uses
            cb.dirpath = os.fspath(out / "checkpoints")
        trainer.fit(model, datamodule=data)
        out.mkdir(parents=True, exist_ok=True)
        saved = out / "adapter.safetensors"
        model.save_adapter(saved)
    t_fit = time.time() - t0
    clips = test_clips(data, args.num_test)
    H, W = clips["frames"].shape[-2:]
    guidance = float(model.hparams.guidance_scale) if args.guidance is None else args.guidance
    temporal = model.hparams.get("temporal_guidance_scale") if args.temporal_guidance is None else args.temporal_guidance
    temporal = temporal_scale(mode, temporal)
    t1 = time.time()
    model.eval()
    videos = model.sample({"audio": clips["audio"], "label": list(clips["label"])}, mode, height=H, width=W,
                          steps=args.sample_steps, guidance_scale=guidance,
                          temporal_guidance_scale=temporal or 0.0, seed=seed)
    fps, sr = model.hparams.fps, model.hparams.sample_rate
    steps, train_s = (trained["steps"], trained["train_s"]) if trained else (trainer.global_step, round(t_fit))
    row = {"overlay": name, "seed": seed, "mode": mode, "steps": steps, "guidance": guidance,
           "temporal_guidance": temporal, "train_s": train_s,
           "sample_s": round(time.time() - t1), **align(videos.cpu(), clips["audio"], fps, sr)}
    if saved is not None:
        row["adapter"], row["adapter_sha256"] = _shown(saved), _sha256(saved)
    if trained:
        row["resampled"] = True
    if is_toy:
        from av_lightning.toy.probe import probe_summary

        row.update(probe_summary(videos.cpu(), clips["label"], clips["events"]))
    return row


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as the report records it), else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def finished_runs(path: Path, args) -> dict:
    """``--resume``: the runs of an earlier sweep's JSON, by (overlay, seed), that match this sweep's
    settings (base config, test clips, sampler, guidance when given, and training steps)."""
    return earlier_runs(path, args)[0]


def earlier_runs(path: Path, args) -> tuple[dict, dict]:
    """``--resume``: the earlier sweep's runs, by (overlay, seed), as ``(keep, resample)``. ``keep``: the
    runs that match this sweep's settings (:func:`finished_runs`). ``resample``: the trained runs that
    match in everything but the guidance and whose adapter file is still the one they trained (same
    SHA-256: a later sweep may have written another there); only their sampling is redone (the adapter
    does not depend on the sampler)."""
    if not path.is_file():
        return {}, {}
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"--resume: {path} is not valid JSON ({err}); delete it to start the sweep afresh") from None
    settings = old.get("settings", {})
    want = {"config": os.path.relpath(args.config, REPO), "num_test": args.num_test, "sample_steps": args.sample_steps}
    if any(settings.get(k) != v for k, v in want.items()):
        print(f"--resume: {path} was written with other settings ({settings}); running every job", flush=True)
        return {}, {}
    base = yaml.safe_load(Path(args.config).read_text()) or {}
    steps = args.max_steps
    if steps is None:  # the base config's
        steps = base.get("trainer", {}).get("max_steps")
    temporal = args.temporal_guidance
    if temporal is None:
        temporal = base.get("model", {}).get("init_args", {}).get("temporal_guidance_scale")
    keep, resample = {}, {}
    for r in old.get("runs", []):
        if r.get("shared_with") or r.get("steps") not in (0, steps):  # 0: text-only trains nothing
            continue
        key = (r["overlay"], r["seed"])
        if ((args.guidance is None or r.get("guidance") == args.guidance)
                and r.get("temporal_guidance") == temporal_scale(r.get("mode", "audio"), temporal)):
            keep[key] = r
        elif r.get("adapter") and r.get("steps"):
            adapter = Path(r["adapter"]) if Path(r["adapter"]).is_absolute() else REPO / r["adapter"]
            if adapter.is_file() and r.get("adapter_sha256") == _sha256(adapter):
                resample[key] = (str(adapter), r)
    return keep, resample


def aggregate(runs: list[dict]) -> list[dict]:
    """One row per overlay: mean and (population) standard deviation of :data:`FIGURES` over its seeds."""
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["overlay"], []).append(r)
    rows = []
    for name, rs in by.items():
        row = {"overlay": name, "seeds": [r["seed"] for r in rs], "steps": rs[0]["steps"],
               "train_s": round(float(np.mean([r["train_s"] for r in rs]))),
               "sample_s": round(float(np.mean([r["sample_s"] for r in rs]))), "shared_with": rs[0].get("shared_with")}
        for key in FIGURES:
            vals = [r[key] for r in rs if key in r and r[key] == r[key]]  # drop NaN (no peaks anywhere)
            if vals:
                row[key], row[f"{key}_std"] = float(np.mean(vals)), float(np.std(vals))
        rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> Path:
    """Horizontal bars of mean AV-Align (and class accuracy) per overlay with ±1 std error bars (PIL)."""
    from PIL import Image, ImageDraw

    bar_w, label_w, row_h = 300, 130, 26
    img = Image.new("RGB", (label_w + bar_w + 110, 30 + row_h * len(rows) + 10), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 4), "AV-Align (blue) and class accuracy (orange), mean ± std over seeds, 0..1", fill="black")
    for i, r in enumerate(rows):
        y = 30 + i * row_h
        d.text((4, y + 6), r["label"], fill="black")
        h = (row_h - 6) // 2
        for j, (key, colour) in enumerate((("av_align", (60, 110, 220)), ("class_accuracy", (240, 150, 40)))):
            v = r.get(key)
            if v is None:
                continue
            top, bottom = y + j * h, y + (j + 1) * h - 1
            d.rectangle([label_w, top, label_w + int(bar_w * max(0.0, min(1.0, v))), bottom], fill=colour)
            s = r.get(f"{key}_std", 0.0)
            lo, hi = (label_w + int(bar_w * max(0.0, min(1.0, x))) for x in (v - s, v + s))
            mid = (top + bottom) // 2
            d.line([lo, mid, hi, mid], fill="black")
            d.line([lo, top, lo, bottom], fill="black")
            d.line([hi, top, hi, bottom], fill="black")
            if j == 0:
                d.text((label_w + bar_w + 6, y + 6), f"{v:.2f} ± {s:.2f}", fill="black")
        d.line([label_w, 28, label_w, 30 + row_h * len(rows)], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _pm(r: dict, key: str) -> str:
    return f"{r[key]:.3f} ± {r[f'{key}_std']:.3f}" if key in r else "–"


def _steps(runs: list[dict], args) -> str:
    values = sorted({r["steps"] for r in runs if r.get("steps")})
    return " / ".join(map(str, values)) or (str(args.max_steps) if args.max_steps else "the config's")


def _guidance(runs: list[dict]) -> str:
    values = sorted({r["guidance"] for r in runs if "guidance" in r})
    text = " / ".join(f"{g:g}" for g in values) or "the config's"
    temporal = sorted({r["temporal_guidance"] for r in runs if r.get("temporal_guidance") is not None})
    if temporal:
        text += (", temporal guidance " + " / ".join(f"{g:g}" for g in temporal)
                 + " in the audio rows (the timing guided apart from the class: `av_lightning/pipeline.py`)")
    return text


def write_report(runs: list[dict], args, base: str, started: str, load0: str, report: Path, pending: list[str],
                 left_out: Sequence[str] = ()) -> None:
    """Rewrite the report. ``pending``: this sweep's runs still to come; ``left_out``: the paper's
    overlays that this sweep does not run at all (``--only``), named so that a table with rows
    missing never reads as complete."""
    labels = {o: (t, lab) for o, t, lab in OVERLAYS}
    order = {o: i for i, (o, _, _) in enumerate(OVERLAYS)}
    rows = sorted(aggregate(runs), key=lambda r: order.get(r["overlay"], len(order)))
    for r in rows:
        r["table"], r["label"] = labels.get(r["overlay"], ("other", r["overlay"]))
    png = plot(rows, report.with_suffix(".png"))
    has_probe = any("class_accuracy" in r for r in rows)
    head = "| table | row | overlay | AV-Align |" + (
        " class accuracy | flash and jump on the event frame | jump recall (±1) |" if has_probe else "") + " steps | train s | sample s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        probe = f" {_pm(r, 'class_accuracy')} | {_pm(r, 'event_exact_recall')} | {_pm(r, 'event_recall')} |" if has_probe else ""
        shared = f" (= `{r['shared_with']}`)" if r.get("shared_with") else ""
        lines.append(f"| {r['table']} | {r['label']} | `{r['overlay']}`{shared} | {_pm(r, 'av_align')} |{probe} "
                     f"{r['steps']} | {r['train_s']} | {r['sample_s']} |")
    status = ("all overlays finished" if not pending and not left_out else "**partial**")
    if pending:
        status += f": not run (the sweep stopped before them): {', '.join(f'`{p}`' for p in pending)}"
    if left_out:
        status += f"{';' if pending else ':'} not in this sweep (`--only`): {', '.join(f'`{o}`' for o in left_out)}"
    argv = " ".join(args.argv)
    report.write_text(f"""# Ablations (paper Tables 2-4)

Written by `make ablation` (`python -m av_lightning.toy.ablation {argv}`), base config `{base}`,
one overlay of `configs/ablation/` at a time, seeds {', '.join(map(str, args.seeds))}. Each run:
{_steps(runs, args)} training steps (text-only conditioning trains nothing), then the first
{args.num_test} test clips sampled with the run's seed, DDIM {args.sample_steps} steps, guidance
{_guidance(runs)}. AV-Align is paper mode (SuperFlux + Horn–Schunck), mean over clips with peaks;
class accuracy and event timing (flash and jump on the exact event frame; jumps within ±1 frame)
come from the toy world's analytic probe. Each cell: mean ± standard deviation over the seeds.
An overlay marked (= `x`) sets only values the base already has: its runs are `x`'s. Status: {status}.

{chr(10).join(lines)}

![ablation]({png.name})

Started {started} UTC; load average at the start {load0}, at the last write {load_average()} (2 CPU
cores shared with other work: the seconds columns are noisy).

Raw runs (JSON): `{os.path.relpath(report.with_suffix('.json'), REPO)}`.
""")
    settings = {"config": base, "num_test": args.num_test, "sample_steps": args.sample_steps}
    report.with_suffix(".json").write_text(json.dumps({"settings": settings, "rows": rows, "runs": runs}, indent=1,
                                                      default=str))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "configs/toy.yaml"), help="base LightningCLI YAML")
    p.add_argument("--overlays", default=str(REPO / "configs/ablation"), help="folder of overlays")
    p.add_argument("--only", nargs="+", default=None, help="overlay names to run (default: all, paper order)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed and overlay")
    p.add_argument("--max-steps", type=int, default=None,
                   help="training steps per run (default: the base config's trainer.max_steps, the demo's 200)")
    p.add_argument("--num-test", type=int, default=32, help="test clips per run")
    p.add_argument("--sample-steps", type=int, default=8, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the base config's guidance_scale)")
    p.add_argument("--temporal-guidance", type=float, default=None,
                   help="temporal guidance scale of the audio rows (default: the base config's temporal_guidance_scale; "
                        "0: classifier-free guidance only)")
    p.add_argument("--device", default=None, help="trainer accelerator (default: the config's; e.g. cuda)")
    p.add_argument("--report", default=str(REPO / "docs/results/ablation.md"), help="markdown report")
    p.add_argument("--log-root", default="runs/ablation", help="TensorBoard logs")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs of the report's JSON that match these settings; train only the others")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    names = args.only or RUN_ORDER
    folder = Path(args.overlays)
    missing = [n for n in names if not (folder / f"{n}.yaml").is_file()]
    if missing:
        raise SystemExit(f"overlays not found in {folder}: {missing}")
    started, load0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load_average()
    runs: list[dict] = []
    report = Path(args.report)
    base_runs: dict[int, dict] = {}  # seed -> the run of the first no-op overlay
    jobs = [(name, seed) for name in names for seed in args.seeds]
    left_out = [o for o in RUN_ORDER if o not in names and (folder / f"{o}.yaml").is_file()]
    done, redo = earlier_runs(report.with_suffix(".json"), args) if args.resume else ({}, {})
    for i, (name, seed) in enumerate(jobs):
        overlay = folder / f"{name}.yaml"
        noop = is_base(args.config, overlay)
        if (name, seed) in done:
            runs.append(done[(name, seed)])
            if noop:
                base_runs.setdefault(seed, runs[-1])
            print(f"[{i + 1}/{len(jobs)}] {name} seed {seed}: kept from {report.with_suffix('.json')}", flush=True)
        elif noop and seed in base_runs:
            runs.append({**base_runs[seed], "overlay": name, "shared_with": base_runs[seed]["overlay"]})
            print(f"[{i + 1}/{len(jobs)}] {name} seed {seed}: the base config itself; shares {base_runs[seed]['overlay']}",
                  flush=True)
        else:
            adapter, trained = redo.get((name, seed), (None, None))
            what = f"other guidance; sampling its adapter {adapter} again" if adapter else f"{args.config} + {overlay}"
            print(f"[{i + 1}/{len(jobs)}] {name} seed {seed}: {what}", flush=True)
            runs.append(run_one(args.config, overlay, name, seed, args, args.log_root, adapter=adapter, trained=trained))
            if noop:
                base_runs[seed] = runs[-1]
            print(f"  {json.dumps(runs[-1])}", flush=True)
        pending = [f"{n} (seed {s})" for n, s in jobs[i + 1:]]
        write_report(runs, args, os.path.relpath(args.config, REPO), started, load0, report, pending, left_out)
        torch.manual_seed(0)
    print(f"results: {report} and {report.with_suffix('.png')}; logs: {args.log_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
