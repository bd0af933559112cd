"""Writing media: mp4 (H.264 + AAC, the audio muxed in), wav, a batch of clips, contact sheets."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from av_lightning.data.io.probe import PathLike


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
