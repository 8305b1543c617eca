"""SVDD: soft value-based decoding (Li et al. 2024, arXiv 2408.08252, Algorithm 1).

At every step each sample draws M candidates from the PRE-TRAINED transition, scores them with a value estimate,
and keeps one: the argmax at alpha = 0, else a draw with probability ∝ exp(value / alpha). Samples never interact.
The candidates' network outputs (needed by the posterior-mean value) are reused when a candidate is kept, so
SVDD-PM costs 1 + (T − 1)·M network evaluations per sample instead of T·(M + 1); at the last step the clean
candidates' values are their rewards, so the final samples are not scored again.

``final_reward``: with a learned value (SVDD-MC) the clean candidates of the last step are scored, as in the paper's
Algorithm 1 with a learned v̂ at every level, by the value net at t = 0 (no reward call during sampling, one per
sample at the end). ``final_reward=True`` scores them with the reward itself instead: M reward calls per sample at
the last step, and the final rewards come for free.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..resampling import select
from ..values import CLEAN_REWARD, as_value
from .base import Method, State, StepInfo, advance, affordable, check_alpha, check_positive_int, check_schedule, deterministic, \
    register_alias, \
    failed, register, require_stochastic, selects, start


@register
@dataclasses.dataclass
class SVDD(Method):
    name = "svdd"
    test_options = {"M": 3, "alpha": 0.5, "select_every": 2}
    M: int = 10
    alpha: float = 0.0
    value: Any = None  # ValueEstimator or value net; default: posterior mean (SVDD-PM)
    select_every: int = 1
    select_window: tuple[int, int] | None = None
    final_reward: bool = False  # score the last step's clean candidates with the reward, not the value estimate

    def __post_init__(self):
        check_positive_int("M", self.M)
        check_alpha(self.alpha)
        check_schedule(self)
        self.value = as_value(self.value)

    def check(self, model, reward):
        if self.M > 1:
            require_stochastic(model, self.name)

    def init(self, engine, n):
        return start(engine, n)

    def step(self, engine, state: State, i: int) -> tuple[State, StepInfo]:
        """One SVDD step from level i to i + 1 (Algorithm 1), streamed over slices of about max_batch candidates."""
        model, n, last = engine.model, state.x.shape[0], i + 1 == engine.model.num_steps
        score = CLEAN_REWARD if last and self.final_reward else self.value
        choose = selects(self, i) and not deterministic(model, i) and affordable(engine, score, n * self.M, i + 1, n)
        if not choose or self.M == 1:  # no choice to make (schedule, deterministic step or reward budget spent)
            return advance(engine, model.step(state.x, state.pred, i, engine.gen["model"]), i), StepInfo()
        x, pred, kept, bad = gather(n, ((sl, self.choose(engine, state, sl, i, score, last))
                                        for sl in engine.sample_chunks(n, self.M)))
        rewards = kept if last and score.reward_at_clean else None  # clean candidates scored by the reward itself
        info = StepInfo(kept_values=kept, failed=bad.sum(), all_failed=bad.all(1).sum())  # no sync
        return State(x=x, pred=pred, level=i + 1, values=kept, rewards=rewards), info

    def choose(self, engine, state: State, rows: slice, i: int, score, last: bool):
        """The samples ``rows``: draw M children each, value them, keep one. Returns (kept states, their network
        output or None, their values, which candidates failed)."""
        m = self.M
        cands = engine.model.step(state.x[rows], state.pred[rows], i, engine.gen["model"], num_children=m)  # 1.
        cand_pred = (engine.predict(cands, i + 1, parents=(state.x[rows], state.pred[rows]))
                     if score.needs_prediction and not last else None)
        values = score(engine, cands, cand_pred, i + 1).view(-1, m)  # 2. the value of every candidate
        pick = select(values, self.alpha, engine.gen["select"], sync_free=not engine.few_syncs)
        keep = torch.arange(values.shape[0], device=values.device) * m + pick
        pred = None if last else (cand_pred[keep] if cand_pred is not None else engine.predict(cands[keep], i + 1))
        return cands[keep], pred, values.flatten()[keep], failed(values)  # 3. the kept candidate


register_alias("svdd-pm", "svdd", {})  # the posterior-mean value (the default), by the name the tables use
register_alias("svdd-mc", "svdd", {"value": "task"})  # the task's learned value net


def gather(n: int, parts) -> list:
    """Tensors of n samples from (slice, tensors of that slice) pairs, written into place as they come: a step's
    peak memory holds one slice's candidates and one copy of the kept states (not the parts and their
    concatenation). One slice is returned as it is."""
    out, filled = None, 0
    for sl, part in parts:
        if out is None:
            if sl == slice(0, n):
                return list(part)
            out = [None if p is None else p.new_empty((n, *p.shape[1:])) for p in part]
        rows = sl.stop - sl.start
        for o, p in zip(out, part):
            if o is None and p is None:
                continue
            if o is None or p is None or p.dtype != o.dtype or p.shape[0] != rows:
                raise RuntimeError(f"slice {sl} of {n} samples does not match the first slice's outputs")
            o[sl] = p
        filled += rows
    if filled != n:
        raise RuntimeError(f"slices cover {filled} of {n} samples")
    return out
