"""Dataset manifests: the ``ytid,start_time,class,set`` CSV of the official layout (DESIGN §7).

:func:`read_manifest` reads it with or without a header row and with the usual spellings of its
columns; :func:`stable_rank` orders clips the same way in every run and for any CSV order (the
validation subset and folder splits are chosen by it).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

#: Accepted spellings of the manifest columns (first match wins).
COLUMN_ALIASES = {
    "ytid": ("ytid", "youtube_id", "id", "video_id", "name"),
    "start_time": ("start_time", "start", "start_seconds", "start_s"),
    "class": ("class", "label", "caption", "category"),
    "set": ("set", "split", "subset"),
}
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test", "eval": "test"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a ``ytid,start_time,class,set`` CSV, with or without a header row.

    A first row whose second field is not a number is a header; its column names are matched
    to :data:`COLUMN_ALIASES`. Without a header the columns are positional. Extra columns are
    kept under their header names. ``start_time`` becomes an int when it is whole (so
    ``{start_time:06d}`` works in name patterns).

    Returns:
        a list of dicts with at least ``ytid``, ``start_time``, ``class``, ``set``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; pass manifest=PATH (a ytid,start_time,class,set CSV)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(x.strip() for x in r)]
    if not rows:
        raise ValueError(f"manifest {path} is empty")
    first = [x.strip() for x in rows[0]]
    if len(first) >= 2 and not _is_number(first[1]):
        header = [h.lower() for h in first]
        body = rows[1:]
        index = {}
        for key, names in COLUMN_ALIASES.items():
            for name in names:
                if name in header:
                    index[key] = header.index(name)
                    break
        missing = [k for k in ("ytid", "class") if k not in index]
        if missing:
            raise ValueError(f"manifest {path}: header {first} lacks column(s) {missing}; expected ytid,start_time,class,set")
    else:
        header = ["ytid", "start_time", "class", "set"][: len(first)]
        body = rows
        index = {k: i for i, k in enumerate(header)}
    out = []
    for lineno, row in enumerate(body, start=len(rows) - len(body) + 1):
        row = [x.strip() for x in row]
        rec = {h: row[i] for i, h in enumerate(header) if i < len(row)}
        for key, i in index.items():
            rec[key] = row[i] if i < len(row) else ""
        start = rec.get("start_time", "") or "0"
        try:
            value = float(start)
        except ValueError as exc:
            raise ValueError(f"manifest {path} line {lineno}: start_time {start!r} is not a number") from exc
        rec["start_time"] = int(value) if value.is_integer() else value
        rec["set"] = SPLIT_ALIASES.get(rec.get("set", "train").lower(), rec.get("set", "train").lower())
        out.append(rec)
    return out


def stable_rank(key: str) -> str:
    """A run- and order-independent sort key (SHA-1 hex of ``key``)."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()
