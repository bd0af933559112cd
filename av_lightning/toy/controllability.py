"""Can per-frame tokens steer a frozen backbone? An oracle check for the toy world.

TempoTokens drives *when* things happen only through per-frame prompt tokens, so a backbone is a
usable host only if some token sequence moves its events in time. This module measures that
upper bound directly, with no audio in the way: it learns a few tokens per event state (quiet
frame, event frame, the frame after) — and, in ``class+state`` mode, one token per class — by the same
denoising loss the adapter uses, from the ground-truth events of freshly drawn toy clips. The
tokens are then sampled with the events of held-out clips (the toy world's test split, with
their audio) and scored by :func:`av_lightning.toy.timing.timing_scores`:

- the flash and the jump on the *exact* event frame (recall, precision), and within ±1 frame;
- the same figures against *another* clip's events (a cyclic shift of the batch), which is what
  timing that ignores the tokens scores (the chance level);
- AV-Align (paper mode) of the samples against the clips' audio;
- ``class_accuracy``: in ``class+state`` mode, whether the learnt class tokens carry the class
  (the positive control: the same training steers what the backbone's text space does encode).

It also reports how much the UNet's output moves at the frame whose token changed and at the
other frames (:func:`token_sensitivity`), next to how much it moves when the class prompt changes.

Command line (writes a markdown report)::

    python -m av_lightning.toy.controllability --steps 300 --report docs/results/toy_controllability.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from av_lightning.data.toyworld import CLASSES, NUM_FRAMES, SIZE, toy_batch
from av_lightning.data.toyworld import frame_states as event_states
from av_lightning.toy.timing import (
    DEMO_GUIDANCE,
    DEMO_STEPS,
    DEMO_TEMPORAL_GUIDANCE,
    DEMO_TEMPORAL_SPAN,
    frame_mean,
    held_out_clips,
    sample_videos,
    timing_scores,
    timing_table,
)

Mode = Literal["state", "class+state"]
STATES = ("quiet", "event", "after")
PLACEHOLDER = "<audio>"


class OracleTokens(nn.Module):
    """Learnt tokens from ground truth: ``S`` tokens per event state, and optionally a class token.

    Args:
        dim: token width (the backbone's text width).
        mode: ``"state"`` (K = S; the class comes from the text prompt) or ``"class+state"``
            (K = S + 1).
        state_tokens: S, tokens per frame for its event state (6 + a class token = the 7 tokens per
            frame of the toy adapter).
        scale: standard deviation of the initial tokens (the token-embedding scale of the backbone).
    """

    def __init__(self, dim: int, mode: Mode = "class+state", state_tokens: int = 6, scale: float = 0.02):
        super().__init__()
        if mode not in ("state", "class+state"):
            raise ValueError(f"mode must be 'state' or 'class+state', got {mode!r}")
        if state_tokens < 1:
            raise ValueError(f"state_tokens must be >= 1, got {state_tokens}")
        self.mode = mode
        self.state = nn.Parameter(torch.randn(len(STATES), state_tokens, dim) * scale)
        self.cls = nn.Parameter(torch.randn(len(CLASSES), 1, dim) * scale) if mode == "class+state" else None

    @property
    def num_tokens(self) -> int:
        return self.state.shape[1] + (self.cls is not None)

    def templates(self, labels: torch.Tensor) -> list[str]:
        if self.mode == "state":
            return [f"a {CLASSES[int(y)]} {PLACEHOLDER}" for y in labels]
        return [f"a {PLACEHOLDER}"] * len(labels)

    def forward(self, labels: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        """``(B,)`` class indices and ``(B, F)`` event masks -> ``(B, F, K, d)`` tokens."""
        st = self.state[event_states(events)]  # (B, F, S, d)
        if self.cls is None:
            return st
        cl = self.cls[labels.long()][:, None].expand(-1, events.shape[1], -1, -1)
        return torch.cat([cl, st], dim=2)


def train_oracle(backbone, mode: Mode = "class+state", steps: int = 300, batch_size: int = 16, lr: float = 1e-2,
                 timestep_range: Sequence[float] = (0.6, 1.0), seed: int = 0, state_tokens: int = 6,
                 log_every: int = 50) -> tuple[OracleTokens, list[float]]:
    """Fit :class:`OracleTokens` on a frozen ``DiffusersT2V`` by the denoising loss; returns (tokens, losses).

    ``timestep_range`` defaults to the noisier 40 % of the schedule, where a frame's look is decided
    (on a joint video-image backbone, 150 steps put the flash on the exact event frame for 0.99 of
    events with (0.6, 1.0) and 0.37 with (0.3, 1.0): docs/results/toy_history.md).
    """
    torch.manual_seed(seed)
    scale = float(backbone.text_encoder.get_input_embeddings().weight.std())
    oracle = OracleTokens(backbone.text_width, mode, state_tokens, scale)
    backbone.add_placeholder(PLACEHOLDER, oracle.num_tokens)  # the backbone itself is frozen by DiffusersT2V
    opt = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=0.0)
    objective = backbone.objective
    g = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        batch = toy_batch(batch_size, g)
        x0 = backbone.encode_frames(batch["frames"])
        ex = objective.example(x0, g, timestep_range)
        cond = backbone.encode_frame_prompts(oracle.templates(batch["label"]), oracle(batch["label"], batch["events"]))
        loss = F.mse_loss(backbone.denoise(ex.noisy, ex.timesteps, cond), ex.target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"oracle step {step + 1}/{steps}  loss {np.mean(losses[-log_every:]):.4f}  {time.time() - t0:.0f} s",
                  flush=True)
    return oracle, losses


@torch.no_grad()
def evaluate_oracle(backbone, oracle: OracleTokens, clips: dict, steps: int = DEMO_STEPS, guidance_scale: float = DEMO_GUIDANCE,
                    seed: int = 0, temporal_guidance_scale: Optional[float] = None) -> dict:
    """Sample held-out ``clips`` (:func:`~av_lightning.toy.timing.held_out_clips`) with the
    oracle tokens of their own events and score them (:func:`~av_lightning.toy.timing.timing_scores`).
    With ``temporal_guidance_scale``, the demo's temporal guidance: ``m`` has every frame's tokens
    replaced by their mean over the clip, as the demo does with audio tokens."""

    n = len(clips["label"])
    if n < 2:
        raise ValueError("evaluate_oracle needs two or more clips (the chance level compares each clip with another)")
    labels = torch.tensor([CLASSES.index(y) for y in clips["label"]])
    events = torch.zeros(n, NUM_FRAMES, dtype=torch.bool)
    for i, ev in enumerate(clips["events"]):
        events[i, list(ev)] = True
    templates, tokens = oracle.templates(labels), oracle(labels, events)
    cond = backbone.encode_frame_prompts(templates, tokens)
    static = None
    if temporal_guidance_scale:
        static = backbone.encode_frame_prompts(templates, frame_mean(tokens))
    videos = sample_videos(backbone, cond, steps=steps, guidance_scale=guidance_scale, seed=seed, static_cond=static,
                           temporal_guidance_scale=temporal_guidance_scale)
    return {**timing_scores(videos, clips), "n": n, "sample_steps": steps, "guidance_scale": guidance_scale,
            "temporal_guidance_scale": temporal_guidance_scale or 0.0}


@torch.no_grad()
def token_sensitivity(backbone, frame: int = NUM_FRAMES // 2, timesteps: Sequence[int] = (900, 500, 200),
                      seed: int = 0) -> dict:
    """Mean |Δ UNet output| when one frame's placeholder token changes, and when the class prompt changes.

    Returns ``{"at_frame": .., "other_frames": .., "class_prompt": ..}`` averaged over ``timesteps``:
    the change at the frame whose token moved, the mean change at the other frames, and the change
    of every frame between the prompts ``a drum`` and ``a bell`` (the scale the text space does steer).
    """
    if backbone.injector is None:
        backbone.add_placeholder(PLACEHOLDER, 1)
    K = backbone.injector.num_tokens
    g = torch.Generator().manual_seed(seed)
    scale = float(backbone.text_encoder.get_input_embeddings().weight.std())
    tok = torch.randn(1, NUM_FRAMES, K, backbone.text_width, generator=g) * scale
    moved = tok.clone()
    moved[0, frame] = torch.randn(K, backbone.text_width, generator=g) * scale
    template = [f"a {PLACEHOLDER}"]
    c0, c1 = backbone.encode_frame_prompts(template, tok), backbone.encode_frame_prompts(template, moved)
    d0, d1 = backbone.encode_text(["a drum"]), backbone.encode_text(["a bell"])
    x = torch.randn(1, backbone.latent_channels, NUM_FRAMES, SIZE, SIZE, generator=g)
    at, other, cls = [], [], []
    for t in timesteps:
        tt = torch.tensor([t])
        diff = (backbone.denoise(x, tt, c1) - backbone.denoise(x, tt, c0)).abs().mean(dim=(0, 1, 3, 4))
        at.append(float(diff[frame]))
        other.append(float(torch.cat([diff[:frame], diff[frame + 1:]]).mean()))
        cls.append(float((backbone.denoise(x, tt, d1) - backbone.denoise(x, tt, d0)).abs().mean()))
    return {"at_frame": float(np.mean(at)), "other_frames": float(np.mean(other)), "class_prompt": float(np.mean(cls))}


def write_report(path, backbone_path: str, result: dict, settings: dict, sensitivity: dict, seconds: float) -> None:

    r = result
    lines = [
        "# Toy backbone: can per-frame tokens steer it?",
        "",
        f"Written by `python -m av_lightning.toy.controllability {settings['argv']}` "
        f"({seconds / 60:.1f} min on this machine's CPU). Backbone: `{backbone_path}`.",
        "",
        f"Oracle tokens (mode `{settings['mode']}`: {settings['state_tokens']} learnt tokens per event state "
        f"(quiet, event frame, the frame after){' and one per class' if settings['mode'] == 'class+state' else ''}, "
        "from ground-truth events, no audio) "
        f"were fitted by the adapter's denoising loss: {settings['steps']} steps, batch {settings['batch_size']}, "
        f"AdamW lr {settings['lr']:g}, timesteps in {list(settings['timestep_range'])} of the schedule, seed "
        f"{settings['seed']}; then {r['n']} held-out clips were sampled with their own events' tokens "
        f"(DDIM {r['sample_steps']} steps, guidance {r['guidance_scale']:g}"
        + (f"; temporal guidance {r['temporal_guidance_scale']:g} against the frame-mean tokens over the noisier "
           f"{DEMO_TEMPORAL_SPAN:g} of the steps" if r.get("temporal_guidance_scale") else "") + ").",
        "",
        *timing_table(r),
        "",
        f"Final loss (mean of the last 50 steps): {settings['final_loss']:.4f}.",
        "",
        "Token sensitivity (mean |Δ UNet output|, timesteps 900/500/200, random noisy input):",
        "",
        "| change | at the changed frame | at the other frames |",
        "|---|---|---|",
        f"| one frame's placeholder token redrawn | {sensitivity['at_frame']:.4f} | {sensitivity['other_frames']:.4f} |",
        f"| prompt `a drum` → `a bell` (every frame) | {sensitivity['class_prompt']:.4f} | |",
        "",
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.demo import backbone_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default=None, help="diffusers folder (default: the shipped toy backbone)")
    p.add_argument("--mode", choices=["state", "class+state"], default="class+state")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--state-tokens", type=int, default=6, help="tokens per frame for its event state")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--timestep-range", type=float, nargs=2, default=(0.6, 1.0))
    p.add_argument("--n", type=int, default=64, help="held-out clips to sample (the toy world's test split)")
    p.add_argument("--sample-steps", type=int, default=DEMO_STEPS)
    p.add_argument("--guidance", type=float, default=DEMO_GUIDANCE, help="CFG scale (the demo's)")
    p.add_argument("--temporal-guidance", type=float, default=0.0,
                   help=f"sample with the demo's temporal guidance at this scale against the frame-mean tokens "
                        f"(the demo uses {DEMO_TEMPORAL_GUIDANCE:g}; 0: classifier-free guidance only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--report", default=None, help="markdown report path")
    args = p.parse_args(argv)
    if args.temporal_guidance < 0:
        p.error(f"--temporal-guidance must be >= 0 (0 turns it off), got {args.temporal_guidance:g}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    path = args.backbone or backbone_path()
    backbone = DiffusersT2V(pretrained=path)
    oracle, losses = train_oracle(backbone, args.mode, args.steps, args.batch_size, args.lr, args.timestep_range,
                                  args.seed, args.state_tokens)

    result = evaluate_oracle(backbone, oracle, held_out_clips(args.n), args.sample_steps, args.guidance,
                             args.seed, temporal_guidance_scale=args.temporal_guidance or None)
    sensitivity = token_sensitivity(backbone)
    seconds = time.time() - t0
    print(f"oracle {args.mode}: flash and jump on the event frame {result['event_exact_recall']:.3f} (chance "
          f"{result['chance_event_exact_recall']:.3f}), AV-Align {result['av_align']:.3f}, class accuracy "
          f"{result['class_accuracy']:.3f}; sensitivity {sensitivity}; {seconds:.0f} s", flush=True)
    if args.report:
        shown = " ".join(argv if argv is not None else sys.argv[1:])
        settings = dict(vars(args), argv=shown, final_loss=float(np.mean(losses[-50:])) if losses else float("nan"))
        write_report(args.report, path if args.backbone else "av_lightning/assets/toy_backbone", result, settings,
                     sensitivity, seconds)
    return {"result": result, "sensitivity": sensitivity, "losses": losses}


if __name__ == "__main__":
    main()
