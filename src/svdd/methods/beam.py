"""Beam search over denoising steps, and its per-sample form branch-and-select.

The population is split into groups (one group: a global beam; one group per sample: branch-and-select). At each
step every state of a group draws M children from the PRE-TRAINED transition, the children are valued (posterior
mean or a value net; the reward itself at the clean level), identical children are merged (discrete models), and the
group keeps its best ``width`` children -- a deterministic top-k, not a draw. Global beam: the population is one beam
of ``width`` states (default: the number of samples) whose best N clean states are returned; its width may follow a
schedule over the steps (``grow``: from width / width_ratio up to width; ``shrink``: from width · width_ratio down to
width; linear in the level, reaching the width at level T − 1). Branch-and-select: each sample keeps ``width`` active states of its own and returns its best leaf; with
width 1 it is SVDD at alpha = 0 with the same M.

Cost per branching step: (population) · M candidates. A step that does not branch (``select_every`` /
``select_window``, or one the budget cannot pay for) moves every state by one pre-trained child instead (no pruning).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from ..engine import unique_rows
from ..values import CLEAN_REWARD, as_value
from .base import Final, Method, State, StepInfo, advance, affordable, check_positive_int, check_schedule, deterministic, \
    failed, register, require_stochastic, selects, start, take_renamed

Tensor = torch.Tensor
SCHEDULES = ("constant", "grow", "shrink")


@dataclasses.dataclass
class _Search(Method):
    """Grouped top-k search; subclasses fix the grouping."""

    keeps_history: ClassVar[bool] = False
    per_sample: ClassVar[bool] = False
    renamed: ClassVar[dict[str, str]] = {"K": "M"}  # old option names, accepted for one release
    M: int = 10  # candidates (children) per state at a branching step
    width: int | None = None
    value: Any = None
    final_reward: bool = False
    select_every: int = 1  # branch at every k-th step only (the others: one pre-trained child per state)
    select_window: tuple[int, int] | None = None
    K: dataclasses.InitVar[int | None] = None  # the old name of M

    def __post_init__(self, K=None):
        if K is not None:
            take_renamed(self, "K", K)
        check_positive_int("M", self.M)
        check_schedule(self)
        if self.width is not None:
            check_positive_int("width", self.width)
        self.value = as_value(self.value)

    def check(self, model, reward):
        if self.M > 1:
            require_stochastic(model, self.name)

    # the grouping -----------------------------------------------------------------------------------------------------
    def groups(self, n: int) -> int:
        return n if self.per_sample else 1

    def group_width(self, engine, level: int) -> int:
        """States each group keeps at ``level`` (0..T)."""
        raise NotImplementedError

    # the kernel -------------------------------------------------------------------------------------------------------
    def init(self, engine, n):
        g, w = self.groups(n), self.group_width(engine, 0)
        self._check_budget(engine, n, g)
        return start(engine, g * w)

    def _check_budget(self, engine, n: int, g: int) -> None:
        """Refuse a budget that cannot carry the population itself to the clean level (network rows) or score it."""
        b, t = engine.budget, engine.model.num_steps
        if b is None:
            return
        rows = sum(g * self.group_width(engine, level) for level in range(t)) / n
        final = g * self.group_width(engine, t) / n
        for kind, need in (("network_calls", rows), ("reward_calls", final)):
            have = getattr(b, kind)
            if have is not None and have < need:
                raise ValueError(f"method {self.name!r} with this width needs at least {need:g} {kind} per sample "
                                 f"(its population taken to the clean level and scored); the budget gives {have:g}")

    def step(self, engine, state: State, i: int) -> tuple[State, StepInfo]:
        model, n_out = engine.model, engine.num_samples
        last = i + 1 == model.num_steps
        g = self.groups(n_out)
        w_now, w_next = state.x.shape[0] // g, self.group_width(engine, i + 1)
        score = CLEAN_REWARD if last and self.final_reward else self.value
        rows = g * w_now * self.M
        branch = self.M > 1 and selects(self, i) and not deterministic(model, i)
        sizes = [g * self.group_width(engine, level) for level in range(i + 1, model.num_steps + 1)]  # may grow
        if not branch or not affordable(engine, score, rows, i + 1, g * w_next, sizes=sizes):
            return self._plain(engine, state, i, g * w_next), StepInfo()
        cands = model.step(state.x, state.pred, i, engine.gen["model"], num_children=self.M)
        cand_pred = (engine.predict(cands, i + 1, parents=(state.x, state.pred))
                     if score.needs_prediction and not last else None)
        values = score(engine, cands, cand_pred, i + 1)
        bad = failed(values)
        ranked = torch.where(bad, torch.full_like(values, -torch.inf), values)
        if engine.discrete:  # identical children are one state: only the first copy competes
            ranked = torch.where(_repeats(cands, g), torch.full_like(ranked, -math.inf), ranked)
        ranked = ranked.view(g, w_now * self.M)
        k = min(w_next, ranked.shape[1])
        # a stable descending order: ties (and the −inf of repeats) keep the order of drawing
        top = ranked.argsort(dim=1, descending=True, stable=True)[:, :k]
        keep = (top + torch.arange(g, device=top.device).view(g, 1) * ranked.shape[1]).flatten()
        x = cands[keep]
        pred = None if last else (cand_pred[keep] if cand_pred is not None else engine.predict(x, i + 1))
        kept = values[keep]
        rewards = kept if last and score.reward_at_clean else None
        info = StepInfo(kept_values=kept, failed=int(bad.sum()), all_failed=int(bad.view(g, -1).all(1).sum()))
        return State(x=x, pred=pred, level=i + 1, values=kept, rewards=rewards), info

    def _plain(self, engine, state: State, i: int, rows: int) -> State:
        """One pre-trained child per state; a beam whose schedule widens draws more children per state (not
        selected), and one that narrows keeps its first (best-valued) states."""
        model, now = engine.model, state.x.shape[0]
        grow = -(-rows // now) if rows > now and not self.per_sample and not deterministic(model, i) else 1
        x = model.step(state.x, state.pred, i, engine.gen["model"], num_children=grow)
        return advance(engine, x[:rows] if not self.per_sample else x, i)

    def finish(self, engine, state):
        n = engine.num_samples
        g = self.groups(n)
        rewards = state.rewards
        score = rewards if rewards is not None else state.values
        if score is None:  # the last step chose nothing (deterministic, not selecting, budget): score them all
            score = rewards = engine.rewards(state.x)
        ranked = torch.nan_to_num(score.double(), nan=-torch.inf)
        if engine.discrete:
            ranked = torch.where(_repeats(state.x, g), torch.full_like(ranked, -math.inf), ranked)
        ranked = ranked.view(g, -1)
        order = ranked.argsort(dim=1, descending=True, stable=True)
        if self.per_sample:
            keep = order[:, 0] + torch.arange(g, device=order.device) * ranked.shape[1]
        else:  # the best n distinct states, cycled when there are fewer
            distinct = max(1, int(torch.isfinite(ranked).sum()) if engine.discrete else ranked.shape[1])
            keep = order[0, torch.arange(n, device=order.device) % min(distinct, ranked.shape[1])]
        x = state.x[keep]
        r = rewards[keep] if rewards is not None else engine.rewards(x)
        return Final(x, r, None)


def _repeats(x: Tensor, groups: int) -> Tensor:
    """True for every row that equals an earlier row of its group."""
    n = x.shape[0]
    per = n // groups
    flat = x.reshape(n, -1)
    tagged = torch.cat([torch.arange(groups, device=x.device).repeat_interleave(per).view(n, 1).to(flat.dtype), flat], 1)
    _, inverse = unique_rows(tagged)
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=x.device), reduce="amin")
    return first[inverse] != torch.arange(n, device=x.device)


@register
@dataclasses.dataclass
class BeamSearch(_Search):
    """A global beam of ``width`` states (default: the number of samples), M children each per step."""

    name = "beam"
    test_options = {"M": 3, "schedule": "grow", "width_ratio": 2.0}
    schedule: str = "constant"
    width_ratio: float = 4.0

    def __post_init__(self, K=None):
        super().__post_init__(K)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if not isinstance(self.width_ratio, (int, float)) or isinstance(self.width_ratio, bool) \
                or not 1 <= self.width_ratio < float("inf"):
            raise ValueError(f"width_ratio must be a number >= 1, got {self.width_ratio!r}")

    def check_run(self, num_samples):
        if self.width is not None and self.width < num_samples:
            raise ValueError(f"beam width {self.width} is below num_samples = {num_samples}: the final beam holds the "
                             "returned samples; use width >= num_samples (or width=None)")

    def group_width(self, engine, level):
        w, t = self.width or engine.num_samples, engine.model.num_steps
        f = min(1.0, level / max(t - 1, 1))  # full width one step early: a last step may be deterministic
        start = {"constant": w, "grow": w / self.width_ratio, "shrink": w * self.width_ratio}[self.schedule]
        return max(1, round(start + (w - start) * f))


@register
@dataclasses.dataclass
class BranchSelect(_Search):
    """Branch-and-select: each sample keeps ``width`` active states (default 4), M children each per step, and
    returns its best leaf."""

    name = "branch-select"
    test_options = {"M": 2, "width": 2}
    per_sample = True

    def group_width(self, engine, level):
        return self.width or 4
