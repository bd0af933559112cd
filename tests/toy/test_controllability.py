"""The oracle controllability check: event states, oracle tokens, a short fit and its probe."""

from __future__ import annotations

import pytest
import torch

from av_lightning.toy import controllability as ctl


def test_event_states_match_a_loop():
    g = torch.Generator().manual_seed(0)
    events = torch.rand(16, 12, generator=g) < 0.25
    got = ctl.event_states(events)
    for b in range(16):
        for f in range(12):
            want = 1 if events[b, f] else (2 if f > 0 and events[b, f - 1] else 0)
            assert got[b, f] == want


def test_oracle_tokens_layout():
    labels = torch.tensor([0, 3])
    events = torch.zeros(2, 12, dtype=torch.bool)
    events[0, 4] = True
    both = ctl.OracleTokens(8, "class+state", state_tokens=3)
    tok = both(labels, events)
    assert tok.shape == (2, 12, 4, 8) and both.num_tokens == 4
    assert torch.equal(tok[0, :, 0], both.cls[0, 0].expand(12, 8))  # the class token on every frame
    assert torch.equal(tok[0, 4, 1:], both.state[1]) and torch.equal(tok[0, 5, 1:], both.state[2])
    assert torch.equal(tok[1, 4, 1:], both.state[0])
    assert both.templates(labels) == ["a <audio>", "a <audio>"]
    state = ctl.OracleTokens(8, "state", state_tokens=1)
    assert state(labels, events).shape == (2, 12, 1, 8) and state.cls is None
    assert state.templates(labels) == ["a drum <audio>", "a bass <audio>"]
    with pytest.raises(ValueError, match="mode"):
        ctl.OracleTokens(8, "audio")
    with pytest.raises(ValueError, match="state_tokens"):
        ctl.OracleTokens(8, "state", state_tokens=0)


def test_short_fit_on_the_shipped_backbone():
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V
    from av_lightning.toy.demo import backbone_path

    backbone = DiffusersT2V(pretrained=backbone_path())
    frozen = {k: v.clone() for k, v in backbone.unet.state_dict().items()}
    oracle, losses = ctl.train_oracle(backbone, "class+state", steps=2, batch_size=2, log_every=0)
    assert len(losses) == 2 and all(0 < x < 10 for x in losses)
    # the tokens trained from their seeded start, the backbone did not
    torch.manual_seed(0)
    start = ctl.OracleTokens(backbone.text_width, "class+state", 6,
                             float(backbone.text_encoder.get_input_embeddings().weight.std()))
    assert not torch.allclose(start.state, oracle.state)
    assert all(torch.equal(v, backbone.unet.state_dict()[k]) for k, v in frozen.items())

    from av_lightning.toy.timing import held_out_clips

    clips = held_out_clips(4)
    res = ctl.evaluate_oracle(backbone, oracle, clips, steps=2)
    for key in ("event_recall", "chance_event_recall", "event_exact_recall", "chance_event_exact_recall",
                "flash_exact_recall", "jump_exact_precision", "class_accuracy"):
        assert 0.0 <= res[key] <= 1.0
    assert res["n"] == 4 and (res["av_align_empty"] > 0 or 0.0 <= res["av_align"] <= 1.0)
    assert res["temporal_guidance_scale"] == 0.0
    # the demo's sampler: temporal guidance against the frame-mean tokens
    demo = ctl.evaluate_oracle(backbone, oracle, clips, steps=2, temporal_guidance_scale=6.0)
    assert demo["temporal_guidance_scale"] == 6.0 and 0.0 <= demo["flash_exact_recall"] <= 1.0
    with pytest.raises(ValueError, match="two or more clips"):
        ctl.evaluate_oracle(backbone, oracle, held_out_clips(1))

    # per-frame routing: a token change at one frame moves that frame's output the most
    sens = ctl.token_sensitivity(backbone, timesteps=(500,))
    assert sens["at_frame"] > 2 * sens["other_frames"] > 0
    assert sens["class_prompt"] > 0


def test_command_line_samples_with_the_demo_sampler(tmp_path):
    report = tmp_path / "ctl.md"
    out = ctl.main(["--steps", "1", "--batch-size", "2", "--n", "2", "--sample-steps", "2",
                    "--temporal-guidance", "6", "--report", str(report)])
    assert out["result"]["temporal_guidance_scale"] == 6.0 and len(out["losses"]) == 1
    text = report.read_text()
    assert "temporal guidance 6 against the frame-mean tokens" in text and "--temporal-guidance 6" in text
    with pytest.raises(SystemExit):
        ctl.main(["--steps", "1", "--n", "2", "--temporal-guidance", "-1"])
