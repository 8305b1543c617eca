"""Method configs and their registry. A method is a small dataclass with ``run(engine, num_samples)``."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ..result import Diagnostics
from ..values import ValueEstimator

Tensor = torch.Tensor
METHODS: dict[str, type["Method"]] = {}


def register(cls):
    METHODS[cls.name] = cls
    return cls


@dataclasses.dataclass
class Method:
    name: ClassVar[str] = "method"

    def run(self, engine, num_samples: int) -> tuple[Tensor, Tensor, Diagnostics, Tensor | None]:
        """Return (samples, rewards, diagnostics, x̂0 history or None)."""
        raise NotImplementedError

    def check(self, model, reward) -> None:
        """Raise a clear error when this method cannot run with this model/reward."""

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = v.config() if isinstance(v, ValueEstimator) else v
        return d


def get_method(name: str, **kwargs) -> Method:
    """Build a method config by name, e.g. ``get_method('svdd', M=10, alpha=0.0)``."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(kwargs) - names)
    if bad:
        raise TypeError(f"method {name!r} has no option(s) {bad}; its options are {sorted(names)}")
    return cls(**kwargs)


def check_positive_int(name: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")


def check_alpha(alpha: float, positive: bool = False) -> None:
    if not isinstance(alpha, (int, float)) or alpha != alpha or alpha < 0 or (positive and alpha == 0):
        raise ValueError(f"alpha must be {'> 0' if positive else '>= 0'}, got {alpha!r}")


def require_stochastic(model, method: str) -> None:
    if not getattr(model, "stochastic", True):
        raise ValueError(f"method {method!r} needs distinct candidates, but {type(model).__name__} has a deterministic "
                         f"transition (e.g. DDIM with eta = 0): use eta > 0 (the paper uses eta = 1)")


def deterministic(model, i: int) -> bool:
    f = getattr(model, "deterministic_step", None)
    return bool(f(i)) if f is not None else False


class History:
    """Optional x̂0 history of the kept states."""

    def __init__(self, engine):
        self.engine, self.enabled, self.items = engine, engine.return_x0, []

    def add(self, x: Tensor, pred: Tensor | None, level: int) -> None:
        if not self.enabled:
            return
        model = self.engine.model
        self.items.append(x.clone() if pred is None or level >= model.num_steps else model.denoise(x, pred, level))

    def tensor(self) -> Tensor | None:
        return torch.stack(self.items) if self.enabled and self.items else None


def selects(method, i: int) -> bool:
    """Selection schedule: select at every ``select_every``-th step, only within steps [start, stop) of ``select_window``."""
    window = getattr(method, "select_window", None)
    if window is not None and not window[0] <= i < window[1]:
        return False
    return i % getattr(method, "select_every", 1) == 0


def check_schedule(method) -> None:
    check_positive_int("select_every", method.select_every)
    w = method.select_window
    if w is not None and (len(w) != 2 or not 0 <= w[0] < w[1]):
        raise ValueError(f"select_window must be (start, stop) with 0 <= start < stop, got {w!r}")
