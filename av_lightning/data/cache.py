"""Feature cache: frozen VAE latents and audio-encoder states of every clip, computed once.

Layout::

    CACHE_DIR/<settings hash>/settings.json     clip settings + the features' settings
    CACHE_DIR/<settings hash>/index.json        clip key -> shard file and row, id, start, label
    CACHE_DIR/<settings hash>/shard-00000.safetensors
        "<row>/latents"       (C, F_lat, h, w)  from ``features.frame_features``
        "<row>/audio_states"  (...)             from ``features.audio_features``: what the mapper reads
        "<row>/audio"         (S,)              the clip's waveform (kept: losses and previews use it)
        "<row>/frames"        (F, 3, H, W)      uint8, only with ``store_frames=True``

The features come from a :class:`FeatureSource`, the model that reads them: it says which
features it needs and describes them in ``feature_settings()`` (the frame encoder, the audio
encoder, and which of the encoder's outputs: hidden states, or the raw patch tokens of the
official compatibility mode). The model names them to the DataModule with
``expect_cache(model.feature_settings())``; the data never looks into the model.

Invalidation: the folder name is a hash of the settings (clip shape and start policy, and the
feature settings), so a changed setting means another folder: :func:`open_cache` then raises
and names the settings that differ, and :func:`build_cache` computes a new cache. A clip key hashes the video and audio files'
(absolute path, size, mtime) with the clip's start (in samples) and shape, so a re-encoded or
replaced file is detected as stale when the DataModule opens the cache.

Training with the cache: each training file has ``train_starts`` K fixed candidate starts
(:func:`av_lightning.data.clips.candidate_starts`); all K are cached and every epoch picks one
per file, exactly as the uncached :class:`~av_lightning.data.clips.ClipDataset` does with the
same ``train_starts``, so cached and uncached batches are equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from lightning.pytorch.utilities import rank_zero_warn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from av_lightning.data.clips import ClipRecord, candidate_starts, clip_start, load_clip
from av_lightning.data.probing import file_identity

FORMAT_VERSION = 2


class CacheError(RuntimeError):
    """The feature cache is missing, stale, or was built with other settings."""


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class FeatureSource(Protocol):
    """What computes the cached features: the model that reads them (``AudioToVideo`` is one).

    ``feature_settings()`` describes everything the features depend on (the frame encoder, the
    audio encoder and which of its outputs the model reads), so it keys the cache.
    """

    def feature_settings(self) -> dict: ...

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor: ...

    def audio_features(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def cache_settings(clip_settings: dict, feature_settings: dict) -> dict:
    """The full description a cache folder is keyed by."""
    return {"format": FORMAT_VERSION, "clip": clip_settings, "features": feature_settings}


def settings_hash(settings: dict) -> str:
    """Folder name of a cache: 16 hex digits of the SHA-1 of the settings' JSON."""
    return _digest(settings)[:16]


def clip_key(record: ClipRecord, start: float, clip_settings: dict) -> str:
    """Hash of a clip: its files' identities, start (in audio samples) and shape."""
    sr = clip_settings["sample_rate"]
    return _digest(
        {
            "video": file_identity(record.video),
            "audio": file_identity(record.audio),
            "start": round(start * sr),
            "shape": {k: clip_settings[k] for k in ("num_frames", "fps", "size", "sample_rate", "buckets")},
        }
    )


def _clip_starts(record: ClipRecord, index: int, spec, kwargs: dict) -> list[float]:
    """Every start of file ``index`` that training or evaluation can ask for."""
    if kwargs["train"]:
        if kwargs["train_starts"] is None:
            raise CacheError("a cached training split needs train_starts (K fixed starts per file); set data.train_starts")
        return candidate_starts(record.duration, spec, kwargs["seed"], index, kwargs["train_starts"])
    return [clip_start(record.duration, spec, False, eval_start=kwargs["eval_start"])]


def _describe(settings: dict) -> str:
    return json.dumps({k: settings[k] for k in ("clip", "features") if k in settings}, sort_keys=True)


