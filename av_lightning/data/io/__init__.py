"""The media layer: every file the project reads or writes goes through here (PyAV, no system FFmpeg).

- :mod:`.probe`: what a file holds (:func:`probe`), and the errors (:class:`MediaError`);
- :mod:`.read`: a clip's frames and audio at a target fps and sample rate, each file opened once
  (:func:`read_clip`), and whole files as stored (:func:`read_video_file`, :func:`read_audio_file`);
- :mod:`.write`: mp4 with the audio muxed in, wav, a batch of clips, contact sheets.

The datasets, folder evaluation, ``av-align``, ``generate`` and the project's own outputs all use
these functions, so a file reads the same wherever it is read.
"""

from av_lightning.data.io.probe import FLOAT_PCM_CODECS, MediaError, MediaInfo, NonFiniteAudioError, PathLike, probe
from av_lightning.data.io.read import (
    SOUNDFILE_EXTENSIONS,
    Size,
    choose_bucket,
    read_audio,
    read_audio_file,
    read_clip,
    read_frames,
    read_video_file,
    target_size,
)
from av_lightning.data.io.write import write_audio, write_contact_sheet, write_video, write_videos

__all__ = [
    "FLOAT_PCM_CODECS", "MediaError", "MediaInfo", "NonFiniteAudioError", "PathLike", "SOUNDFILE_EXTENSIONS", "Size",
    "choose_bucket", "probe", "read_audio", "read_audio_file", "read_clip", "read_frames", "read_video_file",
    "target_size", "write_audio", "write_contact_sheet", "write_video", "write_videos",
]
