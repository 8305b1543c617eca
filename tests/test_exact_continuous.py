"""Exactness on a Gaussian mixture with its exact noise prediction. For a linear reward r(x) = c·x the tilted target
p0(x) exp(r/alpha) is again a Gaussian mixture: weights ∝ π_k exp(c·μ_k/alpha), means μ_k + s² c/alpha, same s."""

import math

import pytest
import torch

import svdd
from svdd.models.gaussian import make_alphas_cumprod
from svdd.tasks.toy import GMMEpsilon

PI, MU, S, C, ALPHA = torch.tensor([0.7, 0.3]), torch.tensor([-2.0, 2.0]), 0.5, 1.0, 1.0


@pytest.fixture(scope="module")
def model():
    abar = make_alphas_cumprod("linear", 1000)
    net = GMMEpsilon(PI, MU.view(2, 1), S, abar)
    return svdd.GaussianDiffusion(net, (1,), schedule=abar, num_steps=250, eta=1.0)


def tilted():
    w = PI * torch.exp(C * MU / ALPHA)
    return w / w.sum(), MU + S**2 * C / ALPHA


def soft_value(model):
    """Exact v_i(x) = alpha log E[exp(c x0 / alpha) | x_i] (Gaussian posterior per component)."""
    def v(x, i):
        a = float(model._abar[i])
        x = x.double().reshape(-1, 1)
        if a == 1.0:
            return (C * x[:, 0]).double()
        var = a * S**2 + 1 - a
        logpost = PI.double().log() - 0.5 * (x - math.sqrt(a) * MU.double()) ** 2 / var
        m = MU.double() + S**2 * math.sqrt(a) * (x - math.sqrt(a) * MU.double()) / var
        tau2 = S**2 * (1 - a) / var
        inner = torch.logsumexp(logpost + C * m / ALPHA + C**2 * tau2 / (2 * ALPHA**2), 1) - torch.logsumexp(logpost, 1)
        return ALPHA * inner
    return svdd.FunctionValue(v, name="exact-soft-value")


def component_stats(x):
    x = x.reshape(-1).double()
    right = x > 0
    return float(right.double().mean()), float(x[right].mean()), float(x[~right].mean()) if (~right).any() else float("nan")


def reward(x):
    return C * x.reshape(-1)


def test_pretrained_reproduces_the_mixture(model):
    res = svdd.sample(model, reward, "pretrained", num_samples=8000, seed=0)
    w_right, m_right, m_left = component_stats(res.samples)
    # binomial sd of the weight: sqrt(.21/8000) = 0.005; of the means: 0.5/sqrt(2400) = 0.01
    assert abs(w_right - 0.3) < 0.025 and abs(m_right - 2.0) < 0.06 and abs(m_left + 2.0) < 0.06
    assert abs(float(res.samples.std()) - math.sqrt(0.7 * 0.3 * 16 + S**2)) < 0.1


@pytest.mark.parametrize("method,opts", [("svdd", {"M": 64}), ("smc", {"ess_threshold": 0.5})])
def test_guided_samples_follow_the_tilted_mixture(model, method, opts):
    weights, means = tilted()
    # the default max_batch of 4-byte rows: 65,536 (each call of a 1-D state is overhead-bound)
    res = svdd.sample(model, reward, method, num_samples=6000, seed=1, alpha=ALPHA, value=soft_value(model), **opts)
    assert res.config["max_batch"] == 1 << 16
    w_right, m_right, _ = component_stats(res.samples)
    # target: weight 0.959 on the right component, mean 2.25 there (pre-trained: 0.3 and 2.0)
    assert abs(w_right - float(weights[1])) < 0.03, w_right
    assert abs(m_right - float(means[1])) < 0.06, m_right
