"""Audio-conditioned sampling against the stock text-conditioned loop (same UNet, scheduler, steps).

- stock: the prompt encoded once, then S DDIM steps with classifier-free guidance, the UNet's own
  text path (encoder_hidden_states (2B, N, d)) — what a plain text-to-video pipeline does;
- audio: TempoTokens conditioning (audio encoder, mapper, tokens, per-frame CLIP) computed once,
  then the same S steps with per-frame cross-attention.

Both start from the same noise; times alternate round after round.

    python bench/sample.py                       # the shipped toy backbone on the CPU
    python bench/sample.py --device cuda --steps 25
"""

from __future__ import annotations

import argparse
from importlib.resources import files

import torch

from bench.common import machine, peak_gib, report, reset_peak, table, time_interleaved


def build(device):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.encoders.mel import MelEncoder
    from av_lightning.module import AudioToVideo
    from av_lightning.tempo import AttentivePool, AudioMapper, TempoTokens

    torch.manual_seed(0)
    backbone = DiffusersT2V(pretrained=str(files("av_lightning") / "assets/toy_backbone"))
    enc = MelEncoder(n_mels=32, frame_rate=50.0)
    d = backbone.text_width
    model = AudioToVideo(backbone, enc, AudioMapper(enc.feature_size, 128, d), TempoTokens(n_scales=5, pool=AttentivePool(d)),
                         num_frames=12, fps=6.0, audio_prompt="a <audio>")
    return model.to(device).eval()


@torch.no_grad()
def main(argv=None) -> None:
    from av_lightning.data.toyworld import toy_clip
    from av_lightning.pipeline import sample

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="docs/results/sample.md")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model = build(device)
    clips = [toy_clip(i) for i in range(a.batch)]
    batch = {"audio": torch.stack([c["audio"] for c in clips]).to(device), "label": [c["label"] for c in clips]}
    shape = model.latent_shape(a.batch, 16, 16)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    bb = model.backbone

    def stock():
        text = bb.encode_text([f"a {label}" for label in batch["label"]])
        sample(bb.denoise, bb.make_scheduler(), text, shape, uncond=bb.encode_text([""]),
               steps=a.steps, guidance_scale=a.guidance, latents=noise, progress=False)

    def audio():
        cond, _ = model.conditioning(batch, "audio")
        sample(bb.denoise, bb.make_scheduler(), cond, shape, uncond=bb.encode_text([""]),
               steps=a.steps, guidance_scale=a.guidance, latents=noise, progress=False)

    reset_peak(device)
    times = time_interleaved({"stock text-conditioned loop": stock, "audio-conditioned (TempoTokens)": audio},
                             device, warmup=1, repeat=a.repeat)
    base = times["stock text-conditioned loop"]
    rows = [[name, round(sec, 3), round(sec / base, 3)] for name, sec in times.items()]
    body = (f"Machine: {machine(device)}. The shipped toy backbone (pixel space, 12 frames of 16×16), batch {a.batch}, "
            f"{a.steps} DDIM steps, CFG {a.guidance}, K = {model.tokens.num_tokens} tokens per frame, mel encoder. "
            f"Median of {a.repeat} alternating rounds after one warm-up; peak memory {peak_gib(device):.2f} GiB.\n\n"
            + table(["loop", "seconds", "ratio to stock"], rows))
    report(a.out, "Sampling: audio-conditioned against the stock text loop", body)


if __name__ == "__main__":
    main()
