"""Reading clips and whole files through PyAV (it bundles FFmpeg; no system package is needed).

Time convention: a time ``t`` in seconds is a presentation time, ``pts * time_base`` of the
stream, exactly as FFmpeg uses to keep audio and video in sync. Files whose streams start at 0
(everything this project writes, and the usual mp4/wav) therefore have ``t = 0`` at the first
video frame and the first audio sample.

Frame resampling (to a target ``fps``): output frame ``k`` shows the time ``t0 + k / fps`` and
takes the **last source frame whose pts <= that time** (what a player shows at that instant);
a time before the first source frame takes the first frame. No blending, no interpolation.

Resizing: ``size=s`` (int) resizes the short side to ``s`` (bilinear, aspect kept) and
centre-crops ``s x s``; ``size=(H, W)`` resizes so that the frame covers ``H x W`` and
centre-crops to exactly ``H x W``; ``size=None`` keeps the source size. With aspect
``buckets`` (a list of ``(H, W)``), :func:`choose_bucket` picks the bucket whose aspect ratio is
closest to the source's and the frame is covered-and-cropped to it.

Audio: decoded to float, mixed to mono by the mean of the channels, resampled to
``sample_rate`` (16 kHz by default) with a polyphase filter (``scipy.signal.resample_poly``) on
a sample grid aligned to the source, so output sample ``m`` is the sound at time
``m / sample_rate`` exactly (up to the filter's symmetric impulse response).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from scipy.signal import resample_poly

from av_lightning.data.io.probe import MediaError, NonFiniteAudioError, PathLike

Size = int | Sequence[int] | None

#: Two presentation times closer than this (seconds) are equal: guards float rounding of
#: ``k / fps`` against pts that land exactly on the output grid.
_TIME_EPS = 1e-6
#: Extra source audio decoded on each side of a request (seconds) so that the resampling
#: filter sees real signal, not zeros, at the clip edges.
_AUDIO_MARGIN = 0.1
#: A clip's audio may end this much (seconds) before the request and be zero-padded (AAC
#: streams lose a few samples at the end); any larger shortfall is an error.
_AUDIO_SHORTFALL = 0.025


def _opened(path: str, container):
    """``container`` as a context that leaves it open, or ``path`` opened (and closed) here."""
    return contextlib.nullcontext(container) if container is not None else av.open(path)


# --------------------------------------------------------------------------------------------
# frames


def choose_bucket(src_hw: tuple[int, int], buckets: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The ``(H, W)`` bucket whose aspect ratio is closest (in log scale) to ``src_hw``'s."""
    if not buckets:
        raise ValueError("buckets is empty; give a list of (H, W) sizes")
    src = math.log(src_hw[1] / src_hw[0])
    best = min(buckets, key=lambda hw: (abs(math.log(hw[1] / hw[0]) - src), -hw[0] * hw[1]))
    return int(best[0]), int(best[1])


def target_size(src_hw: tuple[int, int], size: Size) -> tuple[tuple[int, int], tuple[int, int]]:
    """Resize and crop sizes for ``size`` (see the module docstring).

    Returns:
        ``(resized_hw, cropped_hw)``: the frame is first resized to ``resized_hw`` (aspect kept,
        covering the crop) and then centre-cropped to ``cropped_hw``.
    """
    h, w = src_hw
    if size is None:
        return (h, w), (h, w)
    if isinstance(size, int):
        out_h = out_w = size
    else:
        out_h, out_w = int(size[0]), int(size[1])
    scale = max(out_h / h, out_w / w)
    # max() keeps rounding from leaving the resized frame a pixel short of the crop.
    return (max(out_h, round(h * scale)), max(out_w, round(w * scale))), (out_h, out_w)


def _centre_crop(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - out_h) // 2, (w - out_w) // 2
    return img[top : top + out_h, left : left + out_w]


