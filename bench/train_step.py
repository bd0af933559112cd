"""One adapter training step against the floor: the frozen UNet's own forward + backward.

Three rows, measured in one run on the same model:
- floor: UNet forward + backward with plain text conditioning (B, N, d) of the same shapes
  (gradient taken with respect to the conditioning, so the backward runs through the UNet);
- adapter, cached: a full training step (mapper, tokens, per-frame CLIP, UNet, loss, AdamW) fed
  with precomputed latents and audio-encoder states, as the feature cache gives them;
- adapter, uncached: the same step from raw frames and audio (VAE encode + audio encoder each step).

    python bench/train_step.py                     # tiny latent model on the CPU
    python bench/train_step.py --device cuda --frames 16 --size 64 --batch 8
"""

from __future__ import annotations

import argparse

import torch

from bench.common import machine, peak_gib, report, reset_peak, table, time_interleaved, unet_floor


def build(frames: int, fps: float, size: int, seed: int = 0):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.backbones.tiny import tiny_configs
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens

    torch.manual_seed(seed)
    cfg = tiny_configs(pixel_space=False)
    cfg["unet"]["sample_size"] = size // 2
    backbone = DiffusersT2V(**cfg)
    encoder = MelEncoder(n_mels=32, frame_rate=50.0)
    d = backbone.text_width
    return AudioToVideo(backbone, encoder, AudioMapper(encoder.feature_size, 64, d), TempoTokens(n_scales=5, pool=AttentivePool(d)),
                        num_frames=frames, fps=fps, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5))


def batch_for(model, batch: int, frames: int, fps: float, size: int, device) -> dict:
    from av_lightning.data.synthetic import synthetic_clip

    clips = [synthetic_clip(i, frames, fps, size, 16000) for i in range(batch)]
    raw = {"frames": torch.stack([c["frames"] for c in clips]).to(device),
           "audio": torch.stack([c["audio"] for c in clips]).to(device), "label": [c["label"] for c in clips]}
    with torch.no_grad():
        out = model.encoder(raw["audio"])
        cached = {"latents": model.backbone.encode_frames(raw["frames"]), "audio_states": out.hidden_states,
                  "audio": raw["audio"], "label": raw["label"]}
    return raw, cached


def measure(model, raw: dict, cached: dict, device, repeat: int) -> tuple[list[list], float]:
    opt = model.configure_optimizers()
    x0 = cached["latents"]
    text = model.backbone.encode_text(raw["label"]).detach()

    floor = unet_floor(model.backbone, x0, text)

    def step(batch):
        def run():
            loss = model.diffusion_loss(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    fns = {"floor: UNet fwd+bwd, text conditioning": floor, "adapter step, cached features": step(cached),
           "adapter step, from frames + audio": step(raw)}
    reset_peak(device)
    times = time_interleaved(fns, device, warmup=1, repeat=repeat)
    base = times["floor: UNet fwd+bwd, text conditioning"]
    return [[name, round(1.0 / sec, 3), round(sec / base, 3)] for name, sec in times.items()], peak_gib(device)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="docs/results/train_step.md")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model = build(a.frames, a.fps, a.size).to(device)
    model.train()
    raw, cached = batch_for(model, a.batch, a.frames, a.fps, a.size, device)
    rows, peak = measure(model, raw, cached, device, a.repeat)
    body = (f"Machine: {machine(device)}. Tiny latent backbone (UNet3D 32/64, VAE 16/32), batch {a.batch}, "
            f"{a.frames} frames of {a.size}×{a.size}, mel encoder, K = {model.tokens.num_tokens} tokens per frame. "
            "Median of the timed repeats (the three steps alternate, round after round) after one warm-up; "
            f"ratio = step time / floor time. Peak memory of the whole run: {peak:.2f} GiB "
            "(peak RSS on the CPU, allocated memory on a GPU).\n\n"
            + table(["step", "steps/s", "ratio to floor"], rows))
    report(a.out, "Training step against the frozen UNet's forward + backward", body)


if __name__ == "__main__":
    main()
