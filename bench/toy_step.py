"""The toy world's training steps on the CPU: what precision and thread count buy.

Two steps, each measured several ways in one run, rounds alternating so the ratios stay fair:
- the adapter step of ``configs/toy.yaml`` (the demo and every ablation run: mapper, tokens, the
  frozen shipped backbone's forward + backward, AdamW) on one batch of the toy world's training
  split: float32 at the process's threads, float32 at one thread, and the frozen backbone in
  bfloat16;
- the toy backbone's own training step (``av_lightning.toy.train_backbone``: 16 videos + 32 images,
  every weight trained) in float32 and under bfloat16 autocast.

    python bench/toy_step.py --threads 2
"""

from __future__ import annotations

import argparse

import torch

from bench.common import machine, report, table, time_interleaved


def adapter_step(overrides: list[str], threads: int):
    """One optimizer step of the demo's adapter, at ``threads`` torch threads."""
    from av_lightning.toy.demo import fit

    cli = fit(["configs/toy.yaml"], ["--trainer.logger=false", *overrides], run=False)
    model, data = cli.model, cli.datamodule
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def run() -> None:
        torch.set_num_threads(threads)
        loss = model.diffusion_loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


def backbone_step(bf16: bool, threads: int):
    """One step of the toy backbone's recipe (``configs/toy_backbone.yaml``) from its initial weights:
    the recipe's own draws and losses (``draw_step``, ``step_losses``), then AdamW."""
    from av_lightning.toy import train_backbone as tb

    cfg = tb.load_config(tb.DEFAULT_CONFIG)
    tc = cfg["train"]
    unet, text_encoder, tokenizer, objective = tb.build_parts(cfg)
    ids, n_templates = tb.prompt_table(tokenizer, tc["templates"], tc["captions"], tc["image_templates"])
    image_row = tb.first_image_row(ids, len(tc["image_templates"]))
    opt = torch.optim.AdamW(list(unet.parameters()) + list(text_encoder.parameters()), lr=1e-5)
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        torch.set_num_threads(threads)
        drawn = tb.draw_step(tc, 0, gen, objective, int(n_templates), image_row, ids.shape[0] - 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss_video, loss_image = tb.step_losses(unet, text_encoder, ids, drawn)
        opt.zero_grad(set_to_none=True)
        (loss_video + tc["image_weight"] * loss_image).backward()
        opt.step()
    return run


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads of the reference rows")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default="docs/results/toy_step.md")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    t = a.threads
    adapter = {f"adapter, float32, {t} threads": adapter_step([], t),
               "adapter, float32, 1 thread": adapter_step([], 1),
               f"adapter, backbone in bfloat16, {t} threads":
                   adapter_step(["--model.init_args.backbone.init_args.dtype=bfloat16"], t)}
    backbone = {f"backbone, float32, {t} threads": backbone_step(False, t),
                f"backbone, bfloat16 autocast, {t} threads": backbone_step(True, t)}
    rows = []
    for fns in (adapter, backbone):
        times = time_interleaved(fns, cpu, warmup=2, repeat=a.repeat)
        base = next(iter(times.values()))
        rows += [[name, round(sec, 3), round(sec / base, 3)] for name, sec in times.items()]
    torch.set_num_threads(t)
    body = (f"Machine: {machine(cpu)}. Median seconds of {a.repeat} timed rounds after 2 warm-up rounds; "
            "the rows of one step alternate round after round; ratio = time / the first row of the same step. "
            "Adapter: `configs/toy.yaml` (batch 16 clips of 12 frames, the shipped toy backbone frozen). "
            "Backbone: `configs/toy_backbone.yaml` (16 videos + 32 images, all weights trained).\n\n"
            + table(["step", "seconds", "ratio"], rows)
            + f"\n\nTwo runs side by side at one thread each finish a sweep at most {t} × (first row) / (1-thread "
            f"row) as fast as one run after another at {t} threads: "
            f"{t * rows[0][1] / rows[1][1]:.2f}×.")
    report(a.out, "Toy training steps on the CPU: precision and threads", body)


if __name__ == "__main__":
    main()