def read_frames(
    path: PathLike,
    start: float,
    num_frames: int,
    fps: float,
    size: Size = None,
    buckets: Sequence[Sequence[int]] | None = None,
    container=None,
) -> torch.Tensor:
    """Decode ``num_frames`` frames at ``fps`` starting at ``start`` seconds.

    Args:
        path: a video file.
        start: time of the first output frame (seconds).
        num_frames: F, number of output frames; frame k shows time ``start + k / fps``.
        fps: output frame rate (Hz).
        size: output size policy (module docstring); ignored when ``buckets`` is given.
        buckets: optional list of ``(H, W)`` aspect buckets (:func:`choose_bucket`).
        container: ``path`` already open (:func:`read_clip`); it is left open.

    Returns:
        uint8 tensor ``(F, 3, H, W)``, RGB.

    Raises:
        MediaError: the file does not decode or ends before the last requested frame.
    """
    path = str(path)
    shared = container is not None
    times = [start + k / fps for k in range(num_frames)]
    chosen: list = [None] * num_frames
    try:
        with _opened(path, container) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base
            if start > 0:
                # Seek lands on the last keyframe at or before `start`.
                container.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
            elif shared:
                container.seek(0)  # a shared container may have been read already
            last = None
            k = 0
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * tb)
                # Every output time before this frame's pts is shown by the previous frame.
                while k < num_frames and times[k] + _TIME_EPS < t:
                    chosen[k] = last if last is not None else frame
                    k += 1
                if k >= num_frames:
                    break
                last = frame
            else:
                # End of stream: remaining times show the last frame if it is still on screen.
                if last is not None:
                    end = float(last.pts * tb) + (float(last.duration * tb) if last.duration else 1.0 / float(stream.average_rate or fps))
                    while k < num_frames and times[k] < end - _TIME_EPS:
                        chosen[k] = last
                        k += 1
            if k < num_frames:
                raise MediaError(
                    f"{path}: video ends before {times[k]:.3f} s (needed {num_frames} frames at "
                    f"{fps} fps from {start:.3f} s); choose an earlier start or skip the file"
                )
            src_hw = (stream.codec_context.height, stream.codec_context.width)
            if buckets:
                size = choose_bucket(src_hw, buckets)
            (rh, rw), (ch, cw) = target_size(src_hw, size)
            out = np.empty((num_frames, ch, cw, 3), dtype=np.uint8)
            cache: dict[int, np.ndarray] = {}
            convert = VideoReformatter()  # one swscale context for the clip, not one per frame
            for i, frame in enumerate(chosen):
                key = id(frame)
                if key not in cache:
                    img = convert.reformat(frame, width=rw, height=rh, format="rgb24",
                                           interpolation="BILINEAR").to_ndarray()
                    cache[key] = _centre_crop(img, ch, cw)
                out[i] = cache[key]
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode video ({exc}); re-encode or skip the file") from exc
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------------
# audio

_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _audio_frame_to_float(frame) -> np.ndarray:
    """An AudioFrame as float32 ``(C, n)`` in [-1, 1]."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    fmt = frame.format
    if not fmt.is_planar:
        arr = arr.reshape(-1, channels).T
    name = fmt.name.rstrip("p")
    if name in _INT_SCALE:
        arr = arr.astype(np.float32)
        if name == "u8":
            arr = arr - 128.0
        arr = arr / _INT_SCALE[name]
    return arr.astype(np.float32, copy=False)


def read_audio(
    path: PathLike,
    start: float,
    num_samples: int,
    sample_rate: int = 16000,
    container=None,
) -> torch.Tensor:
    """Decode ``num_samples`` mono samples at ``sample_rate`` starting at ``start`` seconds.

    Output sample ``m`` is the sound at time ``start_q + m / sample_rate`` where ``start_q`` is
    ``start`` rounded to the output sample grid (``round(start * sample_rate)`` samples).

    Args:
        path: any file with an audio stream (mp4 with AAC, wav, flac, ...).
        start: seconds.
        num_samples: S, output length.
        sample_rate: output rate (Hz).
        container: ``path`` already open (:func:`read_clip`); it is left open.

    Returns:
        float32 tensor ``(S,)``, mono (mean of the channels).

    Raises:
        MediaError: no audio stream, undecodable, or the audio ends before the request.
    """
    path = str(path)
    shared = container is not None
    out_start = round(start * sample_rate)
    t_begin = out_start / sample_rate
    t_end = (out_start + num_samples) / sample_rate
    try:
        with _opened(path, container) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio stream; give a separate audio file or skip the clip")
            stream = container.streams.audio[0]
            src_rate = int(stream.codec_context.sample_rate)
            tb = stream.time_base
            seek_t = t_begin - _AUDIO_MARGIN
            if seek_t > 0:
                container.seek(int(seek_t / tb), stream=stream, backward=True, any_frame=False)
            elif shared:
                container.seek(0)  # a shared container may have been read already
            chunks: list[np.ndarray] = []
            first = None  # index (at src_rate) of the first decoded sample
            decoded_end = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                n0 = round(float(frame.pts * tb) * src_rate)
                if first is None:
                    first = n0
                    decoded_end = n0
                data = _audio_frame_to_float(frame).mean(axis=0)
                chunks.append(data)
                decoded_end += data.shape[0]
                if decoded_end / src_rate >= t_end + _AUDIO_MARGIN:
                    break
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode audio ({exc}); re-encode or skip the file") from exc
    if first is None:
        raise MediaError(f"{path}: audio stream has no decodable frame")
    mono = np.concatenate(chunks)
    g = math.gcd(src_rate, sample_rate)
    up, down = sample_rate // g, src_rate // g
    # Start the resampled signal on a source sample that is also an output sample, so output
    # index arithmetic is exact: source sample n_a maps to output sample n_a * up / down.
    if first >= 0:
        n_a = -(-first // down) * down
    else:
        n_a = -((-first) // down) * down
    mono = mono[n_a - first :]
    if up != down:
        mono = resample_poly(mono.astype(np.float64), up, down).astype(np.float32)
    offset = n_a // down * up  # output index of mono[0]
    lo = out_start - offset
    if lo < 0:
        # Requests before the first sample (start < 0 or a stream starting late) are silence.
        mono = np.concatenate([np.zeros(-lo, dtype=np.float32), mono])
        lo = 0
    seg = mono[lo : lo + num_samples]
    short = num_samples - seg.shape[0]
    if short > 0:
        if short > _AUDIO_SHORTFALL * sample_rate:
            have = (offset + mono.shape[0]) / sample_rate
            raise MediaError(
                f"{path}: audio ends at {have:.3f} s, before {t_end:.3f} s (needed {num_samples} "
                f"samples at {sample_rate} Hz from {t_begin:.3f} s); choose an earlier start or skip the file"
            )
        seg = np.concatenate([seg, np.zeros(short, dtype=np.float32)])
    if not np.isfinite(seg).all():
        bad = int((~np.isfinite(seg)).sum())
        raise NonFiniteAudioError(f"{path}: the audio holds {bad} NaN or Inf samples from {t_begin:.3f} s to {t_end:.3f} s; "
                         "re-export the sound (e.g. as 16-bit PCM) or skip the file")
    return torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float32))


def read_clip(video: PathLike, audio: PathLike, start: float, num_frames: int, fps: float, num_samples: int,
              sample_rate: int = 16000, size: Size = None, buckets: Sequence[Sequence[int]] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip: ``(frames uint8 (F, 3, H, W), audio float32 (S,))`` from ``start`` seconds (the rules of
    :func:`read_frames` and :func:`read_audio`), each file opened once: a video with its own sound
    is read through one container."""
    if str(audio) != str(video):
        return (read_frames(video, start, num_frames, fps, size, buckets),
                read_audio(audio, start, num_samples, sample_rate))
    path = str(video)
    try:
        with av.open(path) as container:
            return (read_frames(path, start, num_frames, fps, size, buckets, container=container),
                    read_audio(path, start, num_samples, sample_rate, container=container))
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot open ({exc}); re-encode or skip the file") from exc


