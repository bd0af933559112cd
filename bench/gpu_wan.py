"""Wan 2.1 T2V 1.3B costs on one GPU: random weights in the 1.3B model's shapes, BEATs-sized audio states.

Transformer 12 heads × 128, 30 layers; umT5-XXL text encoder (24 layers, 4096 wide); the Wan VAE;
480×832 (60×104 latents), F frames (default 81 = 21 latent frames at 16 fps, 5.06 s), bf16 frozen
parts (the VAE in float32, as configs/model/wan_1_3b.yaml; unused with cached latents), activation
checkpointing in every transformer block. For each text mode (``text_encoder``:
tokens injected into umT5; ``direct``: tokens as cross-attention rows):

- the adapter's training step at batch 1 (cached latents + BEATs states; AdamW step included)
  against the floor, the transformer's own forward + backward with plain text conditioning
  ``(1, 512, 4096)`` on the same latents: seconds and peak allocated memory (goal: ≤ 1.10×, and a
  peak that fits a 48 GB card);
- sampling with S UniPC steps and classifier-free guidance 5, audio-conditioned (tokens and
  per-latent-frame prompts built inside the timed call) against the stock text-conditioned loop
  (same transformer, scheduler, steps and noise), latents only (goal: ≤ 1.02×).

Run through ``bench/gpu.py``; results go to the Wan section of docs/results/gpu.md:

    python -m bench.gpu --wan [--frames 81] [--steps 50] [--modes text_encoder direct]
    python -m bench.gpu --wan --smoke      # tiny random parts, any device: checks the script
    python -m bench.gpu --wan --dry-run    # builds the full-size parts on the meta device (no memory)
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import torch

from bench.common import (
    BEATS_LAYERS,
    BEATS_RATE,
    BEATS_WIDTH,
    CachedStatesEncoder,
    machine,
    peak_gib,
    report,
    reset_peak,
    sync,
    table,
    time_interleaved,
    time_it,
    unet_floor,
)

FPS = 16.0
SECTION = re.compile(r"^<!-- section: (\w+) -->$", re.M)


def write_section(path: str | Path, name: str, text: str) -> None:
    """Put ``text`` into section ``name`` of a results page, keeping its other sections.

    Sections start with a ``<!-- section: NAME -->`` line; text before the first marker is the
    ``zeroscope`` section (the page's original content).
    """
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    parts = SECTION.split(old)
    sections = {"zeroscope": parts[0].strip()} if parts[0].strip() else {}
    sections.update({parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)})
    sections[name] = text.strip()
    order = ["zeroscope", *sorted(k for k in sections if k != "zeroscope")]
    body = "\n\n".join(f"<!-- section: {k} -->\n{sections[k]}" for k in order if k in sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body + "\n")


def parts(smoke: bool) -> dict:
    from av_lightning.backbones.wan_parts import UMT5_XXL, WAN_1_3B_TRANSFORMER, WAN_VAE, tiny_wan_configs

    if smoke:
        return tiny_wan_configs()
    return dict(transformer=dict(WAN_1_3B_TRANSFORMER), vae=dict(WAN_VAE), text_encoder=dict(UMT5_XXL),
                text_length=512, size=(480, 832))


def dry_run(frames: int) -> str:
    """Build the full-size parts on the meta device and describe them (no memory, no weights)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    p = parts(smoke=False)
    with torch.device("meta"):
        counts = {
            "transformer": sum(x.numel() for x in WanTransformer3DModel(**p["transformer"]).parameters()),
            "vae": sum(x.numel() for x in AutoencoderKLWan(**p["vae"]).parameters()),
            "umT5-XXL encoder": sum(x.numel() for x in UMT5EncoderModel(UMT5Config(**p["text_encoder"])).parameters()),
        }
    H, W = p["size"]
    f_lat = 1 + (frames - 1) // 4
    tokens = f_lat * (H // 16) * (W // 16)
    rows = [[k, f"{v / 1e6:.0f}M"] for k, v in counts.items()]
    return (table(["part", "parameters"], rows)
            + f"\n\n{frames} frames at {H}×{W}: latents (1, 16, {f_lat}, {H // 8}, {W // 8}), {tokens} video tokens, "
            f"cross-attention context {f_lat} × 512 rows per video.")




def build(mode: str, smoke: bool, device: torch.device, frames: int):
    from av_lightning.backbones.wan import WanT2V
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens

    torch.manual_seed(0)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    with device:
        backbone = WanT2V(**parts(smoke), text_mode=mode, dtype=dtype, vae_dtype="float32", gradient_checkpointing=True)
        d = backbone.text_width
        model = AudioToVideo(backbone, CachedStatesEncoder(),
                             AudioMapper(BEATS_LAYERS * BEATS_WIDTH, 64 if smoke else 2304, d, depth=4),
                             TempoTokens(n_scales=5, pool=AttentivePool(d)), num_frames=frames, fps=FPS,
                             scheduler="unipc", optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5))
    return model.to(device)


def cached_batch(model, batch: int, frames: int, device) -> dict:
    H, W = model.backbone.default_size
    shape = model.backbone.latent_shape(batch, frames, H, W)
    steps = math.ceil(frames / FPS * BEATS_RATE)
    return {"latents": torch.randn(shape, device=device),
            "audio_states": torch.randn(batch, steps, BEATS_LAYERS, BEATS_WIDTH, device=device),
            "label": ["a drum kit"] * batch}


def _peak(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak(device)
    fn()
    sync(device)
    return peak_gib(device)


def train_rows(model, device, frames: int, repeat: int) -> list[list]:
    opt = model.configure_optimizers()
    batch = cached_batch(model, 1, frames, device)
    text = model.backbone.encode_text(batch["label"]).detach()
    floor = unet_floor(model.backbone, batch["latents"], text)

    def step():
        loss = model.diffusion_loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    fns = {"floor: transformer fwd+bwd, text": floor, "adapter step, cached": step}
    peaks = {name: _peak(fn, device) for name, fn in fns.items()}  # also the warm-up
    secs = time_interleaved(fns, device, warmup=0, repeat=repeat)
    base = secs["floor: transformer fwd+bwd, text"]
    return [[name, round(secs[name], 3), round(peaks[name], 2), round(secs[name] / base, 3)] for name in fns]


@torch.no_grad()
def sample_rows(model, device, frames: int, steps: int, repeat: int) -> list[list]:
    from av_lightning.pipeline import sample

    bb = model.backbone
    batch = cached_batch(model, 1, frames, device)
    shape = tuple(batch["latents"].shape)
    uncond = bb.encode_text([""])
    text = bb.encode_text(batch["label"])
    noise = torch.randn(shape, device=device)

    def stock(n=steps):
        sample(bb.denoise, bb.make_scheduler(), text, shape, uncond=uncond, steps=n, guidance_scale=5.0,
               latents=noise, progress=False)

    def audio(n=steps):
        cond, _ = model.conditioning(batch, "audio")  # tokens + per-latent-frame prompts, once per video
        sample(bb.denoise, bb.make_scheduler(), cond, shape, uncond=uncond, steps=n, guidance_scale=5.0,
               latents=noise, progress=False)

    rows = []
    for name, fn in (("stock text-conditioned loop", stock), ("audio-conditioned (TempoTokens)", audio)):
        fn(2)  # warm-up: two steps
        reset_peak(device)
        sec = time_it(fn, device, warmup=0, repeat=repeat)
        rows.append([name, round(sec, 2), round(peak_gib(device), 2)])
    rows[0].append(1.0)
    rows[1].append(round(rows[1][1] / rows[0][1], 3))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu --wan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="results page [default: docs/results/gpu.md; none with --smoke]")
    p.add_argument("--smoke", action="store_true", help="tiny random parts (checks the script on any device)")
    p.add_argument("--dry-run", action="store_true", help="build the full-size parts on the meta device and stop")
    p.add_argument("--frames", type=int, default=81, help="video frames, 1 + 4k [default: %(default)s]")
    p.add_argument("--steps", type=int, default=50, help="sampling steps [default: %(default)s]")
    p.add_argument("--repeat", type=int, default=3, help="timed training steps per row [default: %(default)s]")
    p.add_argument("--sample-repeat", type=int, default=1, help="timed sampling loops per row [default: %(default)s]")
    p.add_argument("--modes", nargs="+", default=["text_encoder", "direct"], choices=["text_encoder", "direct"])
    a = p.parse_args(argv)
    if a.dry_run:
        print(dry_run(a.frames))
        return 0
    if not torch.cuda.is_available() and not a.smoke:
        print("bench/gpu.py --wan: no CUDA device; skipped (--smoke checks the script on the CPU, --dry-run the shapes)")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    frames = 9 if a.smoke else a.frames
    sections = []
    for mode in a.modes:
        start = time.perf_counter()
        model = build(mode, a.smoke, device, frames)
        model.train()
        build_s = time.perf_counter() - start
        trainable, frozen = model.parameter_counts()
        train = train_rows(model, device, frames, a.repeat)
        model.eval()
        samp = sample_rows(model, device, frames, 3 if a.smoke else a.steps, a.sample_repeat)
        H, W = model.backbone.default_size
        sections.append(
            f"### text_mode: {mode}\n\n{frozen / 1e6:.0f}M frozen parameters, {trainable / 1e6:.1f}M trainable "
            f"(mapper 9216→{64 if a.smoke else 2304}→{model.backbone.text_width} "
            f"+ attentive pool), K = {model.tokens.num_tokens} tokens per frame; build took {build_s:.0f} s.\n\n"
            "Training step at batch 1 (cached latents and BEATs states; median of interleaved repeats):\n\n"
            + table(["step", "seconds", "peak GiB", "ratio to floor"], train)
            + f"\n\nSampling {frames} frames at {H}×{W}, {3 if a.smoke else a.steps} UniPC steps, CFG 5 (latents; "
            "VAE decode not included):\n\n" + table(["loop", "seconds", "peak GiB", "ratio to stock"], samp)
        )
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    H, W = parts(a.smoke)["size"]
    what = "tiny random Wan parts (smoke run: checks the script, numbers mean nothing)" if a.smoke else \
        "random weights in Wan2.1-T2V-1.3B's shapes"
    dtype = "bf16" if device.type == "cuda" else "float32"
    body = (f"Device: {machine(device)}. {what[0].upper() + what[1:]}, {frames} frames at {H}×{W} "
            f"({1 + (frames - 1) // 4} latent frames), {dtype} transformer and umT5, float32 VAE, activation "
            "checkpointing.\n\n"
            + "\n\n".join(sections))
    text = report(None, "Wan 2.1 T2V 1.3B", body).replace("# Wan", "## Wan", 1)
    out = a.out or (None if a.smoke else "docs/results/gpu.md")
    if out:
        write_section(out, "wan", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
