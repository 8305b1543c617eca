"""SVDD: soft value-based decoding (Li et al. 2024, arXiv 2408.08252, Algorithm 1).

At every step each sample draws M candidates from the PRE-TRAINED transition, scores them with a value estimate,
and keeps one: the argmax at alpha = 0, else a draw with probability ∝ exp(value / alpha). Samples never interact.
The candidates' network outputs (needed by the posterior-mean value) are reused when a candidate is kept, so
SVDD-PM costs 1 + (T − 1)·M network evaluations per sample instead of T·(M + 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..resampling import select
from ..result import Diagnostics
from ..values import as_value
from .base import History, Method, check_alpha, check_positive_int, check_schedule, deterministic, register, \
    require_stochastic, selects


@register
@dataclasses.dataclass
class SVDD(Method):
    name = "svdd"
    M: int = 10
    alpha: float = 0.0
    value: Any = None  # ValueEstimator or value net; default: posterior mean (SVDD-PM)
    select_every: int = 1
    select_window: tuple[int, int] | None = None

    def __post_init__(self):
        check_positive_int("M", self.M)
        check_alpha(self.alpha)
        check_schedule(self)
        self.value = as_value(self.value)

    def check(self, model, reward):
        if self.M > 1:
            require_stochastic(model, self.name)

    def svdd_step(self, engine, x, pred, i, diag):
        """One SVDD step from level i to i + 1: returns the kept states, their network outputs and values."""
        model, n = engine.model, x.shape[0]
        m = self.M if selects(self, i) and not deterministic(model, i) else 1
        cands = model.step(x, pred, i, engine.gen["model"], num_children=m)  # 1. M children, ONE network output
        last = i + 1 == model.num_steps
        cand_pred = engine.predict(cands, i + 1) if (self.value.needs_prediction and m > 1 and not last) else None
        if m == 1:  # no choice to make at this step
            diag.record()
            return cands, (None if last else engine.predict(cands, i + 1)), None
        values = self.value(engine, cands, cand_pred, i + 1).view(n, m)  # 2. value of every candidate
        keep = torch.arange(n, device=values.device) * m + select(values, self.alpha, engine.gen["select"])  # 3.
        failed = torch.isnan(values) | (values == -torch.inf)
        diag.record(kept_values=values.flatten()[keep], failed=int(failed.sum()), all_failed=int(failed.all(1).sum()))
        x = cands[keep]
        pred = None if last else (cand_pred[keep] if cand_pred is not None else engine.predict(x, i + 1))
        return x, pred, values.flatten()[keep]

    def run(self, engine, num_samples):
        model = engine.model
        hist, diag = History(engine), Diagnostics()
        x = model.prior(num_samples, engine.gen["model"])
        pred = engine.predict(x, 0)
        hist.add(x, pred, 0)
        for i in engine.trange(model.num_steps, self.name):
            x, pred, v = self.svdd_step(engine, x, pred, i, diag)
            x, pred = self.after_step(engine, x, pred, v, i, diag)
            hist.add(x, pred, i + 1)
        return x, engine.rewards(x), diag, hist.tensor()

    def after_step(self, engine, x, pred, values, i, diag):
        return x, pred
