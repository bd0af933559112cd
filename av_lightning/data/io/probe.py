"""What a media file holds, checked by decoding its first frames: :func:`probe` and the errors of
the media layer (``MediaError`` names the file and the fix)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

PathLike = str | Path

#: Audio codecs that store float samples (the ones that can hold NaN or Inf).
FLOAT_PCM_CODECS = frozenset({"pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_f64be", "pcm_f16le", "pcm_f24le"})


class MediaError(RuntimeError):
    """A file cannot be read as requested; the message names the file and the fix."""


class NonFiniteAudioError(MediaError):
    """The audio holds NaN or Inf samples (float PCM can store them; no decoder rejects them)."""


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` finds in a file.

    Attributes:
        path: the file.
        duration: seconds of the video stream (of the audio stream for audio-only files).
        fps: average video frame rate (Hz); ``None`` for audio-only files.
        has_audio: whether the file has an audio stream.
        size: ``(H, W)`` of the video in pixels; ``None`` for audio-only files.
        num_frames: video frame count from the container (0 when the container does not say).
        video_duration: seconds of the video stream, ``None`` without one.
        audio_duration: seconds of the audio stream, ``None`` without one.
        sample_rate: audio sample rate (Hz), ``None`` without audio.
        channels: audio channel count, ``None`` without audio.
    """

    path: str
    duration: float
    fps: float | None
    has_audio: bool
    size: tuple[int, int] | None
    num_frames: int = 0
    video_duration: float | None = None
    audio_duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None


def _stream_duration(stream, container) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe(path: PathLike, decode_check: bool = True) -> MediaInfo:
    """Read a file's stream metadata (and, with ``decode_check``, decode its first frames).

    Args:
        path: an mp4/mkv/webm/avi video or a wav/flac/mp3 audio file.
        decode_check: decode the first video frame and the first audio frame so that a file
            with a valid header but broken data is caught here, not in training.

    Returns:
        :class:`MediaInfo`.

    Raises:
        MediaError: the file is missing, cannot be opened, or does not decode.
    """
    path = str(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file; check the dataset root and the manifest ids")
    try:
        with av.open(path) as container:
            vstream = container.streams.video[0] if container.streams.video else None
            astream = container.streams.audio[0] if container.streams.audio else None
            if vstream is None and astream is None:
                raise MediaError(f"{path}: no video or audio stream")
            video_duration = audio_duration = fps = size = None
            num_frames = 0
            if vstream is not None:
                video_duration = _stream_duration(vstream, container)
                rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
                fps = float(rate) if rate else None
                size = (vstream.codec_context.height, vstream.codec_context.width)
                num_frames = int(vstream.frames or 0)
                if video_duration is None and fps and num_frames:
                    video_duration = num_frames / fps
            sample_rate = channels = None
            if astream is not None:
                audio_duration = _stream_duration(astream, container)
                sample_rate = int(astream.codec_context.sample_rate)
                channels = int(astream.codec_context.channels)
            if decode_check:
                for stream in (vstream, astream):
                    if stream is None:
                        continue
                    container.seek(0)
                    got = next(iter(container.decode(stream)), None)
                    if got is None:
                        raise MediaError(f"{path}: stream #{stream.index} has no decodable frame")
                if astream is not None and astream.codec_context.name in FLOAT_PCM_CODECS:
                    # Stored float samples can be NaN or Inf, which no decoder rejects: read them all.
                    container.seek(0)
                    for frame in container.decode(astream):
                        if not np.isfinite(frame.to_ndarray()).all():
                            raise NonFiniteAudioError(f"{path}: the audio holds NaN or Inf samples; re-export the sound "
                                             "(e.g. as 16-bit PCM) or skip the file")
    except (av.FFmpegError, ValueError, StopIteration) as exc:  # PyAV raises FFmpegError subclasses
        raise MediaError(f"{path}: cannot decode ({exc}); re-download or re-encode the file") from exc
    duration = video_duration if video_duration is not None else audio_duration
    return MediaInfo(
        path=path,
        duration=float(duration or 0.0),
        fps=fps,
        has_audio=astream is not None,
        size=size,
        num_frames=num_frames,
        video_duration=video_duration,
        audio_duration=audio_duration,
        sample_rate=sample_rate,
        channels=channels,
    )
