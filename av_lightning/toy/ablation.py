"""``make ablation``: the paper's Tables 2-4 as config overlays over one base config.

Each ``configs/ablation/*.yaml`` holds only the keys it changes (conditioning text / audio /
text+audio; ``vec`` or 1-5 window scales; a 2- or 4-layer mapper). For every overlay this trains
the adapter with ``base + overlay`` through the project's LightningCLI (short: ``--max-steps`` /
``--max-time`` per run; nothing trains for text-only conditioning), samples the first
``--num-test`` test clips with a fixed seed in the run's conditioning mode and scores AV-Align
(paper mode) and, on the toy world, the probe's class accuracy and jump timing. The table and a
PNG plot go to ``docs/results/ablation.md``, rewritten after every run, so an interrupted sweep
leaves what finished.

    python -m av_lightning.toy.ablation --config configs/toy.yaml [--only win1 win5] [--max-steps 40]
    make ablation CONFIG=configs/vggsound.yaml      # the same overlays on a real dataset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from av_lightning.toy.demo import REPO, align, backbone_path, load_average, test_clips

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
# run order: the overlays that equal the toy base (win5, mapper4 = cond_audio there) go last, so a
# sweep cut short by time still has every distinct variant
RUN_ORDER = ["cond_text", "cond_audio", "cond_text_audio", "vec", "win1", "mapper2", "win2", "win3", "win4",
             "win5", "mapper4"]
TOY_BACKBONE = "av_lightning/assets/toy_backbone"


def run_one(base: str, overlay: Path, name: str, args, log_root: str) -> dict:
    """Train (unless nothing trains) and evaluate one overlay; returns the row's figures."""
    from av_lightning.cli import cli_main

    is_toy = TOY_BACKBONE in Path(base).read_text()
    minutes, seconds = int(args.max_time), round((args.max_time % 1) * 60)
    over = [f"--trainer.max_steps={args.max_steps}", f"--trainer.max_time=00:00:{minutes:02d}:{seconds:02d}"]
    if "TensorBoardLogger" in Path(base).read_text():  # one log folder per overlay
        over += [f"--trainer.logger.init_args.save_dir={log_root}", f"--trainer.logger.init_args.name={name}"]
    if is_toy:
        over.append(f"--model.init_args.backbone.init_args.pretrained={backbone_path()}")
    configs = ["--config", base, "--config", str(overlay)]
    t0 = time.time()
    cli = cli_main([*configs, *over], run=False)
    model, data, trainer = cli.model, cli.datamodule, cli.trainer
    mode = model.hparams.conditioning
    if mode in ("audio", "text+audio"):
        trainer.fit(model, datamodule=data)
    t_fit = time.time() - t0
    clips = test_clips(data, args.num_test)
    H, W = clips["frames"].shape[-2:]
    t1 = time.time()
    model.eval()
    videos = model.generate({"audio": clips["audio"], "label": list(clips["label"])}, H, W, mode=mode,
                            steps=args.sample_steps, guidance_scale=args.guidance, seed=args.seed)
    fps, sr = model.hparams.fps, model.hparams.sample_rate
    row = {"overlay": name, "mode": mode, "steps": trainer.global_step, "train_s": round(t_fit),
           "sample_s": round(time.time() - t1), **align(videos, clips["audio"], fps, sr)}
    if is_toy:
        from av_lightning.toy.probe import probe_summary

        row.update(probe_summary(videos, clips["label"], clips["events"]))
    return row


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def plot(rows: list[dict], path: Path) -> Path:
    """Horizontal bars of AV-Align (and class accuracy when measured) per overlay, drawn with PIL."""
    from PIL import Image, ImageDraw

    bar_w, label_w, row_h = 300, 130, 22
    img = Image.new("RGB", (label_w + bar_w + 70, 30 + row_h * len(rows) + 10), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 4), "AV-Align (blue, value at right) and class accuracy (orange), scale 0..1", fill="black")
    for i, r in enumerate(rows):
        y = 30 + i * row_h
        d.text((4, y + 4), r["label"], fill="black")
        for j, (key, colour) in enumerate((("av_align", (60, 110, 220)), ("class_accuracy", (240, 150, 40)))):
            v = r.get(key)
            if v is None or math.isnan(v):
                continue
            h = (row_h - 6) // 2
            d.rectangle([label_w, y + j * h, label_w + int(bar_w * max(0.0, min(1.0, v))), y + (j + 1) * h - 1], fill=colour)
            if j == 0:
                d.text((label_w + bar_w + 6, y + 4), f"{v:.2f}", fill="black")
        d.line([label_w, 28, label_w, 30 + row_h * len(rows)], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_report(rows: list[dict], args, base: str, started: str, load0: str, report: Path, pending: list[str]) -> None:
    labels = {o: (t, lab) for o, t, lab in OVERLAYS}
    order = {o: i for i, (o, _, _) in enumerate(OVERLAYS)}
    rows = sorted(rows, key=lambda r: order.get(r["overlay"], len(order)))
    for r in rows:
        r["table"], r["label"] = labels.get(r["overlay"], ("other", r["overlay"]))
    png = plot(rows, report.with_suffix(".png"))
    has_probe = any("class_accuracy" in r for r in rows)
    head = "| table | row | overlay | AV-Align | clips w/o peaks |" + (
        " class accuracy | jump recall (±1) | jump precision (±1) |" if has_probe else "") + " steps | train s | sample s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        probe = (f" {fmt(r.get('class_accuracy'))} | {fmt(r.get('event_recall'))} | {fmt(r.get('event_precision'))} |"
                 if has_probe else "")
        lines.append(f"| {r['table']} | {r['label']} | `{r['overlay']}` | {fmt(r['av_align'])} | {r['av_align_empty']} |"
                     f"{probe} {r['steps']} | {r['train_s']} | {r['sample_s']} |")
    status = ("all overlays finished" if not pending else
              f"**partial**: not run (the sweep stopped before them): {', '.join(f'`{p}`' for p in pending)}")
    argv = " ".join(args.argv)
    report.write_text(f"""# Ablations (paper Tables 2-4)

Written by `make ablation` (`python -m av_lightning.toy.ablation {argv}`), base config `{base}`,
one overlay of `configs/ablation/` at a time. Each run: at most {args.max_steps} training steps or
{args.max_time} min (whichever comes first; text-only conditioning trains nothing), then the first
{args.num_test} test clips sampled with seed {args.seed}, DDIM {args.sample_steps} steps, guidance
{args.guidance}. AV-Align is paper mode (SuperFlux + Horn–Schunck), mean over clips with peaks;
class accuracy and jump timing come from the toy world's analytic probe. Status: {status}.

{chr(10).join(lines)}

![ablation]({png.name})

Started {started} UTC; load average at the start {load0}, at the last write {load_average()} (2 CPU cores).
Runs are short (see the steps column), so differences of a few hundredths are within the noise of
{args.num_test} clips; the figures show whether each variant trains at all, not the paper's ordering.

Raw rows (JSON): `{os.path.relpath(report.with_suffix('.json'), REPO)}`.
""")
    report.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "configs/toy.yaml"), help="base LightningCLI YAML")
    p.add_argument("--overlays", default=str(REPO / "configs/ablation"), help="folder of overlays")
    p.add_argument("--only", nargs="+", default=None, help="overlay names to run (default: all, paper order)")
    p.add_argument("--max-steps", type=int, default=40, help="training steps per run")
    p.add_argument("--max-time", type=float, default=3.0, help="training minutes per run (a cap for loaded machines; the steps bind on a quiet one)")
    p.add_argument("--num-test", type=int, default=16, help="test clips per run")
    p.add_argument("--sample-steps", type=int, default=8, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=5.0, help="CFG scale")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--report", default=str(REPO / "docs/results/ablation.md"), help="markdown report")
    p.add_argument("--log-root", default="runs/ablation", help="TensorBoard logs")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    names = args.only or RUN_ORDER
    folder = Path(args.overlays)
    missing = [n for n in names if not (folder / f"{n}.yaml").is_file()]
    if missing:
        raise SystemExit(f"overlays not found in {folder}: {missing}")
    started, load0 = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load_average()
    rows: list[dict] = []
    report = Path(args.report)
    for i, name in enumerate(names):
        print(f"[{i + 1}/{len(names)}] {name}: {args.config} + {folder / name}.yaml", flush=True)
        rows.append(run_one(args.config, folder / f"{name}.yaml", name, args, args.log_root))
        print(f"  {json.dumps(rows[-1])}", flush=True)
        write_report(rows, args, os.path.relpath(args.config, REPO), started, load0, report, names[i + 1:])
        torch.manual_seed(0)
    print(f"results: {report} and {report.with_suffix('.png')}; logs: {args.log_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
