"""AudioSet class names in the order of the 527-way predictors (BEATs, AST fine-tuned on AudioSet).

The list ships with the package (``av_lightning/assets/audioset_class_labels_indices.csv``, from
the public AudioSet ontology, CC BY 4.0) and is read through ``importlib.resources``.
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from importlib import resources

AUDIOSET_CSV = "audioset_class_labels_indices.csv"
NUM_AUDIOSET_CLASSES = 527


@lru_cache(maxsize=1)
def audioset_labels() -> tuple[str, ...]:
    """The 527 AudioSet display names, index i = predictor output i (e.g. 0 -> "Speech")."""
    rows = audioset_label_rows()
    return tuple(name for _, _, name in rows)


@lru_cache(maxsize=1)
def audioset_label_rows() -> tuple[tuple[int, str, str], ...]:
    """``(index, mid, display_name)`` for each class, checked to be 0..526 in order."""
    text = (
        resources.files("av_lightning").joinpath("assets", AUDIOSET_CSV).read_text(encoding="utf-8")
    )
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames != ["index", "mid", "display_name"]:
        raise ValueError(
            f"{AUDIOSET_CSV}: expected the header index,mid,display_name, got {reader.fieldnames}; "
            "reinstall av_lightning"
        )
    rows = tuple((int(r["index"]), r["mid"], r["display_name"]) for r in reader)
    if [r[0] for r in rows] != list(range(NUM_AUDIOSET_CLASSES)):
        raise ValueError(
            f"{AUDIOSET_CSV}: expected indices 0..{NUM_AUDIOSET_CLASSES - 1} in order, got {len(rows)} rows"
        )
    return rows
