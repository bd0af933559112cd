"""VGGSound filtering (paper §5): keep clips whose sound and picture agree.

For every listed clip:
1. audio label: the top-1 class of an audio classifier on the middle ``audio_seconds`` of its
   audio (the fine-tuned BEATs predictor with AudioSet names in the paper; any object with
   ``predict_labels(waveform (1, S) float 16 kHz, top_k) -> [(name, prob), ...]`` works, e.g.
   :class:`HFAudioLabeler` for a transformers audio classifier such as AST);
2. image label: the top-1 class of an image classifier on the middle frame
   (:class:`ImageLabeler`, any transformers image-classification model, names from
   ``config.id2label``);
3. similarity: cosine of the CLIP text embeddings of the two labels (:class:`TextSimilarity`);
4. keep the clip when ``similarity >= threshold``.

The output CSV has one row per scored clip (kept or not), written as soon as it is scored, so
an interrupted run resumes where it stopped (ids already in the file are skipped):
``id,ytid,start_time,class,set,audio_label,audio_prob,image_label,image_prob,similarity,keep,error``.
A clip that cannot be read gets ``keep=0`` and the reason in ``error``.
:func:`read_filter_csv` turns it into the set of kept ids for ``VGGSoundDataModule(filter_csv=...)``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from av_lightning.data.clips import ClipRecord
from av_lightning.data.io import MediaError, probe, read_audio, read_frames

FIELDS = ["id", "ytid", "start_time", "class", "set", "audio_label", "audio_prob", "image_label",
          "image_prob", "similarity", "keep", "error"]


class AudioLabeler(Protocol):
    """Anything that names the sound of a waveform."""

    def predict_labels(self, waveform: torch.Tensor, top_k: int = 1) -> list:
        """``waveform`` ``(1, S)`` float at 16 kHz -> ``[(name, prob), ...]`` (or a batch of such lists)."""


def _first_item(pred: list) -> list[tuple[str, float]]:
    # BEATsEncoder.predict_labels returns one list per batch item; accept both shapes.
    return pred[0] if pred and isinstance(pred[0], list) else pred


class HFAudioLabeler:
    """A transformers audio classifier from a local path (e.g. AST fine-tuned on AudioSet).

    Probabilities: sigmoid for ``problem_type == "multi_label_classification"`` (AudioSet
    models), softmax otherwise.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.extractor = AutoFeatureExtractor.from_pretrained(str(path))
        self.model = AutoModelForAudioClassification.from_pretrained(str(path)).eval().to(device)
        self.device = device

    @torch.no_grad()
    def predict_labels(self, waveform: torch.Tensor, top_k: int = 1) -> list[tuple[str, float]]:
        inputs = self.extractor([w.cpu().numpy() for w in waveform], sampling_rate=16000, return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits[0].float()
        multi = self.model.config.problem_type == "multi_label_classification"
        probs = logits.sigmoid() if multi else logits.softmax(-1)
        top = probs.topk(min(top_k, probs.numel()))
        return [(self.model.config.id2label[int(i)], float(p)) for p, i in zip(top.values, top.indices)]


class ImageLabeler:
    """A transformers image classifier (and its image processor) from a local path."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        try:
            self.processor = AutoImageProcessor.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise OSError(f"{path}: no image processor config (preprocessor_config.json); save one with "
                          "processor.save_pretrained(path)") from exc
        self.model = AutoModelForImageClassification.from_pretrained(str(path)).eval().to(device)
        self.device = device

    @torch.no_grad()
    def predict_labels(self, image: np.ndarray, top_k: int = 1) -> list[tuple[str, float]]:
        """``image`` uint8 ``(H, W, 3)`` RGB -> ``[(name, prob), ...]`` (softmax)."""
        inputs = self.processor(images=[image], return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits[0].float()
        top = logits.softmax(-1).topk(min(top_k, logits.numel()))
        return [(self.model.config.id2label[int(i)], float(p)) for p, i in zip(top.values, top.indices)]


class TextSimilarity:
    """Cosine similarity of CLIP text embeddings (a transformers CLIP model from a local path)."""

    def __init__(self, path: str | Path, device: str = "cpu", template: str = "{}") -> None:
        from transformers import AutoTokenizer, CLIPModel

        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = CLIPModel.from_pretrained(str(path)).eval().to(device)
        self.device = device
        self.template = template

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, D)`` unit-norm text embeddings."""
        tok = self.tokenizer([self.template.format(t) for t in texts], padding=True, truncation=True, return_tensors="pt")
        out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()})
        feats = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def __call__(self, a: str, b: str) -> float:
        e = self.embed([a, b])
        return float((e[0] * e[1]).sum())


