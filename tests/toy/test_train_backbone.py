"""Toy backbone training: a few CPU steps, resume, and the saved folder loads as a DiffusersT2V."""

from __future__ import annotations

import json

import pytest
import torch

from av_lightning.toy import train_backbone as tb

TINY = {
    "unet": dict(block_out_channels=[16, 32], layers_per_block=1, down_block_types=["DownBlock3D", "CrossAttnDownBlock3D"],
                 up_block_types=["CrossAttnUpBlock3D", "UpBlock3D"], cross_attention_dim=32, attention_head_dim=8,
                 norm_num_groups=8, in_channels=3, out_channels=3, sample_size=16),
    "text_encoder": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         max_position_embeddings=48, vocab_size=520, bos_token_id=0, eos_token_id=1, pad_token_id=1),
    "tokenizer_max_length": 48,
    "scheduler": dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                      clip_sample=True, set_alpha_to_one=True, steps_offset=0, timestep_spacing="trailing"),
    "train": {**tb.TRAIN_DEFAULTS, "batch_size": 2, "warmup_steps": 2, "log_every": 1, "save_every": 2},
}


def test_train_resume_and_load(tmp_path):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V

    out = tmp_path / "bb"
    s = tb.train_backbone(TINY, out, steps=3, device="cpu", log=lambda *a: None)
    assert s["steps"] == 3 and torch.load(out / tb.STATE_FILE, weights_only=False)["step"] == 3
    s = tb.train_backbone(TINY, out, steps=4, device="cpu", resume=True, log=lambda *a: None)
    assert s["steps"] == 4 and s["steps_this_run"] == 1
    state = torch.load(out / tb.STATE_FILE, weights_only=False)
    assert state["step"] == 4
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["steps"] == 4 and recipe["seed"] == 0

    backbone = DiffusersT2V(pretrained=str(out))
    assert backbone.vae is None and backbone.latent_channels == 3
    assert backbone.scheduler_config["prediction_type"] == "v_prediction"
    # the saved weights are the EMA weights
    params = list(backbone.unet.parameters()) + list(backbone.text_encoder.parameters())
    assert all(torch.equal(p, e) for p, e in zip(params, state["ema"]))
    # and a second load reproduces the outputs exactly
    again = DiffusersT2V(pretrained=str(out))
    x = torch.randn(1, 3, 12, 16, 16)
    t = torch.tensor([500])
    with torch.no_grad():
        cond = backbone.encode_text(["a drum"])
        assert torch.equal(backbone.denoise(x, t, cond), again.denoise(x, t, again.encode_text(["a drum"])))


def test_time_budget_stops_and_saves(tmp_path):
    s = tb.train_backbone(TINY, tmp_path / "bb", steps=1000, device="cpu", time_budget=0.0, log=lambda *a: None)
    assert s["stopped_by"] == "time budget" and s["steps"] == 0
    assert (tmp_path / "bb" / "unet").is_dir()


def test_quality_gate_runs_and_writes_a_report(tmp_path):
    out = tmp_path / "bb"
    tb.train_backbone(TINY, out, steps=1, device="cpu", log=lambda *a: None)
    result = tb.evaluate_backbone(out, n=4, steps=[2, 1], report=str(tmp_path / "gate.md"))
    assert 0.0 <= result["coherent_fraction"] <= 1.0 and set(result["per_class"]) == {"drum", "bell", "clap", "bass"}
    assert 1.5 < result["train_jumps_per_clip"] < 2.5
    # the first step count decides the gate; the others are measured beside it
    assert result["steps"] == 2 and list(result["by_steps"]) == [2, 1]
    assert result["by_steps"][2]["coherent_fraction"] == result["coherent_fraction"]
    text = (tmp_path / "gate.md").read_text()
    assert "quality gate" in text and "| 2 (the gate) |" in text and "| 1 |" in text
    with pytest.raises(ValueError, match="step counts"):
        tb.evaluate_backbone(out, n=4, steps=[])


def test_count_captions_name_each_clips_class_and_events():
    from av_lightning.backbones.tiny import char_tokenizer
    from av_lightning.data.toyworld import CLASSES

    templates = ["a {}", "{}"]
    texts = tb.caption_texts(templates, "count")
    assert texts[:8] == tb.caption_texts(templates, "class")[:8] and texts[-1] == ""
    assert len(texts) == 4 * 2 + 4 * 3 * 2 + 1
    ids, T = tb.prompt_table(char_tokenizer(48), templates, "count")
    assert ids.shape[0] == len(texts) and int(T) == 2
    g = torch.Generator().manual_seed(0)
    batch = tb.toy_batch(64, g)
    rows = tb.caption_rows(batch["label"], batch["events"], 2, "count", 1.0, g)
    for r, y, ev in zip(rows.tolist(), batch["label"].tolist(), batch["events"]):
        n = int(ev.sum())
        assert texts[r] in (f"a {CLASSES[y]} jumping {tb.COUNT_WORDS[n - 1]}", f"{CLASSES[y]} jumping {tb.COUNT_WORDS[n - 1]}")
    plain = tb.caption_rows(batch["label"], batch["events"], 2, "count", 0.0, g)
    assert all(texts[r] in (f"a {CLASSES[y]}", CLASSES[y]) for r, y in zip(plain.tolist(), batch["label"].tolist()))
    with pytest.raises(ValueError, match="captions"):
        tb.caption_texts(templates, "timing")


def test_init_from_a_saved_backbone_and_count_captions(tmp_path):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V

    first = tmp_path / "first"
    tb.train_backbone(TINY, first, steps=1, device="cpu", log=lambda *a: None)
    count = {**TINY, "train": {**TINY["train"], "captions": "count"}}
    # zero steps from --init: the exported weights are the initial ones
    again = tmp_path / "again"
    s = tb.train_backbone(count, again, steps=0, device="cpu", init=str(first), log=lambda *a: None)
    assert s["init"] == str(first)
    a, b = DiffusersT2V(pretrained=str(first)), DiffusersT2V(pretrained=str(again))
    assert all(torch.equal(p, q) for p, q in zip(a.unet.parameters(), b.unet.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(a.text_encoder.parameters(), b.text_encoder.parameters()))
    # and a fine-tune with count captions trains
    s = tb.train_backbone(count, tmp_path / "tuned", steps=2, device="cpu", init=str(first), log=lambda *a: None)
    assert s["steps"] == 2 and s["final_loss"] > 0
    wider = {**TINY, "unet": {**TINY["unet"], "block_out_channels": [16, 48]}}
    with pytest.raises(ValueError, match="do not fit"):
        tb.train_backbone(wider, tmp_path / "bad", steps=0, device="cpu", init=str(first), log=lambda *a: None)
    with pytest.raises(FileNotFoundError, match="diffusers layout"):
        tb.train_backbone(TINY, tmp_path / "bad2", steps=0, device="cpu", init=str(tmp_path / "nowhere"), log=lambda *a: None)
