"""The two built-in model families."""

import math

import torch

import svdd
from svdd.models.gaussian import make_alphas_cumprod
from svdd.models.masked import sample_categorical
from conftest import TinyMLP


def test_prediction_types_agree():
    """An epsilon, an x0 and a v network built from the same (x0, eps) give the same x̂0 and the same step."""
    abar = make_alphas_cumprod("cosine", 100)
    torch.manual_seed(0)
    x0_true = torch.randn(5, 2)

    def eps_of(x, t):
        a = abar[t].float().unsqueeze(-1)
        return (x - a.sqrt() * x0_true) / (1 - a).sqrt()

    def x0_of(x, t):
        return x0_true.expand_as(x)

    def v_of(x, t):
        a = abar[t].float().unsqueeze(-1)
        return a.sqrt() * eps_of(x, t) - (1 - a).sqrt() * x0_of(x, t)

    models = [svdd.GaussianDiffusion(f, (2,), prediction=p, schedule=abar, num_steps=10)
              for f, p in [(eps_of, "epsilon"), (x0_of, "sample"), (v_of, "v_prediction")]]
    x = torch.randn(5, 2)
    outs = []
    for m in models:
        pred = m.predict(x, 3)
        g = torch.Generator().manual_seed(0)
        outs.append((m.denoise(x, pred, 3), m.step(x, pred, 3, g)))
    for d, s in outs[1:]:
        assert torch.allclose(d, outs[0][0], atol=1e-4) and torch.allclose(s, outs[0][1], atol=1e-4)
    assert torch.allclose(outs[0][0], x0_true, atol=1e-4)


def test_ddim_eta_one_is_the_ddpm_posterior():
    m = svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=1000, eta=1.0)
    i = 500
    a_t, a_s = float(m._abar[i]), float(m._abar[i + 1])
    beta = 1 - a_t / a_s
    x, pred = torch.randn(4, 3), torch.randn(4, 3)
    mean, sigma = m._mean_std(x, pred, i)
    assert math.isclose(sigma**2, (1 - a_s) / (1 - a_t) * beta, rel_tol=1e-9)
    x0 = m.denoise(x, pred, i)
    ddpm_mean = (math.sqrt(a_s) * beta / (1 - a_t)) * x0 + (math.sqrt(1 - beta) * (1 - a_s) / (1 - a_t)) * x
    assert torch.allclose(mean, ddpm_mean, atol=1e-5)


def test_timesteps_and_schedules():
    m = svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=4)
    assert m.timesteps == [999, 666, 333, 0] and m.num_steps == 4
    m = svdd.GaussianDiffusion(TinyMLP(), (3,), timesteps=[900, 500, 100])
    assert m.num_steps == 3 and m.time(3) == 0.0 and m.time(0) == 0.901
    assert m.deterministic_step(2) and not m.deterministic_step(1)
    cos = make_alphas_cumprod("cosine", 1000)
    assert 0 < float(cos[-1]) < 1e-3 and float(cos[0]) > 0.999


def test_masked_subs_and_transition_probabilities(masked_model):
    m = masked_model
    x = torch.tensor([[4, 1, 4, 2, 4, 4, 0, 4, 3, 4]])
    pred = m.predict(x, 5)
    assert torch.isinf(pred[..., 4]).all()  # never predicts the mask
    unmasked = x != 4
    assert (pred[unmasked].argmax(-1) == x[unmasked]).all() and (pred[unmasked].max(-1).values == 0).all()
    q = m.transition_probs(x, pred, 5)
    assert torch.allclose(q.sum(-1), torch.ones(1, 10, dtype=torch.float64))
    mt, ms = m.move_chance(m.times[5]), m.move_chance(m.times[6])
    assert torch.allclose(q[0, 0, 4], (ms / mt).double())
    # unmasked tokens never change; the final step leaves no mask
    g = torch.Generator().manual_seed(0)
    kids = m.step(x, pred, 5, g, num_children=50)
    assert kids.shape == (50, 10) and (kids[:, unmasked[0]] == x[unmasked]).all()
    last = m.step(x, m.predict(x, m.num_steps - 1), m.num_steps - 1, g, num_children=50)
    assert (last != 4).all()


def test_categorical_draws_rare_tokens_at_their_rate():
    """A rare token is drawn at its rate, neither dropped nor inflated: p = 2e-4 over 4,000,000 rows gives
    Binomial hits, mean 800, sd ≈ 28. (The float64 race guards tails near 1e-8 and below, where a float32 race
    loses tokens; at any rate countable here float32 is also right, so that choice is not what this checks.)"""
    p = torch.tensor([1 - 2e-4, 2e-4], dtype=torch.float64).expand(4_000_000, 2)
    g = torch.Generator().manual_seed(0)
    hits = int(sample_categorical(p, g).sum())
    assert 650 < hits < 950, hits
    p0 = torch.tensor([1 - 1e-9, 1e-9], dtype=torch.float64).expand(4_000_000, 2)
    assert int(sample_categorical(p0, g).sum()) <= 3  # expected 0.004: a near-impossible token is not inflated
    p2 = torch.tensor([0.9, 0.1], dtype=torch.float64).expand(100000, 2)
    assert abs(float(sample_categorical(p2, g).double().mean()) - 0.1) < 0.005


def test_masked_sample_denoise_and_pm_completions(motif):
    """SVDD-PM with 3 SAMPLED completions (sample_denoise, not the argmax): with an integer-valued reward the values
    of noisy candidates are means of 3 integers -- all multiples of 1/3, and not all integers (the completions
    differ). At the last step the candidates are clean and their values are their own (integer) rewards."""
    model, _, chain = motif
    cnt = svdd.reward(lambda x: (x == 2).float().sum(1), name="g-count")
    res = svdd.sample(model, cnt, "svdd", num_samples=8, M=4, value=svdd.PosteriorMean(num_completions=3))
    assert res.samples.shape == (8, 24) and (res.samples < 4).all()
    kept = res.diagnostics.kept_values
    assert len(kept) == model.num_steps
    v = torch.cat(kept[:-1])
    assert torch.allclose(v * 3, (v * 3).round(), rtol=0, atol=1e-9)  # averages over 3 completions: thirds
    assert ((v - v.round()).abs() > 0.1).any()  # ... which differ: sampled, not 3 copies of the argmax
    assert torch.equal(kept[-1], res.rewards) and torch.equal(res.rewards, cnt(res.samples).double())


def test_nelbo_bounds_the_exact_log_likelihood(motif):
    model, _, chain = motif
    x = svdd.sample(model, lambda x: x.float().sum(1), "pretrained", num_samples=256).samples
    nelbo = model.nelbo(x, num_draws=8)
    nll = -chain.log_prob(x)
    # the ELBO is a bound: on average NELBO >= −log p (up to Monte Carlo error), and not a loose one for an exact model
    assert float(nelbo.mean()) > float(nll.mean()) - 0.5
    assert float(nelbo.mean()) < float(nll.mean()) + 3.0