def open_cache(cache_dir: str | Path, clip_settings: dict, feature_settings: dict | None) -> Path:
    """The cache folder for these settings.

    Args:
        cache_dir: the cache root.
        clip_settings: ``datamodule.clip_settings()``.
        feature_settings: the reader's ``feature_settings()`` (:class:`FeatureSource`); None accepts
            the only cache whose clip settings match (with a warning).

    Raises:
        CacheError: no cache with these settings (the message lists those that exist).
    """
    cache_dir = Path(cache_dir)
    existing = sorted(p for p in cache_dir.glob("*/settings.json")) if cache_dir.is_dir() else []
    found = {p.parent: json.loads(p.read_text()) for p in existing}
    hint = "build it with `av-lightning cache --config ...` (or av_lightning.data.cache.build_cache)"
    if feature_settings is not None:
        wanted = cache_settings(clip_settings, feature_settings)
        folder = cache_dir / settings_hash(wanted)
        if folder in found and (folder / "index.json").is_file():
            return folder
        others = "\n  ".join(f"{p.name}: {_describe(s)}" for p, s in found.items()) or "(none)"
        raise CacheError(
            f"no feature cache in {cache_dir} for the current settings {_describe(wanted)}; {hint}. "
            f"Caches present (built with other settings, now stale):\n  {others}"
        )
    matching = [p for p, s in found.items() if s.get("clip") == clip_settings and (p / "index.json").is_file()]
    if len(matching) == 1:
        rank_zero_warn(
            f"using feature cache {matching[0]} without checking which features it holds (nothing said which are "
            "needed); a model calls datamodule.expect_cache(model.feature_settings()) in its setup"
        )
        return matching[0]
    raise CacheError(
        f"{len(matching)} feature caches in {cache_dir} match the clip settings {clip_settings} and nothing said "
        f"which features are needed; {hint}, or call datamodule.expect_cache(model.feature_settings())"
    )


class CachedClipDataset(Dataset):
    """Cached features of a split, indexed like :class:`~av_lightning.data.clips.ClipDataset`.

    Items: ``latents`` ``(C, F, h, w)``, ``audio_states`` ``(T', Lh, d)``, ``audio`` ``(S,)``,
    ``label``, ``id``, ``start`` (and ``frames`` uint8 ``(F, 3, H, W)`` if cached).

    Raises:
        CacheError: at construction, if a clip of the split is not in the cache (a changed or
            new file, or another start policy).
    """

    def __init__(self, records: Sequence[ClipRecord], folder: str | Path, split: str, kwargs: dict) -> None:
        from av_lightning.data.clips import ClipSpec

        self.folder = Path(folder)
        self.records = list(records)
        self.kwargs = dict(kwargs)
        settings = json.loads((self.folder / "settings.json").read_text())
        clip = settings["clip"]
        self.clip_settings = clip
        size = clip["size"]
        self.spec = ClipSpec(
            num_frames=clip["num_frames"], fps=clip["fps"], size=tuple(size) if isinstance(size, list) else size,
            sample_rate=clip["sample_rate"], buckets=tuple(tuple(b) for b in clip["buckets"]) if clip["buckets"] else None,
        )
        index = json.loads((self.folder / "index.json").read_text())["clips"]
        self.index = index
        missing = []
        for i, r in enumerate(self.records):
            for s in _clip_starts(r, i, self.spec, self.kwargs):
                if clip_key(r, s, clip) not in index:
                    missing.append(r)
                    break
        if missing:
            raise CacheError(
                f"feature cache {self.folder} is stale for the {split} split: {len(missing)} of {len(self.records)} "
                f"clips are not in it (first: {missing[0].video}, changed or never cached); rebuild it with "
                "`av-lightning cache --config ...`"
            )
        self._handles: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self):  # file handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def _open(self, shard: str):
        if shard not in self._handles:
            try:
                self._handles[shard] = safe_open(str(self.folder / shard), framework="pt")
            except (SafetensorError, OSError) as err:
                raise CacheError(f"feature cache shard {self.folder / shard} is unreadable ({err}); delete "
                                 f"{self.folder} and rebuild it with `av-lightning cache --config ...`") from err
        return self._handles[shard]

    def __getitem__(self, key: int) -> dict:
        epoch, index = divmod(int(key), len(self.records))
        r = self.records[index]
        k = self.kwargs
        start = clip_start(r.duration, self.spec, k["train"], k["seed"], epoch, index, k["train_starts"], k["eval_start"])
        entry = self.index[clip_key(r, start, self.clip_settings)]
        f = self._open(entry["shard"])
        row = entry["row"]
        item = {name: f.get_tensor(f"{row}/{name}") for name in ("latents", "audio_states", "audio")}
        if f"{row}/frames" in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
            item["frames"] = f.get_tensor(f"{row}/frames")
        item.update(label=r.label, id=r.id, start=float(start))
        return item


class _Jobs(Dataset):
    def __init__(self, jobs, spec):
        self.jobs, self.spec = jobs, spec

    def __len__(self):
        return len(self.jobs)

    def __getitem__(self, i):
        record, start, key = self.jobs[i]
        item = load_clip(record, self.spec, start)
        item["key"] = key
        return item


