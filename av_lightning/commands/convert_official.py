"""``av-lightning convert-official``: the authors' ``learned_embeds.pth`` -> an adapter file.

    av-lightning convert-official learned_embeds.pth --out drums.safetensors \\
        --beats /models/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt \\
        --backbone /models/zeroscope_v2_576w
    av-lightning generate --audio drums.wav --checkpoint drums.safetensors

The adapter runs in the official compatibility mode (``docs/official.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


def build_parser() -> argparse.ArgumentParser:
    from av_lightning.official import OFFICIAL_BACKBONE

    p = argparse.ArgumentParser(prog="av-lightning convert-official",
                                description="Convert an official TempoTokens mapper (learned_embeds.pth) into an adapter file.")
    p.add_argument("src", type=Path, help="the official learned_embeds.pth")
    p.add_argument("--out", type=Path, required=True, help="output adapter .safetensors")
    p.add_argument("--beats", default=None,
                   help="BEATs checkpoint path recorded in the adapter (else give --encoder-checkpoint to generate)")
    p.add_argument("--backbone", default=OFFICIAL_BACKBONE,
                   help="zeroscope_v2_576w directory recorded in the adapter [default: %(default)s]")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point; returns 0 on success, 2 on bad input."""
    args = build_parser().parse_args(argv)
    from av_lightning.official import convert_official

    if args.out.suffix != ".safetensors":
        print(f"convert-official: error: --out {args.out} must end in .safetensors", file=sys.stderr)
        return 2
    try:
        out = convert_official(args.src, args.out, beats_checkpoint=args.beats, backbone=args.backbone)
    except (FileNotFoundError, ValueError) as err:
        print(f"convert-official: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} (official compatibility mode: 6 tokens per frame, 24 frames per second of audio)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
