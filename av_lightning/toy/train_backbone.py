"""Train the toy world's text-to-video backbone: jointly on videos and on single frames as images.

The model is a tiny diffusers ``UNet3DConditionModel`` in pixel space (16x16 RGB, 12 frames, no
VAE) plus a tiny ``CLIPTextModel`` with the character tokenizer of
:func:`av_lightning.backbones.tiny.char_tokenizer`, trained the way ModelScope was, on two kinds
of data in every step:

- **videos** with one caption per clip (``"a drum"``, a few phrasings; ``captions: count`` also
  says how often the object jumps, half the time), 10 % empty for classifier-free guidance. The
  caption never says *when* the object flashes and jumps: the events are the model's own choice.
- **images**: single frames (F = 1 through the same UNet3D) with a caption of that frame:
  ``"a struck drum"`` for an event frame (the object flashes), ``"a drum"`` for any other frame,
  ``event_share`` of them event frames, 10 % empty. With ``after_share`` > 0 that share of the
  images are the frame after an event (the object still grown and 1 px up, no flash), captioned
  ``"a ringing drum"``, and ``"a drum"`` then names only quiet frames. This is what teaches
  spatial cross-attention that a text can describe one frame, the channel per-frame tokens use.

No video is ever trained with per-frame prompts, and no audio is seen. Two schedules
(``[[from_step, value], ...]``, the last started entry applies) shape the recipe over time:
``image_schedule`` sets the images per step (fewer once the image loss has flattened, leaving more
of each step to the videos), ``high_noise_schedule`` the share of clips and images whose timesteps
come from ``high_noise_range`` of the schedule instead of all of it. The noisier steps are where a
sample's layout is decided, so where the video prior learns that the flash and the jump happen on
the same frame.

Clips come from :func:`av_lightning.data.toyworld.toy_batch`, drawn on the training device (an
infinite stream, no files); noise, timesteps and targets from the backbone's objective
(:class:`~av_lightning.backbones.objective.DDPMObjective`). The saved weights are the EMA weights,
in the diffusers layout, written by :meth:`DiffusersT2V.save_pretrained`, so
``DiffusersT2V(pretrained=OUT)`` loads it. ``--init DIR`` starts from a saved backbone (a
fine-tune, e.g. of the shipped one).

Resumable: ``OUT/train_state.pt`` (weights, EMA, optimizer, step, RNG states, the recipe as JSON;
plain tensors, dicts and lists, read back with ``torch.load(weights_only=True)``) is written every
``save_every`` steps, when ``--time-budget`` is spent, and at the end, each time with the EMA
backbone beside it; ``--resume`` continues up to ``--steps`` in total. The gates (``--eval``) are in :mod:`av_lightning.toy.backbone_gate`.

    python -m av_lightning.toy.train_backbone --config configs/toy_backbone.yaml --out runs/toy_backbone \\
        --init av_lightning/assets/toy_backbone --device cpu --steps 2000 --resume
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
from typing import Optional, Sequence

import torch
import yaml

from av_lightning.data.toyworld import CLASSES, MAX_EVENTS, frame_states, toy_batch
from av_lightning.toy.train_state import EMA, load_state, recipe_json, rng_state, save_state, scheduled, set_rng_state

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "toy_backbone.yaml"
TRAIN_DEFAULTS = dict(batch_size=128, lr=5e-4, text_lr=5e-4, weight_decay=0.01, warmup_steps=200, ema_decay=0.999,
                      uncond_prob=0.1, grad_clip=1.0, save_every=500, log_every=50, seed=0,
                      templates=["a {}", "{}", "a video of a {}"], captions="class", count_prob=0.5,
                      image_templates=["a {}", "{}", "a picture of a {}"], image_schedule=[[0, 0]],
                      high_noise_schedule=[[0, 0.0]], high_noise_range=[0.5, 1.0],
                      event_share=0.5, after_share=0.0, image_weight=1.0)
#: words for the number of events in ``captions: count`` mode (``"a drum jumping twice"``)
COUNT_WORDS = ("once", "twice", "three times")
CAPTION_MODES = ("class", "count")
#: what an image caption says of its frame (index 0: quiet, or with ``after_share`` 0 any frame that is
#: not an event frame; 1: an event frame; 2: the frame after an event), as in ``toyworld.frame_states``
IMAGE_STATES = ("", "struck ", "ringing ")
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
    shares = (cfg["train"]["event_share"], cfg["train"]["after_share"])
    if not (0.0 <= min(shares) and sum(shares) <= 1.0):
        raise ValueError(f"{path}: train.event_share and train.after_share must be fractions summing to at most 1, "
                         f"got {shares[0]} and {shares[1]}")
    cfg.setdefault("tokenizer_max_length", 48)
    return cfg


def build_parts(cfg: dict):
    """Trainable UNet, text encoder, tokenizer and the diffusion objective from the recipe."""
    from diffusers import UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from av_lightning.backbones.objective import DDPMObjective
    from av_lightning.backbones.tiny import TINY_SCHEDULER, char_tokenizer

    unet = UNet3DConditionModel(**cfg["unet"])
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    max_len = min(cfg["tokenizer_max_length"], cfg["text_encoder"].get("max_position_embeddings", 77))
    return unet, text_encoder, char_tokenizer(max_len), DDPMObjective(dict(TINY_SCHEDULER, **cfg["scheduler"]))


def caption_texts(templates: Sequence[str], captions: str = "class",
                  image_templates: Sequence[str] = ()) -> list[str]:
    """Every training caption, in the row order used by :func:`caption_rows`, plus ``""`` last.

    ``class``: row ``c * T + k`` is class c in template k. ``count`` appends, after those, row
    ``4 * T + (c * MAX_EVENTS + n - 1) * T + k``: class c jumping n times (``"a drum jumping twice"``).
    Then the image captions, row ``V + (s * 4 + c) * Ti + k`` for image state s (:data:`IMAGE_STATES`)
    in image template k, ``V`` the number of video captions.
    """
    if captions not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {captions!r}")
    texts = [t.format(c) for c in CLASSES for t in templates]
    if captions == "count":
        texts += [t.format(f"{c} jumping {COUNT_WORDS[n]}") for c in CLASSES for n in range(MAX_EVENTS)
                  for t in templates]
    texts += [t.format(w + c) for w in IMAGE_STATES for c in CLASSES for t in image_templates]
    return texts + [""]


def prompt_table(tokenizer, templates: Sequence[str], captions: str = "class",
                 image_templates: Sequence[str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of every caption of :func:`caption_texts` (the empty prompt last) and ``T`` as a tensor."""
    prompts = caption_texts(templates, captions, image_templates)
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return ids, torch.tensor(len(templates))


