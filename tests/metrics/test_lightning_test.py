"""Metrics under `lightning test`: after generation (AudioToVideo) and on a folder of videos (ScoreVideos)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from av_lightning.cli import cli_main
from av_lightning.data.io import read_audio, read_frames, write_audio, write_video
from av_lightning.data.synthetic import SyntheticDataModule
from av_lightning.data.video_folder import VideoFolderDataModule
from av_lightning.evaluate import ScoreVideos
from av_lightning.metrics import FVD, AVAlign, VideoInceptionScore
from tests.conftest import tiny_module
from tests.metrics.metric_helpers import FPS, SAMPLE_RATE, TinyVideoNet, av_batch

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs/tiny.yaml")
EVAL = str(ROOT / "configs/eval_folder.yaml")
FRAMES = 16  # clips scored from the folder: 16 of the 48 synthetic frames at 24 fps


def _trainer(tmp_path) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, limit_test_batches=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)


def _cli(args: list[str], monkeypatch):
    monkeypatch.setattr("sys.argv", ["lightning"])  # pytest's own arguments are not for the CLI
    return cli_main(args)


def test_tiny_config_with_metric_overlay_logs_av_align(tmp_path, monkeypatch):
    cli = _cli(["test", "--config", TINY, "--config", str(ROOT / "configs/tiny_test_metrics.yaml"),
                    f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
                    "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false",
                    "--data.init_args.num_test=2", "--data.init_args.batch_size=2",
                    "--model.init_args.steps=2"], monkeypatch)
    logged = cli.trainer.callback_metrics
    assert {"test/av_align", "test/av_align_empty", "test/av_align_scored"} <= set(logged)
    assert float(logged["test/av_align_empty"]) + float(logged["test/av_align_scored"]) == 2


@pytest.mark.parametrize("conditioning", ["audio", "text"])
def test_audio_to_video_test_step_logs_every_metric(conditioning, tmp_path):
    metrics = [
        FVD(TinyVideoNet(out=8), num_features=8, allow_shorter=True),
        VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=1, allow_shorter=True),
        AVAlign(mode="paper"),
        AVAlign(mode="reference"),  # same keys: logged with the metric's index appended
    ]
    model = tiny_module(num_frames=8, fps=8.0, conditioning=conditioning, metrics=metrics)
    data = SyntheticDataModule(num_test=3, num_frames=8, fps=8.0, size=8, batch_size=3)
    _trainer(tmp_path).test(model, datamodule=data)
    logged = model.trainer.callback_metrics
    for key in ("test/FVD", "test/is_mean", "test/is_std", "test/av_align_scored", "test/av_align_empty",
                "test/av_align_scored_3"):
        assert math.isfinite(float(logged[key])), (key, logged[key])
    assert float(logged["test/FVD"]) > 0  # generated vs real clips
    for suffix in ("", "_3"):
        assert float(logged[f"test/av_align_scored{suffix}"]) + float(logged[f"test/av_align_empty{suffix}"]) == 3
        if float(logged[f"test/av_align_scored{suffix}"]):
            assert 0 <= float(logged[f"test/av_align{suffix}"]) <= 1
    # States are reset after logging, so a second run starts afresh.
    assert all(m._update_count == 0 for m in metrics)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """Three synthetic clips (48 frames of 64x64 at 24 fps with audio onsets at the motion events)
    in ``fake/`` — two with a wav beside them, one with the audio only in the mp4 — a copy in
    ``real/``, a labels CSV, and an undecodable ``broken.mp4``."""
    root = tmp_path_factory.mktemp("folder")
    videos, audio = av_batch(shift=0, seeds=(0, 1, 2))
    for i in range(3):
        name = f"clip{i}"
        write_video(root / "real" / f"{name}.mp4", videos[i], FPS, audio=audio[i], sample_rate=SAMPLE_RATE)
        if i < 2:
            write_video(root / "fake" / f"{name}.mp4", videos[i], FPS)
            write_audio(root / "fake" / f"{name}.wav", audio[i], SAMPLE_RATE)
        else:
            write_video(root / "fake" / f"{name}.mp4", videos[i], FPS, audio=audio[i], sample_rate=SAMPLE_RATE)
    (root / "fake" / "broken.mp4").write_bytes(b"not a video" * 10)
    (root / "labels.csv").write_text("name,label\nclip0,drums\nclip1,rain\nclip2,dog\nbroken,car\n")
    return root


def test_folder_datamodule_batches_and_skips(video_folder):
    dm = VideoFolderDataModule(str(video_folder / "fake"), real_dir=str(video_folder / "real"),
                               num_frames=FRAMES, fps=FPS, labels_csv=str(video_folder / "labels.csv"), batch_size=3)
    dm.setup("test")
    assert dm.skipped == [("broken", "fake video does not decode")]
    assert [c.audio.name for c in dm.clips] == ["clip0.wav", "clip1.wav", "clip2.mp4"]
    batch = next(iter(dm.test_dataloader()))
    assert batch["generated"].dtype == torch.uint8 and batch["generated"].shape == (3, FRAMES, 3, 64, 64)
    assert batch["frames"].shape == (3, FRAMES, 3, 64, 64)
    assert batch["audio"].shape == (3, round(FRAMES / FPS * SAMPLE_RATE))
    assert batch["label"] == ["drums", "rain", "dog"] and batch["id"] == ["clip0", "clip1", "clip2"]


def test_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        VideoFolderDataModule(str(tmp_path / "empty")).setup("test")


def test_eval_folder_config_matches_av_align_on_the_decoded_clips(video_folder, tmp_path, monkeypatch):
    fake = video_folder / "fake"
    report = tmp_path / "scores.json"
    cli = _cli(["test", "--config", EVAL, f"--data.init_args.fake_dir={fake}",
                    f"--data.init_args.num_frames={FRAMES}", f"--data.init_args.fps={FPS}",
                    "--data.init_args.num_workers=0", "--trainer.accelerator=cpu",
                    "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
                    f"--model.init_args.report={report}"], monkeypatch)
    assert cli.model.hparams.num_frames == FRAMES and cli.model.hparams.fps == FPS  # linked from data
    samples = round(FRAMES / FPS * SAMPLE_RATE)
    names = ("clip0", "clip1", "clip2")
    videos = torch.stack([read_frames(fake / f"{n}.mp4", 0.0, FRAMES, FPS) for n in names])
    audio = torch.stack([read_audio(fake / (f"{n}.wav" if n != "clip2" else f"{n}.mp4"), 0.0, samples, SAMPLE_RATE)
                         for n in names])
    direct = AVAlign(mode="paper")
    direct.update(videos, audio, FPS, SAMPLE_RATE)
    expected = direct.compute()
    assert expected["av_align_scored"] == 3
    written = json.loads(report.read_text())
    assert written["results"]["av_align"] == pytest.approx(float(expected["av_align"]), abs=1e-12)
    assert written["skipped"] == 1 and written["clips"] == 3
    assert float(cli.trainer.callback_metrics["test/av_align"]) == pytest.approx(float(expected["av_align"]), abs=1e-6)


def test_fvd_of_a_folder_against_itself_is_zero(video_folder, tmp_path):
    fake = str(video_folder / "fake")
    dm = VideoFolderDataModule(fake, real_dir=fake, num_frames=FRAMES, fps=FPS, audio=False, batch_size=2)
    model = ScoreVideos([FVD(TinyVideoNet(out=8), num_features=8)], num_frames=FRAMES, fps=FPS,
                        report=str(tmp_path / "fvd.md"))
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).test(model, datamodule=dm)
    assert abs(model.results["FVD"]) < 1e-6
    assert "| FVD |" in (tmp_path / "fvd.md").read_text()


def test_folder_of_mixed_sizes_needs_a_size(tmp_path):
    videos, _ = av_batch(seeds=(0,))
    write_video(tmp_path / "a.mp4", videos[0, :FRAMES], FPS)
    write_video(tmp_path / "b.mp4", videos[0, :FRAMES, :, ::2, ::2], FPS)
    with pytest.raises(ValueError, match="differ in size"):
        VideoFolderDataModule(str(tmp_path), num_frames=FRAMES, fps=FPS, audio=False).setup("test")
    dm = VideoFolderDataModule(str(tmp_path), num_frames=FRAMES, fps=FPS, audio=False, size=32, batch_size=2)
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["generated"].shape == (2, FRAMES, 3, 32, 32)
