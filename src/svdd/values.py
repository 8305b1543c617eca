"""Value estimators v̂(x_i) ≈ E[r(x0) | x_i], the score SVDD uses to pick among candidates.

* `PosteriorMean` (SVDD-PM, no training): the reward of the model's own x̂0 of the candidate, at the candidate's
  level -- or the mean reward of K sampled completions (masked models), or with ``alpha`` their soft value
  alpha·log mean exp(r/alpha) (an estimate of the soft value SMC's potentials are written in).
* `LearnedValue` (SVDD-MC): a network ``f(x_i, t)`` regressed on final rewards of rollouts of the pre-trained model
  (paper Algorithm 3); see `svdd.training.train_value_net`. Cheap at decoding time: no reward call per candidate.
* `FunctionValue`: any callable ``(x, i) -> values`` (exact values in tests, user heuristics).
Every estimator returns float64 values, NaN where the reward failed; at the final level a state is clean.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .models.base import Tensor


class ValueEstimator:
    #: whether the estimator needs the candidates' network outputs (then they are computed and reused next step)
    needs_prediction: bool = False
    #: whether its value of a clean state (level T) is the reward itself (then it is not computed again)
    reward_at_clean: bool = False
    name: str = "value"

    def reward_calls(self, rows: int) -> int:
        """Worst-case real reward calls of scoring ``rows`` candidates (0: the estimator calls no reward)."""
        return 0

    def network_calls(self, rows: int) -> int:
        """Network or value-net rows of scoring ``rows`` candidates below the clean level (posterior mean: their
        network outputs; a value net: its own rows)."""
        return rows

    def __call__(self, engine, x: Tensor, pred: Tensor | None, i: int) -> Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"type": self.name}


class PosteriorMean(ValueEstimator):
    """SVDD-PM: v̂(x_i) = r(x̂0(x_i)), x̂0 evaluated on the candidate at its own level."""

    needs_prediction = True
    reward_at_clean = True
    name = "posterior-mean"

    def __init__(self, num_completions: int = 1, alpha: float | None = None):
        if num_completions < 1:
            raise ValueError(f"num_completions must be >= 1, got {num_completions}")
        if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < float("inf")):
            raise ValueError(f"alpha must be a number > 0 (soft value) or None (mean), got {alpha!r}")
        self.k = int(num_completions)
        self.alpha = alpha  # None: the mean of the K completions' rewards; else alpha·log mean exp(r/alpha)

    def reward_calls(self, rows):
        return rows * self.k

    def __call__(self, engine, x, pred, i):
        model = engine.model
        if i >= model.num_steps:
            return engine.rewards(x)
        if self.k == 1:
            return engine.rewards(model.denoise(x, pred, i))
        x0 = model.sample_denoise(x, pred, i, engine.gen["value"], self.k)
        r = engine.rewards(x0).view(-1, self.k)  # NaN if any completion failed
        if self.alpha is None:
            return r.mean(dim=1)
        soft = self.alpha * (torch.logsumexp(r / self.alpha, dim=1) - math.log(self.k))  # the soft value's estimate
        return torch.where(torch.isnan(r).any(1), torch.full_like(soft, torch.nan), soft)

    def config(self):
        return {"type": self.name, "num_completions": self.k, **({"alpha": self.alpha} if self.alpha else {})}

    def __eq__(self, other):
        """Equal configs are the same estimator (a method config rebuilt by `Method.from_dict` equals the original)."""
        if not isinstance(other, PosteriorMean):
            return NotImplemented
        return type(other) is type(self) and other.config() == self.config()

    def __hash__(self):
        return hash((type(self), self.k, self.alpha))


#: the reward itself at the clean level (what `final_reward=True` scores the last step's candidates with)
CLEAN_REWARD = PosteriorMean()


class LearnedValue(ValueEstimator):
    """SVDD-MC: a value network ``net(x, t)`` with t the level's continuous time (1 = noise, 0 = clean)."""

    name = "learned"

    def __init__(self, net: Callable[[Tensor, Tensor], Tensor], name: str | None = None):
        self.net = net
        self.label = name or type(net).__name__

    def __call__(self, engine, x, pred, i):
        t = engine.model.time(i)

        def f(c):
            return _one_per_row(self.net(c, torch.full((c.shape[0],), t, device=c.device)), c.shape[0], self.label)

        return engine.value_net(f, x, owner=self.net, i=i)

    def config(self):
        return {"type": self.name, "net": self.label}


class FunctionValue(ValueEstimator):
    """Wrap any ``fn(x, i) -> values``; counted as value evaluations. NaN marks a failed value (as for rewards)."""

    name = "function"

    def __init__(self, fn: Callable[[Tensor, int], Tensor], name: str | None = None):
        self.fn = fn
        self.label = name or getattr(fn, "__name__", "fn")

    def __call__(self, engine, x, pred, i):
        return engine.value_net(lambda c: _one_per_row(self.fn(c, i), c.shape[0], self.label), x, owner=self.fn, i=i,
                               nan_ok=True)

    def config(self):
        return {"type": self.name, "fn": self.label}


def _one_per_row(out: Any, n: int, label: str) -> Tensor:
    """A value net's output as one value per state: shape (n,) or (n, 1), else an error naming the net."""
    if not isinstance(out, torch.Tensor) or out.dtype == torch.bool or out.is_complex():
        raise TypeError(f"value net {label} returned {type(out).__name__}"
                        f"{f' of dtype {out.dtype}' if isinstance(out, torch.Tensor) else ''}; expected a float tensor")
    if tuple(out.shape) not in ((n,), (n, 1)):
        raise ValueError(f"value net {label} returned shape {tuple(out.shape)} for {n} states; expected ({n},) or ({n}, 1)")
    return out.reshape(n) if out.is_floating_point() else out.reshape(n).double()


def value_from_config(cfg: dict[str, Any]) -> ValueEstimator:
    """The inverse of ``.config()`` where one exists: a posterior mean. A learned or function value holds a network /
    callable its config only names: a ValueError (pass the object itself)."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"a value config must be a dict with a 'type', got {cfg!r}")
    kind, rest = cfg["type"], {k: v for k, v in cfg.items() if k != "type"}
    if kind == PosteriorMean.name:
        bad = sorted(set(rest) - {"num_completions", "alpha"})
        if bad:
            raise ValueError(f"value type 'posterior-mean' has no option(s) {bad}; its options are "
                             "['alpha', 'num_completions']")
        return PosteriorMean(**rest)
    if kind in (LearnedValue.name, FunctionValue.name):
        label = cfg.get("net", cfg.get("fn"))
        raise ValueError(f"a {kind} value ({label!r}) cannot be rebuilt from its config, which only names it")
    raise ValueError(f"unknown value type {kind!r}; expected one of ['function', 'learned', 'posterior-mean']")


def as_value(obj: Any) -> ValueEstimator:
    if obj is None or obj == "pm" or obj == "posterior-mean":
        return PosteriorMean()
    if isinstance(obj, ValueEstimator):
        return obj
    if isinstance(obj, torch.nn.Module):
        return LearnedValue(obj)
    if obj == "task":
        raise ValueError("value='task' (e.g. method 'svdd-mc') names a task's value net: run it on a task (svdd sample "
                         "--task, svdd.sample_run) or pass the value net itself")
    raise ValueError(f"value must be a ValueEstimator, a torch.nn.Module value net, or 'pm'; got {type(obj).__name__}")
