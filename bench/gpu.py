"""Full-size costs on one GPU: random weights in zeroscope_v2_576w's shapes, BEATs-sized audio states.

24 frames at 384×384 (48×48 latents), bf16 frozen parts, activation checkpointing. Measures:
- the training step (cached features: latents + BEATs states) at batch 1 and 2 against the floor,
  the UNet's own forward + backward with plain text conditioning of the same shapes: seconds and
  peak allocated memory;
- sampling 24 frames with 25 DDIM steps and classifier-free guidance, audio-conditioned against
  the stock text-conditioned loop (same UNet, scheduler and steps), latents only (no VAE decode).

Skipped cleanly without a GPU. Writes the zeroscope section of docs/results/gpu.md (with the card's
name; a smoke run writes only where --out says):

    python bench/gpu.py [--out docs/results/gpu.md] [--smoke]   # --smoke: tiny shapes, any device
    python -m bench.gpu --wan [...]   # the Wan 2.1 T2V 1.3B section instead (bench/gpu_wan.py)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from bench.common import (
    BEATS_LAYERS,
    BEATS_WIDTH,
    CachedStatesEncoder,
    machine,
    peak_gib,
    report,
    reset_peak,
    sync,
    table,
    time_it,
    unet_floor,
)


def build(smoke: bool, device: torch.device):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.backbones.shapes import ZEROSCOPE_TEXT, ZEROSCOPE_UNET
    from av_lightning.backbones.tiny import tiny_configs
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens

    torch.manual_seed(0)
    if smoke:
        cfg = tiny_configs(pixel_space=False)
        cfg.pop("vae")
        parts, hidden = {"unet": cfg["unet"], "text_encoder": cfg["text_encoder"]}, 64
    else:
        parts, hidden = {"unet": ZEROSCOPE_UNET, "text_encoder": ZEROSCOPE_TEXT, "tokenizer_max_length": 77}, 2304
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    with device:
        backbone = DiffusersT2V(**parts, vae=None, dtype=dtype, gradient_checkpointing=True)
        d = backbone.text_width
        model = AudioToVideo(backbone, CachedStatesEncoder(), AudioMapper(BEATS_LAYERS * BEATS_WIDTH, hidden, d, depth=4),
                             TempoTokens(n_scales=5, pool=AttentivePool(d)), num_frames=24, fps=24.0,
                             optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5))
    return model.to(device)


def cached_batch(model, batch: int, latent: int, device) -> dict:
    C = model.backbone.latent_channels
    return {"latents": torch.randn(batch, C, 24, latent, latent, device=device),
            "audio_states": torch.randn(batch, 6, BEATS_LAYERS, BEATS_WIDTH, device=device),
            "label": ["a drum kit"] * batch}


def train_rows(model, device, latent: int, repeat: int) -> list[list]:
    opt = model.configure_optimizers()
    rows = []
    for B in (1, 2):
        batch = cached_batch(model, B, latent, device)
        x0 = batch["latents"]
        text = model.backbone.encode_text(batch["label"]).detach()

        floor = unet_floor(model.backbone, x0, text)

        def step(batch=batch):
            loss = model.diffusion_loss(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for name, fn in (("floor: UNet fwd+bwd, text", floor), ("adapter step, cached", step)):
            torch.cuda.empty_cache() if device.type == "cuda" else None
            reset_peak(device)
            sec = time_it(fn, device, warmup=1, repeat=repeat)
            rows.append([B, name, round(sec, 3), round(peak_gib(device), 2)])
        rows[-1].append(round(rows[-1][2] / rows[-2][2], 3))
        rows[-2].append(1.0)
    return rows


@torch.no_grad()
def sample_rows(model, device, latent: int, steps: int) -> list[list]:
    from av_lightning.pipeline import sample

    batch = cached_batch(model, 1, latent, device)
    shape = (1, model.backbone.latent_channels, 24, latent, latent)
    uncond = model.backbone.encode_text([""])
    text = model.backbone.encode_text(batch["label"])
    noise = torch.randn(shape, device=device)

    def stock():
        sample(model.backbone.denoise, model.backbone.make_scheduler(), text, shape, uncond=uncond,
               steps=steps, guidance_scale=9.0, latents=noise, progress=False)

    def audio():
        cond, _ = model.conditioning(batch, "audio")  # tokens + per-frame CLIP, once per video
        sample(model.backbone.denoise, model.backbone.make_scheduler(), cond, shape, uncond=uncond,
               steps=steps, guidance_scale=9.0, latents=noise, progress=False)

    rows = []
    for name, fn in (("stock text-conditioned loop", stock), ("audio-conditioned (TempoTokens)", audio)):
        reset_peak(device)
        sec = time_it(fn, device, warmup=1, repeat=2)
        rows.append([name, round(sec, 2), round(peak_gib(device), 2)])
    rows[0].append(1.0)
    rows[1].append(round(rows[1][1] / rows[0][1], 3))
    return rows


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--wan" in argv:
        from bench.gpu_wan import main as wan_main

        return wan_main([x for x in argv if x != "--wan"])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wan", action="store_true", help="the Wan 2.1 section (options: --wan --help)")
    p.add_argument("--out", default=None, help="results page [default: docs/results/gpu.md; none with --smoke]")
    p.add_argument("--smoke", action="store_true", help="tiny shapes (checks the script on any device)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    if not torch.cuda.is_available() and not a.smoke:
        print("bench/gpu.py: no CUDA device; skipped (run with --smoke to check the script on the CPU)")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    latent = 8 if a.smoke else 48
    start = time.perf_counter()
    model = build(a.smoke, device)
    model.train()
    build_s = time.perf_counter() - start
    trainable, frozen = model.parameter_counts()
    train = train_rows(model, device, latent, a.repeat)
    model.eval()
    samp = sample_rows(model, device, latent, a.steps)
    sync(device)
    size = latent * 8
    body = (
        f"Device: {machine(device)}. Random weights in zeroscope_v2_576w's shapes "
        f"({frozen / 1e6:.0f}M frozen parameters: UNet3D 320/640/1280/1280 + 23-layer 1024-wide CLIP text; "
        f"{trainable / 1e6:.1f}M trainable: mapper 9216→2304→1024 + attentive pool), "
        f"24 frames at {size}×{size} ({latent}×{latent} latents), bf16 frozen parts, activation checkpointing, "
        f"K = {model.tokens.num_tokens} tokens per frame; build took {build_s:.0f} s.\n\n"
        "## Training step (cached latents and BEATs states; median of timed repeats after one warm-up)\n\n"
        + table(["batch", "step", "seconds", "peak GiB", "ratio to floor"], train)
        + f"\n\n## Sampling 24 frames, {a.steps} DDIM steps, CFG 9 (latents; VAE decode not included)\n\n"
        + table(["loop", "seconds", "peak GiB", "ratio to stock"], samp)
    )
    from bench.gpu_wan import write_section

    text = report(None, "Full-size GPU costs", body)
    out = a.out or (None if a.smoke else "docs/results/gpu.md")
    if out:
        write_section(out, "zeroscope", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