def build_cache(
    datamodule,
    features: FeatureSource,
    out_dir: str | Path | None = None,
    splits: Sequence[str] | None = None,
    batch_size: int | None = None,
    shard_size: int = 256,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    store_frames: bool = False,
) -> Path:
    """Compute the feature cache of every clip of ``splits`` (resumable).

    Args:
        datamodule: an :class:`~av_lightning.data.datamodules.AudioVideoDataModule` (its
            ``train_starts`` fixes the cached training starts).
        features: what computes and describes the features (:class:`FeatureSource`, e.g. the
            ``AudioToVideo`` that will train on them; already on ``device``).
        out_dir: cache root (default ``datamodule.cache_dir``).
        splits: default ``datamodule.cache_splits``.
        batch_size: encoder batch (default the DataModule's).
        shard_size: clips per shard file.
        device: where the encoders run (default: CUDA if available).
        dtype: storage dtype of latents and audio states.
        store_frames: also cache the uint8 frames.

    Returns:
        the cache folder for these settings.
    """
    out_dir = out_dir or datamodule.cache_dir
    if out_dir is None:
        raise ValueError("build_cache needs out_dir or a DataModule with cache_dir set")
    if datamodule.train_starts is None:
        raise CacheError("caching training clips needs fixed starts: set the DataModule's train_starts (e.g. 1)")
    splits = tuple(splits or datamodule.cache_splits)
    for stage in ("fit", "test"):
        if any(s in datamodule.stage_splits(stage) for s in splits):
            datamodule.setup(stage)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    clip = datamodule.clip_settings()
    settings = cache_settings(clip, features.feature_settings())
    folder = Path(out_dir) / settings_hash(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True, default=str))
    index_path = folder / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {"clips": {}}
    # storage options do not change the features, so they are not in the folder hash, but one
    # cache must not mix them (items with and without frames would not collate)
    storage = {"store_frames": bool(store_frames), "dtype": str(dtype).replace("torch.", "")}
    if index["clips"] and index.setdefault("storage", storage) != storage:
        raise CacheError(
            f"feature cache {folder} was built with {index['storage']}, now asked for {storage}; "
            "use the same options, another cache dir, or delete the folder"
        )
    index["storage"] = storage
    clips = index["clips"]

    jobs, seen = [], set()
    for split in splits:
        kwargs = datamodule.dataset_kwargs(split)
        for i, record in enumerate(datamodule.records[split]):
            for start in _clip_starts(record, i, datamodule.spec, kwargs):
                key = clip_key(record, start, clip)
                if key not in clips and key not in seen:
                    seen.add(key)
                    jobs.append((record, start, key))
    if not jobs:
        return folder

    loader = DataLoader(_Jobs(jobs, datamodule.spec), batch_size=batch_size or datamodule.batch_size,
                        num_workers=datamodule.num_workers, shuffle=False)
    shard_no = len({e["shard"] for e in clips.values()})
    buffer: dict[str, torch.Tensor] = {}
    pending: list[tuple[str, dict]] = []

    def flush() -> None:
        nonlocal shard_no, buffer, pending
        if not pending:
            return
        name = f"shard-{shard_no:05d}.safetensors"
        while (folder / name).exists():
            shard_no += 1
            name = f"shard-{shard_no:05d}.safetensors"
        save_file(buffer, str(folder / name))
        for key, entry in pending:
            clips[key] = {**entry, "shard": name}
        tmp = index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index))
        tmp.replace(index_path)  # atomic: an interrupted build resumes from the last shard
        shard_no += 1
        buffer, pending = {}, []

    with torch.no_grad(), tqdm(total=len(jobs), desc=f"caching features to {folder}", unit="clip") as bar:
        for batch in loader:
            latents = features.frame_features(batch["frames"].to(device)).to("cpu", dtype)
            states = features.audio_features(batch["audio"].to(device))[0].to("cpu", dtype)
            for b, key in enumerate(batch["key"]):
                row = len(pending)
                buffer[f"{row}/latents"] = latents[b].contiguous()
                buffer[f"{row}/audio_states"] = states[b].contiguous()
                buffer[f"{row}/audio"] = batch["audio"][b].contiguous()
                if store_frames:
                    buffer[f"{row}/frames"] = batch["frames"][b].contiguous()
                pending.append((key, {"row": row, "id": batch["id"][b], "start": float(batch["start"][b]),
                                      "label": batch["label"][b]}))
                if len(pending) >= shard_size:
                    flush()
            bar.update(len(batch["key"]))
    flush()
    return folder
