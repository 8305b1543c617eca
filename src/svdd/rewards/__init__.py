"""Rewards: any callable from a batch of clean samples to a 1-D float tensor, one value per sample.

A reward may be a black box (a docking program, a JPEG encoder): `svdd` never needs its gradient except for the
gradient-guidance baseline (`dps`), which requires a reward that declares ``differentiable=True``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

Tensor = torch.Tensor


class Reward:
    """A named reward. Wrap a plain function, or subclass and override ``__call__``."""

    #: a cheap network reward: the engine may choose its chunk size by timing it on copies of the first call's rows
    #: (the copies are extra reward calls, so off by default), and on a GPU it scores repeated rows of a discrete
    #: model rather than sorting them out (the sort and its host-device sync cost more there than the rows)
    tune_batch: bool = False

    def __init__(self, fn: Callable[[Tensor], Any] | None = None, *, name: str | None = None, differentiable: bool = False):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(self).__name__)
        self.differentiable = bool(differentiable)

    def __call__(self, x: Tensor) -> Tensor:
        if self.fn is None:
            raise NotImplementedError(f"{type(self).__name__} must implement __call__ or wrap a function")
        return self.fn(x)

    def __add__(self, other: "Reward") -> "WeightedSum":
        return WeightedSum([(1.0, self), (1.0, as_reward(other))])

    def __mul__(self, w: float) -> "WeightedSum":
        return WeightedSum([(float(w), self)])

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Reward({self.name!r}, differentiable={self.differentiable})"


class WeightedSum(Reward):
    """Σ_k w_k r_k(x). Differentiable when every term is."""

    def __init__(self, terms: Sequence[tuple[float, Any]], name: str | None = None):
        if not terms:
            raise ValueError("WeightedSum needs at least one (weight, reward) term")
        self.terms = [(float(w), as_reward(r)) for w, r in terms]
        super().__init__(None, name=name or " + ".join(f"{w:g}*{r.name}" for w, r in self.terms),
                         differentiable=all(r.differentiable for _, r in self.terms))

    def __call__(self, x: Tensor) -> Tensor:
        return sum(w * check_output(r(x), x.shape[0], r.name) for w, r in self.terms)

    def __add__(self, other):
        other = as_reward(other)
        extra = other.terms if isinstance(other, WeightedSum) else [(1.0, other)]
        return WeightedSum(self.terms + extra)

    def __mul__(self, w: float):
        return WeightedSum([(w * a, r) for a, r in self.terms])

    __rmul__ = __mul__


def reward(fn: Callable | None = None, *, name: str | None = None, differentiable: bool = False):
    """Decorator: ``@svdd.reward`` or ``@svdd.reward(differentiable=True)`` turns a function into a Reward."""
    if fn is None:
        return lambda f: Reward(f, name=name, differentiable=differentiable)
    return Reward(fn, name=name, differentiable=differentiable)


def as_reward(obj: Any) -> Reward:
    if isinstance(obj, Reward):
        return obj
    if callable(obj):
        return Reward(obj, differentiable=bool(getattr(obj, "differentiable", False)))
    raise TypeError(f"a reward must be callable (batch of samples -> 1-D float tensor), got {type(obj).__name__}")


def check_output(out: Any, n: int, name: str) -> Tensor:
    """Validate a reward's output: a 1-D floating tensor (or array) of length n. Raises a clear error otherwise."""
    if isinstance(out, np.ndarray):
        if not np.issubdtype(out.dtype, np.floating):
            raise TypeError(f"reward {name!r} returned a numpy array of dtype {out.dtype}; expected a floating dtype")
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"reward {name!r} returned {type(out).__name__}; expected a 1-D float tensor of length {n}")
    if not out.is_floating_point():
        raise TypeError(f"reward {name!r} returned dtype {out.dtype}; expected a floating dtype (e.g. torch.float32)")
    if tuple(out.shape) != (n,):
        raise ValueError(f"reward {name!r} returned shape {tuple(out.shape)} for a batch of {n} samples; expected ({n},)")
    return out


from .image import ClassifierLogProb, JPEGCompressibility  # noqa: E402  (image rewards; Pillow is imported lazily)
from .cache import CachedReward, RewardStats  # noqa: E402
from .parallel import ParallelReward  # noqa: E402

__all__ = ["Reward", "WeightedSum", "reward", "as_reward", "check_output", "JPEGCompressibility", "ClassifierLogProb",
           "CachedReward", "RewardStats", "ParallelReward"]

from .chem import QED, SA, MoleculeReward, VinaDocking  # noqa: E402  (molecule rewards; RDKit / Vina imported lazily)

__all__ += ["MoleculeReward", "QED", "SA", "VinaDocking"]
