"""The training objectives against diffusers' own schedulers and their closed forms."""

import pytest
import torch
from diffusers import DDPMScheduler

from av_lightning.backbones.objective import DDPMObjective, FlowMatchingObjective
from av_lightning.backbones.tiny import TINY_SCHEDULER


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddpm_matches_diffusers(prediction):
    cfg = dict(TINY_SCHEDULER, prediction_type=prediction)
    obj, ref = DDPMObjective(cfg), DDPMScheduler.from_config(cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 4, 5, 5, generator=g)
    ex = obj.example(x0, torch.Generator().manual_seed(1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ex.noisy, ref.add_noise(x0, noise, ex.timesteps))
    want = noise if prediction == "epsilon" else ref.get_velocity(x0, noise, ex.timesteps)
    torch.testing.assert_close(ex.target, want)
    assert ex.timesteps.dtype == torch.long and 0 <= ex.timesteps.min() and ex.timesteps.max() < 1000


def test_ddpm_timestep_range():
    obj = DDPMObjective(TINY_SCHEDULER)
    t = obj.sample_timesteps(4000, torch.Generator().manual_seed(0), timestep_range=(0.3, 1.0))
    assert t.min() >= 300 and t.max() <= 999 and t.min() < 310 and t.max() > 990


def test_flow_matching_closed_form():
    obj = FlowMatchingObjective(shift=3.0)
    x0, noise = torch.randn(5, 4, 3, 2, 2), torch.randn(5, 4, 3, 2, 2)
    t = torch.tensor([0.0, 250.0, 500.0, 750.0, 1000.0])
    s = (t / 1000).view(-1, 1, 1, 1, 1)
    ex = obj.example(x0, noise=noise, timesteps=t)
    torch.testing.assert_close(ex.noisy, (1 - s) * x0 + s * noise)
    torch.testing.assert_close(ex.target, noise - x0)
    # shifted sigmas: s·u / (1 + (s − 1)·u) for u uniform in [0, 1)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    drawn = obj.sample_timesteps(20000, torch.Generator().manual_seed(0)) / 1000
    torch.testing.assert_close(drawn, 3 * u / (1 + 2 * u))


def test_bad_range():
    with pytest.raises(ValueError, match="timestep_range"):
        DDPMObjective(TINY_SCHEDULER).sample_timesteps(2, timestep_range=(0.9, 0.1))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddpm_predict_x0_is_diffusers_pred_original_sample(prediction):
    cfg = dict(TINY_SCHEDULER, prediction_type=prediction, clip_sample=False)
    obj, ref = DDPMObjective(cfg), DDPMScheduler.from_config(cfg)
    g = torch.Generator().manual_seed(2)
    noisy, output = torch.randn(2, 3, 4, 5, 5, generator=g), torch.randn(2, 3, 4, 5, 5, generator=g)
    for t in (0, 400, 999):
        want = ref.step(output, t, noisy).pred_original_sample
        torch.testing.assert_close(obj.predict_x0(noisy, output, torch.full((2,), t)), want)


@pytest.mark.parametrize("make", [lambda: DDPMObjective(TINY_SCHEDULER), lambda: FlowMatchingObjective(shift=3.0)])
def test_predict_x0_inverts_the_target(make):
    obj = make()
    x0 = torch.randn(5, 3, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    ex = obj.example(x0, torch.Generator().manual_seed(4))
    torch.testing.assert_close(obj.predict_x0(ex.noisy, ex.target, ex.timesteps), x0, atol=2e-4, rtol=1e-4)
