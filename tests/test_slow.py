"""Larger-sample versions of the exactness checks on the enumerable masked diffusion (`make test-slow`, about a
minute): with 10x more samples the tolerance is ~3x tighter, so smaller errors in the chain or in selection show."""

import numpy as np
import pytest

import svdd
from enumerated import CLEAN, STATES, Problem, empirical, sampling_tolerance, tv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def problem():
    return Problem(seed=0, num_steps=4)


@pytest.fixture(scope="module")
def model(problem):
    return svdd.MaskedDiffusion(problem.network, seq_len=3, vocab_size=4, num_steps=problem.T)


def test_pretrained_chain_matches_enumeration_large_n(problem, model):
    n = 400_000
    target = problem.pretrained_dist()
    res = svdd.sample(model, problem.reward, "pretrained", num_samples=n, seed=11, max_batch=1 << 16)
    assert tv(empirical(res.samples), target) < sampling_tolerance(target, n)


def argmax_law(problem, M: int) -> np.ndarray:
    """Exact law of SVDD's output with exact posterior-mean values, alpha = 0 and M candidates: at every step a
    value group g wins with probability G^M − F^M (F: mass of lower values, G = F + mass of g), and inside a group
    the first drawn child is c with probability p(c) / p(g)."""
    values = problem.mean_values()
    d = problem.start()
    for i, P in enumerate(problem.kernels):
        K = np.zeros((len(STATES), len(STATES)))
        for s in np.flatnonzero(d > 0):
            support = np.flatnonzero(P[s] > 0)
            vals = np.round(values[i + 1][support], 12)
            F = 0.0
            for v in np.unique(vals):
                members = support[vals == v]
                pg = P[s, members].sum()
                K[s, members] = ((F + pg) ** M - F**M) * P[s, members] / pg
                F += pg
        d = d @ K
    return d[CLEAN]


@pytest.mark.parametrize("M", [3, 20])
def test_svdd_argmax_matches_exact_finite_m_law_large_n(problem, model, M):
    n = 100_000
    law = argmax_law(problem, M)
    assert abs(law.sum() - 1) < 1e-9
    value = svdd.FunctionValue(problem.table_value(problem.mean_values()))
    res = svdd.sample(model, problem.reward, "svdd", num_samples=n, seed=12 + M, M=M, alpha=0.0, value=value,
                      max_batch=1 << 16)
    assert tv(empirical(res.samples), law) < sampling_tolerance(law, n)
