"""Temporal guidance: ``u + w (m - u) + w_t (c - m)`` with ``m`` conditioned on the clip-mean tokens."""

from __future__ import annotations

import pytest
import torch

from av_lightning.pipeline import plan_video, sample
from tests.conftest import tiny_batch, tiny_module


@pytest.fixture(scope="module")
def model():
    m = tiny_module(num_frames=4, fps=4.0)
    return m.eval()


@pytest.fixture(scope="module")
def clips():
    return tiny_batch(batch_size=2, num_frames=4, fps=4.0)


def _noise(model, batch, seed=0):
    shape = model.backbone.latent_shape(2, 4, 8, 8)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class _Counting:
    """The real denoiser, counting the rows it is asked for."""

    def __init__(self, denoise):
        self.denoise, self.rows = denoise, []

    def __call__(self, x, t, cond):
        self.rows.append(x.shape[0])
        return self.denoise(x, t, cond)


def test_equal_scales_are_classifier_free_guidance(model, clips):
    noise = _noise(model, clips)
    plain = model.sample(clips, "audio", noise=noise, return_latents=True)
    same = model.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=model.hparams.guidance_scale)
    assert torch.equal(plain, same)


def test_three_branches_match_a_step_by_step_reference(model, clips):
    """Against a loop written here: three separate denoiser calls per step, combined by the formula."""
    w, wt = 2.0, 5.0
    noise = _noise(model, clips, seed=3)
    got = model.sample(clips, "audio", noise=noise, return_latents=True, guidance_scale=w, temporal_guidance_scale=wt)

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
        for t in sched.timesteps:
            xi = sched.scale_model_input(x, t)
            tt = t.expand(2)
            pu, pm, pc = bb.denoise(xi, tt, u), bb.denoise(xi, tt, m), bb.denoise(xi, tt, c)
            x = sched.step(pu + w * (pm - pu) + wt * (pc - pm), t, x).prev_sample
    torch.testing.assert_close(got, x, rtol=1e-4, atol=1e-5)
    # and it is not classifier-free guidance at either scale
    for g in (w, wt):
        cfg = model.sample(clips, "audio", noise=noise, return_latents=True, guidance_scale=g)
        assert (cfg - got).abs().max() > 1e-3


def test_one_batched_call_of_three_branches_per_step(model, clips):
    counting = _Counting(model.backbone.denoise)
    model.backbone.denoise, original = counting, model.backbone.denoise
    try:
        model.sample(clips, "audio", noise=_noise(model, clips), temporal_guidance_scale=4.0)
        three = list(counting.rows)
        counting.rows.clear()
        model.sample(clips, "audio", noise=_noise(model, clips))
        two = list(counting.rows)
    finally:
        model.backbone.denoise = original
    assert three == [3 * 2] * model.hparams.steps
    assert two == [2 * 2] * model.hparams.steps


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
    # the whole long-audio path samples with three branches
    video = model.sample({"audio": audio, "label": ["x"]}, "audio", seeds=[0], temporal_guidance_scale=4.0)
    assert video.shape[:2] == (1, plan.num_frames) and video.dtype == torch.uint8


def test_text_modes_have_no_time_axis_and_ignore_it(model, clips):
    noise = _noise(model, clips)
    for mode in ("text", "none"):
        a = model.sample(clips, mode, noise=noise, return_latents=True)
        b = model.sample(clips, mode, noise=noise, return_latents=True, temporal_guidance_scale=6.0)
        assert torch.equal(a, b)


def test_the_model_default_is_used(clips):
    m = tiny_module(num_frames=4, fps=4.0, temporal_guidance_scale=5.0).eval()
    noise = _noise(m, clips)
    default = m.sample(clips, "audio", noise=noise, return_latents=True)
    explicit = m.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=5.0)
    off = m.sample(clips, "audio", noise=noise, return_latents=True, temporal_guidance_scale=m.hparams.guidance_scale)
    assert torch.equal(default, explicit)
    assert (default - off).abs().max() > 1e-3


def test_pipeline_refuses_temporal_guidance_without_its_branches(model):
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
