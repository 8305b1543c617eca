"""Monte Carlo tree search over denoising steps, with soft-value backups; anytime.

Each sample grows its own tree from one draw of the prior. An iteration, in every tree at once: walk down from the
root, at each node taking the child with the best upper confidence bound Q + c · sqrt(log n_parent / n_child) (Q
min-max normalised within the tree), until a node that may still draw a child (progressive widening: fewer than
min(M, ceil(visits ** widening)) draws so far, so that a tree goes deep before it goes wide) --
then draw one child from the PRE-TRAINED transition, value it (posterior mean, a value net, the reward at the clean
level), and back up: every ancestor's Q becomes the soft Bellman value of its children,
alpha · log Σ_c (draws_c / draws) exp(Q_c / alpha) (the max at alpha = 0). A child equal to one drawn before (discrete
models) is not a new node: it counts one more draw of that child and costs nothing.

Draws of different trees at the same level share one network call. The search stops when the budget cannot pay
for one more iteration together with finishing (``svdd.Budget`` or ``reward_budget``), or after ``iterations`` per
tree; each tree returns its best clean leaf, or, when it found none, the pre-trained completion of its deepest node.
With unlimited iterations every reachable clean state is eventually drawn, so the argmax of the reward is found.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from ..values import as_value
from .base import Method, State, advance, check_alpha, check_positive_int, register, require_stochastic, start, \
    take_renamed

Tensor = torch.Tensor


class _Tree:
    """One tree's nodes in flat lists (index 0: the root)."""

    def __init__(self, x: Tensor, pred: Tensor | None):
        self.x, self.pred, self.level = [x], [pred], [0]
        self.parent, self.children = [-1], [[]]
        self.draws, self.visits, self.q = [0], [0], [0.0]
        self.child_draws: list[dict[int, int]] = [{}]
        self.closed = [False]  # nothing left to draw below: a clean leaf, or M draws made and every child closed
        self.best_leaf, self.best_reward = -1, -math.inf
        self.deepest = 0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, parent: int, x: Tensor, pred: Tensor | None, level: int, value: float) -> int:
        k = len(self.x)
        self.x.append(x)
        self.pred.append(pred)
        self.level.append(level)
        self.parent.append(parent)
        self.children.append([])
        self.draws.append(0)
        self.visits.append(0)
        self.q.append(value)
        self.child_draws.append({})
        self.closed.append(False)
        self.children[parent].append(k)
        if level > self.level[self.deepest] or (level == self.level[self.deepest] and value > self.q[self.deepest]):
            self.deepest = k
        return k


