"""Exactness of the guided samplers on an enumerable masked diffusion (3 tokens of 4 letters)."""

import math

import numpy as np
import pytest

import svdd
from enumerated import CLEAN, Problem, argmax_law, empirical, sampling_tolerance, tv

ALPHA = 0.5


@pytest.fixture(scope="module")
def problem():
    return Problem(seed=0, num_steps=4)


@pytest.fixture(scope="module")
def model(problem):
    return problem.model()


SLOW = pytest.mark.slow  # `make test-slow`: 10x the samples, a ~3x tighter tolerance


@pytest.mark.parametrize("n", [40_000, pytest.param(400_000, marks=SLOW)])
def test_pretrained_chain_matches_enumeration(problem, model, n):
    res = svdd.sample(model, problem.reward, "pretrained", num_samples=n, seed=1, max_batch=1 << 16)
    target = problem.pretrained_dist()
    assert abs(target.sum() - 1) < 1e-9
    assert tv(empirical(res.samples), target) < sampling_tolerance(target, n)
    # and the chain is close to the data distribution it was built from (exact denoiser)
    assert tv(target, problem.p) < 0.25


def svdd_bias_bound(problem, alpha, M):
    """Rigorous bound on TV(SVDD output, tilted target) for exact soft values and finite M.

    One step keeps candidate y among M i.i.d. draws from p(.|s) with probability ∝ w(y) = exp(v(y)/alpha). Its law is
    q_M(y) = p(y) w(y) E[M / (w(y) + S)], S the sum of the other M−1 weights; Jensen gives
    q_M(y) >= p*(y) / (1 + (rho − 1)/M) with rho = max_y w(y) / E_p[w], so TV(q_M, p*) <= (rho − 1)/(M + rho − 1).
    Over T steps the errors add (coupling), taking the worst reachable state at each level."""
    values = problem.soft_values(alpha)
    reach = problem.start() > 0
    total = 0.0
    for i, P in enumerate(problem.kernels):
        w = np.exp((values[i + 1] - np.nanmax(values[i + 1][np.isfinite(values[i + 1])])) / alpha)
        w[~np.isfinite(values[i + 1])] = 0
        worst = 0.0
        for s in np.flatnonzero(reach):
            support = P[s] > 0
            rho = w[support].max() / (P[s] @ w)
            worst = max(worst, (rho - 1) / (M + rho - 1))
        total += worst
        reach = (reach.astype(float) @ P) > 0
    return total


def test_svdd_soft_selection_samples_the_tilted_target(problem, model):
    M, n = 400, 6000
    target = problem.tilted(ALPHA)
    bias = svdd_bias_bound(problem, ALPHA, M)
    tol = bias + sampling_tolerance(target, n)
    far = tv(problem.pretrained_dist(), target)
    assert tol < far / 2, (tol, far)  # the test can tell the tilted target from the pre-trained distribution
    value = svdd.FunctionValue(problem.table_value(problem.soft_values(ALPHA)), name="exact-soft-value")
    res = svdd.sample(model, problem.reward, "svdd", num_samples=n, seed=2, M=M, alpha=ALPHA, value=value)
    assert tv(empirical(res.samples), target) < tol


def test_smc_with_exact_values_samples_the_tilted_target(problem, model):
    n = 20000
    target = problem.tilted(ALPHA)
    w = target / problem.pretrained_dist()
    chi2 = float((problem.pretrained_dist() * (w - 1) ** 2).sum())
    # SIR bias (rho − 1)/(N + rho − 1) plus sampling error inflated by the importance weights (Kong: 1 + chi²) and
    # by the final resampling (+1)
    rho = w.max()
    tol = (rho - 1) / (n + rho - 1) + sampling_tolerance(target, n, inflation=2 + chi2)
    assert tol < tv(problem.pretrained_dist(), target) / 2
    value = svdd.FunctionValue(problem.table_value(problem.soft_values(ALPHA)))
    for resampler in ("multinomial", "systematic"):
        res = svdd.sample(model, problem.reward, "smc", num_samples=n, seed=3, alpha=ALPHA, value=value,
                          resampler=resampler)
        assert tv(empirical(res.samples), target) < tol, resampler


def greedy_reachable(problem):
    """Clean sequences reachable by always moving to a child of maximal E[r | child] (all ties)."""
    values = problem.mean_values()
    frontier = {int(np.flatnonzero(problem.start())[0])}
    for i, P in enumerate(problem.kernels):
        nxt = set()
        for s in frontier:
            support = np.flatnonzero(P[s] > 0)
            best = values[i + 1][support].max()
            nxt.update(int(a) for a in support[np.isclose(values[i + 1][support], best, rtol=0, atol=1e-12)])
        frontier = nxt
    return frontier


@pytest.mark.parametrize("M,n", [(20, 20_000), pytest.param(3, 100_000, marks=SLOW),
                                 pytest.param(20, 100_000, marks=SLOW)])
def test_svdd_argmax_matches_exact_finite_m_law(problem, model, M, n):
    law = argmax_law(problem, M)
    assert abs(law.sum() - 1) < 1e-9
    value = svdd.FunctionValue(problem.table_value(problem.mean_values()))
    res = svdd.sample(model, problem.reward, "svdd", num_samples=n, seed=4 + M, M=M, alpha=0.0, value=value,
                      max_batch=1 << 16)
    assert tv(empirical(res.samples), law) < sampling_tolerance(law, n)
    assert tv(law, problem.pretrained_dist()) > 4 * sampling_tolerance(law, n)  # could fail if selection were off


def test_svdd_argmax_mass_moves_onto_greedy_reachable_sequences(problem, model):
    reach = [CLEAN.index(s) for s in greedy_reachable(problem)]
    assert 0 < len(reach) < len(CLEAN)
    # the exact finite-M law: its mass on the greedy-reachable sequences grows with M, to 1
    mass = [argmax_law(problem, M)[reach].sum() for M in (1, 10, 100, 10_000, 10**7)]
    assert all(b >= a - 1e-12 for a, b in zip(mass, mass[1:])), mass
    assert mass[-1] > 0.999, mass
    # and SVDD itself moves it there: the greedy path needs rare children, so the shift is large only at large M
    # (M = 3000: 0.41 of the mass, against 0.009 under the pre-trained chain = M = 1)
    M, n = 3000, 100
    value = svdd.FunctionValue(problem.table_value(problem.mean_values()))
    res = svdd.sample(model, problem.reward, "svdd", num_samples=n, seed=6, M=M, alpha=0.0, value=value)
    p, p_pre = argmax_law(problem, M)[reach].sum(), problem.pretrained_dist()[reach].sum()
    tol = 5 * math.sqrt(p * (1 - p) / n)
    assert p - tol > 10 * p_pre, (p, tol, p_pre)  # informative: far from the unguided mass
    assert abs(empirical(res.samples)[reach].sum() - p) < tol
