"""Toy backbone training: a few CPU steps on videos and images, resume (safe loading), and the saved
folder loads as a DiffusersT2V."""

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
    "train": {**tb.TRAIN_DEFAULTS, "batch_size": 2, "warmup_steps": 2, "log_every": 1, "save_every": 2,
              "image_schedule": [[0, 3], [2, 1]]},
}


def test_train_resume_and_load(tmp_path):
    from av_lightning.backbones.diffusers_t2v import DiffusersT2V

    out = tmp_path / "bb"
    s = tb.train_backbone(TINY, out, steps=3, device="cpu", log=lambda *a: None)
    assert s["steps"] == 3 and torch.load(out / tb.STATE_FILE, weights_only=True)["step"] == 3
    s = tb.train_backbone(TINY, out, steps=4, device="cpu", resume=True, log=lambda *a: None)
    assert s["steps"] == 4 and s["steps_this_run"] == 1
    state = torch.load(out / tb.STATE_FILE, weights_only=True)
    assert state["step"] == 4 and len(state["losses"]) == len(state["image_losses"]) == 4
    assert all(x > 0 for x in state["image_losses"])  # images were trained in every step
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["steps"] == 4 and recipe["seed"] == 0
    assert [x["steps"] for x in recipe["sittings"]] == [[0, 3], [3, 4]]

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


def test_resume_continues_the_same_stream(tmp_path):
    """Three steps in one go and 2 + 1 with a resume give the same weights (RNG states survive)."""
    once = tb.train_backbone(TINY, tmp_path / "once", steps=3, device="cpu", log=lambda *a: None)
    tb.train_backbone(TINY, tmp_path / "twice", steps=2, device="cpu", log=lambda *a: None)
    twice = tb.train_backbone(TINY, tmp_path / "twice", steps=3, device="cpu", resume=True, log=lambda *a: None)
    assert once["loss_curve"] == twice["loss_curve"]
    a = torch.load(tmp_path / "once" / tb.STATE_FILE, weights_only=True)
    b = torch.load(tmp_path / "twice" / tb.STATE_FILE, weights_only=True)
    assert all(torch.equal(a["unet"][k], b["unet"][k]) for k in a["unet"])


def test_a_malicious_train_state_is_refused_and_never_runs(tmp_path):
    from tests.helpers import write_malicious_pickle

    out = tmp_path / "bb"
    out.mkdir()
    marker = tmp_path / "pwned"
    write_malicious_pickle(out / tb.STATE_FILE, marker, payload={"step": 1, "config": "{}"})
    with pytest.raises(ValueError, match=rf"{tb.STATE_FILE} cannot be loaded safely"):
        tb.train_backbone(TINY, out, steps=2, device="cpu", resume=True, log=lambda *a: None)
    assert not marker.exists()


def test_resume_refuses_another_recipe(tmp_path):
    out = tmp_path / "bb"
    tb.train_backbone(TINY, out, steps=1, device="cpu", log=lambda *a: None)
    other = {**TINY, "train": {**TINY["train"], "lr": 1e-3}}
    with pytest.raises(ValueError, match="another recipe"):
        tb.train_backbone(other, out, steps=2, device="cpu", resume=True, log=lambda *a: None)


def test_image_batches_are_single_frames_with_their_captions():
    from av_lightning.backbones.tiny import char_tokenizer
    from av_lightning.data.toyworld import CLASSES, COLOURS, FLASH

    g = torch.Generator().manual_seed(0)
    img = tb.image_batch(200, g, event_share=0.5)
    assert img["frames"].shape == (200, 1, 3, 16, 16) and img["frames"].dtype == torch.uint8
    assert 0.35 < img["state"].float().mean() < 0.65
    for frame, y, st in zip(img["frames"][:, 0], img["label"].tolist(), img["state"].tolist()):
        colour = torch.tensor(COLOURS[CLASSES[y]], dtype=torch.float32)
        flashed = (colour + FLASH * (255 - colour)).round()
        want = flashed if st else colour
        assert ((frame.float().permute(1, 2, 0) - want).abs().sum(-1) == 0).sum() >= 12
    assert tb.image_batch(50, g, event_share=0.0)["state"].sum() == 0
    assert tb.image_batch(50, g, event_share=1.0)["state"].sum() == 50
    # the caption table: videos, then the image captions by state, class and template, "" last
    texts = tb.caption_texts(["a {}"], "class", ["a {}", "{}"])
    assert texts[:4] == [f"a {c}" for c in CLASSES] and texts[-1] == ""
    assert texts[4:6] == ["a drum", "drum"] and texts[4 + 2 * 4 : 4 + 2 * 4 + 2] == ["a struck drum", "struck drum"]
    assert texts[4 + 2 * 2 * 4 : 4 + 2 * 2 * 4 + 2] == ["a ringing drum", "ringing drum"]
    assert len(texts) == 4 + 3 * 4 * 2 + 1 and len(tb.prompt_table(char_tokenizer(48), ["a {}"], "class", ["{}"])[0]) == 17


