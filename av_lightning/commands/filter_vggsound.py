"""``av-lightning filter-vggsound``: score VGGSound clips and write the filtered CSV (paper §5).

Example::

    av-lightning filter-vggsound --root data/vggsound --csv vggsound.csv --out data/vggsound/filtered.csv \\
        --audio-model BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt \\
        --image-model models/vit-base-patch16-224 --clip-model models/clip-vit-large-patch14 --threshold 0.5

``--audio-model`` is a BEATs ``.pt`` checkpoint with its AudioSet predictor, or a folder with a
transformers audio-classification model (e.g. AST fine-tuned on AudioSet). Rerunning with the
same ``--out`` resumes. Then train with ``data.init_args.filter_csv: filtered.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from av_lightning.data.datamodules import VGGSoundDataModule
from av_lightning.data.filtering import HFAudioLabeler, ImageLabeler, TextSimilarity, filter_clips


def load_audio_labeler(path: str, device: str = "cpu"):
    """BEATs for a ``.pt`` file, a transformers audio classifier for a folder."""
    if Path(path).is_dir():
        return HFAudioLabeler(path, device)
    if not Path(path).is_file():
        raise FileNotFoundError(f"--audio-model {path}: no such file or folder")
    from av_lightning.encoders.beats import BEATsEncoder

    model = BEATsEncoder.from_checkpoint(path).to(device)
    if not model.has_predictor:
        raise ValueError(f"--audio-model {path} has no AudioSet predictor; use a fine-tuned BEATs checkpoint")
    return model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-lightning filter-vggsound", description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="dataset root with video/ and audio/")
    p.add_argument("--csv", default="vggsound.csv", help="manifest (relative to --root or absolute)")
    p.add_argument("--out", required=True, help="output CSV (appended to when it exists: resumable)")
    p.add_argument("--audio-model", required=True, help="BEATs .pt with predictor, or a transformers audio classifier folder")
    p.add_argument("--image-model", required=True, help="transformers image-classification model folder")
    p.add_argument("--clip-model", required=True, help="transformers CLIP model folder (with its tokenizer)")
    p.add_argument("--threshold", type=float, default=0.5, help="keep clips with label similarity >= this")
    p.add_argument("--name-pattern", default=VGGSoundDataModule.default_name_pattern, help="file stem from CSV fields")
    p.add_argument("--template", default="{}", help="text template for both labels, e.g. 'a photo of {}'")
    p.add_argument("--splits", nargs="+", default=["train", "test"], help="CSV sets to score")
    p.add_argument("--audio-seconds", type=float, default=10.0, help="seconds of audio (from the middle) to classify")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, default=None, help="score only the first N clips (trials)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dm = VGGSoundDataModule(args.root, manifest=args.csv, name_pattern=args.name_pattern, min_clips_per_class=0)
    records = [r for r in dm.list_records() if r.split in args.splits][: args.limit]
    counts = filter_clips(
        records,
        load_audio_labeler(args.audio_model, args.device),
        ImageLabeler(args.image_model, args.device),
        TextSimilarity(args.clip_model, args.device, args.template),
        args.out,
        args.threshold,
        args.audio_seconds,
    )
    print(
        f"filter-vggsound: scored {counts['scored']} clips ({counts['skipped']} already in {args.out}), "
        f"kept {counts['kept']}, {counts['errors']} unreadable — wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
