"""Data: the media layer, clips, LightningDataModules, VGGSound filtering and the feature cache.

See ``docs/data.md`` for the layout, the clip policy and the batch keys. Names are imported lazily
(``import av_lightning.data.io`` does not pay for Lightning), so commands that only read files
start fast.
"""

from __future__ import annotations

from av_lightning._lazy import lazy_exports

_EXPORTS = {
    "ClipBatch": "batch",
    "CachedClipDataset": "cache",
    "CacheError": "cache",
    "build_cache": "cache",
    "open_cache": "cache",
    "ClipDataset": "clips",
    "ClipRecord": "clips",
    "ClipSpec": "clips",
    "EpochSampler": "clips",
    "clip_start": "clips",
    "load_clip": "clips",
    "AudioVideoDataModule": "datamodules",
    "FolderDataModule": "datamodules",
    "VGGSoundDataModule": "datamodules",
    "read_manifest": "manifest",
    "HFAudioLabeler": "filtering",
    "ImageLabeler": "filtering",
    "TextSimilarity": "filtering",
    "filter_clips": "filtering",
    "read_filter_csv": "filtering",
    "MediaError": "io",
    "MediaInfo": "io",
    "probe": "io",
    "read_audio": "io",
    "read_clip": "io",
    "read_frames": "io",
    "write_audio": "io",
    "write_video": "io",
    "VideoFolderDataModule": "video_folder",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
