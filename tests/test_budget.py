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


def test_smc_zero_budget_spends_only_the_final_rewards(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "smc", alpha=1.0, num_samples=N, seed=4, reward_budget=0)
    assert a.cost.reward_calls == N  # not even the initial weight


def test_dps_takes_no_budget(gmm):
    model, reward = gmm
    with pytest.raises(ValueError, match="'dps' does not take a budget"):
        svdd.sample(model, reward, "dps", num_samples=N, reward_budget=5)


def test_cache_accounting_when_a_batch_raises(gmm):
    """A batch that raises is retried row by row by the engine: those retries are real calls, not cache hits, and a
    NaN that is not cached is a real call each time it is asked for."""
    from svdd.rewards import CachedReward
    calls = []

    def fragile(x):
        calls.append(x.shape[0])
        if (x[:, 0] < -1.5).any():
            raise ValueError("negative")
        return x.sum(1)

    model, _ = gmm
    r = CachedReward(svdd.Reward(fragile, name="fragile"))
    from svdd.engine import Engine
    e = Engine(model, r, seed=0)
    x = torch.tensor([[0.0, 1.0], [-2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    out = e.rewards(x)
    assert torch.isnan(out[1]) and out[0] == 1.0 and out[2] == 2.0 and out[3] == 1.0
    assert calls == [3, 1, 1, 1]  # the cache sends 3 distinct keys; the batch raises; the engine retries per row
    # 4 rows, 3 distinct: 3 reward calls and one repeat answered by the cache, even though the batch raised
    assert (e.cost.reward_evals, e.cost.reward_calls, e.cost.cache_hits, e.cost.stored_hits) == (4, 3, 1, 0)
    e.rewards(x)  # again: three rows are repeats of this run; the failed (uncached) row is a real call again
    assert (e.cost.reward_evals, e.cost.reward_calls, e.cost.cache_hits, e.cost.stored_hits) == (8, 4, 4, 0)
    e2 = Engine(model, r, reward_budget=3)  # a new run: its calls are answered from the earlier one (stored hits)
    e2.rewards(x[[0, 2]])
    assert (e2.cost.reward_calls, e2.cost.stored_hits, e2.cost.cache_hits) == (2, 2, 0)
    assert e2.affordable(1) and not e2.affordable(2)
