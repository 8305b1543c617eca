"""Gradient guidance as a model wrapper: the shift it adds, its scale modes, and composition with every method."""

import math

import pytest
import torch

import svdd
from svdd.guidance import GuidedModel
from conftest import gauss_reward


def differentiable(fn):
    return svdd.Reward(fn, name="r", differentiable=True)


def manual_gradient(model, x, i):
    xg = x.clone().requires_grad_(True)
    target = gauss_reward(model.denoise(xg, model.predict(xg, i), i))
    return torch.autograd.grad(target.sum(), xg)[0]


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_continuous_shift_is_the_scaled_gradient(gauss_model, mode):
    guided = GuidedModel(gauss_model, differentiable(gauss_reward), scale=0.7, scale_mode=mode)
    x = gauss_model.prior(5, torch.Generator().manual_seed(0))
    i = 3
    out = guided.predict(x, i)
    pred, grad = guided.split(out)
    with torch.no_grad():
        assert torch.equal(pred, gauss_model.predict(x, i))
    assert torch.allclose(grad, manual_gradient(gauss_model, x, i), atol=1e-6)
    shift = guided.step(x, out, i, torch.Generator().manual_seed(1)) - \
        gauss_model.step(x, pred, i, torch.Generator().manual_seed(1))
    if mode == "absolute":
        assert torch.allclose(shift, 0.7 * grad, atol=1e-6)
    else:  # 0.7 × the size of the step's own noise, along the gradient
        sigma = gauss_model.noise_std(i)
        assert sigma > 0
        assert torch.allclose(shift.norm(dim=1), torch.full((5,), 0.7 * sigma * math.sqrt(3)), rtol=1e-5)
        cos = torch.nn.functional.cosine_similarity(shift, grad, dim=1)
        assert torch.allclose(cos, torch.ones(5), atol=1e-5)


def test_masked_relative_tilt_has_the_scale_in_nats(masked_model):
    reward = differentiable(lambda p: p[..., 2].sum(-1) + 0.5 * p[..., 1].pow(2).sum(-1))
    guided = GuidedModel(masked_model, reward, scale=2.0)
    x = masked_model.prior(4, torch.Generator().manual_seed(0))
    x[:, :3] = 1  # some positions already unmasked: they take no tilt
    out = guided.predict(x, 5)
    _, grad = guided.split(out)
    tilt = guided._masked_tilt(x, grad)
    masked = x == masked_model.mask_index
    assert torch.equal(tilt[~masked], torch.zeros_like(tilt[~masked]))
    rms = tilt[masked].pow(2).mean(-1).mean().sqrt()  # per sample, all rows alike here: one value
    assert rms == pytest.approx(2.0, rel=1e-5)


def test_dps_is_pretrained_sampling_on_the_guided_model(gmm):
    model, reward, _ = gmm
    guided = GuidedModel(model, reward, scale=0.5)
    a = svdd.sample(model, reward, "dps", num_samples=16, seed=3, scale=0.5)
    b = svdd.sample(guided, reward, "pretrained", num_samples=16, seed=3)
    assert torch.equal(a.samples, b.samples)
    assert a.cost.gradient_evals == b.cost.gradient_evals == 16 * model.num_steps
    assert a.config["model"]["class"] == "GuidedModel" and a.config["model"]["scale_mode"] == "relative"


def test_svdd_composes_with_a_guided_model(gmm):
    model, reward, _ = gmm
    guided = GuidedModel(model, reward, scale=0.3)
    one = svdd.sample(guided, reward, "svdd", num_samples=16, seed=4, M=1)
    dps = svdd.sample(model, reward, "dps", num_samples=16, seed=4, scale=0.3)
    assert torch.equal(one.samples, dps.samples)  # M = 1 on the guided model is DPS
    both = svdd.sample(guided, reward, "svdd", num_samples=64, seed=4, M=8)
    plain = svdd.sample(model, reward, "svdd", num_samples=64, seed=4, M=8)
    assert both.cost.gradient_evals == both.cost.network_evals > 0  # every candidate's gradient is counted
    assert both.rewards.median() > dps.rewards.median() and plain.cost.gradient_evals == 0


def test_relative_scale_needs_the_noise_level():
    class NoNoiseStd(svdd.GaussianDiffusion):
        noise_std = property(lambda self: (_ for _ in ()).throw(AttributeError("noise_std")))
    m = NoNoiseStd(lambda x, t: torch.zeros_like(x), (2,), num_steps=4)
    with pytest.raises(ValueError, match="scale_mode='relative' needs the step's noise level"):
        GuidedModel(m, differentiable(lambda x: x.sum(1)))
    with pytest.raises(ValueError, match="scale_mode must be one of"):
        svdd.sample(m, differentiable(lambda x: x.sum(1)), "dps", scale_mode="auto")


def test_a_non_finite_gradient_gives_no_guidance_not_nan(gmm):
    model, reward, _ = gmm
    r = differentiable(lambda x: x.sum(1) + torch.sqrt(x[:, 0] + 2))  # NaN gradient where x0 < -2
    res = svdd.sample(model, r, "dps", num_samples=64, seed=0, scale=0.0)
    plain = svdd.sample(model, r, "pretrained", num_samples=64, seed=0)
    assert torch.isfinite(res.samples).all() and torch.equal(res.samples, plain.samples)


def test_dps_value_options_are_checked(gmm):
    model, reward, _ = gmm
    with pytest.raises(ValueError, match="target='reward' takes no value net"):
        svdd.sample(model, reward, "dps", value=lambda x, t: x.sum(1))
    with pytest.raises(ValueError, match="needs a differentiable value net"):
        svdd.sample(model, reward, "dps", target="value", value=svdd.FunctionValue(lambda x, i: x.sum(1)))
