"""Reward-call budgets: a method skips the selection / weighting steps it cannot afford in the worst case and goes on
with the pre-trained transition; Best-of-N draws fewer samples. Exact comparisons with the equivalent schedules."""

import pytest
import torch

import svdd
from svdd.tasks.toy import build_toy_gmm

N, M = 8, 4


@pytest.fixture(scope="module")
def gmm():
    model, reward, _ = build_toy_gmm(num_steps=10)
    return model, reward


def test_svdd_budget_equals_a_shorter_selection_window(gmm):
    model, reward = gmm  # continuous states: every candidate is a distinct real call, so the worst case is exact
    a = svdd.sample(model, reward, "svdd", M=M, num_samples=N, seed=3, reward_budget=3 * M)
    b = svdd.sample(model, reward, "svdd", M=M, num_samples=N, seed=3, select_window=(0, 3))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.rewards, b.rewards)
    assert a.cost.reward_calls == 3 * M * N + N == b.cost.reward_calls  # three selections + the final rewards
    assert a.config["reward_budget"] == 3 * M


def test_svdd_zero_budget_is_pretrained(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "svdd", M=M, num_samples=N, seed=1, reward_budget=0)
    b = svdd.sample(model, reward, "pretrained", num_samples=N, seed=1)
    assert torch.equal(a.samples, b.samples) and a.cost.reward_calls == N


def test_best_of_n_draws_what_the_budget_pays(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "best-of-n", M=10, num_samples=N, seed=2, reward_budget=3.5)
    b = svdd.sample(model, reward, "best-of-n", M=3, num_samples=N, seed=2)
    assert torch.equal(a.samples, b.samples) and a.cost.reward_calls == 3 * N


def test_smc_budget_skips_weighting_steps(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "smc", alpha=1.0, num_samples=N, seed=4, reward_budget=4)
    b = svdd.sample(model, reward, "smc", alpha=1.0, num_samples=N, seed=4, select_window=(0, 3))
    # level 0 (initial weight) + 3 weighting steps = 4 calls per particle; the last step always scores
    assert torch.equal(a.samples, b.samples) and a.cost.reward_calls == b.cost.reward_calls == 5 * N


def test_learned_values_spend_no_budget(gmm):
    model, reward = gmm
    value = svdd.FunctionValue(lambda x, i: x.sum(1).double(), name="sum")
    a = svdd.sample(model, reward, "svdd", M=M, num_samples=N, seed=0, value=value, reward_budget=0)
    b = svdd.sample(model, reward, "svdd", M=M, num_samples=N, seed=0, value=value)
    assert torch.equal(a.samples, b.samples) and a.cost.reward_calls == N


@pytest.mark.parametrize("bad", [-1, "10", True, float("nan")])
def test_bad_budget_is_named(gmm, bad):
    model, reward = gmm
    with pytest.raises(ValueError, match="reward_budget"):
        svdd.sample(model, reward, "svdd", M=M, num_samples=N, reward_budget=bad)
