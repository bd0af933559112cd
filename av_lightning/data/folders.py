"""Folders of media: which files a folder holds and which audio goes with each video.

The one place that scans folders and pairs files. Every command and DataModule that reads a
folder of user files goes through it: ``av-lightning av-align DIR``, folder evaluation
(``VideoFolderDataModule``), ``FolderDataModule`` and ``av-lightning generate --audio DIR``.

Pairing rule: a video ``NAME.mp4`` goes with the first ``NAME.wav`` found beside it, then in each
of ``audio_dirs`` in order; without one, with the video file itself (its own audio stream).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
#: Files ``generate`` accepts as sound: audio files, or videos whose audio stream is used.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".mp4", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class FolderError(ValueError):
    """A folder or file given on the command line does not hold what is needed."""


@dataclass(frozen=True)
class MediaPair:
    """A video and the file its audio is read from (a sidecar wav, or the video itself).

    Attributes:
        name: the video's path relative to the scanned folder, without extension (its stem for
            a flat folder).
        video: the video file.
        audio: the audio file; equal to ``video`` when the video's own audio stream is used.
    """

    name: str
    video: Path
    audio: Path

    @property
    def own_audio(self) -> bool:
        return self.audio == self.video


def list_files(root: str | Path, extensions: Sequence[str], recursive: bool = False) -> list[Path]:
    """Files under ``root`` whose suffix (case-insensitive) is in ``extensions``, sorted.

    Raises:
        FolderError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FolderError(f"{root} is not a folder")
    exts = {e.lower() for e in extensions}
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if p.suffix.lower() in exts and p.is_file())


def sidecar_audio(video: Path, audio_dirs: Sequence[str | Path] = (), extension: str = ".wav") -> Path:
    """The audio file of ``video`` by the pairing rule (module docstring)."""
    for folder in (video.parent, *map(Path, audio_dirs)):
        candidate = folder / f"{video.stem}{extension}"
        if candidate.is_file():
            return candidate
    return video


def pair_videos(root: str | Path, extensions: Sequence[str] = (".mp4",), recursive: bool = False,
                audio_dirs: Sequence[str | Path] = ()) -> list[MediaPair]:
    """Every video under ``root`` with its audio (module docstring), sorted by name.

    Raises:
        FolderError: ``root`` is not a folder.
    """
    root = Path(root)
    return [MediaPair(str(v.relative_to(root).with_suffix("")), v, sidecar_audio(v, audio_dirs))
            for v in list_files(root, extensions, recursive)]


def input_files(path: str | Path, extensions: Sequence[str] = AUDIO_EXTENSIONS, what: str = "audio") -> list[Path]:
    """``path`` itself when it is a file, else the files of a folder with these extensions (sorted).

    Raises:
        FolderError: ``path`` does not exist, or the folder holds no such file.
    """
    path = Path(path)
    if path.is_dir():
        files = list_files(path, extensions)
        if not files:
            raise FolderError(f"{path} holds no {what} files ({', '.join(extensions)})")
        return files
    if not path.is_file():
        raise FolderError(f"{what} {path} does not exist; give a file or a folder of them")
    return [path]
