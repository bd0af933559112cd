"""Minimal PyAV/soundfile readers for the ``av-align`` command (private to the metrics).

The training data path has its own loader (``av_lightning.data.io``); this one only needs whole
files: every frame of a video, and a mono waveform at its native rate.
"""

from __future__ import annotations

import os

import numpy as np

PathLike = str | os.PathLike


def read_video(path: PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of the first video stream.

    Returns:
        ``(frames, fps)``: uint8 ``(F, H, W, 3)`` RGB and the stream's average frame rate.

    Raises:
        ValueError: the file has no video stream or no decodable frame.
    """
    import av

    with av.open(os.fspath(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path}: no decodable video frame")
    if not rate:
        raise ValueError(f"{path}: the video stream has no frame rate")
    return np.stack(frames), float(rate)


def read_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Read a mono waveform at its native sample rate.

    ``.wav``/``.flac``/``.ogg`` go through soundfile, anything else (an mp4's audio stream)
    through PyAV. Channels are averaged, as ``librosa.load(mono=True)`` does.

    Returns:
        ``(audio, sample_rate)``: float32 ``(S,)`` and Hz.
    """
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() in (".wav", ".flac", ".ogg"):
        import soundfile as sf

        data, rate = sf.read(path, dtype="float32", always_2d=True)  # (S, C)
        return data.mean(axis=1), int(rate)
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream (and no .wav next to it)")
        stream = container.streams.audio[0]
        rate = stream.rate
        # Planar float at the native layout and rate: (C, n) per frame; we average channels.
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        raise ValueError(f"{path}: no decodable audio")
    return np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32), int(rate)


def write_clip(
    path: PathLike, frames: np.ndarray, fps: float, audio=None, sample_rate: int = 16000
) -> None:
    """Write uint8 ``(F, H, W, 3)`` frames as an H.264 mp4 (visually lossless, CRF 10), with an
    optional mono float ``(S,)`` AAC audio track. Used by tests and benchmarks."""
    from fractions import Fraction

    import av

    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "10"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate, layout="mono")
        for img in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            frame = av.AudioFrame.from_ndarray(
                np.asarray(audio, dtype=np.float32)[None], format="fltp", layout="mono"
            )
            frame.sample_rate = sample_rate
            for packet in astream.encode(frame):
                container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