@register
@dataclasses.dataclass
class TreeSearch(Method):
    name = "tree"
    test_options = {"M": 3, "iterations": 4, "c": 0.5}
    keeps_history: ClassVar[bool] = False
    renamed: ClassVar[dict[str, str]] = {"K": "M"}  # old option names, accepted for one release
    M: int = 8  # candidates per state: the most draws per node
    alpha: float = 0.0  # soft backup temperature (0: max)
    c: float = 1.0  # exploration constant
    widening: float = 0.5  # progressive widening: a node visited n times may have drawn ceil(n ** widening) children
    iterations: int | None = None  # per tree; None: until the budget is spent (a budget is then required)
    value: Any = None
    K: dataclasses.InitVar[int | None] = None  # the old name of M

    def __post_init__(self, K=None):
        if K is not None:
            take_renamed(self, "K", K)
        check_positive_int("M", self.M)
        check_alpha(self.alpha)
        if isinstance(self.c, bool) or not isinstance(self.c, (int, float)) or not 0 <= self.c < float("inf"):
            raise ValueError(f"c must be a finite number >= 0, got {self.c!r}")
        if self.iterations is not None:
            check_positive_int("iterations", self.iterations)
        w = self.widening
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
            raise ValueError(f"widening must be a number in [0, 1], got {w!r}")
        self.value = as_value(self.value)

    def check(self, model, reward):
        require_stochastic(model, self.name)

    def init(self, engine, n):
        if self.iterations is None and engine.budget is None and engine.reward_budget is None:
            raise ValueError("method 'tree' is anytime: give iterations=... or a budget (svdd.Budget / reward_budget)")
        s = start(engine, n)
        t = engine.model.num_steps
        trees = [_Tree(s.x[j:j + 1], s.pred[j:j + 1]) for j in range(n)]
        from tqdm.auto import tqdm
        bar = tqdm(total=self.iterations, desc=f"{self.name} iterations", disable=not engine.progress, leave=False,
                   dynamic_ncols=True)  # no total when the budget decides
        done = 0
        while self.iterations is None or done < self.iterations:
            if all(tr.closed[0] for tr in trees) or not self._affords(engine, trees, t):
                break
            self._iterate(engine, trees, t)
            done += 1
            bar.update()
        bar.close()
        x, r = self._finish(engine, trees, t)
        return State(x=x, pred=None, level=t, rewards=r)

    # one iteration --------------------------------------------------------------------------------------------------
    def _affords(self, engine, trees: list[_Tree], t: int) -> bool:
        """One more draw per tree (its network output and value) and finishing every tree afterwards."""
        n = len(trees)
        rest_net = sum(t - tr.level[tr.deepest] - 1 for tr in trees if tr.best_leaf < 0 and tr.level[tr.deepest] < t)
        # final scores: trees without a scored clean leaf (a value net's leaves are all scored by the reward at the end)
        rest_rew = sum(1 for tr in trees if tr.best_leaf < 0) if self.value.reward_at_clean else n
        net = n + (0 if self.value.needs_prediction else self.value.network_calls(n))  # outputs (+ value-net rows)
        return engine.affordable(self.value.reward_calls(n), network_calls=net,
                                 reserve_network=rest_net, reserve_reward=rest_rew)

    def _select(self, tr: _Tree, t: int) -> int:
        """The node to draw a child of: down the open children by UCB until a node that may widen."""
        k = 0
        while True:
            kids = [c for c in tr.children[k] if not tr.closed[c]]
            if tr.draws[k] < self.M and (not kids or tr.draws[k] < math.ceil(tr.visits[k] ** self.widening)):
                return k
            span = tr.hi - tr.lo if tr.hi > tr.lo else 1.0
            log_n = math.log(max(tr.visits[k], 1))

            def ucb(c):
                return (tr.q[c] - tr.lo) / span + self.c * math.sqrt(log_n / (1 + tr.visits[c]))

            k = max(kids, key=ucb)

    def _iterate(self, engine, trees: list[_Tree], t: int) -> None:
        model = engine.model
        todo: dict[int, list[tuple[int, int]]] = {}
        for j, tr in enumerate(trees):
            if not tr.closed[0]:  # an exhausted tree draws no more
                k = self._select(tr, t)
                todo.setdefault(tr.level[k], []).append((j, k))
        for level in sorted(todo):
            group = todo[level]
            x = torch.cat([trees[j].x[k] for j, k in group])
            pred = torch.cat([trees[j].pred[k] for j, k in group])
            kids = model.step(x, pred, level, engine.gen["model"])
            new = []
            for r, (j, k) in enumerate(group):
                tr = trees[j]
                tr.draws[k] += 1
                same = next((c for c in tr.children[k] if torch.equal(tr.x[c], kids[r:r + 1])), None)
                if same is not None:  # drawn before: one more draw of that child, no call
                    tr.child_draws[k][same] += 1
                    self._backup(tr, same, t)
                else:
                    new.append(r)
            if not new:
                continue
            idx = torch.tensor(new, device=kids.device)
            s = advance(engine, kids[idx], level)
            v = self.value(engine, s.x, s.pred if self.value.needs_prediction else None, level + 1)
            for q, r in enumerate(new):
                j, k = group[r]
                tr = trees[j]
                val = float(v[q]) if not math.isnan(float(v[q])) else -math.inf
                c = tr.add(k, s.x[q:q + 1], None if s.pred is None else s.pred[q:q + 1], level + 1, val)
                tr.child_draws[k][c] = 1
                if level + 1 == t and self.value.reward_at_clean and val > tr.best_reward:
                    tr.best_leaf, tr.best_reward = c, val
                self._backup(tr, c, t)

    def _backup(self, tr: _Tree, k: int, t: int) -> None:
        if math.isfinite(tr.q[k]):
            tr.lo, tr.hi = min(tr.lo, tr.q[k]), max(tr.hi, tr.q[k])
        tr.visits[k] += 1
        tr.closed[k] = tr.level[k] >= t or (tr.draws[k] >= self.M and all(tr.closed[c] for c in tr.children[k]))
        k = tr.parent[k]
        while k >= 0:
            tr.visits[k] += 1
            tr.closed[k] = tr.draws[k] >= self.M and all(tr.closed[c] for c in tr.children[k])
            counts = tr.child_draws[k]
            qs = [tr.q[c] for c in counts]
            if self.alpha == 0:
                tr.q[k] = max(qs)
            else:
                total = sum(counts.values())
                w = torch.tensor([counts[c] / total for c in counts], dtype=torch.float64)
                tr.q[k] = self.alpha * float(torch.logsumexp(torch.tensor(qs, dtype=torch.float64) / self.alpha
                                                             + w.log(), 0))
            k = tr.parent[k]

    # the answer -----------------------------------------------------------------------------------------------------
    def _finish(self, engine, trees: list[_Tree], t: int) -> tuple[Tensor, Tensor]:
        """Best clean leaf of each tree; trees without one complete their deepest node by the pre-trained
        transition (one batch per starting level), scored by the reward."""
        model = engine.model
        xs: list[Tensor | None] = [tr.x[tr.best_leaf] if tr.best_leaf >= 0 else None for tr in trees]
        rs: list[float | None] = [tr.best_reward if tr.best_leaf >= 0 else None for tr in trees]
        if not self.value.reward_at_clean:  # leaves were valued by a value net: pick by it, score by the reward
            for j, tr in enumerate(trees):
                leaves = [k for k in range(len(tr.x)) if tr.level[k] == t]
                if leaves:
                    xs[j] = tr.x[max(leaves, key=lambda k: tr.q[k])]
        by_level: dict[int, list[int]] = {}
        for j, tr in enumerate(trees):
            if xs[j] is None:
                by_level.setdefault(tr.level[tr.deepest], []).append(j)
        for level, js in sorted(by_level.items()):
            x = torch.cat([trees[j].x[trees[j].deepest] for j in js])
            pred = None if level >= t else torch.cat([trees[j].pred[trees[j].deepest] for j in js])
            s = State(x=x, pred=pred, level=level)
            for i in range(level, t):
                s = advance(engine, model.step(s.x, s.pred, i, engine.gen["model"]), i)
            for q, j in enumerate(js):
                xs[j] = s.x[q:q + 1]
        x = torch.cat(xs)
        missing = [j for j, r in enumerate(rs) if r is None or not self.value.reward_at_clean]
        r = torch.tensor([math.nan if v is None else v for v in rs], dtype=torch.float64, device=x.device)
        if missing:
            r[missing] = engine.rewards(x[missing])
        return x, r
