"""SMC (TDS-like) on the particle loop: one child per particle from the pre-trained transition, the difference
potential (v_{i+1} − v_i)/alpha after the initial weight v_0/alpha, resampling when the ESS falls below a threshold.
With exact soft values the final weighted particles target p_pre(x) exp(r(x)/alpha), and ``result.log_z``
estimates log E_pre[exp(r/alpha)]."""

from __future__ import annotations

import dataclasses

from ..resampling import ess, get_resampler
from .base import StepInfo, advance, check_alpha, register
from .particles import ParticleMethod

POTENTIALS = ("difference",)


@register
@dataclasses.dataclass
class SMC(ParticleMethod):
    """SMC (TDS-like): one child per particle from the pre-trained transition, potential exp((v_{i+1} − v_i)/alpha),
    resampling across the whole population when ESS < ess_threshold · N, and once more at the end (unless
    ``final_resample=False``: then the samples carry ``diagnostics.final_weights``)."""

    name = "smc"
    alpha: float = 1.0
    ess_threshold: float = 0.5
    resampler: str = "systematic"
    final_resample: bool = True
    potential: str = "difference"

    def __post_init__(self):
        super().__post_init__()
        check_alpha(self.alpha, positive=True)
        if not 0 <= self.ess_threshold <= 1:
            raise ValueError(f"ess_threshold must be in [0, 1], got {self.ess_threshold!r}")
        get_resampler(self.resampler)
        if self.potential not in POTENTIALS:
            raise ValueError(f"unknown potential {self.potential!r}; expected one of {POTENTIALS}")

    def move(self, engine, state, i, score):
        new = advance(engine, engine.model.step(state.x, state.pred, i, engine.gen["model"]), i)
        if score is None:
            return dataclasses.replace(new, values=state.values), StepInfo()
        pred = new.pred if score.needs_prediction else None
        return dataclasses.replace(new, values=score(engine, new.x, pred, i + 1)), StepInfo()

    def log_potential(self, v_prev, v):
        return v / self.alpha if v_prev is None else (v - v_prev) / self.alpha

    def resample_rule(self, engine, state, w, last):
        n = state.x.shape[0]
        if w is None or not (ess(w) < self.ess_threshold * n or (last and self.final_resample)):
            return None
        return get_resampler(self.resampler)(w, n, engine.gen["select"])
