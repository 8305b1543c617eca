"""A compute budget per sample that every method honours: reward calls, network calls, wall seconds.

A run with ``budget=Budget(reward_calls=40)`` spends at most 40 reward calls per sample in ALL (the scores of its
returned samples included), ``network_calls`` counts denoiser and value-net rows, ``seconds`` wall time. Methods
spend it as they go: before every optional expense (a selection among M candidates, a weighting step, a beam's
children, a tree expansion) they ask the engine whether it fits together with what the rest of the run must still
spend in the cheapest way (the pre-trained transition to the clean level, one reward per returned sample), and fall
back to the pre-trained transition when it does not. So network and reward budgets are never exceeded; a seconds
budget rests on the time per row measured so far in the run, and may be overrun by about one step.

This differs from the older ``reward_budget`` of `svdd.sample`, which counts only the calls guidance spends (the
final scores are extra); it is kept as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FIELDS = ("reward_calls", "network_calls", "seconds")


@dataclass(frozen=True)
class Budget:
    """Most compute per sample; None: no limit on that kind."""

    reward_calls: float | None = None
    network_calls: float | None = None
    seconds: float | None = None

    def __post_init__(self):
        for f in FIELDS:
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                  or math.isinf(v)):
                raise ValueError(f"budget {f} must be a finite number > 0 per sample or None, got {v!r}")
        if all(getattr(self, f) is None for f in FIELDS):
            raise ValueError(f"a budget needs at least one of {', '.join(FIELDS)}")

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in FIELDS if getattr(self, f) is not None}

    def label(self) -> str:
        return ", ".join(f"{v:g} {f.replace('_', ' ')}" for f, v in self.to_dict().items()) + " per sample"

    def check_minimum(self, num_steps: int) -> None:
        """Refuse a budget below what one plain sample costs (num_steps network rows, one reward call)."""
        if self.network_calls is not None and self.network_calls < num_steps:
            raise ValueError(f"budget network_calls={self.network_calls:g} per sample is below the {num_steps} network "
                             f"calls of one sample from the pre-trained model (one per step); use >= {num_steps}")
        if self.reward_calls is not None and self.reward_calls < 1:
            raise ValueError(f"budget reward_calls={self.reward_calls:g} per sample is below the one reward call that "
                             "scores each returned sample; use >= 1")


def as_budget(obj) -> Budget | None:
    """A `Budget` from a Budget, a dict of its fields, a string ``"reward_calls=40,seconds=2"``, or None."""
    if obj is None or isinstance(obj, Budget):
        return obj
    if isinstance(obj, str):
        items = {}
        for part in filter(None, (p.strip() for p in obj.split(","))):
            key, sep, val = part.partition("=")
            if not sep:
                raise ValueError(f"budget {obj!r}: expected KIND=NUMBER items separated by commas, e.g. "
                                 f"'reward_calls=40' (kinds: {', '.join(FIELDS)})")
            try:
                items[key.strip()] = float(val)
            except ValueError:
                raise ValueError(f"budget {obj!r}: {val.strip()!r} is not a number") from None
        obj = items
    if isinstance(obj, dict):
        bad = sorted(set(obj) - set(FIELDS))
        if bad:
            raise ValueError(f"budget has unknown kind(s) {bad}; kinds are {list(FIELDS)}")
        return Budget(**obj)
    raise TypeError(f"budget must be a svdd.Budget, a dict or a string such as 'reward_calls=40', got "
                    f"{type(obj).__name__}")
