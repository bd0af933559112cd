"""The backbone gates: their scores on ground truth and by hand, and a run on a tiny trained backbone."""

from __future__ import annotations

import pytest
import torch

from av_lightning.data import toyworld as tw
from av_lightning.toy import backbone_gate as gate
from av_lightning.toy.backbone_gate import _mark


def test_held_out_clips_are_the_worlds_test_split():
    clips = gate.held_out_clips(3, world_seed=2)
    ref = tw.toy_clip(tw.clip_seed(2, "test", 1), tw.CLASSES[1])
    assert torch.equal(clips["frames"][1], ref["frames"]) and torch.equal(clips["audio"][1], ref["audio"])
    assert clips["label"] == ["drum", "bell", "clap"] and clips["events"][1] == ref["events"]


def test_timing_scores_of_ground_truth_and_of_another_clips_frames():
    clips = gate.held_out_clips(32)
    own = gate.timing_scores(clips["frames"], clips)
    for key in ("flash_exact_recall", "jump_exact_recall", "event_exact_recall", "flash_exact_precision"):
        assert own[key] == 1.0, key
    assert own["av_align"] > 0.95 and own["av_align_empty"] == 0
    # chance: another clip's events share few exact frames with these clips' events
    assert own["chance_event_exact_recall"] < 0.35
    pairs = [(a, b) for a, b in zip(clips["events"], clips["events"][1:] + clips["events"][:1])]
    by_hand = sum(len(set(a) & set(b)) for a, b in pairs) / sum(len(b) for _, b in pairs)
    assert abs(own["chance_event_exact_recall"] - by_hand) < 1e-12
    # frames of the next clip: timing no longer matches, the score falls to the chance figures
    shifted = {**clips, "frames": torch.roll(clips["frames"], 1, dims=0)}
    assert gate.timing_scores(shifted["frames"], clips)["event_exact_recall"] < 0.5


def test_frame_prompts_name_the_event_frames():
    rows = gate.frame_prompts(["drum", "bass"], [[2, 6], [10]], num_frames=12)
    assert rows[0][2] == rows[0][6] == "a struck drum" and rows[0][3] == "a drum"
    assert [f for f, p in enumerate(rows[1]) if "struck" in p] == [10] and len(rows[1]) == 12
    ringing = gate.frame_prompts(["drum"], [[2, 6]], num_frames=12, ringing=True)[0]
    assert [f for f, p in enumerate(ringing) if p == "a ringing drum"] == [3, 7]
    assert [f for f, p in enumerate(ringing) if p == "a struck drum"] == [2, 6] and ringing[4] == "a drum"
    assert gate.uses_ringing({"config": {"train": {"after_share": 0.3}}})
    assert not gate.uses_ringing({"config": {"train": {"event_share": 0.5}}}) and not gate.uses_ringing(None)


def test_gates_run_on_a_tiny_backbone_and_write_a_report(tmp_path):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.train_backbone import train_backbone
    from tests.toy.test_train_backbone import TINY

    out = tmp_path / "bb"
    ringing = {**TINY, "train": {**TINY["train"], "event_share": 0.4, "after_share": 0.3}}
    recipe = train_backbone(ringing, out, steps=1, device="cpu", log=lambda *a: None)
    assert gate.uses_ringing(recipe)
    backbone = DiffusersT2V(pretrained=str(out))
    kw = dict(steps=1, guidance_scale=5.0, seed=0)
    a = gate.gate_video(backbone, 4, **kw)
    b = gate.gate_images(backbone, 4, **kw)
    c = gate.gate_frame_text(backbone, gate.held_out_clips(4), **kw, ringing=True)
    c_demo = gate.gate_frame_text(backbone, gate.held_out_clips(4), **kw, ringing=True, temporal_guidance_scale=6.0)
    assert c["temporal_guidance_scale"] == 0.0 and c_demo["temporal_guidance_scale"] == 6.0
    # temporal guidance in chunks: every clip comes back, and a static conditioning of another shape is refused
    from av_lightning.toy.timing import sample_videos

    cond = backbone.encode_text(["a drum", "a struck drum"] * 9).unflatten(0, (3, 6))  # (3 clips, 6 frames, N, d)
    assert sample_videos(backbone, cond, num_frames=6, steps=1, batch_size=2, temporal_guidance_scale=6.0).shape[0] == 3
    with pytest.raises(ValueError, match="shape of cond"):
        sample_videos(backbone, cond, num_frames=6, steps=1, static_cond=cond[:2], temporal_guidance_scale=6.0)
    assert 0 <= a["coherent_fraction"] <= 1 and set(a["per_class"]) == set(tw.CLASSES)
    assert 1.5 < a["train"]["jumps_per_clip"] < 2.5 and a["train"]["flashes_per_clip"] == a["train"]["jumps_per_clip"]
    assert set(b) >= {"struck", "plain", "passed"} and 0 <= b["struck"]["controlled"] <= 1
    assert 0 <= c["event_exact_recall"] <= 1 and c["n"] == 4
    report = tmp_path / "gate.md"
    more = [dict(gate.gate_images(backbone, 4, **{**kw, "guidance_scale": 1.0}), guidance=1.0)]
    gate.write_report(report, str(out), a, b, [c, c_demo], None,
                      dict(argv="", seconds=1.0, steps=1, guidance=5.0, seed=0), recipe, more)
    text = report.read_text()
    assert "`a ringing {class}` on the frame after" in text
    assert "Sampled with classifier-free guidance 5:" in text and "Sampled with the demo's sampler: temporal guidance 6" in text
    verdict_b = next(line for line in text.splitlines() if line.startswith("## (b)"))
    assert verdict_b.endswith(f"at guidance 5; {_mark(more[0]['passed'])} at guidance 1") and "demo" not in verdict_b
    assert f"| 1 | {more[0]['struck']['controlled']:.3f} / " in text
    assert "(a) Video coherence" in text and "(b) Image captions" in text and "per-frame text prompts" in text


def test_frame_mean_is_the_clip_average_of_per_frame_conditioning():
    from av_lightning.toy.timing import frame_mean

    cond = torch.randn(2, 5, 3, 4)
    m = frame_mean(cond)
    assert m.shape == cond.shape and torch.allclose(m[1, 3], sum(cond[1, f] for f in range(5)) / 5, atol=1e-6)
    assert torch.equal(m[:, 0], m[:, 4])
    with pytest.raises(ValueError, match="per-frame conditioning"):
        frame_mean(cond[:, 0])