def read_filter_csv(path: str | Path, threshold: float | None = None) -> set[str]:
    """Ids kept by a filter CSV (its ``keep`` column, or ``similarity >= threshold`` if given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"filter CSV {path} not found; create it with `av-lightning filter-vggsound`")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if threshold is None:
        return {r["id"] for r in rows if r["keep"] == "1"}
    return {r["id"] for r in rows if not r["error"] and float(r["similarity"]) >= threshold}


def _scored_ids(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != FIELDS:
            raise ValueError(f"{path} is not a filter CSV (columns {reader.fieldnames}); choose another --out")
        return {r["id"] for r in reader}


def score_clip(
    record: ClipRecord,
    audio_labeler: AudioLabeler,
    image_labeler: ImageLabeler,
    similarity: TextSimilarity,
    audio_seconds: float = 10.0,
    sample_rate: int = 16000,
) -> dict:
    """Labels and similarity of one clip (see the module docstring); raises MediaError."""
    vinfo = probe(record.video, decode_check=False)
    ainfo = vinfo if record.audio == record.video else probe(record.audio, decode_check=False)
    if not ainfo.has_audio:
        raise MediaError(f"{record.audio}: no audio stream")
    duration = ainfo.audio_duration or ainfo.duration
    seconds = min(duration, audio_seconds)
    start = max(0.0, (duration - seconds) / 2)
    wave = read_audio(record.audio, start, int(seconds * sample_rate), sample_rate)
    audio_label, audio_prob = _first_item(audio_labeler.predict_labels(wave[None], top_k=1))[0]
    vdur = vinfo.video_duration or vinfo.duration
    frame = read_frames(record.video, vdur / 2, 1, fps=vinfo.fps or 24.0)[0].permute(1, 2, 0).numpy()
    image_label, image_prob = image_labeler.predict_labels(frame, top_k=1)[0]
    return {"audio_label": audio_label, "audio_prob": audio_prob, "image_label": image_label,
            "image_prob": image_prob, "similarity": similarity(audio_label, image_label)}


def filter_clips(
    records: Sequence[ClipRecord],
    audio_labeler: AudioLabeler,
    image_labeler: ImageLabeler,
    similarity: TextSimilarity,
    out_csv: str | Path,
    threshold: float,
    audio_seconds: float = 10.0,
) -> dict:
    """Score every record not yet in ``out_csv`` and append its row (resumable).

    Returns:
        counts: ``{"scored": new rows, "kept": kept among them, "errors": unreadable, "skipped": already scored}``.
    """
    out_csv = Path(out_csv)
    done = _scored_ids(out_csv)
    todo = [r for r in records if r.id not in done]
    counts = {"scored": 0, "kept": 0, "errors": 0, "skipped": len(records) - len(todo)}
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    new_file = not out_csv.is_file()
    with open(out_csv, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for r in tqdm(todo, desc="filtering clips", unit="clip"):
            row = {"id": r.id, "ytid": r.extra.get("ytid", r.id), "start_time": r.extra.get("start_time", ""),
                   "class": r.label, "set": r.split, "error": ""}
            try:
                s = score_clip(r, audio_labeler, image_labeler, similarity, audio_seconds)
            except MediaError as exc:
                row.update(audio_label="", audio_prob="", image_label="", image_prob="", similarity="", keep=0,
                           error=str(exc).replace("\n", " "))
                counts["errors"] += 1
            else:
                keep = int(s["similarity"] >= threshold)
                row.update(audio_label=s["audio_label"], audio_prob=f"{s['audio_prob']:.6f}",
                           image_label=s["image_label"], image_prob=f"{s['image_prob']:.6f}",
                           similarity=f"{s['similarity']:.6f}", keep=keep)
                counts["kept"] += keep
            writer.writerow(row)
            f.flush()
            counts["scored"] += 1
    return counts
