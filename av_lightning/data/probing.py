"""Checking files before they are used: the one place that probes media and remembers the result.

Every reader of user files decides what it can use here, with the same checks: the file exists,
its stream decodes, a video has a video stream, the sound has an audio stream with finite samples,
and both last long enough. The DataModules (``datamodules.py``) and folder evaluation
(``video_folder.py``) word the reasons for their own reports; the checks are these.

:func:`file_identity` (path, size, mtime) tells whether a file changed since it was probed or
cached; :class:`ProbeCache` keeps probe results in a JSON file keyed by it, so a dataset of 200k
clips is probed once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from av_lightning.data.io import MediaError, MediaInfo, NonFiniteAudioError, probe

#: Changes when a check is added, so that cached probe results are redone.
PROBE_VERSION = 2
#: Streams may end this much (seconds) before the clip and still be used (AAC loses a few ms).
DURATION_SLACK = 1e-3
AUDIO_SLACK = 0.025


@dataclass(frozen=True)
class Problem:
    """Why a file cannot be used: ``kind`` is one of ``missing``, ``undecodable``, ``no video``,
    ``no audio``, ``non-finite audio``, ``too short``; ``detail`` names the file and the fact."""

    kind: str
    detail: str


def check_video(path: str | Path, need: float) -> tuple[Problem | None, MediaInfo | None]:
    """A video that must show ``need`` seconds: ``(problem or None, its MediaInfo)``."""
    path = Path(path)
    if not path.is_file():
        return Problem("missing", str(path)), None
    try:
        info = probe(path)
    except NonFiniteAudioError as exc:  # its own audio stream, when it has one
        return Problem("non-finite audio", str(exc)), None
    except MediaError as exc:
        return Problem("undecodable", str(exc)), None
    if info.fps is None or info.size is None:
        return Problem("no video", f"{path}: no video stream"), info
    seconds = info.video_duration if info.video_duration is not None else info.duration
    if seconds + DURATION_SLACK < need:
        return Problem("too short", f"{path}: {seconds:.3f} s of video < {need:.3f} s"), info
    return None, info


def check_audio(path: str | Path, need: float, info: MediaInfo | None = None) -> tuple[Problem | None, float]:
    """Sound that must last ``need`` seconds: ``(problem or None, its seconds)``. ``info`` is the
    file's probe when it was already probed (a video with its own audio), so it is not read twice."""
    path = Path(path)
    if info is None:
        if not path.is_file():
            return Problem("missing", str(path)), 0.0
        try:
            info = probe(path)
        except NonFiniteAudioError as exc:
            return Problem("non-finite audio", str(exc)), 0.0
        except MediaError as exc:
            return Problem("undecodable", str(exc)), 0.0
    if not info.has_audio:
        return Problem("no audio", f"{path}: no audio stream"), 0.0
    seconds = info.audio_duration if info.audio_duration is not None else info.duration
    if seconds + AUDIO_SLACK < need:
        return Problem("too short", f"{path}: {seconds:.3f} s of audio < {need:.3f} s"), seconds
    return None, seconds


def file_identity(path: str | Path) -> list:
    """``[absolute path, size in bytes, mtime in ns]`` (raises ``OSError`` for a missing file)."""
    st = os.stat(path)
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


class ProbeCache:
    """Probe results in ``path`` (JSON), valid while the files and the clip length are unchanged.

    Args:
        path: the JSON file, or None to remember nothing.
        clip: what else the result depends on (e.g. ``"24/24.0"``: frames / fps).
    """

    def __init__(self, path: str | Path | None, clip: str):
        self.path = Path(path) if path is not None else None
        self.clip = f"{PROBE_VERSION}/{clip}"
        self.entries: dict = {}
        if self.path is not None and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                rank_zero_warn(f"ignoring unreadable probe cache {self.path}")

    @staticmethod
    def key(files: list[str]) -> str | None:
        try:
            return json.dumps([file_identity(f) for f in files])
        except OSError:
            return None  # a missing file is checked again every time

    def get(self, files: list[str]):
        """The stored result for these files, or None."""
        key = self.key(files)
        hit = self.entries.get(files[0]) if key is not None else None
        if hit is not None and hit[0] == key and hit[1] == self.clip:
            return hit[2]
        return None

    def put(self, files: list[str], result) -> None:
        key = self.key(files)
        if key is not None:
            self.entries[files[0]] = [key, self.clip, result]

    def save(self) -> None:
        if self.path is None or rank_zero_only.rank != 0:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries))
            tmp.replace(self.path)
        except OSError as exc:
            rank_zero_warn(f"could not write the probe cache {self.path} ({exc}); files will be probed again next run")
