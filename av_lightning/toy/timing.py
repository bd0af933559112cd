"""Where the events of sampled toy clips fall: against the clips' own events and against another clip's (chance).

The scoring that the backbone's gate (c) (:mod:`av_lightning.toy.backbone_gate`) and the oracle
tokens (:mod:`av_lightning.toy.controllability`) share: held-out clips drawn in memory, DDIM
samples for whole-clip or per-frame conditioning, the probe's exact-frame recall and precision of
flashes and jumps, and AV-Align (paper) against each clip's audio.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from av_lightning.data.toyworld import CLASSES, FPS, NUM_FRAMES, SAMPLE_RATE, SIZE, clip_seed, toy_clip
from av_lightning.pipeline import frame_mean

#: The demo's sampler (``make demo``: DDIM steps, and ``configs/toy.yaml``'s ``guidance_scale``,
#: ``temporal_guidance_scale`` and ``temporal_guidance_span``). The backbone's gates (per-frame text and,
#: with ``--oracle-steps``, the oracle tokens) are measured with classifier-free guidance alone and also
#: with the demo's temporal guidance: ``m + w_t (c - m)`` over the noisier span, ``m`` the conditioning
#: averaged over the clip's frames (what the demo does with the audio tokens).
DEMO_STEPS = 8
DEMO_GUIDANCE = 3.0
DEMO_TEMPORAL_GUIDANCE = 6.0
DEMO_TEMPORAL_SPAN = 0.5

#: Gate (c)'s bars: each exact-frame recall, its chance level, and AV-Align.
TIMING_BARS = {"event_exact": 0.8, "chance": 0.35, "av_align": 0.7}


def held_out_clips(n: int, world_seed: int = 0) -> dict:
    """The first ``n`` test clips of the toy world of ``world_seed`` (the demo's clips), drawn in memory.

    Returns:
        dict of ``frames`` uint8 ``(n, F, 3, H, W)``, ``audio`` ``(n, S)``, ``label`` (n names),
        ``events`` (n lists of event frames).
    """
    clips = [toy_clip(clip_seed(world_seed, "test", i), CLASSES[i % len(CLASSES)]) for i in range(n)]
    return {"frames": torch.stack([c["frames"] for c in clips]), "audio": torch.stack([c["audio"] for c in clips]),
            "label": [c["label"] for c in clips], "events": [c["events"] for c in clips]}


@torch.no_grad()
def sample_videos(backbone, cond: torch.Tensor, num_frames: int = NUM_FRAMES, steps: int = DEMO_STEPS,
                  guidance_scale: float = DEMO_GUIDANCE, seed: int = 0, batch_size: int = 64,
                  static_cond: Optional[torch.Tensor] = None, temporal_guidance_scale: Optional[float] = None,
                  temporal_guidance_span: float = DEMO_TEMPORAL_SPAN) -> torch.Tensor:
    """DDIM samples for conditioning ``(B, N, d)`` or per-frame ``(B, F, N, d)``: uint8 ``(B, F, 3, H, W)``.

    With ``temporal_guidance_scale``, per-frame ``cond`` is sampled with temporal guidance against
    ``static_cond`` (same shape; default the frame mean of ``cond``, :func:`av_lightning.pipeline.frame_mean`)."""
    from av_lightning.pipeline import sample

    uncond = backbone.encode_text([""])
    if temporal_guidance_scale and static_cond is None:
        static_cond = frame_mean(cond)
    if temporal_guidance_scale and static_cond.shape != cond.shape:
        raise ValueError(f"static_cond {tuple(static_cond.shape)} must have the shape of cond {tuple(cond.shape)}")
    statics = static_cond.split(batch_size) if temporal_guidance_scale else [None] * len(cond.split(batch_size))
    g = torch.Generator().manual_seed(seed)
    out = []
    for chunk, static in zip(cond.split(batch_size), statics):
        shape = (chunk.shape[0], backbone.latent_channels, num_frames, SIZE, SIZE)
        latents = sample(backbone.denoise, backbone.make_scheduler("ddim"), chunk, shape, uncond=uncond, steps=steps,
                         guidance_scale=guidance_scale, generator=g, progress=False, static_cond=static,
                         temporal_guidance_scale=temporal_guidance_scale or None,
                         temporal_guidance_span=temporal_guidance_span)
        out.append(backbone.decode_latents(latents).cpu())
    return torch.cat(out)


def timing_scores(videos: torch.Tensor, clips: dict) -> dict:
    """Probe figures against each clip's own events and against another clip's (chance), and AV-Align.

    Returns :func:`~av_lightning.toy.probe.probe_summary` keys, the same keys prefixed ``chance_``
    (events of the next clip in the batch, cyclically), and ``av_align`` (paper mode, mean over
    clips with peaks) with ``av_align_empty`` (clips with no peak on either side).
    """
    from av_lightning.metrics.alignment import align_clips
    from av_lightning.toy.probe import probe_summary

    events = clips["events"]
    own = probe_summary(videos, clips["label"], events)
    other = probe_summary(videos, clips["label"], events[1:] + events[:1])
    out = dict(own)
    out.update({f"chance_{k}": v for k, v in other.items() if "recall" in k or "precision" in k})
    aligned = align_clips(videos, clips["audio"], fps=FPS, sample_rate=SAMPLE_RATE, mode="paper")
    scores = [c.score for c in aligned if not c.empty]
    out["av_align"] = float(np.mean(scores)) if scores else float("nan")
    out["av_align_empty"] = sum(c.empty for c in aligned)
    return out


def timing_passed(r: dict) -> bool:
    """Gate (c)'s bars (:data:`TIMING_BARS`)."""
    return (min(r["flash_exact_recall"], r["jump_exact_recall"], r["event_exact_recall"]) >= TIMING_BARS["event_exact"]
            and max(r["chance_flash_exact_recall"], r["chance_jump_exact_recall"]) <= TIMING_BARS["chance"]
            and r["av_align"] >= TIMING_BARS["av_align"])


def _timing_rows(r: dict) -> list[str]:
    return [
        f"| flash on the exact event frame (recall) | {r['flash_exact_recall']:.3f} | {r['chance_flash_exact_recall']:.3f} |",
        f"| jump on the exact event frame (recall) | {r['jump_exact_recall']:.3f} | {r['chance_jump_exact_recall']:.3f} |",
        f"| flash and jump on the exact event frame | {r['event_exact_recall']:.3f} | {r['chance_event_exact_recall']:.3f} |",
        f"| flashes on an event frame (exact precision) | {r['flash_exact_precision']:.3f} | {r['chance_flash_exact_precision']:.3f} |",
        f"| jumps on an event frame (exact precision) | {r['jump_exact_precision']:.3f} | {r['chance_jump_exact_precision']:.3f} |",
        f"| jump recall / precision (±1 frame) | {r['event_recall']:.3f} / {r['event_precision']:.3f} | "
        f"{r['chance_event_recall']:.3f} / {r['chance_event_precision']:.3f} |",
        f"| AV-Align (paper) with the clip's audio | {r['av_align']:.3f} | |",
        f"| flashes / jumps per clip | {r['flashes_per_clip']:.2f} / {r['jumps_per_clip']:.2f} | |",
        f"| class accuracy | {r['class_accuracy']:.3f} | |",
    ]


def timing_table(r: dict) -> list[str]:
    """Markdown rows of :func:`timing_scores` output: own events against another clip's (chance)."""
    return ["| | own events | another clip's events (chance) |", "|---|---|---|", *_timing_rows(r)]
