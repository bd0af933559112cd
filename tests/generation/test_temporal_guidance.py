"""Temporal guidance: in the noisier steps ``m + w_t (c - m)``, ``m`` conditioned on the clip-mean tokens."""

from __future__ import annotations

import pytest
import torch

from av_lightning.pipeline import plan_video, sample
from tests.conftest import tiny_batch, tiny_module


@pytest.fixture(scope="module")
def model():
    m = tiny_module(num_frames=4, fps=4.0).eval()
    m.hparams.steps = 4
    return m


@pytest.fixture(scope="module")
def clips():
    return tiny_batch(batch_size=2, num_frames=4, fps=4.0)


def _noise(model, seed=0):
    shape = model.backbone.latent_shape(2, 4, 8, 8)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class _Counting:
    """The real denoiser, counting the rows and noting the states it is asked for."""

    def __init__(self, denoise):
        self.denoise, self.rows, self.conds = denoise, [], []

    def __call__(self, x, t, cond):
        self.rows.append(x.shape[0])
        self.conds.append(cond)
        return self.denoise(x, t, cond)


def _reference(model, clips, noise, w, wt, span):
    """The loop written out: separate denoiser calls per branch, timing-guided while t >= (1 - span)·T."""
    bb = model.backbone
    with torch.no_grad():
        templates = model.prompt_templates(clips["label"], "audio")
        tokens = model.audio_tokens(clips)  # (B, F, K, d)
        c = bb.encode_frame_prompts(templates, tokens)
        m = bb.encode_frame_prompts(templates, tokens.mean(dim=1, keepdim=True).expand_as(tokens))
        u = bb.encode_text([""])[:, None].expand(2, c.shape[1], -1, -1)
        sched = bb.make_scheduler(model.hparams.scheduler)
        sched.set_timesteps(model.hparams.steps)
        x = noise * getattr(sched, "init_noise_sigma", 1.0)
        timed = 0
        for t in sched.timesteps:
            xi, tt = sched.scale_model_input(x, t), t.expand(2)
            if int(t) >= (1 - span) * sched.config.num_train_timesteps:
                pm, pc = bb.denoise(xi, tt, m), bb.denoise(xi, tt, c)
                pred, timed = pm + wt * (pc - pm), timed + 1
            else:
                pu, pc = bb.denoise(xi, tt, u), bb.denoise(xi, tt, c)
                pred = pu + w * (pc - pu)
            x = sched.step(pred, t, x).prev_sample
    return x, timed


@pytest.mark.parametrize("span", [0.5, 1.0])
def test_matches_a_step_by_step_reference(model, clips, span):
    w, wt = 2.0, 5.0
    noise = _noise(model, seed=3)
    model.hparams.temporal_guidance_span = span
    try:
        got = model.sample(clips, "audio", noise=noise, return_latents=True, guidance_scale=w, temporal_guidance_scale=wt)
    finally:
        model.hparams.temporal_guidance_span = 0.5
    want, timed = _reference(model, clips, noise, w, wt, span)
    assert timed == _timed_steps(model, span) and (0 < timed < 4 if span == 0.5 else timed == 4)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    cfg = model.sample(clips, "audio", noise=noise, return_latents=True, guidance_scale=w, temporal_guidance_scale=0)
    assert (cfg - got).abs().max() > 1e-3


def test_off_is_classifier_free_guidance(model, clips):
    noise = _noise(model)
    plain = model.sample(clips, "audio", noise=noise, return_latents=True)
    off = model.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=0)
    none_span = sample(model.backbone.denoise, model.backbone.make_scheduler(None),
                       *_cond_and_shape(model, clips), uncond=model.backbone.encode_text([""]),
                       steps=model.hparams.steps, guidance_scale=model.hparams.guidance_scale, latents=noise,
                       temporal_guidance_scale=6.0, temporal_guidance_span=0.0, static_cond=None, progress=False)
    assert torch.equal(plain, off)
    torch.testing.assert_close(none_span, plain, rtol=0, atol=0)


def _cond_and_shape(model, clips):
    with torch.no_grad():
        cond = model.backbone.encode_frame_prompts(model.prompt_templates(clips["label"], "audio"),
                                                   model.audio_tokens(clips))
    return cond, model.backbone.latent_shape(2, 4, 8, 8)


def _timed_steps(model, span):
    sched = model.backbone.make_scheduler(model.hparams.scheduler)
    sched.set_timesteps(model.hparams.steps)
    return sum(int(t) >= (1 - span) * sched.config.num_train_timesteps for t in sched.timesteps)


