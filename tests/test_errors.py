"""Bad input: a clear error that names the bad value, or a documented behaviour that keeps what was computed."""


import numpy as np
import pytest
import torch

import svdd
from conftest import TinyMLP, gauss_reward


@pytest.mark.parametrize("opts,match", [({"M": 0}, "M must be an int >= 1, got 0"),
                                        ({"M": 2.5}, "M must be an int >= 1, got 2.5"),
                                        ({"alpha": -0.1}, r"alpha must be a number >= 0, got -0.1"),
                                        ({"select_every": 0}, "select_every"),
                                        ({"select_window": (5, 2)}, "select_window"),
                                        ({"select_window": 3}, "select_window must be .start, stop.")])
def test_bad_svdd_options(gauss_model, opts, match):
    with pytest.raises(ValueError, match=match):
        svdd.sample(gauss_model, gauss_reward, "svdd", **opts)


def test_smc_needs_positive_alpha(gauss_model):
    with pytest.raises(ValueError, match=r"alpha must be a number > 0, got 0"):
        svdd.sample(gauss_model, gauss_reward, "smc", alpha=0)


@pytest.mark.parametrize("n", [0, -3, 2.0])
def test_bad_num_samples(gauss_model, n):
    with pytest.raises(ValueError, match=f"num_samples must be an int >= 1, got {n}"):
        svdd.sample(gauss_model, gauss_reward, "pretrained", num_samples=n)


def test_unknown_method_and_option(gauss_model):
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        svdd.sample(gauss_model, gauss_reward, "svd")
    with pytest.raises(ValueError, match=r"no option\(s\) \[.temperature.\]"):
        svdd.sample(gauss_model, gauss_reward, "svdd", temperature=1.0)


@pytest.mark.parametrize("bad,err,match", [
    (lambda x: x[:, :2].sum(1, keepdim=True), ValueError, r"returned shape \(8, 1\) .* expected \(8,\)"),
    (lambda x: (x[:, 0] > 0).long(), TypeError, "returned dtype torch.int64"),
    (lambda x: x[:, 0].tolist(), TypeError, "returned list"),
    (lambda x: np.zeros(x.shape[0], dtype=np.int32), TypeError, "numpy array of dtype int32")])
def test_reward_with_wrong_output(gauss_model, bad, err, match):
    with pytest.raises(err, match=match):
        svdd.sample(gauss_model, bad, "pretrained", num_samples=8)


def test_numpy_float_reward_is_accepted(gauss_model):
    res = svdd.sample(gauss_model, lambda x: x[:, 0].numpy().astype(np.float64), "svdd", num_samples=4, M=2)
    assert res.rewards.dtype == torch.float64 and torch.isfinite(res.rewards).all()


def flaky_reward(x):
    """Raises when a sample in the batch has a first coordinate above 1.5; NaN for those below -1.5."""
    if (x[:, 0] > 1.5).any():
        raise RuntimeError("docking failed")
    r = gauss_reward(x)
    return torch.where(x[:, 0] < -1.5, torch.full_like(r, float("nan")), r)


def test_failed_reward_rows_are_counted_exactly_and_diagnostics_reach_the_host(gmm, check_timing):
    class Counting:  # counts what the reward itself failed on: NaN rows and rows that raised on their own
        failed = 0

        def __call__(self, x):
            try:
                r = flaky_reward(x)
            except RuntimeError:
                self.failed += x.shape[0] == 1  # a batch that raised is retried row by row; its rows count there
                raise
            self.failed += int(torch.isnan(r).sum())
            return r

    reward = Counting()
    with pytest.warns(RuntimeWarning) as record:
        res = svdd.sample(gmm[0], reward, "svdd", num_samples=32, M=4, seed=0)
    assert reward.failed > 0
    assert any(f"for {reward.failed} evaluated samples" in str(w.message) for w in record)
    d = res.diagnostics
    assert all(type(c) is int for c in d.failed_candidates + d.all_failed)
    assert all(v.device.type == "cpu" and v.dtype == torch.float64 for v in d.kept_values)


