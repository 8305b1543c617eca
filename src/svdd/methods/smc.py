"""SMC (TDS-like): one child per particle from the pre-trained transition, potential exp((v_{i+1} − v_i)/alpha),
resampling across the whole population when ESS < threshold · N. Values telescope, so with exact soft values the
final weighted particles target p_pre(x) exp(r(x)/alpha). The population is resampled once more at the end so that
the returned samples are unweighted."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..resampling import ess, get_resampler, normalize
from ..result import Diagnostics
from ..values import PosteriorMean, as_value
from .base import History, Method, check_alpha, check_schedule, register, require_stochastic, selects


@register
@dataclasses.dataclass
class SMC(Method):
    name = "smc"
    alpha: float = 1.0
    ess_threshold: float = 0.5
    resampler: str = "systematic"
    value: Any = None
    final_resample: bool = True
    select_every: int = 1
    select_window: tuple[int, int] | None = None

    def __post_init__(self):
        check_alpha(self.alpha, positive=True)
        if not 0 <= self.ess_threshold <= 1:
            raise ValueError(f"ess_threshold must be in [0, 1], got {self.ess_threshold!r}")
        get_resampler(self.resampler)
        check_schedule(self)
        self.value = as_value(self.value)

    def check(self, model, reward):
        require_stochastic(model, self.name)

    def run(self, engine, num_samples):
        model, n, gen = engine.model, num_samples, engine.gen["model"]
        resample = get_resampler(self.resampler)
        hist, diag = History(engine), Diagnostics()
        x = model.prior(n, gen)
        pred = engine.predict(x, 0)
        hist.add(x, pred, 0)
        v = self.value(engine, x, pred, 0)  # value at the last weighting point
        logw = torch.zeros(n, dtype=torch.float64, device=v.device)
        for i in engine.trange(model.num_steps, self.name):
            x = model.step(x, pred, i, gen)
            last = i + 1 == model.num_steps
            need_pred = self.value.needs_prediction and not last
            pred = engine.predict(x, i + 1) if not last else None
            if not (selects(self, i) or last):
                diag.record()
                hist.add(x, pred, i + 1)
                continue
            v_new = self.value(engine, x, pred if need_pred else None, i + 1)
            failed = torch.isnan(v_new) | (v_new == -torch.inf)
            inc = torch.where(failed, torch.full_like(v_new, -torch.inf), (v_new - v) / self.alpha)
            logw = logw + inc
            v = v_new
            w = normalize(logw)
            if w is None:  # every particle failed: nothing to weight by, keep the population
                logw.zero_()
                diag.record(kept_values=v, ess=0.0, failed=int(failed.sum()), all_failed=n)
                hist.add(x, pred, i + 1)
                continue
            e = ess(w)
            do = e < self.ess_threshold * n and not (last and not self.final_resample)
            if do or (last and self.final_resample):
                idx = resample(w, n, engine.gen["select"])
                x, v, logw = x[idx], v[idx], torch.zeros_like(logw)
                pred = pred[idx] if pred is not None else None
                do = True
            diag.record(kept_values=v, ess=e, resampled=do, failed=int(failed.sum()))
            hist.add(x, pred, i + 1)
        if not self.final_resample:
            diag.final_weights = normalize(logw)
        # the posterior-mean value at the clean level IS the reward: no second call
        rewards = v if isinstance(self.value, PosteriorMean) else engine.rewards(x)
        return x, rewards, diag, hist.tensor()