# --------------------------------------------------------------------------------------------
# whole files: every frame and every sample as stored (scoring folders, e.g. av-align)

#: Audio files read through soundfile (libsndfile) rather than PyAV, as ``librosa.load`` does.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg")


def read_video_file(path: PathLike, threads: int | None = None) -> tuple[np.ndarray, float]:
    """Decode every frame of the first video stream, at the stored size and rate.

    Args:
        path: a video file.
        threads: FFmpeg decoding and colour-conversion threads; ``None`` lets FFmpeg choose
            (set 1 in worker processes that already run one per core).

    Returns:
        ``(frames, fps)``: uint8 ``(F, H, W, 3)`` RGB and the stream's average frame rate (Hz).

    Raises:
        MediaError: missing file, no video stream, no decodable frame or no frame rate.
    """
    path = str(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream; give a video file")
            stream = container.streams.video[0]
            if threads is not None:
                stream.codec_context.thread_count = threads
            rate = stream.average_rate or stream.guessed_rate
            # One converter for the whole file: VideoFrame.to_ndarray() builds a new swscale
            # context for every frame, which costs more than decoding a small frame.
            convert = VideoReformatter()
            frames = [convert.reformat(frame, format="rgb24", threads=threads).to_ndarray()
                      for frame in container.decode(stream)]
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode video ({exc}); re-encode or remove the file") from exc
    if not frames:
        raise MediaError(f"{path}: the video stream has no decodable frame; re-encode or remove the file")
    if not rate:
        raise MediaError(f"{path}: the video stream has no frame rate; re-encode it with one (e.g. ffmpeg -r 24)")
    return np.stack(frames), float(rate)


def read_audio_file(path: PathLike) -> tuple[np.ndarray, int]:
    """Read a whole mono waveform at its stored sample rate.

    ``.wav``/``.flac``/``.ogg`` go through soundfile, anything else (an mp4's audio stream)
    through PyAV. Channels are averaged, as ``librosa.load(mono=True)`` does.

    Returns:
        ``(audio, sample_rate)``: float32 ``(S,)`` and Hz.

    Raises:
        NonFiniteAudioError: the file stores NaN or Inf samples (float PCM can).
        MediaError: missing or undecodable file, no audio stream, no samples.
    """
    path = str(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: no such file")
    if Path(path).suffix.lower() in SOUNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)  # (S, C)
        except (sf.SoundFileError, OSError) as exc:
            raise MediaError(f"{path}: cannot read audio ({exc}); re-export or remove the file") from exc
        mono = data.mean(axis=1)
    else:
        try:
            with av.open(path) as container:
                if not container.streams.audio:
                    raise MediaError(f"{path}: no audio stream; put NAME.wav next to the video")
                stream = container.streams.audio[0]
                rate = int(stream.codec_context.sample_rate)
                chunks = [_audio_frame_to_float(frame).mean(axis=0) for frame in container.decode(stream)]
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: cannot decode audio ({exc}); re-encode or remove the file") from exc
        mono = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if mono.size == 0:
        raise MediaError(f"{path}: the audio has no samples; re-export or remove the file")
    bad = ~np.isfinite(mono)
    if bad.any():
        first = int(np.argmax(bad)) / rate
        raise NonFiniteAudioError(f"{path}: the audio holds {int(bad.sum())} NaN or Inf samples (the first at "
                                  f"{first:.3f} s); re-export the sound (e.g. as 16-bit PCM) or remove the file")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)