def test_images_of_the_frame_after_an_event_are_grown_and_unflashed():
    """``after_share``: state 2 is the frame after an event (grown, not flashed), state 0 a quiet frame
    (rest size); counted from the pixels of the class colour and of its flash."""
    from av_lightning.data.toyworld import CLASSES, COLOURS, FLASH

    img = tb.image_batch(400, torch.Generator().manual_seed(1), event_share=0.3, after_share=0.4)
    states = img["state"]
    assert set(states.tolist()) == {0, 1, 2} and 0.3 < (states == 2).float().mean() < 0.5
    for y, name in enumerate(CLASSES):
        colour = torch.tensor(COLOURS[name], dtype=torch.float32)
        flashed = (colour + FLASH * (255 - colour)).round()
        pix = img["frames"][:, 0].float().permute(0, 2, 3, 1)  # (n, H, W, 3)
        plain = ((pix - colour).abs().sum(-1) == 0).flatten(1).sum(1)
        lit = ((pix - flashed).abs().sum(-1) == 0).flatten(1).sum(1)
        mine = img["label"] == y
        quiet, after, event = (mine & (states == 0)), (mine & (states == 2)), (mine & (states == 1))
        assert lit[quiet].max() == 0 and lit[after].max() == 0 and plain[event].max() == 0
        assert plain[after].min() > plain[quiet].max() and lit[event].min() == plain[after].min()
    # without after_share: the draw written out as it was before the option (event frame or any other)
    from av_lightning.data.toyworld import toy_batch

    a = tb.image_batch(64, torch.Generator().manual_seed(2), event_share=0.5)
    g = torch.Generator().manual_seed(2)
    clips = toy_batch(64, g)
    want = (torch.rand(64, generator=g) < 0.5).long()
    frame = torch.multinomial((clips["events"].long() == want[:, None]).float(), 1, generator=g).squeeze(1)
    assert torch.equal(a["frames"][:, 0], clips["frames"][torch.arange(64), frame]) and torch.equal(a["state"], want)


def test_image_schedule_takes_the_last_started_entry():
    schedule = [[0, 64], [300, 16]]
    assert [tb.image_batch_size(schedule, s) for s in (0, 299, 300, 5000)] == [64, 64, 16, 16]
    assert tb.image_batch_size([[10, 8]], 0) == 0


def test_a_resume_may_add_schedule_entries_that_have_not_started(tmp_path):
    out = tmp_path / "bb"
    tb.train_backbone(TINY, out, steps=2, device="cpu", log=lambda *a: None)
    later = {**TINY, "train": {**TINY["train"], "high_noise_schedule": [[0, 0.0], [2, 1.0]],
                               "image_schedule": [[0, 3], [2, 1], [3, 2]]}}
    s = tb.train_backbone(later, out, steps=4, device="cpu", resume=True, log=lambda *a: None)
    assert s["steps"] == 4
    # an entry that already acted (step 0) cannot change
    changed = {**TINY, "train": {**TINY["train"], "image_schedule": [[0, 2], [2, 1]]}}
    with pytest.raises(ValueError, match="another recipe"):
        tb.train_backbone(changed, out, steps=5, device="cpu", resume=True, log=lambda *a: None)


def test_noisier_timesteps_come_from_the_high_range():
    from av_lightning.backbones.objective import DDPMObjective
    from av_lightning.toy.train_backbone import noisier

    obj = DDPMObjective(TINY["scheduler"])
    g = torch.Generator().manual_seed(0)
    assert noisier(obj, 8, g, 0.0, (0.5, 1.0)) is None
    t = noisier(obj, 4000, g, 1.0, (0.5, 1.0))
    assert t.min() >= 500 and t.max() < 1000
    half = noisier(obj, 4000, g, 0.5, (0.5, 1.0))
    assert 0.7 < (half >= 500).float().mean() < 0.8  # half from the top half, half uniform: 0.75


def test_image_shares_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY, "train": {"event_share": 0.7, "after_share": 0.4}}))
    with pytest.raises(ValueError, match=r"recipe\.yaml.*after_share must be fractions summing to at most 1"):
        tb.load_config(path)
    path.write_text(yaml.safe_dump({**TINY, "train": {"event_share": 0.6, "after_share": 0.4}}))
    assert tb.load_config(path)["train"]["after_share"] == 0.4
