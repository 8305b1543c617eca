"""Selection and resampling: one place where every method turns a vector of log-weights into kept indices.

* `select` -- per sample, among its own M candidates (SVDD): argmax at alpha = 0, else sample ∝ exp(value / alpha).
* resamplers -- across the whole population (SMC, SVDD-R): plain functions ``(weights, n, generator) -> indices``,
  each unbiased: E[#copies of i] = n · w_i.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _gumbel(shape, generator, device) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
    return -torch.log(-torch.log(u.clamp_min(1e-300)))


#: values within TIE_RTOL of the best count as ties at alpha = 0 (the first is kept), relative to the larger of the
#: two magnitudes and of the row's median |value| (a best value near 0 carries the rounding of its terms; the median,
#: unlike the row's maximum, ignores an outlier such as a penalty value): rewards computed in float32 differ in the
#: last bits with the batch they were computed in, and must not decide a tie
TIE_RTOL = 1e-6


def select(values: Tensor, alpha: float, generator: torch.Generator, sync_free: bool | None = None) -> Tensor:
    """Index of the kept candidate in each row of ``values`` (N, M). NaN counts as −inf.

    alpha = 0: argmax; the first of the candidates within ``TIE_RTOL`` (relative) of the best on ties -- so that
    last-bit noise of a float32 reward (which depends on the batch it was computed in) cannot break a tie.
    alpha > 0: a draw with probability softmax(values / alpha), done as Gumbel-max in log space (no overflow at
    small alpha). Rows whose values are all −inf keep candidate 0.

    ``sync_free``: whether picking out rows (a wait for the device) costs nothing, as on CPU (the default: not on a
    GPU); then the tie rule runs only on the rows where it can matter (`_first_tied_near`), the same answer.
    """
    v = torch.nan_to_num(values.double(), nan=-torch.inf, neginf=-torch.inf, posinf=torch.inf)
    if alpha == 0:
        if sync_free is None:
            sync_free = not v.is_cuda
        return _first_tied_near(v) if sync_free else _first_tied(v)
    logits = v / alpha + _gumbel(v.shape, generator, v.device)
    return logits.argmax(dim=1)


def _first_tied(v: Tensor) -> Tensor:
    """The alpha = 0 rule of `select` on every row of v (float64, NaN already −inf)."""
    best = v.max(dim=1, keepdim=True).values
    fin = torch.isfinite(v)
    absv = torch.where(fin, v.abs(), torch.zeros_like(v))
    typical = torch.where(fin, v.abs(), torch.full_like(v, torch.nan)).nanmedian(dim=1, keepdim=True).values
    best_abs = torch.where(torch.isfinite(best), best.abs(), torch.zeros_like(best))
    scale = torch.maximum(torch.maximum(best_abs, absv), torch.nan_to_num(typical, nan=0.0))
    tied = (v >= best - TIE_RTOL * scale) & (fin | ~torch.isfinite(best))  # a failed candidate never ties
    return tied.to(torch.uint8).argmax(dim=1)  # the first tied candidate (rows of −inf: candidate 0)


def _first_tied_near(v: Tensor) -> Tensor:
    """The same answer as `_first_tied`, with the tie rule run only on the rows where a second candidate comes within
    the largest tolerance the rule can give (TIE_RTOL times the row's largest finite |value|, which bounds every
    scale it uses); elsewhere the argmax is the only tied candidate. On CPU, where picking out those rows costs no
    wait for a device: rewards that are not float32 noise rarely come that close."""
    best, first = v.max(dim=1)  # the first of the maximal values
    fin = torch.isfinite(v)
    bound = torch.where(fin, v.abs(), torch.zeros_like(v)).amax(dim=1)
    near = ((v >= (best - TIE_RTOL * bound).unsqueeze(1)).sum(dim=1) > 1).nonzero().squeeze(1)
    if near.numel():
        first[near] = _first_tied(v[near])
    return first


def normalize(log_weights: Tensor) -> Tensor | None:
    """Normalised weights from log-weights with a max-shift; None when every weight is zero (or NaN)."""
    lw = torch.nan_to_num(log_weights.double(), nan=-torch.inf, neginf=-torch.inf, posinf=torch.inf)
    m = lw.max()
    if not torch.isfinite(m):
        return None
    w = (lw - m).exp()
    return w / w.sum()


def ess(weights: Tensor) -> float:
    """Effective sample size 1 / Σ w_i² of normalised weights."""
    return float(1.0 / (weights.double() ** 2).sum())


def _inverse_cdf(weights: Tensor, u: Tensor) -> Tensor:
    cdf = torch.cumsum(weights.double(), 0)
    idx = torch.searchsorted(cdf, u * cdf[-1], right=True)  # scaling by cdf[-1]: float cumsum need not reach 1
    return idx.clamp_(max=weights.numel() - 1)


def multinomial(weights: Tensor, n: int, generator: torch.Generator) -> Tensor:
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=weights.device)
    return _inverse_cdf(weights, u.sort().values)


def stratified(weights: Tensor, n: int, generator: torch.Generator) -> Tensor:
    u = (torch.arange(n, dtype=torch.float64, device=weights.device)
         + torch.rand(n, generator=generator, dtype=torch.float64, device=weights.device)) / n
    return _inverse_cdf(weights, u)


def systematic(weights: Tensor, n: int, generator: torch.Generator) -> Tensor:
    u = (torch.arange(n, dtype=torch.float64, device=weights.device)
         + torch.rand(1, generator=generator, dtype=torch.float64, device=weights.device)) / n
    return _inverse_cdf(weights, u)


def residual(weights: Tensor, n: int, generator: torch.Generator) -> Tensor:
    w = weights.double()
    counts = torch.floor(n * w).long()
    det = torch.repeat_interleave(torch.arange(w.numel(), device=w.device), counts)
    rest = n - int(counts.sum())
    if rest == 0:
        return det
    res = n * w - counts
    return torch.cat([det, multinomial(res / res.sum(), rest, generator)])


RESAMPLERS = {"multinomial": multinomial, "stratified": stratified, "systematic": systematic, "residual": residual}


def get_resampler(name: str):
    try:
        return RESAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown resampler {name!r}; expected one of {sorted(RESAMPLERS)}") from None
