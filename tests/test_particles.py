"""SMC on an enumerable masked diffusion started from an INFORMATIVE prior (first token already revealed), so the
value at level 0 is not constant: the initial weight exp(v_0/alpha), the unbiased normalising-constant estimate and
the recovery from a step at which every value failed are all checked against exact answers."""

import math

import numpy as np
import pytest
import torch

import svdd
from enumerated import MASK, Problem, empirical, sampling_tolerance, state_index, tv

ALPHA = 0.5
FIRST = [0.1, 0.2, 0.3, 0.4]  # the law of the revealed first token at level 0


class RevealedFirstToken(svdd.MaskedDiffusion):
    """The enumerable model, started with its first token drawn from FIRST (the rest masked)."""

    def prior(self, n, generator):
        x = super().prior(n, generator)
        x[:, 0] = torch.multinomial(torch.tensor(FIRST, dtype=torch.float64), n, replacement=True, generator=generator)
        return x


@pytest.fixture(scope="module")
def problem():
    return Problem(seed=3, num_steps=4, first_token=FIRST)


@pytest.fixture(scope="module")
def model(problem):
    return problem.model(RevealedFirstToken)


def exact_value(problem):
    return svdd.FunctionValue(problem.table_value(problem.soft_values(ALPHA)), name="exact-soft-value")


def test_the_prior_is_informative(problem):
    v0 = problem.soft_values(ALPHA)[0]
    levels = [v0[state_index(torch.tensor([[a, MASK, MASK]]))[0]] for a in range(4)]
    assert max(levels) - min(levels) > 0.2  # without it a missing initial weight could not be seen


def test_smc_samples_the_tilted_target_from_an_informative_prior(problem, model):
    n = 20000
    target = problem.tilted(ALPHA)
    # what SMC without the initial weight exp(v_0/alpha) targets: p_pre · exp((r − v_0(first token))/alpha)
    v0 = problem.soft_values(ALPHA)[0]
    first_v0 = np.array([v0[state_index(torch.tensor([[c[0], MASK, MASK]]))[0]] for c in problem.clean])
    wrong = problem.pretrained_dist() * np.exp((problem.r - first_v0) / ALPHA)
    wrong /= wrong.sum()
    w = target / problem.pretrained_dist()
    chi2 = float((problem.pretrained_dist() * (w - 1) ** 2).sum())
    tol = (w.max() - 1) / (n + w.max() - 1) + sampling_tolerance(target, n, inflation=2 + chi2)
    assert tv(wrong, target) > 2 * tol, (tv(wrong, target), tol)  # the test can see the missing initial weight
    res = svdd.sample(model, problem.reward, "smc", num_samples=n, seed=3, alpha=ALPHA, value=exact_value(problem))
    assert tv(empirical(res.samples), target) < tol


def test_smc_normalising_constant_is_unbiased(problem, model):
    z = problem.normalizer(ALPHA)
    assert abs(z - 1) > 1  # without the initial weight the estimate would target E[exp((r − v_0)/alpha)] = 1
    runs, value = 250, exact_value(problem)
    est = np.array([math.exp(svdd.sample(model, problem.reward, "smc", num_samples=4, seed=s, alpha=ALPHA,
                                         value=value, ess_threshold=0.6).log_z) for s in range(runs)])
    se = est.std(ddof=1) / math.sqrt(runs)
    assert se > 0 and abs(est.mean() - z) < 4 * se, (est.mean(), z, se)


def test_smc_normalising_constant_with_the_posterior_mean_value(problem, model):
    # an inexact value: Ẑ stays unbiased (its variance grows); without final resampling the weights close the estimate
    z = problem.normalizer(ALPHA)
    runs = 300
    est = np.array([math.exp(svdd.sample(model, problem.reward, "smc", num_samples=8, seed=s, alpha=ALPHA,
                                         final_resample=bool(s % 2)).log_z) for s in range(runs)])
    se = est.std(ddof=1) / math.sqrt(runs)
    assert se > 0 and abs(est.mean() - z) < 4 * se, (est.mean(), z, se)


class FailingAt(svdd.FunctionValue):
    """The exact value, except that every particle's value fails (NaN) at the given levels."""

    def __init__(self, problem, levels):
        table = problem.table_value(problem.soft_values(ALPHA))
        super().__init__(lambda x, i: table(x, i) * (math.nan if i in levels else 1.0), name="failing")


def test_a_step_where_every_value_failed_does_not_poison_the_run(problem, model):
    # a whole failed step is skipped as a weighting point, which is exactly a run that does not weight there
    failing = svdd.sample(model, problem.reward, "smc", num_samples=300, seed=5, alpha=ALPHA,
                          value=FailingAt(problem, {2}))
    skipping = svdd.sample(model, problem.reward, "smc", num_samples=300, seed=5, alpha=ALPHA,
                           value=exact_value(problem), select_every=2)  # weights after steps 0, 2 and the last
    assert torch.equal(failing.samples, skipping.samples)
    assert failing.log_z == pytest.approx(skipping.log_z, abs=1e-12)
    assert failing.diagnostics.all_failed == [0, 300, 0, 0]
    ess = failing.diagnostics.ess
    assert all(1 <= e <= 300 for e in ess[2:]), ess  # the steps after the failure weight normally
    assert torch.isfinite(failing.rewards).all()


def test_failure_at_level_zero_starts_the_weights_at_the_first_scored_step(problem, model):
    res = svdd.sample(model, problem.reward, "smc", num_samples=5000, seed=6, alpha=ALPHA,
                      value=FailingAt(problem, {0}))
    assert torch.isfinite(res.rewards).all() and math.isfinite(res.log_z)
    # v_1 telescopes from level 1: the target is still the tilted law
    target = problem.tilted(ALPHA)
    assert tv(empirical(res.samples), target) < tv(problem.pretrained_dist(), target) / 2