def test_two_branches_per_step_and_which(model, clips):
    counting = _Counting(model.backbone.denoise)
    model.backbone.denoise, original = counting, model.backbone.denoise
    try:
        model.sample(clips, "audio", noise=_noise(model), temporal_guidance_scale=4.0)
    finally:
        model.backbone.denoise = original
    assert counting.rows == [2 * 2] * model.hparams.steps  # the cost of guidance
    empty = model.backbone.encode_text([""])[0]
    # the first half pairs the clip-mean states with the clips'; the rest the empty prompt's
    for k, cond in enumerate(counting.conds):
        first = cond[0, 0]  # branch 1, clip 0, frame 0: (L, d)
        assert torch.equal(first, empty) == (k >= _timed_steps(model, 0.5))


def test_timing_free_branch_is_the_same_for_every_frame_of_a_window(model):
    """Long audio: three windows, each frame of a window gets that window's mean tokens."""
    hp = model.hparams
    audio = torch.randn(1, int(2.5 * hp.num_frames / hp.fps * hp.sample_rate), generator=torch.Generator().manual_seed(1))
    plan = plan_video(audio.shape[1], hp.sample_rate, hp.fps, hp.num_frames, None, model.backbone.temporal_factor)
    assert plan.num_windows == 3
    with torch.no_grad():
        cond, static = model._window_conditioning(audio, ["a <audio>"], plan, chunk=2, static=True)
        plain, none = model._window_conditioning(audio, ["a <audio>"], plan, chunk=2)
    assert none is None and torch.equal(cond, plain)
    per_window = static.unflatten(1, (plan.num_windows, plan.window))  # (1, W, F, L, d)
    torch.testing.assert_close(per_window, per_window[:, :, :1].expand_as(per_window), rtol=0, atol=1e-6)
    assert (per_window[:, 0, 0] - per_window[:, 1, 0]).abs().max() > 1e-4  # windows hear different audio
    assert (cond.unflatten(1, (plan.num_windows, plan.window)).std(dim=2)).max() > 1e-4  # c does vary in time
    video = model.sample({"audio": audio, "label": ["x"]}, "audio", seeds=[0], temporal_guidance_scale=4.0)
    assert video.shape[:2] == (1, plan.num_frames) and video.dtype == torch.uint8


def test_text_modes_have_no_time_axis_and_ignore_it(model, clips):
    noise = _noise(model)
    for mode in ("text", "none"):
        a = model.sample(clips, mode, noise=noise, return_latents=True)
        b = model.sample(clips, mode, noise=noise, return_latents=True, temporal_guidance_scale=6.0)
        assert torch.equal(a, b)


def test_the_model_default_is_used(clips):
    m = tiny_module(num_frames=4, fps=4.0, temporal_guidance_scale=5.0).eval()
    noise = _noise(m)
    default = m.sample(clips, "audio", noise=noise, return_latents=True)
    explicit = m.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=5.0)
    off = m.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=0)
    assert torch.equal(default, explicit)
    assert (default - off).abs().max() > 1e-3


def test_pipeline_refuses_temporal_guidance_without_its_branch(model):
    cond = torch.zeros(1, 4, 5, model.backbone.text_width)
    shape = model.backbone.latent_shape(1, 4, 8, 8)
    sched = model.backbone.make_scheduler(None)
    uncond = model.backbone.encode_text([""])
    with pytest.raises(ValueError, match="static_cond"):
        sample(model.backbone.denoise, sched, cond, shape, uncond=uncond, steps=2, guidance_scale=2.0,
               temporal_guidance_scale=4.0, progress=False)
    with pytest.raises(ValueError, match="expected the conditioning"):
        sample(model.backbone.denoise, sched, cond, shape, uncond=uncond, steps=2, guidance_scale=2.0,
               temporal_guidance_scale=4.0, static_cond=cond[:, :2], progress=False)
    for span in (1.5, -0.1):
        with pytest.raises(ValueError, match="fraction"):
            sample(model.backbone.denoise, sched, cond, shape, uncond=uncond, steps=2, guidance_scale=2.0,
                   temporal_guidance_scale=4.0, static_cond=cond, temporal_guidance_span=span, progress=False)


@pytest.mark.parametrize("temporal", [0, 4.0])
def test_window_batch_splits_the_rows_of_a_step_not_its_result(model, clips, temporal):
    counting = _Counting(model.backbone.denoise)
    noise = _noise(model, seed=5)
    whole = model.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=temporal)
    model.backbone.denoise, original = counting, model.backbone.denoise
    try:
        split = model.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=temporal,
                             window_batch=3)
    finally:
        model.backbone.denoise = original
    assert counting.rows == [3, 1] * model.hparams.steps  # 2 clips × 2 branches
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)
