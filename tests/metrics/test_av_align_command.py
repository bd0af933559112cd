"""``av-lightning av-align DIR``: pairs, CSV, skipped files, workers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from av_lightning.commands import av_align as command
from av_lightning.metrics._synthetic import render_clip
from av_lightning.metrics._video import read_audio, write_clip
from tests.metrics.metric_helpers import EVENTS, FPS, SAMPLE_RATE


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """good.mp4+wav (aligned), late.mp4+wav (audio 5 frames late), quiet.mp4+wav (static,
    silent), embedded.mp4 (audio stream only), broken.mp4 (not a video)."""
    root = tmp_path_factory.mktemp("videos")
    for name, shift in (("good", 0), ("late", 5)):
        frames, audio = render_clip(
            EVENTS, audio_shift_frames=shift, fps=FPS, sample_rate=SAMPLE_RATE
        )
        write_clip(root / f"{name}.mp4", frames, FPS)
        sf.write(root / f"{name}.wav", audio, SAMPLE_RATE)
    frames, audio = render_clip(EVENTS, fps=FPS, sample_rate=SAMPLE_RATE)
    write_clip(root / "quiet.mp4", np.repeat(frames[:1], len(frames), axis=0), FPS)
    sf.write(root / "quiet.wav", np.zeros_like(audio), SAMPLE_RATE)
    write_clip(root / "embedded.mp4", frames, FPS, audio=audio, sample_rate=SAMPLE_RATE)
    (root / "broken.mp4").write_bytes(b"this is not an mp4")
    return root


def read_rows(path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["file"].rsplit("/", 1)[-1]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("mode", ["reference", "paper"])
def test_scores_folder_writes_csv_and_skips_broken(video_dir, tmp_path, mode, capsys):
    out = tmp_path / "scores.csv"
    assert command.main([str(video_dir), "--mode", mode, "--out", str(out), "--no-progress"]) == 0
    rows = read_rows(out)
    assert set(rows) == {"good.mp4", "late.mp4", "quiet.mp4", "embedded.mp4", "broken.mp4"}
    assert float(rows["good.mp4"]["score"]) >= 0.9
    assert float(rows["late.mp4"]["score"]) <= 0.3
    assert rows["quiet.mp4"]["status"] == "empty" and rows["quiet.mp4"]["score"] == ""
    assert rows["good.mp4"]["audio"].endswith("good.wav")
    assert (
        rows["embedded.mp4"]["audio"].endswith("embedded.mp4")
        and rows["embedded.mp4"]["status"] == "ok"
    )
    assert rows["broken.mp4"]["status"] != "ok"
    printed = capsys.readouterr().out
    assert f"AV-Align ({mode})" in printed and "1 skipped" in printed and "broken.mp4" in printed
    assert "1 with no peaks" in printed


def test_embedded_audio_is_read(video_dir):
    audio, rate = read_audio(video_dir / "embedded.mp4")
    assert rate == SAMPLE_RATE and audio.ndim == 1 and audio.size >= 2 * SAMPLE_RATE * 0.95


def test_bad_arguments(tmp_path, capsys):
    assert command.main([str(tmp_path / "missing")]) == 2
    assert command.main([str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        command.main([str(tmp_path), "--mode", "bogus"])


@pytest.mark.slow
def test_two_workers_give_the_same_scores(video_dir, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert (
        command.main([str(video_dir), "--mode", "reference", "--out", str(one), "--no-progress"])
        == 0
    )
    args = [
        str(video_dir),
        "--mode",
        "reference",
        "--workers",
        "2",
        "--out",
        str(two),
        "--no-progress",
    ]
    assert command.main(args) == 0
    assert read_rows(one) == read_rows(two)
