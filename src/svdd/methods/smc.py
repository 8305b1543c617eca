"""SMC (TDS-like, Feynman–Kac steering) on the particle loop: one child per particle from the pre-trained transition,
a potential at every weighting step, resampling when the ESS falls below a threshold.

Potentials (Feynman–Kac steering, Singhal et al. 2025), with λ_i the tempering factor at level i (1 at the clean
level) and v_i the particle's value:

* ``difference``: log G_i = (λ_i v_i − λ_{i'} v_{i'})/alpha, i' the previous weighting point (G_0 = λ_0 v_0/alpha);
* ``max``: log G_i = λ_i max_{j <= i} v_j / alpha (the best value along the path so far);
* ``sum``: log G_i = λ_i Σ_{j <= i} v_j / alpha.

At the clean level every potential ends with the same correction, log G_T = r/alpha − (the log-potentials along the
particle's ancestry), so the product of a particle's potentials is exp(r/alpha) whatever came before: with exact soft
values the weighted particles target p_pre(x) exp(r(x)/alpha), and ``result.log_z`` estimates log E_pre[exp(r/alpha)]
(unbiased in Z). Intermediate potentials and tempering change only which particles survive on the way.

Tempering λ_i over the level's fraction f = i/T: ``constant`` 1; ``linear`` f; ``exponential`` exp(rate · (f − 1))."""

from __future__ import annotations

import dataclasses
import math

import torch

from ..resampling import ess, get_resampler
from .base import StepInfo, advance, check_alpha, register
from .particles import ParticleMethod

POTENTIALS = ("difference", "max", "sum")
TEMPERING = ("constant", "linear", "exponential")


@register
@dataclasses.dataclass
class SMC(ParticleMethod):
    """SMC (TDS-like): one child per particle from the pre-trained transition, potential exp((v_{i+1} − v_i)/alpha),
    resampling across the whole population when ESS < ess_threshold · N, and once more at the end (unless
    ``final_resample=False``: then the samples carry ``diagnostics.final_weights``)."""

    name = "smc"
    test_options = {"alpha": 0.5, "ess_threshold": 0.7}
    alpha: float = 1.0
    ess_threshold: float = 0.5
    resampler: str = "systematic"
    final_resample: bool = True
    potential: str = "difference"
    tempering: str = "constant"
    tempering_rate: float = 5.0  # exponential tempering: λ = exp(rate · (i/T − 1))

    def __post_init__(self):
        super().__post_init__()
        check_alpha(self.alpha, positive=True)
        if not 0 <= self.ess_threshold <= 1:
            raise ValueError(f"ess_threshold must be in [0, 1], got {self.ess_threshold!r}")
        get_resampler(self.resampler)
        if self.potential not in POTENTIALS:
            raise ValueError(f"unknown potential {self.potential!r}; expected one of {POTENTIALS}")
        if self.tempering not in TEMPERING:
            raise ValueError(f"unknown tempering {self.tempering!r}; expected one of {TEMPERING}")
        r = self.tempering_rate
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < float("inf"):
            raise ValueError(f"tempering_rate must be a finite number >= 0, got {r!r}")

    def move(self, engine, state, i, score):
        new = advance(engine, engine.model.step(state.x, state.pred, i, engine.gen["model"]), i)
        if score is None:
            return dataclasses.replace(new, values=state.values), StepInfo()
        pred = new.pred if score.needs_prediction else None
        return dataclasses.replace(new, values=score(engine, new.x, pred, i + 1)), StepInfo()

    def temper(self, level: int, num_steps: int) -> float:
        """λ at ``level``: 1 at the clean level under every schedule."""
        f = level / num_steps
        if self.tempering == "linear":
            return f
        if self.tempering == "exponential":
            return math.exp(self.tempering_rate * (f - 1))
        return 1.0

    def log_potential(self, path, stat, v, level, num_steps):
        if level >= num_steps:  # the clean level: whatever came before, the product of potentials is exp(r/alpha)
            return v / self.alpha - path, None
        lam = self.temper(level, num_steps)
        if self.potential == "difference":
            return lam * v / self.alpha - path, None
        stat = v if stat is None else (torch.maximum(stat, v) if self.potential == "max" else stat + v)
        return lam * stat / self.alpha, stat

    def resample_rule(self, engine, state, w, last):
        n = state.x.shape[0]
        if w is None or not (ess(w) < self.ess_threshold * n or (last and self.final_resample)):
            return None
        return get_resampler(self.resampler)(w, n, engine.gen["select"])
