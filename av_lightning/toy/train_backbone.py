"""Train the toy world's text-to-video backbone, and its quality gate.

The model is a tiny diffusers ``UNet3DConditionModel`` in pixel space (16x16 RGB, 12 frames, no
VAE) plus a tiny ``CLIPTextModel`` with the character tokenizer of
:func:`av_lightning.backbones.tiny.char_tokenizer`, trained jointly from scratch the way a real
text-to-video model is: one class prompt per video (``"a drum"``, with a few phrasings), 10 %
empty prompts for classifier-free guidance, and **no per-frame conditioning**: the text says what
is seen, never when it moves, so the events the backbone draws are its own random choice. Timing
has to come from the adapter's per-frame tokens. ``--captions count`` adds captions that also say how
many times the object jumps (still one caption per clip), and ``--init DIR`` fine-tunes a saved
backbone, e.g. the shipped one, with them.

Clips come from :func:`av_lightning.data.toyworld.toy_batch`, drawn on the training device (an
infinite stream, no files). The saved weights are the EMA weights, written in the diffusers
layout (``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``model_index.json``) by
:meth:`DiffusersT2V.save_pretrained`, so ``DiffusersT2V(pretrained=OUT)`` loads it.

Resumable: ``OUT/train_state.pt`` (weights, EMA, optimizer, step, RNG states) is written every
``save_every`` steps, when ``--time-budget`` is spent, and at the end; ``--resume`` continues from
it up to ``--steps`` in total.

Quality gate (:func:`evaluate_backbone`, ``--eval``): DDIM samples per class prompt (8 steps, the
toy demo's sampling, guidance 5), read by the analytic probe (:mod:`av_lightning.toy.probe`): the
fraction of frames showing one object of the prompted class (target >= 0.9) and the jumps per clip
against the training data's rate; other step counts (``--eval-steps 8 25``) are reported beside it.

    python -m av_lightning.toy.train_backbone --config configs/toy_backbone.yaml --out checkpoints/toy_backbone \\
        --device cuda --bf16 --steps 20000 --time-budget 300 --eval --report docs/results/toy_backbone.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import yaml

from av_lightning.data.toyworld import CLASSES, MAX_EVENTS, toy_batch
from av_lightning.data.toyworld import prompt as class_prompt

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "toy_backbone.yaml"
TRAIN_DEFAULTS = dict(batch_size=128, lr=5e-4, text_lr=5e-4, weight_decay=0.01, warmup_steps=200, ema_decay=0.999,
                      uncond_prob=0.1, grad_clip=1.0, save_every=500, log_every=50, seed=0,
                      templates=["a {}", "{}", "a video of a {}"], captions="class", count_prob=0.5)
#: words for the number of events in ``captions: count`` mode (``"a drum jumping twice"``)
COUNT_WORDS = ("once", "twice", "three times")
CAPTION_MODES = ("class", "count")
TARGET_COHERENT = 0.9
STATE_FILE = "train_state.pt"


def load_config(path) -> dict:
    """The recipe (YAML or JSON): ``unet``, ``text_encoder``, ``tokenizer_max_length``,
    ``scheduler`` and ``train`` (missing training keys take :data:`TRAIN_DEFAULTS`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone recipe {path} not found; pass --config configs/toy_backbone.yaml")
    cfg = yaml.safe_load(path.read_text())
    missing = [k for k in ("unet", "text_encoder", "scheduler") if k not in cfg]
    if missing:
        raise ValueError(f"{path}: missing section(s) {missing}")
    cfg["train"] = {**TRAIN_DEFAULTS, **(cfg.get("train") or {})}
    if cfg["train"]["captions"] not in CAPTION_MODES:
        raise ValueError(f"{path}: train.captions must be one of {CAPTION_MODES}, got {cfg['train']['captions']!r}")
    cfg.setdefault("tokenizer_max_length", 48)
    return cfg


def build_parts(cfg: dict):
    """Trainable UNet, text encoder, tokenizer and the training noise scheduler from the recipe."""
    from diffusers import DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from av_lightning.backbones.tiny import TINY_SCHEDULER, char_tokenizer

    unet = UNet3DConditionModel(**cfg["unet"])
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    max_len = min(cfg["tokenizer_max_length"], cfg["text_encoder"].get("max_position_embeddings", 77))
    tokenizer = char_tokenizer(max_len)
    scheduler = DDPMScheduler.from_config(dict(TINY_SCHEDULER, **cfg["scheduler"]))
    return unet, text_encoder, tokenizer, scheduler


def caption_texts(templates: Sequence[str], captions: str = "class") -> list[str]:
    """Every training caption, in the row order of :func:`prompt_table`, plus ``""`` last.

    ``class``: row ``c * T + k`` is class c in template k. ``count`` appends, after those, row
    ``4 * T + (c * MAX_EVENTS + n - 1) * T + k``: class c jumping n times (``"a drum jumping twice"``).
    """
    if captions not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {captions!r}")
    texts = [t.format(c) for c in CLASSES for t in templates]
    if captions == "count":
        texts += [t.format(f"{c} jumping {COUNT_WORDS[n]}") for c in CLASSES for n in range(MAX_EVENTS)
                  for t in templates]
    return texts + [""]


def prompt_table(tokenizer, templates: Sequence[str], captions: str = "class") -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of every caption of :func:`caption_texts` (the empty prompt last) and ``T`` as a tensor."""
    prompts = caption_texts(templates, captions)
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return ids, torch.tensor(len(templates))


def caption_rows(label: torch.Tensor, events: torch.Tensor, T: int, captions: str, count_prob: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Rows of :func:`prompt_table` for a batch: a random phrasing of each clip's caption.

    In ``count`` mode a clip gets the caption with its number of events with probability
    ``count_prob``, else the plain class caption (so ``a {class}`` stays in the training prompts).
    """
    B = label.shape[0]
    k = torch.randint(T, (B,), generator=gen, device=label.device)
    rows = label * T + k
    if captions == "count":
        n = events.sum(dim=1).clamp(1, MAX_EVENTS) - 1
        counted = len(CLASSES) * T + (label * MAX_EVENTS + n) * T + k
        use = torch.rand(B, generator=gen, device=label.device) < count_prob
        rows = torch.where(use, counted, rows)
    return rows


class EMA:
    """Exponential moving average of a list of parameters (float32 copies)."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float):
        self.params = list(params)
        self.shadow = [p.detach().float().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        # Short warm-up of the decay so that early weights do not dominate a short run.
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - d)

    def state_dict(self) -> list[torch.Tensor]:
        return self.shadow

    def load_state_dict(self, shadow: Sequence[torch.Tensor]) -> None:
        for s, v in zip(self.shadow, shadow):
            s.copy_(v)

    @torch.no_grad()
    def copy_to(self, params: Sequence[torch.nn.Parameter]) -> None:
        for p, s in zip(params, self.shadow):
            p.copy_(s.to(p.dtype))


def load_initial_weights(path, unet, text_encoder) -> None:
    """Copy a saved backbone's UNet and text-encoder weights (loaded as a :class:`DiffusersT2V`)
    into the freshly built parts."""
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V

    path = Path(path)
    missing = [name for name in ("unet", "text_encoder") if not (path / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"--init {path}: no {' or '.join(missing)} folder; give a backbone folder in the "
                                "diffusers layout (e.g. av_lightning/assets/toy_backbone)")
    saved = DiffusersT2V(pretrained=str(path))
    for name, module, source in (("unet", unet, saved.unet), ("text_encoder", text_encoder, saved.text_encoder)):
        try:
            module.load_state_dict(source.state_dict())
        except RuntimeError as err:
            raise ValueError(f"--init {path}: the {name} weights do not fit this recipe's shapes; use the recipe "
                             f"that made them ({path / 'recipe.json'})") from err


def export_backbone(cfg: dict, unet, text_encoder, ema: Optional[EMA], out) -> Path:
    """Write the (EMA) weights in the diffusers layout through :meth:`DiffusersT2V.save_pretrained`."""
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V

    out = Path(out)
    backbone = DiffusersT2V(unet=cfg["unet"], text_encoder=cfg["text_encoder"], vae=None, scheduler=cfg["scheduler"],
                            tokenizer_max_length=cfg["tokenizer_max_length"])
    backbone.unet.load_state_dict({k: v.detach().float().cpu() for k, v in unet.state_dict().items()})
    backbone.text_encoder.load_state_dict({k: v.detach().float().cpu() for k, v in text_encoder.state_dict().items()})
    if ema is not None:
        ema.copy_to(list(backbone.unet.parameters()) + list(backbone.text_encoder.parameters()))
    backbone.save_pretrained(str(out))
    return out


def _rng_state(gen: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_state(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a run killed while saving keeps the previous state


def train_backbone(cfg: dict, out, steps: int, device: str = "cpu", resume: bool = False,
                   time_budget: Optional[float] = None, bf16: bool = False, log=print,
                   init: Optional[str] = None) -> dict:
    """Train (or continue training) the toy backbone; returns a summary dict.

    Args:
        cfg: recipe from :func:`load_config`.
        out: output folder (train state, final backbone, recipe.json).
        steps: total optimizer steps (a resumed run continues up to this count).
        device: ``"cpu"`` or ``"cuda"``.
        resume: continue from ``out/train_state.pt`` if it exists.
        time_budget: seconds of training after which the run saves and stops.
        bf16: bfloat16 autocast (CUDA).
        log: print function.
        init: a saved backbone folder (diffusers layout, same recipe shapes) whose weights start a
            new run, e.g. the shipped backbone for a fine-tune with other captions; ignored when
            resuming.
    """
    start_time = time.time()
    tc = cfg["train"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(tc["seed"])
    unet, text_encoder, tokenizer, scheduler = build_parts(cfg)
    unet.to(dev).train()
    text_encoder.to(dev).train()
    if init is not None and not (resume and (out / STATE_FILE).is_file()):
        load_initial_weights(init, unet, text_encoder)
        log(f"initial weights from {init}")
    ids, n_templates = prompt_table(tokenizer, tc["templates"], tc["captions"])
    ids = ids.to(dev)
    T = int(n_templates)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW([
        {"params": list(unet.parameters()), "lr": tc["lr"]},
        {"params": list(text_encoder.parameters()), "lr": tc["text_lr"]},
    ], weight_decay=tc["weight_decay"], betas=(0.9, 0.99))
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = EMA(params, tc["ema_decay"])
    gen = torch.Generator(device=dev).manual_seed(tc["seed"])
    alphas = scheduler.alphas_cumprod.to(dev)
    prediction = scheduler.config.prediction_type
    step, losses = 0, []  # losses: mean loss of each log interval
    state_path = out / STATE_FILE
    if resume and state_path.is_file():
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the device
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["config"] != cfg:
            raise ValueError(f"{state_path} was written with another recipe; use a new --out or the same --config")
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        _set_rng_state(gen, state["rng"])
        step, losses = state["step"], state.get("losses", [])
        log(f"resumed from {state_path} at step {step}")
    n_unet = sum(p.numel() for p in unet.parameters())
    n_text = sum(p.numel() for p in text_encoder.parameters())
    log(f"toy backbone: UNet {n_unet / 1e6:.2f}M + text encoder {n_text / 1e6:.2f}M parameters, all trainable; "
        f"device {dev}, batch {tc['batch_size']}, {prediction}, bf16={bf16 and dev.type == 'cuda'}")

    def save() -> None:
        _save_state(state_path, unet=unet.state_dict(), text_encoder=text_encoder.state_dict(),
                    optimizer=opt.state_dict(), ema=ema.state_dict(), rng=_rng_state(gen), step=step,
                    losses=losses, config=cfg)

    B = tc["batch_size"]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and dev.type == "cuda")
    t_log, step_log, stopped = time.time(), step, "steps"
    loss_sum = torch.zeros((), device=dev)
    first_step = step
    while step < steps:
        if time_budget is not None and time.time() - start_time >= time_budget:
            stopped = "time budget"
            break
        lr_scale = min(1.0, (step + 1) / max(1, tc["warmup_steps"]))
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * lr_scale
        batch = toy_batch(B, gen)
        x0 = batch["frames"].permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0  # (B, 3, F, H, W)
        rows = caption_rows(batch["label"], batch["events"], T, tc["captions"], tc["count_prob"], gen)
        drop = torch.rand(B, generator=gen, device=dev) < tc["uncond_prob"]
        rows = torch.where(drop, torch.full_like(rows, ids.shape[0] - 1), rows)
        noise = torch.randn(x0.shape, generator=gen, device=dev)
        t = torch.randint(scheduler.config.num_train_timesteps, (B,), generator=gen, device=dev)
        a = alphas[t].view(B, 1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        with autocast:
            # every caption once (13 rows, 49 with counts), then gathered: no host sync, cheap
            states = text_encoder(input_ids=ids).last_hidden_state[rows]
            pred = unet(noisy, t, encoder_hidden_states=states).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, tc["grad_clip"])
        opt.step()
        ema.update(step)
        step += 1
        loss_sum += loss.detach()  # summed on the device: no host sync per step
        if step % tc["log_every"] == 0 or step == steps:
            recent = float(loss_sum) / (step - step_log)
            rate = (step - step_log) / max(1e-9, time.time() - t_log)
            losses.append(recent)
            loss_sum.zero_()
            log(f"step {step}/{steps}  loss {recent:.4f}  {rate:.2f} steps/s  lr {opt.param_groups[0]['lr']:.2e}  "
                f"elapsed {time.time() - start_time:.0f} s")
            t_log, step_log = time.time(), step
        if step % tc["save_every"] == 0:
            save()
    save()
    export_backbone(cfg, unet, text_encoder, ema, out)
    elapsed = time.time() - start_time
    if step > step_log:  # the steps since the last log line
        losses.append(float(loss_sum) / (step - step_log))
    final = losses[-1] if losses else float("nan")
    summary = {
        "command": "python -m av_lightning.toy.train_backbone " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "seed": tc["seed"], "steps": step, "steps_this_run": step - first_step, "stopped_by": stopped,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "bf16": bool(bf16 and dev.type == "cuda"), "final_loss": final,
        "first_loss": losses[0] if losses else float("nan"), "loss_curve": losses,
        "seconds": round(elapsed, 1), "seconds_per_step": round(elapsed / max(1, step - first_step), 4),
        "unet_parameters": n_unet, "text_encoder_parameters": n_text, "config": cfg,
        "torch": torch.__version__, "init": str(init) if init else None,
    }
    (out / "recipe.json").write_text(json.dumps(summary, indent=2))
    log(f"saved the EMA backbone to {out} after {step} steps ({stopped}); final loss {final:.4f}; "
        f"{summary['seconds_per_step']:.3f} s/step")
    return summary


# ------------------------------------------------------------------------------------------------
# quality gate


def training_jump_rate(n: int = 512, seed: int = 1) -> float:
    """Probe jumps per clip on ground-truth clips (what the backbone should reproduce)."""
    from av_lightning.toy.probe import probe_summary

    g = torch.Generator().manual_seed(seed)
    batch = toy_batch(n, g)
    return probe_summary(batch["frames"], batch["label"].tolist())["jumps_per_clip"]


@torch.no_grad()
def sample_backbone(backbone, prompts: Sequence[str], steps: int = 25, guidance_scale: float = 5.0, seed: int = 0,
                    batch_size: int = 64) -> torch.Tensor:
    """Text-only DDIM samples of a :class:`DiffusersT2V`: uint8 ``(len(prompts), F, 3, H, W)``."""
    from av_lightning.data.toyworld import NUM_FRAMES, SIZE
    from av_lightning.pipeline import make_scheduler, sample

    uncond = backbone.encode_text([""])
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i : i + batch_size])
        cond = backbone.encode_text(chunk)
        shape = (len(chunk), backbone.latent_channels, NUM_FRAMES, SIZE, SIZE)
        latents = sample(backbone.denoise, make_scheduler(backbone.scheduler_config, "ddim"), cond, shape,
                         uncond=uncond, steps=steps, guidance_scale=guidance_scale, generator=g, progress=False)
        out.append(backbone.decode_latents(latents).cpu())
    return torch.cat(out)


def evaluate_backbone(path, n: int = 64, steps: Union[int, Sequence[int]] = 8, guidance_scale: float = 5.0,
                      device: str = "cpu", seed: int = 0, report: Optional[str] = None,
                      recipe: Optional[dict] = None) -> dict:
    """The quality gate: sample ``n`` clips (classes in turn) and probe them.

    Args:
        steps: DDIM steps of the gate (8, the toy demo's sampling), or a list whose first entry is
            the gate's and whose others are measured too and reported as ``by_steps`` (how the
            backbone holds up under other samplers' step counts).

    Returns:
        dict with ``coherent_fraction`` (frames showing one object of the prompted class; gate
        >= :data:`TARGET_COHERENT`), ``class_accuracy``, ``jumps_per_clip`` and
        ``train_jumps_per_clip``, per-class figures, ``clips_with_jumps``, ``by_steps`` and
        ``passed``. With ``report``, writes a markdown page there.
    """
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.probe import probe_summary, probe_video

    t0 = time.time()
    all_steps = [int(steps)] if isinstance(steps, int) else [int(s) for s in steps]
    if not all_steps or min(all_steps) < 1:
        raise ValueError(f"the gate needs one or more positive DDIM step counts, got {steps!r}")
    backbone = DiffusersT2V(pretrained=str(path)).to(device)
    labels = [CLASSES[i % len(CLASSES)] for i in range(n)]
    prompts = [class_prompt(c) for c in labels]
    videos = sample_backbone(backbone, prompts, all_steps[0], guidance_scale, seed)
    result = probe_summary(videos, labels)
    result["per_class"] = {c: probe_summary(videos[[i for i, y in enumerate(labels) if y == c]], [c] * labels.count(c))
                           for c in CLASSES}
    probes = [probe_video(v) for v in videos]
    result["clips_with_jumps"] = float(np.mean([len(p.jumps) > 0 for p in probes]))
    hist = np.zeros(videos.shape[1], dtype=int)
    for p in probes:
        for j in p.jumps:
            hist[j] += 1
    result["jump_frame_histogram"] = hist.tolist()
    figures = ("coherent_fraction", "class_accuracy", "jumps_per_clip")
    result["by_steps"] = {all_steps[0]: {k: result[k] for k in figures}}
    for s in all_steps[1:]:
        other = probe_summary(sample_backbone(backbone, prompts, s, guidance_scale, seed), labels)
        result["by_steps"][s] = {k: other[k] for k in figures}
    result["train_jumps_per_clip"] = training_jump_rate()
    result.update(n=n, steps=all_steps[0], guidance_scale=guidance_scale, seed=seed, seconds=round(time.time() - t0, 1))
    result["passed"] = result["coherent_fraction"] >= TARGET_COHERENT
    if report:
        write_report(report, path, result, recipe)
    return result


def write_report(report, path, result: dict, recipe: Optional[dict] = None) -> None:
    """A markdown page with the gate's numbers and how they were produced."""
    lines = [
        "# Toy backbone: quality gate",
        "",
        f"Backbone: `{path}`. {result['n']} text-only samples (classes in turn), DDIM {result['steps']} steps, "
        f"guidance {result['guidance_scale']}, seed {result['seed']}; read by the analytic probe "
        "(`av_lightning/toy/probe.py`).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| frames with one object of the prompted class (gate >= {TARGET_COHERENT}) | {result['coherent_fraction']:.3f} "
        f"({'PASS' if result['passed'] else 'FAIL'}) |",
        f"| frames whose object colour is the prompted class | {result['class_accuracy']:.3f} |",
        f"| jumps per clip, samples | {result['jumps_per_clip']:.2f} |",
        f"| jumps per clip, training clips | {result['train_jumps_per_clip']:.2f} |",
        f"| clips with at least one jump | {result['clips_with_jumps']:.2f} |",
        "",
        "Per class:",
        "",
        "| class | one object of the class | class colour | jumps per clip |",
        "|---|---|---|---|",
    ]
    for c, r in result["per_class"].items():
        lines.append(f"| {c} | {r['coherent_fraction']:.3f} | {r['class_accuracy']:.3f} | {r['jumps_per_clip']:.2f} |")
    lines += ["", f"Jump frames (histogram over frames 0..F-1): {result['jump_frame_histogram']}", ""]
    if len(result.get("by_steps", {})) > 1:
        lines += [
            f"The same {result['n']} prompts and seed under other DDIM step counts (guidance {result['guidance_scale']}):",
            "",
            "| DDIM steps | one object of the prompted class | class colour | jumps per clip |",
            "|---|---|---|---|",
        ]
        for s, r in result["by_steps"].items():
            mark = " (the gate)" if int(s) == result["steps"] else ""
            lines.append(f"| {s}{mark} | {r['coherent_fraction']:.3f} | {r['class_accuracy']:.3f} | {r['jumps_per_clip']:.2f} |")
        lines.append("")
    if recipe:
        lines += [
            "Training:", "",
            f"- command: `{recipe.get('command', '')}`",
            f"- device: {recipe.get('device')}, bf16: {recipe.get('bf16')}, seed: {recipe.get('seed')}",
            f"- steps: {recipe.get('steps')} (stopped by {recipe.get('stopped_by')}), "
            f"{recipe.get('seconds')} s, {recipe.get('seconds_per_step')} s/step",
            f"- loss: first {recipe.get('first_loss', float('nan')):.4f}, final {recipe.get('final_loss', float('nan')):.4f}",
            "",
        ]
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text("\n".join(lines))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description="Train the toy text-to-video backbone (pixel space, diffusers layout).")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="recipe YAML (model parts + train section)")
    parser.add_argument("--out", required=True, help="output folder: backbone, train_state.pt, recipe.json")
    parser.add_argument("--steps", type=int, default=20000, help="total optimizer steps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    parser.add_argument("--init", default=None, help="start a new run from a saved backbone's weights (fine-tuning)")
    parser.add_argument("--captions", choices=CAPTION_MODES, default=None,
                        help="override train.captions: 'class' (a drum) or 'count' (a drum jumping twice, half the time)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of training, then save and stop")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    parser.add_argument("--lr", type=float, default=None, help="override train.lr and train.text_lr")
    parser.add_argument("--seed", type=int, default=None, help="override train.seed")
    parser.add_argument("--eval", action="store_true", help="run the quality gate after training")
    parser.add_argument("--eval-only", action="store_true", help="only run the quality gate on OUT")
    parser.add_argument("--eval-n", type=int, default=64, help="samples in the gate")
    parser.add_argument("--eval-steps", type=int, nargs="+", default=[8, 25],
                        help="DDIM steps in the gate (the first decides it; the toy demo samples with 8), then "
                             "other step counts to report")
    parser.add_argument("--guidance", type=float, default=5.0, help="CFG scale in the gate")
    parser.add_argument("--report", default=None, help="markdown report of the gate (e.g. docs/results/toy_backbone.md)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    for key, value in (("batch_size", args.batch_size), ("seed", args.seed)):
        if value is not None:
            cfg["train"][key] = value
    if args.lr is not None:
        cfg["train"]["lr"] = cfg["train"]["text_lr"] = args.lr
    if args.captions is not None:
        cfg["train"]["captions"] = args.captions
    recipe = None
    if not args.eval_only:
        recipe = train_backbone(cfg, args.out, args.steps, args.device, args.resume, args.time_budget, args.bf16,
                                init=args.init)
    elif (Path(args.out) / "recipe.json").is_file():
        recipe = json.loads((Path(args.out) / "recipe.json").read_text())
    result = {}
    if args.eval or args.eval_only:
        result = evaluate_backbone(args.out, args.eval_n, args.eval_steps, args.guidance, args.device,
                                   report=args.report, recipe=recipe)
        print(f"quality gate: one object of the prompted class in {result['coherent_fraction']:.3f} of frames "
              f"(target >= {TARGET_COHERENT}: {'PASS' if result['passed'] else 'FAIL'}), class colour "
              f"{result['class_accuracy']:.3f}, jumps/clip {result['jumps_per_clip']:.2f} "
              f"(training {result['train_jumps_per_clip']:.2f}); {result['seconds']} s"
              + (f"; report {args.report}" if args.report else ""))
        if recipe is not None and not args.eval_only:
            recipe["gate"] = {k: v for k, v in result.items() if k != "per_class"}
            (Path(args.out) / "recipe.json").write_text(json.dumps(recipe, indent=2))
    return {"recipe": recipe, "gate": result}


if __name__ == "__main__":
    main()
