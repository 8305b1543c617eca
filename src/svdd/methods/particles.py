"""The particle loop shared by SMC-type methods, in Feynman–Kac form (move, potential, resample).

A population of N particles starts from the prior with log-weight G_0 = log_potential(None, v_0). At each weighting
step every particle moves (``move``: one child of the pre-trained transition for SMC; the best of M for SVDD-R),
its value v_{i+1} is estimated, its log-weight grows by ``log_potential(v_i, v_{i+1})``, and ``resample_rule``
decides whether (and how) the population is resampled. With the difference potential (v_{i+1} − v_i)/alpha and
G_0 = v_0/alpha the potentials telescope to r(x)/alpha, so the weighted particles target p_pre(x) exp(r(x)/alpha) and

    log Ẑ = Σ_{resampling epochs} log( (1/N) Σ_j exp(log-weight_j) )

is an unbiased estimate (in Z, not log Z) of Z = E_pre[exp(r(x)/alpha)], on ``result.log_z``.

Failures: a particle whose value fails gets weight zero. A step at which EVERY particle's value failed is not a
weighting point: values and weights are kept as they were, so one bad step cannot poison the rest of the run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from ..resampling import ess, normalize
from ..values import CLEAN_REWARD, as_value
from .base import Method, State, StepInfo, affordable, check_schedule, failed, require_stochastic, selects, start

Tensor = torch.Tensor


@dataclasses.dataclass
class ParticleMethod(Method):
    """Subclasses choose ``move``, ``log_potential`` and ``resample_rule``; the loop is here."""

    value: Any = None
    select_every: int = 1
    select_window: tuple[int, int] | None = None
    final_reward: bool = False  # weight the clean particles by the reward itself (a learned value is otherwise used)

    def __post_init__(self):
        check_schedule(self)
        self.value = as_value(self.value)

    def check(self, model, reward):
        require_stochastic(model, self.name)

    # the three pieces -------------------------------------------------------------------------------------------------
    def move(self, engine, state: State, i: int, score) -> tuple[State, StepInfo]:
        """Particles at level i + 1 with their values (``score`` at weighting steps, else values unchanged)."""
        raise NotImplementedError

    def log_potential(self, path: Tensor, stat: Tensor | None, v: Tensor, level: int, num_steps: int
                      ) -> tuple[Tensor, Tensor | None]:
        """Log-weight increment of particles whose values at ``level`` are ``v`` (``path``: the log-potentials along
        their ancestry so far; ``stat``: the running statistic), and the new statistic. Weighted methods only."""
        raise NotImplementedError

    def resample_rule(self, engine, state: State, w: Tensor | None, last: bool) -> Tensor | None:
        """Ancestor indices, or None to keep the population."""
        return None

    # the loop ---------------------------------------------------------------------------------------------------------
    weighted: ClassVar[bool] = True  # False: no potentials (log-weights stay 0, no Ẑ), e.g. SVDD-R

    def init(self, engine, n):
        s = start(engine, n)
        zeros = torch.zeros(n, dtype=torch.float64, device=s.x.device)
        if not self.weighted:
            return dataclasses.replace(s, log_weights=zeros)
        if not affordable(engine, self.value, n, 0, n, predicted=True):  # no budget for the initial weight: the first weighting starts it
            return dataclasses.replace(s, log_weights=zeros, path=zeros)
        v = self.value(engine, s.x, s.pred if self.value.needs_prediction else None, 0)
        bad = failed(v)
        if bool(bad.all()):  # no value at level 0: the first weighting step starts the telescoping sum instead
            return dataclasses.replace(s, log_weights=zeros, path=zeros)
        g0, stat = self.log_potential(zeros, None, v, 0, engine.model.num_steps)  # G_0: the initial weight
        g0 = torch.where(bad, torch.full_like(v, -torch.inf), g0)
        return dataclasses.replace(s, values=v, log_weights=g0, path=g0, stat=stat)

    def step(self, engine, state: State, i: int):
        last = i + 1 == engine.model.num_steps
        score = CLEAN_REWARD if last and self.final_reward else self.value
        n = state.x.shape[0]
        weigh = last or (selects(self, i) and affordable(engine, score, n * getattr(self, "M", 1), i + 1, n))
        new, info = self.move(engine, state, i, score if weigh else None)
        new = dataclasses.replace(new, log_weights=state.log_weights, log_z=state.log_z, path=state.path, stat=state.stat)
        if new.values is None or new.values is state.values:  # not a weighting point
            return dataclasses.replace(new, values=state.values), info
        v, n = new.values, new.x.shape[0]
        bad = failed(v)
        if bool(bad.all()):  # nothing could be scored: not a weighting point (keep values and weights)
            return dataclasses.replace(new, values=state.values, rewards=None), \
                dataclasses.replace(info, failed=n, all_failed=n)
        logw, path, stat = state.log_weights, state.path, state.stat
        if self.weighted:
            inc, stat = self.log_potential(path, stat, v, i + 1, engine.model.num_steps)
            logw = torch.where(bad, torch.full_like(logw, -torch.inf), logw + inc)
            path = torch.where(bad, path, path + inc)
        w = normalize(logw)
        new = dataclasses.replace(new, log_weights=logw, path=path, stat=stat)
        idx = self.resample_rule(engine, new, w, last)
        if idx is not None:
            log_z = new.log_z + _log_mean_exp(logw) if self.weighted else 0.0
            new = dataclasses.replace(_take(new, idx), log_weights=torch.zeros_like(logw), log_z=log_z)
        if last and score.reward_at_clean:
            new = dataclasses.replace(new, rewards=new.values)
        ess_ = (ess(w) if w is not None else 0.0) if self.weighted else float("nan")
        failed_ = int(bad.sum()) if self.weighted else info.failed  # unweighted moves count their own candidates
        return new, dataclasses.replace(info, kept_values=new.values, ess=ess_, resampled=idx is not None,
                                        failed=failed_)

    def log_normalizer(self, state: State) -> float | None:
        """log Ẑ: the resampled epochs' factors times the mean weight left at the end (None for unweighted methods)."""
        return state.log_z + _log_mean_exp(state.log_weights) if self.weighted else None


def _log_mean_exp(logw: Tensor) -> float:
    lw = torch.nan_to_num(logw.double(), nan=-torch.inf)
    return float(torch.logsumexp(lw, 0)) - math.log(lw.numel())


def _take(s: State, idx: Tensor) -> State:
    def pick(t):
        return t[idx] if t is not None else None

    return dataclasses.replace(s, x=s.x[idx], pred=pick(s.pred), values=pick(s.values), path=pick(s.path),
                               stat=pick(s.stat))

