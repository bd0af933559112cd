"""``av-lightning av-align DIR``: pairs, CSV, skipped files, exit status, threads, workers, and
the same scores as the ``AVAlign`` metric on the decoded clips."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from av_lightning import cli
from av_lightning.commands import av_align as command
from av_lightning.data.io import NonFiniteAudioError, read_audio_file, read_video_file
from av_lightning.metrics import av_align_folder as engine
from av_lightning.metrics._synthetic import render_clip
from av_lightning.metrics.av_align import AVAlign
from tests.metrics.metric_helpers import EVENTS, FPS, SAMPLE_RATE, write_test_clip

MODES = ["reference", "paper"]


def write_pair(root, name, shift=0, audio=None, static=False, seed=0):
    frames, clicks = render_clip(EVENTS, audio_shift_frames=shift, fps=FPS, sample_rate=SAMPLE_RATE, seed=seed)
    if static:
        frames = np.repeat(frames[:1], len(frames), axis=0)
    write_test_clip(root / f"{name}.mp4", frames)
    sf.write(root / f"{name}.wav", clicks if audio is None else audio, SAMPLE_RATE, subtype="FLOAT")
    return clicks


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """good.mp4+wav (aligned), late.mp4+wav (audio 5 frames late), quiet.mp4+wav (static,
    silent), embedded.mp4 (audio stream only), broken.mp4 (not a video)."""
    root = tmp_path_factory.mktemp("videos")
    write_pair(root, "good")
    clicks = write_pair(root, "late", shift=5)
    write_pair(root, "quiet", audio=np.zeros_like(clicks), static=True)
    frames, audio = render_clip(EVENTS, fps=FPS, sample_rate=SAMPLE_RATE)
    write_test_clip(root / "embedded.mp4", frames, audio=audio)
    (root / "broken.mp4").write_bytes(b"this is not an mp4")
    return root


@pytest.fixture(scope="module")
def bad_audio_dir(tmp_path_factory):
    """good.mp4+wav, and nan/inf/empty .mp4 whose wav holds a NaN, an Inf or no sample at all."""
    root = tmp_path_factory.mktemp("bad_audio")
    clicks = write_pair(root, "good")
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        bad = clicks.copy()
        bad[1600] = value
        write_pair(root, name, audio=bad)
    write_pair(root, "empty", audio=np.zeros(0, dtype=np.float32))
    return root


def read_rows(path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["file"].rsplit("/", 1)[-1]: row for row in csv.DictReader(f)}


def run(*args) -> int:
    return cli.main(["av-align", *map(str, args), "--workers", "1", "--no-progress"])


@pytest.mark.parametrize("mode", MODES)
def test_scores_folder_writes_csv_and_skips_broken(video_dir, tmp_path, mode, capsys):
    out = tmp_path / "scores.csv"
    assert command.main([str(video_dir), "--mode", mode, "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    rows = read_rows(out)
    assert set(rows) == {"good.mp4", "late.mp4", "quiet.mp4", "embedded.mp4", "broken.mp4"}
    assert float(rows["good.mp4"]["score"]) >= 0.9
    assert float(rows["late.mp4"]["score"]) <= 0.3
    assert rows["quiet.mp4"]["status"] == "empty" and rows["quiet.mp4"]["score"] == ""
    assert rows["good.mp4"]["audio"].endswith("good.wav")
    assert rows["embedded.mp4"]["audio"].endswith("embedded.mp4") and rows["embedded.mp4"]["status"] == "ok"
    assert rows["broken.mp4"]["status"] == "skipped" and "broken.mp4" in rows["broken.mp4"]["reason"]
    printed = capsys.readouterr().out
    assert f"AV-Align ({mode})" in printed and "1 skipped" in printed and "broken.mp4" in printed
    assert "1 with no peaks" in printed


@pytest.mark.parametrize("mode", MODES)
def test_nan_inf_and_empty_audio_are_skipped_and_the_rest_kept(bad_audio_dir, tmp_path, mode, capsys):
    out = tmp_path / "scores.csv"
    assert run(bad_audio_dir, "--mode", mode, "--out", out) == 0  # partial skips: listed, exit 0
    rows = read_rows(out)
    assert set(rows) == {"good.mp4", "nan.mp4", "inf.mp4", "empty.mp4"}
    assert rows["good.mp4"]["status"] == "ok" and float(rows["good.mp4"]["score"]) >= 0.9
    for name in ("nan", "inf"):
        assert rows[f"{name}.mp4"]["status"] == "skipped" and rows[f"{name}.mp4"]["score"] == ""
        reason = rows[f"{name}.mp4"]["reason"]
        assert "1 NaN or Inf samples" in reason and f"{name}.wav" in reason and "0.100 s" in reason
    assert "no samples" in rows["empty.mp4"]["reason"]
    printed = capsys.readouterr().out
    assert "over 1 videos" in printed and "3 skipped" in printed
    assert all(f"skipped {bad_audio_dir / name}.mp4" in printed for name in ("nan", "inf", "empty"))


def test_nothing_scored_exits_nonzero_and_still_writes_every_row(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    clicks = write_pair(root, "nan", audio=np.full(32000, np.nan, dtype=np.float32))
    (root / "broken.mp4").write_bytes(b"not a video")
    write_pair(root, "quiet", audio=np.zeros_like(clicks), static=True)  # empty: no score either
    out = tmp_path / "scores.csv"
    assert run(root, "--mode", "paper", "--out", out) == 1
    rows = read_rows(out)
    assert [rows[n]["status"] for n in ("broken.mp4", "nan.mp4", "quiet.mp4")] == ["skipped", "skipped", "empty"]
    captured = capsys.readouterr()
    assert "no video was scored (2 skipped, 1 with no peaks on either side)" in captured.err
    assert "nan over 0 videos" in captured.out  # the summary still says what happened


def test_strict_turns_any_skip_into_a_failure(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    write_pair(root, "good")
    (root / "broken.mp4").write_bytes(b"not a video")
    assert run(root, "--mode", "reference") == 0
    assert run(root, "--mode", "reference", "--strict") == 1
    assert "--strict: 1 file(s) skipped" in capsys.readouterr().err
    (root / "broken.mp4").unlink()
    assert run(root, "--mode", "reference", "--strict") == 0


def test_an_unexpected_error_in_one_file_keeps_the_others(video_dir, tmp_path, monkeypatch, capsys):
    real = engine._prepare

    def fails_on_late(result, settings):
        if result.video.endswith("late.mp4"):
            raise ZeroDivisionError("a bug")
        return real(result, settings)

    monkeypatch.setattr(engine, "_prepare", fails_on_late)
    out = tmp_path / "scores.csv"
    assert run(video_dir, "--mode", "reference", "--out", out) == 1  # a bug is never a success
    rows = read_rows(out)
    assert rows["late.mp4"]["status"] == "failed" and "ZeroDivisionError: a bug" in rows["late.mp4"]["reason"]
    assert rows["good.mp4"]["status"] == "ok" and len(rows) == 5
    err = capsys.readouterr().err
    assert "Traceback" in err and "fails_on_late" in err and "unexpected error" in err


def test_threads_apply_while_scoring_and_are_restored(video_dir, monkeypatch):
    import cv2

    seen = []
    real = engine.process_file

    def recording(job):
        seen.append((torch.get_num_threads(), cv2.getNumThreads()))
        return real(job)

    monkeypatch.setattr(engine, "process_file", recording)
    before_cv2 = cv2.getNumThreads()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    try:
        assert run(video_dir, "--mode", "reference", "--threads", "1") == 0
        assert seen and set(seen) == {(1, 1)}
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (2, 2)
    finally:
        cv2.setNumThreads(before_cv2)
    # Several workers get one thread each unless told otherwise.
    assert engine.FolderScorer(workers=2).settings.threads == 1
    assert engine.FolderScorer(workers=2, threads=3).settings.threads == 3


@pytest.mark.parametrize("mode", MODES)
def test_command_and_metric_share_the_engine(video_dir, mode):
    """The command's rows equal AVAlign's on the same decoded clips; paper mode's batched
    main-process flow (the --device cuda path, here on the CPU) equals the workers' flow."""
    names = ["good", "late", "quiet", "embedded"]
    pairs = [(video_dir / f"{n}.mp4", video_dir / (f"{n}.mp4" if n == "embedded" else f"{n}.wav")) for n in names]
    results = engine.score_pairs(pairs, mode, progress=False)
    metric = AVAlign(mode=mode)
    for video, audio in pairs:
        frames, fps = read_video_file(video)
        wave, rate = read_audio_file(audio)
        metric.update(torch.from_numpy(frames).permute(0, 3, 1, 2)[None], torch.from_numpy(wave)[None], fps, rate)
    torch.testing.assert_close(rows(results), metric.per_clip(), equal_nan=True, rtol=0, atol=0)
    assert not any(r.skipped for r in results) and math.isnan(results[2].score)  # quiet.mp4: empty
    if mode == "paper":
        batched = engine.score_pairs(pairs, mode, progress=False, flow_in_workers=False, batch=3)
        torch.testing.assert_close(rows(batched), rows(results), equal_nan=True, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_flow_gives_the_cpu_rows(video_dir):
    pairs = [(video_dir / f"{n}.mp4", video_dir / f"{n}.wav") for n in ("good", "late", "quiet")]
    on_gpu = engine.score_pairs(pairs, "paper", device="cuda", progress=False, batch=2)
    torch.testing.assert_close(rows(on_gpu), rows(engine.score_pairs(pairs, "paper", progress=False)),
                               rtol=0, atol=0, equal_nan=True)


def rows(results) -> torch.Tensor:
    return torch.tensor([[r.score, r.audio_peaks, r.video_peaks, r.matches] for r in results], dtype=torch.float64)


def test_paper_edges_drop_the_onset_at_the_clip_start(tmp_path):
    """Audio over background noise: SuperFlux fires at t = 0, where no video peak can be."""
    root = tmp_path / "videos"
    root.mkdir()
    frames, audio = render_clip(EVENTS, fps=FPS, sample_rate=SAMPLE_RATE, background=0.003)
    write_test_clip(root / "clip.mp4", frames)
    sf.write(root / "clip.wav", audio, SAMPLE_RATE, subtype="FLOAT")
    for edges, score, dropped in (("drop", 1.0, 1), ("keep", len(EVENTS) / (len(EVENTS) + 1), 0)):
        out = tmp_path / f"{edges}.csv"
        assert run(root, "--mode", "paper", "--edges", edges, "--out", out) == 0
        row = read_rows(out)["clip.mp4"]
        assert float(row["score"]) == pytest.approx(score, abs=1e-6) and int(row["edge_onsets"]) == dropped


def test_whole_file_readers(video_dir, tmp_path):
    audio, rate = read_audio_file(video_dir / "embedded.mp4")
    assert rate == SAMPLE_RATE and audio.ndim == 1 and audio.size >= 2 * SAMPLE_RATE * 0.95
    frames, fps = read_video_file(video_dir / "good.mp4")
    rendered, _ = render_clip(EVENTS, fps=FPS, sample_rate=SAMPLE_RATE)
    assert fps == FPS and frames.shape == rendered.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - rendered).mean() < 2  # yuv444p at CRF 10: near lossless
    bad = tmp_path / "bad.wav"
    sf.write(bad, np.array([0.0, np.inf, np.nan, 0.0], dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="2 NaN or Inf samples"):
        read_audio_file(bad)


def test_bad_arguments(tmp_path, capsys):
    assert command.main([str(tmp_path / "missing")]) == 2
    assert command.main([str(tmp_path)]) == 2
    (tmp_path / "a.mp4").write_bytes(b"not a video")
    assert command.main([str(tmp_path), "--workers", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        command.main([str(tmp_path), "--mode", "bogus"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_two_workers_give_the_same_rows(video_dir, tmp_path, mode):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert run(video_dir, "--mode", mode, "--out", one) == 0
    assert cli.main(["av-align", str(video_dir), "--mode", mode, "--workers", "2", "--out", str(two),
                     "--no-progress"]) == 0
    assert read_rows(one) == read_rows(two)
