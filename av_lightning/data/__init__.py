"""Data: PyAV clip I/O, clips, LightningDataModules, VGGSound filtering and the feature cache.

See ``docs/data.md`` for the layout, the clip policy and the batch keys.
"""

from av_lightning.data.cache import CachedClipDataset, CacheError, build_cache, open_cache
from av_lightning.data.clips import (
    ClipDataset,
    ClipRecord,
    ClipSpec,
    EpochSampler,
    clip_start,
    load_clip,
)
from av_lightning.data.datamodules import (
    AudioVideoDataModule,
    FolderDataModule,
    VGGSoundDataModule,
    read_manifest,
)
from av_lightning.data.filtering import (
    HFAudioLabeler,
    ImageLabeler,
    TextSimilarity,
    filter_clips,
    read_filter_csv,
)
from av_lightning.data.io import (
    MediaError,
    MediaInfo,
    probe,
    read_audio,
    read_frames,
    write_audio,
    write_video,
)

__all__ = [
    "AudioVideoDataModule",
    "CacheError",
    "CachedClipDataset",
    "ClipDataset",
    "ClipRecord",
    "ClipSpec",
    "EpochSampler",
    "FolderDataModule",
    "HFAudioLabeler",
    "ImageLabeler",
    "MediaError",
    "MediaInfo",
    "TextSimilarity",
    "VGGSoundDataModule",
    "build_cache",
    "clip_start",
    "filter_clips",
    "load_clip",
    "open_cache",
    "probe",
    "read_audio",
    "read_filter_csv",
    "read_frames",
    "read_manifest",
    "write_audio",
    "write_video",
]
