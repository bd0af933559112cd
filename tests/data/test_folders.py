"""Folder scanning and video/audio pairing (the one place that does it)."""

import pytest

from av_lightning.data.folders import FolderError, input_files, pair_videos, sidecar_audio


def test_pairing_rule(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "b.MP4").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    other = tmp_path / "real"
    other.mkdir()
    (other / "b.wav").write_bytes(b"")
    (other / "c.mp4").write_bytes(b"")
    pairs = pair_videos(tmp_path, extensions=(".mp4",))
    assert [p.name for p in pairs] == ["a", "b"]
    assert pairs[0].audio == tmp_path / "a.wav" and not pairs[0].own_audio
    assert pairs[1].own_audio  # no b.wav beside it, none in audio_dirs
    assert pair_videos(tmp_path, audio_dirs=[other])[1].audio == other / "b.wav"
    deep = pair_videos(tmp_path, recursive=True)
    assert [p.name for p in deep] == ["a", "b", "real/c"]
    assert sidecar_audio(other / "c.mp4") == other / "c.mp4"


def test_input_files(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "y.flac").write_bytes(b"")
    (tmp_path / "z.txt").write_bytes(b"")
    assert [p.name for p in input_files(tmp_path)] == ["x.wav", "y.flac"]
    assert input_files(tmp_path / "x.wav") == [tmp_path / "x.wav"]
    with pytest.raises(FolderError, match="does not exist"):
        input_files(tmp_path / "missing.wav")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FolderError, match="holds no audio files"):
        input_files(empty)
    with pytest.raises(FolderError, match="is not a folder"):
        pair_videos(tmp_path / "x.wav")
