"""Every network, reward and value-net call of every method is counted once, in rows, by `result.cost`: checked
against counting wrappers around the three callables."""

import pytest
import torch

import svdd
from conftest import TinyDenoiser, TinyMLP
from svdd.methods import METHODS
from svdd.testing import METHOD_CASES


class Counter:
    """Wraps a callable and counts the rows it is called on (and how many of them carried a gradient)."""

    def __init__(self, fn, differentiable=False):
        self.fn, self.rows, self.grad_rows = fn, 0, 0
        self.differentiable = differentiable
        self.name = "counted"

    def __call__(self, x, *args):
        self.rows += x.shape[0]
        self.grad_rows += x.shape[0] if torch.is_grad_enabled() and x.requires_grad else 0
        return self.fn(x, *args)


def gauss_setup():
    net = Counter(TinyMLP())
    model = svdd.GaussianDiffusion(net, (3,), num_steps=8, eta=1.0)
    reward = Counter(lambda x: -((x - 1.0) ** 2).sum(dim=-1), differentiable=True)
    value = Counter(lambda x, t: -((x - 1.0) ** 2).sum(dim=-1) * (1 - t))
    return model, net, reward, value


def masked_setup():
    net = Counter(TinyDenoiser())
    model = svdd.MaskedDiffusion(net, seq_len=6, vocab_size=4, num_steps=6)
    # differentiable on probability input (n, L, 4) as well as on tokens (n, L)
    reward = Counter(lambda x: (x == 2).float().sum(-1) if x.ndim == 2 else x[..., 2].sum(-1), differentiable=True)
    value = Counter(lambda x, t: x[..., 2].sum(-1) * (1 - t) if x.ndim == 3 else (x == 2).float().sum(-1))
    return model, net, reward, value


# every registered method with its `svdd.testing.METHOD_CASES` options, and the value-net forms ("net": the counted one)
CASES = {name: (name, METHOD_CASES[name]) for name in sorted(METHODS)} | {
    "svdd-argmax": ("svdd", {"M": 3}), "svdd-mc": ("svdd", {"M": 3, "value": "net"}),
    "svdd-mc-final": ("svdd", {"M": 3, "value": "net", "final_reward": True}),
    "smc-mc": ("smc", {"alpha": 0.5, "value": "net"}), "dps-value": ("dps", {"scale": 0.5, "target": "value", "value": "net"})}


@pytest.mark.parametrize("method,opts", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("kind", ["gauss", "masked"])
def test_every_call_is_counted_once(kind, method, opts):
    model, net, reward, value = gauss_setup() if kind == "gauss" else masked_setup()
    opts = dict(opts)
    if opts.get("value") == "net":
        opts["value"] = svdd.LearnedValue(value) if method != "dps" else value
    res = svdd.sample(model, reward, method, num_samples=6, seed=0, max_batch=5, **opts)
    assert res.cost.network_evals == net.rows
    assert res.cost.reward_evals == reward.rows
    assert res.cost.value_evals == value.rows
    if method != "dps":
        assert res.cost.gradient_evals == 0 and net.grad_rows == reward.grad_rows == value.grad_rows == 0
    else:  # one gradient per evaluated state (distinct rows of masked models): through r(x̂0), or the value net at x_t
        guided = value if opts.get("target") == "value" else reward
        assert res.cost.gradient_evals == res.cost.network_evals == guided.grad_rows
        assert guided.rows == res.cost.network_evals + (6 if guided is reward else 0)  # + the final rewards


def test_svdd_pm_does_not_score_its_final_samples_again():
    model, net, reward, _ = masked_setup()
    n, M, T = 6, 3, model.num_steps
    calls = []
    reward.fn = (lambda f: (lambda x: (calls.append(x.shape[0]), f(x))[1]))(reward.fn)
    res = svdd.sample(model, reward, "svdd", num_samples=n, M=M, seed=1, max_batch=10_000)
    assert len(calls) == T  # one call per step (the candidates); none for the final samples
    assert torch.equal(res.diagnostics.kept_values[-1], res.rewards)  # the last step's values ARE the rewards
    assert sum(calls) == res.cost.reward_evals


def test_svdd_mc_final_step_scorer_is_an_explicit_option():
    model, _, reward, value = masked_setup()  # the masked model's last step is random: M distinct clean candidates
    n, M = 8, 4
    by_value = svdd.sample(model, reward, "svdd", num_samples=n, M=M, seed=2, value=svdd.LearnedValue(value))
    assert by_value.cost.reward_evals == reward.rows <= n  # the final rewards only (distinct samples)
    reward.rows = 0
    by_reward = svdd.sample(model, reward, "svdd", num_samples=n, M=M, seed=2, value=svdd.LearnedValue(value),
                            final_reward=True)
    assert n < by_reward.cost.reward_evals == reward.rows <= n * M  # the last candidates, no second call at the end
    assert torch.equal(by_reward.diagnostics.kept_values[-1], by_reward.rewards)
    last = torch.stack(by_reward.diagnostics.kept_values[:-1])  # before the last step: the value net as usual
    assert torch.equal(last, torch.stack(by_value.diagnostics.kept_values[:-1]))
    assert by_reward.config["method"]["final_reward"] is True and by_value.config["method"]["final_reward"] is False
