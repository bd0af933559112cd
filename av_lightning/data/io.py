"""Video and audio I/O through PyAV (it bundles FFmpeg; no system package is needed).

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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from scipy.signal import resample_poly

Size = int | Sequence[int] | None
PathLike = str | Path

#: Two presentation times closer than this (seconds) are equal: guards float rounding of
#: ``k / fps`` against pts that land exactly on the output grid.
_TIME_EPS = 1e-6
#: Extra source audio decoded on each side of a request (seconds) so that the resampling
#: filter sees real signal, not zeros, at the clip edges.
_AUDIO_MARGIN = 0.1
#: A clip's audio may end this much (seconds) before the request and be zero-padded (AAC
#: streams lose a few samples at the end); any larger shortfall is an error.
_AUDIO_SHORTFALL = 0.025


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
            for i, frame in enumerate(chosen):
                key = id(frame)
                if key not in cache:
                    img = frame.to_ndarray(width=rw, height=rh, format="rgb24", interpolation="BILINEAR")
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
# writing


def _frames_hwc(frames) -> np.ndarray:
    arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.ndim != 4:
        raise ValueError(f"expected frames (F, H, W, 3) or (F, 3, H, W), got shape {arr.shape}")
    if arr.shape[-1] != 3 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (F, H, W, 3) or (F, 3, H, W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 frames, got {arr.dtype}; convert with (x.clamp(0, 1) * 255).round().to(torch.uint8)")
    return np.ascontiguousarray(arr)


def _audio_channels_first(audio) -> np.ndarray:
    arr = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"expected audio (S,) or (C, S), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, fmt: str) -> None:
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    frame_size = stream.codec_context.frame_size or 1024
    planar = fmt.endswith("p")
    for i in range(0, audio.shape[1], frame_size):
        chunk = audio[:, i : i + frame_size]
        if fmt.startswith("s16"):
            chunk = (np.clip(chunk, -1, 1) * 32767).round().astype(np.int16)
        if not planar:
            chunk = chunk.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt, layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = i
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_video(
    path: PathLike,
    frames,
    fps: float,
    audio=None,
    sample_rate: int = 16000,
    crf: int = 18,
    codec: str = "libx264",
    audio_codec: str = "aac",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write an mp4 (H.264 + AAC) with the audio muxed in.

    Args:
        path: output file (parent folders are created).
        frames: uint8 ``(F, H, W, 3)`` or ``(F, 3, H, W)``, tensor or array; H and W even.
        fps: frame rate (Hz); frame k is shown at ``k / fps`` seconds.
        audio: optional float ``(S,)`` mono or ``(C, S)`` (C <= 2) in [-1, 1] at ``sample_rate``.
        sample_rate: audio rate (Hz).
        crf: x264 quality (0 = lossless, 18 = visually lossless).
        codec, audio_codec: FFmpeg encoder names.
        pix_fmt: stored pixel format; ``"yuv444p"`` keeps full-resolution colour (odd sizes allowed).

    Returns:
        the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hwc = _frames_hwc(frames)
    _, h, w, _ = hwc.shape
    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise ValueError(f"{path}: H.264 with yuv420p needs even H and W, got {h}x{w}; crop one pixel")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream(codec, rate=rate)
        vstream.width, vstream.height, vstream.pix_fmt = w, h, pix_fmt
        vstream.options = {"crf": str(crf)} if codec == "libx264" else {}
        astream = None
        if audio is not None:
            audio_arr = _audio_channels_first(audio)
            if audio_arr.shape[0] > 2:
                raise ValueError(f"expected mono or stereo audio, got {audio_arr.shape[0]} channels")
            astream = container.add_stream(audio_codec, rate=sample_rate)
            astream.layout = "mono" if audio_arr.shape[0] == 1 else "stereo"
        for i, img in enumerate(hwc):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None:
            fmt = astream.codec_context.format.name if astream.codec_context.format else "fltp"
            _encode_audio(container, astream, audio_arr, sample_rate, fmt)
    return path


def write_contact_sheet(frames, path: PathLike, columns: int = 8, max_frames: int = 48) -> Path:
    """Write a PNG grid of frames (evenly chosen when there are more than ``max_frames``).

    Args:
        frames: uint8 ``(N, 3, H, W)``.
    """
    from PIL import Image

    N, _, H, W = frames.shape
    idx = torch.linspace(0, N - 1, min(N, max_frames)).round().long().unique()
    cols = min(columns, idx.numel())
    rows = math.ceil(idx.numel() / cols)
    sheet = torch.zeros(3, rows * H, cols * W, dtype=torch.uint8)
    for n, i in enumerate(idx.tolist()):
        r, c = divmod(n, cols)
        sheet[:, r * H : (r + 1) * H, c * W : (c + 1) * W] = frames[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet.permute(1, 2, 0).numpy()).save(path)
    return path


def write_videos(folder: PathLike, videos, ids, fps: float, audio=None, sample_rate: int = 16000) -> list[Path]:
    """Write ``folder/ID.mp4`` for each clip of a batch, its audio muxed in.

    Args:
        videos: uint8 ``(B, F, 3, H, W)``.
        ids: B file stems.
        audio: optional float ``(B, S)`` at ``sample_rate``.
    """
    folder = Path(folder)
    return [write_video(folder / f"{clip_id}.mp4", videos[i].cpu(), fps=fps,
                        audio=audio[i].cpu() if audio is not None else None, sample_rate=sample_rate)
            for i, clip_id in enumerate(ids)]


def write_audio(path: PathLike, audio, sample_rate: int = 16000, codec: str = "pcm_s16le") -> Path:
    """Write a wav (``codec`` pcm_s16le or pcm_f32le) from float ``(S,)`` or ``(C, S)`` in [-1, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = _audio_channels_first(audio)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = "mono" if arr.shape[0] == 1 else "stereo"
        fmt = stream.codec_context.format.name
        _encode_audio(container, stream, arr, sample_rate, fmt)
    return path


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
    from av.video.reformatter import VideoReformatter

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
