"""Selection and resamplers: unbiasedness, edge cases, log-space selection."""

import math

import pytest
import torch

from svdd.resampling import RESAMPLERS, ess, get_resampler, normalize, select

W = torch.tensor([0.5, 0.0, 0.05, 0.3, 0.15], dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(RESAMPLERS))
def test_resamplers_are_unbiased(name):
    f, n, reps = RESAMPLERS[name], 7, 4000
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5, dtype=torch.float64)
    for _ in range(reps):
        idx = f(W, n, g)
        assert idx.shape == (n,) and idx.dtype == torch.long
        counts += torch.bincount(idx, minlength=5).double()
    mean = counts / reps
    # E[copies] = n w; the multinomial variance n w (1 - w) bounds the others; 5 standard errors
    se = torch.sqrt(n * W * (1 - W) / reps)
    assert ((mean - n * W).abs() <= 5 * se + 1e-12).all(), (name, mean, n * W)
    assert mean[1] == 0  # zero weight is never picked


W2 = torch.tensor([0.37, 0.0, 0.08, 0.33, 0.22], dtype=torch.float64)  # 20 · W2 = 7.4, 0, 1.6, 6.6, 4.4


@pytest.mark.parametrize("name", ["systematic", "stratified", "residual"])
def test_low_variance_resamplers_stay_near_n_w(name):
    f, g = RESAMPLERS[name], torch.Generator().manual_seed(1)
    lo, hi = torch.floor(20 * W2), torch.ceil(20 * W2)
    if name == "stratified":  # one uniform per stratum: a cell of length 20 w meets at most ceil + 1 strata
        lo, hi = lo - 1, hi + 1
    elif name == "residual":  # floor(20 w) copies, plus 20 - Σ floor = 2 multinomial draws over the remainders
        hi = torch.floor(20 * W2) + 2
    for _ in range(200):
        # n · w integer: every low-variance resampler gives exactly n · w copies
        assert torch.equal(torch.bincount(f(W, 20, g), minlength=5), torch.tensor([10, 0, 1, 6, 3]))
        # n · w not an integer: the counts stay within the scheme's band around n · w (multinomial would not)
        c = torch.bincount(f(W2, 20, g), minlength=5).double()
        assert ((c >= lo) & (c <= hi)).all(), (name, c, 20 * W2)


def test_float_cumsum_not_reaching_one():
    """Weights summing to 0.999 (unnormalised float32): the inverse CDF is scaled by the total, so n equal weights
    with n draws still give every index exactly once for the one-per-stratum resamplers (not 999 repeated)."""
    w = torch.full((1000,), 1 / 1000, dtype=torch.float32) * 0.999
    g = torch.Generator().manual_seed(0)
    for name in ("systematic", "stratified"):
        for _ in range(5):
            assert torch.equal(RESAMPLERS[name](w, 1000, g).sort().values, torch.arange(1000)), name
    for f in RESAMPLERS.values():
        idx = f(w, 1000, g)
        assert int(idx.max()) <= 999 and int(idx.min()) >= 0


def test_normalize_and_ess():
    assert normalize(torch.tensor([-torch.inf, -torch.inf])) is None
    w = normalize(torch.tensor([1000.0, 1000.0, -torch.inf, float("nan")]))
    assert torch.allclose(w, torch.tensor([0.5, 0.5, 0, 0], dtype=torch.float64))
    assert math.isclose(ess(w), 2.0)
    with pytest.raises(ValueError, match="unknown resampler 'poisson'"):
        get_resampler("poisson")


def test_select_argmax_and_softmax_frequencies():
    v = torch.tensor([[0.0, 2.0, 1.0, float("nan")]]).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    assert (select(v, 0.0, g) == 1).all()
    idx = select(v, 0.5, g)
    freq = torch.bincount(idx, minlength=4).double() / 20000
    p = torch.softmax(torch.tensor([0.0, 2.0, 1.0]) / 0.5, 0).double()
    assert torch.allclose(freq[:3], p, atol=0.015) and freq[3] == 0


def test_select_tiny_alpha_huge_values():
    v = torch.tensor([[1e6, 1e6 + 1, -1e6]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    assert int(select(v, 1e-9, g)) == 1
    assert int(select(torch.full((1, 3), -torch.inf), 0.5, g)) == 0  # all failed: first candidate


@pytest.mark.parametrize("m", [1, 2, 10])
def test_select_runs_the_tie_rule_only_where_it_can_matter_with_the_same_answer(m):
    """The CPU path of select at alpha = 0 (the tie rule only on rows where a second candidate comes within the
    largest tolerance) keeps exactly the candidates the rule on every row keeps: exact and last-bit ties, values
    near 0 and of every magnitude, a median that sets the tolerance, NaN, ±inf, failed rows."""
    from svdd.resampling import TIE_RTOL, _first_tied, _first_tied_near
    g = torch.Generator().manual_seed(m)
    rows = []
    for scale in (1e-9, 1e-3, 1.0, 1e3, 1e9):
        v = torch.randn(400, m, generator=g, dtype=torch.float64) * scale
        rows += [v, v.round(), v[:, :1] * (1 + TIE_RTOL * torch.randn(400, m, generator=g, dtype=torch.float64))]
        w = v.clone()
        w[torch.rand(400, m, generator=g) < 0.3] = torch.inf
        w[torch.rand(400, m, generator=g) < 0.3] = torch.nan
        w[torch.rand(400, m, generator=g) < 0.3] = -torch.inf
        rows.append(w)
    near_zero = torch.tensor([[0.0, 1e-12, -5.0, -5.0, -5.0], [0.0, 1e-3, -5.0, -5.0, -5.0]],
                             dtype=torch.float64)[:, torch.arange(m) % 5]  # ties through the row's median |value|
    rows += [near_zero, torch.full((3, m), -torch.inf, dtype=torch.float64)]
    v = torch.nan_to_num(torch.cat(rows), nan=-torch.inf)
    assert torch.equal(_first_tied_near(v), _first_tied(v))
    assert torch.equal(select(v, 0.0, g), _first_tied(v))
    if m >= 3:  # the median decides: 1e-12 and 0 tie at a median |value| of 5 (not at their own magnitudes)
        assert select(near_zero, 0.0, g).tolist() == [0, 1]