def test_failing_candidates_get_minus_inf_and_the_run_goes_on(gmm, check_timing):
    model = gmm[0]
    with pytest.warns(RuntimeWarning, match=r"failed \(raised or NaN\) for \d+ evaluated samples.*docking failed"):
        res = svdd.sample(model, flaky_reward, "svdd", num_samples=32, M=4, seed=0)
    failed = sum(res.diagnostics.failed_candidates)
    assert failed > 0
    assert res.summary()["diagnostics"]["failed_candidates"] == failed
    # kept states avoid failed candidates whenever a sample had a valid one
    kept = torch.stack(res.diagnostics.kept_values)
    assert int((~torch.isfinite(kept)).sum()) == sum(res.diagnostics.all_failed) > 0
    # final rewards: NaN exactly for the samples whose reward failed
    assert res.samples.shape == (32, 2)
    bad = (res.samples[:, 0] > 1.5) | (res.samples[:, 0] < -1.5)
    assert torch.equal(torch.isnan(res.rewards), bad)


def test_every_candidate_failing_is_reported(check_timing):
    model = svdd.GaussianDiffusion(lambda x, t: torch.zeros_like(x), (1,), num_steps=5)
    calls = []

    def reward(x):  # answers its first call, then NaN for everything
        calls.append(x.shape[0])
        return x[:, 0] if len(calls) == 1 else torch.full_like(x[:, 0], float("nan"))

    with pytest.warns(RuntimeWarning, match="EVERY candidate failed"):
        res = svdd.sample(model, reward, "svdd", num_samples=3, M=2)
    assert sum(res.diagnostics.all_failed) == 3 * 3  # every selection step after the first, every sample
    assert torch.isnan(res.rewards).all()


@pytest.mark.parametrize("value", [float("nan"), -float("inf")])
def test_a_reward_that_fails_on_its_whole_first_batch_is_an_error(gauss_model, value, check_timing):
    with pytest.raises(svdd.errors.RunError, match="returned NaN or −inf for every one of 8 samples of its first batch"):
        svdd.sample(gauss_model, lambda x: torch.full((x.shape[0],), value), "svdd", num_samples=4, M=2)


def test_a_reward_that_always_raises_is_an_error(gauss_model, check_timing):
    def broken(x):
        raise KeyError("no such receptor")

    with pytest.raises(RuntimeError, match="raised for every one of 8 samples.*no such receptor"):
        svdd.sample(gauss_model, broken, "svdd", num_samples=4, M=2)


def test_deterministic_ddim_is_refused_where_candidates_must_differ():
    model = svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=10, eta=0.0)
    for method, opts in [("svdd", {"M": 4}), ("svdd-r", {}), ("smc", {})]:
        with pytest.raises(ValueError, match="deterministic transition .* eta = 0"):
            svdd.sample(model, gauss_reward, method, **opts)
    # where candidates need not differ, eta = 0 is fine
    svdd.sample(model, gauss_reward, "best-of-n", num_samples=2, M=2)
    svdd.sample(model, gauss_reward, "svdd", num_samples=2, M=1)


def test_model_without_the_protocol():
    class NotAModel:
        num_steps = 10

        def predict(self, x, i):
            return x

    with pytest.raises(TypeError, match="missing prior, step, denoise"):
        svdd.sample(NotAModel(), gauss_reward)


def test_dps_needs_a_differentiable_reward(gauss_model):
    with pytest.raises(ValueError, match="dps needs a differentiable reward, but 'gauss_reward'"):
        svdd.sample(gauss_model, gauss_reward, "dps")
    with pytest.raises(ValueError, match="needs a value net"):
        svdd.sample(gauss_model, gauss_reward, "dps", target="value")


def test_bad_model_configs():
    with pytest.raises(ValueError, match="prediction must be one of"):
        svdd.GaussianDiffusion(TinyMLP(), (3,), prediction="score")
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        svdd.GaussianDiffusion(TinyMLP(), (3,), schedule="quadratic")
    with pytest.raises(ValueError, match="strictly decreasing"):
        svdd.GaussianDiffusion(TinyMLP(), (3,), timesteps=[10, 20, 5])
    with pytest.raises(ValueError, match="max_batch must be a positive int or None, got 0"):
        svdd.sample(svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=3), gauss_reward, max_batch=0)