def first_image_row(ids: torch.Tensor, n_image_templates: int) -> int:
    """The row of :func:`prompt_table`'s ids where the image captions start (they end before ``""``)."""
    return ids.shape[0] - 1 - len(IMAGE_STATES) * len(CLASSES) * n_image_templates


def caption_rows(label: torch.Tensor, events: torch.Tensor, T: int, captions: str, count_prob: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Rows of :func:`prompt_table` for a batch of videos: a random phrasing of each clip's caption.

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


def image_batch(n: int, gen: torch.Generator, event_share: float = 0.5, after_share: float = 0.0) -> dict:
    """``n`` single frames of fresh toy clips: an event frame with probability ``event_share``, the
    frame after an event with probability ``after_share``, else a frame of the remaining kind
    (uniformly among the clip's frames of the chosen kind; every clip has all three). With
    ``after_share`` 0 the remaining kind is every frame that is not an event frame (the frame after
    an event included), and the random stream is the one without the option.

    Returns:
        dict of ``frames`` uint8 ``(n, 1, 3, H, W)``, ``label`` long ``(n,)`` and ``state`` long
        ``(n,)`` (the index into :data:`IMAGE_STATES`).
    """
    clips = toy_batch(n, gen)
    events = clips["events"]  # (n, F) bool
    u = torch.rand(n, generator=gen, device=events.device)
    want = (u < event_share).long()
    if after_share > 0:
        want = torch.where((u >= event_share) & (u < event_share + after_share), 2, want)
        kinds = frame_states(events)
    else:
        kinds = events.long()
    frame = torch.multinomial((kinds == want[:, None]).float(), 1, generator=gen).squeeze(1)
    frames = clips["frames"][torch.arange(n, device=events.device), frame]
    return {"frames": frames[:, None], "label": clips["label"], "state": want}


def image_batch_size(schedule: Sequence[Sequence[int]], step: int) -> int:
    """The image batch at ``step`` from ``image_schedule``."""
    return int(scheduled(schedule, step))


def noisier(objective, n: int, gen: torch.Generator, share: float, high_range: Sequence[float]) -> Optional[torch.Tensor]:
    """Timesteps ``(n,)`` with ``share`` of them from ``high_range`` of the schedule, or None for
    share 0 (the objective then draws them itself, so the random stream is the one without it)."""
    if share <= 0:
        return None
    t = objective.sample_timesteps(n, gen, gen.device)
    high = objective.sample_timesteps(n, gen, gen.device, timestep_range=tuple(high_range))
    return torch.where(torch.rand(n, generator=gen, device=gen.device) < share, high, t)


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


def drop_captions(rows: torch.Tensor, gen: torch.Generator, prob: float, empty_row: int) -> torch.Tensor:
    """Caption rows with each replaced by ``empty_row`` (the empty caption) with probability ``prob``."""
    empty = torch.rand(rows.shape[0], generator=gen, device=rows.device) < prob
    return torch.where(empty, torch.full_like(rows, empty_row), rows)


def draw_step(tc: dict, step: int, gen: torch.Generator, objective, T: int, image_row: int, empty_row: int) -> dict:
    """Every random draw of one training step, in the recipe's order: ``batch_size`` fresh clips with a
    caption row each (:func:`caption_rows`, then :func:`drop_captions`) and their noised
    examples, then the step's images (:func:`image_batch`, ``image_schedule``) with theirs.

    Args:
        tc: the recipe's ``train`` section.
        step: the optimizer step (for the schedules).
        gen: the run's generator (on the training device).
        objective: the backbone's :class:`~av_lightning.backbones.objective.DDPMObjective`.
        T: video caption templates; image_row, empty_row: the first image caption (:func:`first_image_row`) and the empty
            caption in :func:`prompt_table`.

    Returns:
        dict of ``video`` and ``image`` (the objective's examples; ``image`` None without images),
        ``rows`` / ``image_rows`` (caption rows) and ``n_images``.
    """
    def drop(rows: torch.Tensor) -> torch.Tensor:
        return drop_captions(rows, gen, tc["uncond_prob"], empty_row)

    batch = toy_batch(tc["batch_size"], gen)
    x0 = batch["frames"].permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0  # (B, 3, F, H, W)
    rows = drop(caption_rows(batch["label"], batch["events"], T, tc["captions"], tc["count_prob"], gen))
    share = float(scheduled(tc["high_noise_schedule"], step))
    B = x0.shape[0]
    video = objective.example(x0, gen, timesteps=noisier(objective, B, gen, share, tc["high_noise_range"]))
    n_img = image_batch_size(tc["image_schedule"], step)
    out = dict(video=video, rows=rows, image=None, image_rows=None, n_images=n_img)
    if n_img:
        Ti = len(tc["image_templates"])
        img = image_batch(n_img, gen, tc["event_share"], tc["after_share"])
        xi = img["frames"].permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0  # (n, 3, 1, H, W)
        k = torch.randint(Ti, (n_img,), generator=gen, device=gen.device)
        out["image_rows"] = drop(image_row + (img["state"] * len(CLASSES) + img["label"]) * Ti + k)
        out["image"] = objective.example(xi, gen, timesteps=noisier(objective, n_img, gen, share, tc["high_noise_range"]))
    return out


def step_losses(unet, text_encoder, ids: torch.Tensor, drawn: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The video and image denoising losses of one step's draws (:func:`draw_step`): every caption of
    ``ids`` encoded once (49 rows in ``class`` mode), gathered by row (no host sync); the image loss is 0 without images."""
    states = text_encoder(input_ids=ids).last_hidden_state
    ex = drawn["video"]
    pred = unet(ex.noisy, ex.timesteps, encoder_hidden_states=states[drawn["rows"]]).sample
    loss_video = torch.nn.functional.mse_loss(pred.float(), ex.target)
    loss_image = torch.zeros((), device=loss_video.device)
    if drawn["image"] is not None:
        exi = drawn["image"]
        pred_i = unet(exi.noisy, exi.timesteps, encoder_hidden_states=states[drawn["image_rows"]]).sample
        loss_image = torch.nn.functional.mse_loss(pred_i.float(), exi.target)
    return loss_video, loss_image


def train_backbone(cfg: dict, out, steps: int, device: str = "cpu", resume: bool = False,
                   time_budget: Optional[float] = None, bf16: bool = False, log=print,
                   init: Optional[str] = None) -> dict:
    """Train (or continue training) the toy backbone; returns a summary dict (also ``OUT/recipe.json``).

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
            new run; ignored when resuming.
    """
    start_time = time.time()
    tc = cfg["train"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(tc["seed"])
    unet, text_encoder, tokenizer, objective = build_parts(cfg)
    unet.to(dev).train()
    text_encoder.to(dev).train()
    state_path = out / STATE_FILE
    resuming = resume and state_path.is_file()
    state = load_state(state_path, cfg, TRAIN_DEFAULTS) if resuming else None  # before any other work: refuse early
    if init is not None and not resuming:
        load_initial_weights(init, unet, text_encoder)
        log(f"initial weights from {init}")
    ids, n_templates = prompt_table(tokenizer, tc["templates"], tc["captions"], tc["image_templates"])
    ids = ids.to(dev)
    T, Ti = int(n_templates), len(tc["image_templates"])
    image_row = first_image_row(ids, Ti)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW([
        {"params": list(unet.parameters()), "lr": tc["lr"]},
        {"params": list(text_encoder.parameters()), "lr": tc["text_lr"]},
    ], weight_decay=tc["weight_decay"], betas=(0.9, 0.99))
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = EMA(params, tc["ema_decay"])
    gen = torch.Generator(device=dev).manual_seed(tc["seed"])
    step, losses, image_losses = 0, [], []  # mean losses of each log interval
    if state is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        set_rng_state(gen, state["rng"])
        step, losses, image_losses = state["step"], state["losses"], state["image_losses"]
        init = state["init"] or None
        log(f"resumed from {state_path} at step {step}")
    n_unet = sum(p.numel() for p in unet.parameters())
    n_text = sum(p.numel() for p in text_encoder.parameters())
    log(f"toy backbone: UNet {n_unet / 1e6:.2f}M + text encoder {n_text / 1e6:.2f}M parameters, all trainable; "
        f"device {dev}, batch {tc['batch_size']} videos + images {tc['image_schedule']}, "
        f"{objective.prediction_type}, bf16={bf16 and dev.type == 'cuda'}")

    def save() -> None:
        save_state(state_path, unet=unet.state_dict(), text_encoder=text_encoder.state_dict(),
                   optimizer=opt.state_dict(), ema=ema.state_dict(), rng=rng_state(gen), step=step,
                   losses=losses, image_losses=image_losses, config=recipe_json(cfg), init=str(init or ""))
        export_backbone(cfg, unet, text_encoder, ema, out)  # the EMA weights so far, readable while training runs

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and dev.type == "cuda")
    t_log, step_log, stopped = time.time(), step, "steps"
    loss_sum, image_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
    first_step = step
    while step < steps:
        if time_budget is not None and time.time() - start_time >= time_budget:
            stopped = "time budget"
            break
        lr_scale = min(1.0, (step + 1) / max(1, tc["warmup_steps"]))
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * lr_scale
        drawn = draw_step(tc, step, gen, objective, T, image_row, ids.shape[0] - 1)
        with autocast:
            loss_video, loss_image = step_losses(unet, text_encoder, ids, drawn)
        loss = loss_video + tc["image_weight"] * loss_image
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, tc["grad_clip"])
        opt.step()
        ema.update(step)
        step += 1
        loss_sum += loss_video.detach()  # summed on the device: no host sync per step
        image_sum += loss_image.detach()
        if step % tc["log_every"] == 0 or step == steps:
            recent, recent_img = float(loss_sum) / (step - step_log), float(image_sum) / (step - step_log)
            rate = (step - step_log) / max(1e-9, time.time() - t_log)
            losses.append(recent)
            image_losses.append(recent_img)
            loss_sum.zero_()
            image_sum.zero_()
            log(f"step {step}/{steps}  video loss {recent:.4f}  image loss {recent_img:.4f} ({drawn['n_images']} images)  "
                f"{1 / max(rate, 1e-9):.2f} s/step  lr {opt.param_groups[0]['lr']:.2e}  "
                f"elapsed {time.time() - start_time:.0f} s")
            t_log, step_log = time.time(), step
        if step % tc["save_every"] == 0:
            save()
    if step > step_log:  # the steps since the last log line
        losses.append(float(loss_sum) / (step - step_log))
        image_losses.append(float(image_sum) / (step - step_log))
    save()
    elapsed = time.time() - start_time
    final = losses[-1] if losses else float("nan")
    previous = {}
    if resuming and (out / "recipe.json").is_file():
        previous = json.loads((out / "recipe.json").read_text())
    sittings = previous.get("sittings", []) + [{
        "steps": [first_step, step], "seconds": round(elapsed, 1),
        "seconds_per_step": round(elapsed / max(1, step - first_step), 3), "stopped_by": stopped,
        "load_average": [round(x, 2) for x in os.getloadavg()]}]
    summary = {
        "command": "python -m av_lightning.toy.train_backbone " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "seed": tc["seed"], "steps": step, "steps_this_run": step - first_step, "stopped_by": stopped,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "bf16": bool(bf16 and dev.type == "cuda"), "final_loss": final,
        "first_loss": losses[0] if losses else float("nan"), "loss_curve": losses, "image_loss_curve": image_losses,
        "seconds": round(sum(s["seconds"] for s in sittings), 1), "seconds_per_step": sittings[-1]["seconds_per_step"],
        "sittings": sittings, "unet_parameters": n_unet, "text_encoder_parameters": n_text, "config": cfg,
        "torch": torch.__version__, "init": str(init) if init else None,
    }
    (out / "recipe.json").write_text(json.dumps(summary, indent=2))
    log(f"saved the EMA backbone to {out} after {step} steps ({stopped}); final video loss {final:.4f}; "
        f"{summary['seconds_per_step']:.3f} s/step")
    return summary


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
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of training, then save and stop")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    parser.add_argument("--lr", type=float, default=None, help="override train.lr and train.text_lr")
    parser.add_argument("--seed", type=int, default=None, help="override train.seed")
    parser.add_argument("--eval", action="store_true", help="run the gates (a) and (b) after training")
    parser.add_argument("--report", default=None, help="markdown report of the gates")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    for key, value in (("batch_size", args.batch_size), ("seed", args.seed)):
        if value is not None:
            cfg["train"][key] = value
    if args.lr is not None:
        cfg["train"]["lr"] = cfg["train"]["text_lr"] = args.lr
    if args.captions is not None:
        cfg["train"]["captions"] = args.captions
    recipe = train_backbone(cfg, args.out, args.steps, args.device, args.resume, args.time_budget, args.bf16,
                            init=args.init)
    result = {}
    if args.eval:
        from av_lightning.toy.backbone_gate import main as gate_main

        result = gate_main(["--backbone", args.out, "--device", args.device]
                           + (["--report", args.report] if args.report else []))
    return {"recipe": recipe, "gate": result}


if __name__ == "__main__":
    main()
