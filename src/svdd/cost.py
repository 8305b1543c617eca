"""The cost ledger of a run: network, value-net, gradient and reward evaluations, reward calls, cache hits, seconds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Cost:
    """Cost counters of one run (totals over all samples; see ``per_sample``)."""

    network_evals: int = 0
    reward_evals: int = 0  # distinct rows the engine asked the reward for
    value_evals: int = 0
    gradient_evals: int = 0
    wall_seconds: float = 0.0
    num_samples: int = 1
    reward_calls: int = 0  # reward calls this run needs: reward_evals minus its repeats answered by a reward cache
    cache_hits: int = 0  # rows a reward cache answered because this run had asked for them before
    stored_hits: int = 0  # of reward_calls, those a cache answered from earlier runs / other processes (no work done)
    reward_seconds: float = 0.0  # wall time inside the reward

    def per_sample(self) -> dict[str, float]:
        n = max(self.num_samples, 1)
        return {"network_evals": self.network_evals / n, "reward_evals": self.reward_evals / n,
                "value_evals": self.value_evals / n, "gradient_evals": self.gradient_evals / n,
                "wall_seconds": self.wall_seconds / n, "reward_calls": self.reward_calls / n,
                "cache_hits": self.cache_hits / n, "stored_hits": self.stored_hits / n,
                "reward_seconds": self.reward_seconds / n}

    @classmethod
    def total(cls, parts: list[dict], num_samples: int) -> "Cost":
        """The sum of several runs' counters (``dataclasses.asdict`` of each), for ``num_samples`` samples in all."""
        keys = [f.name for f in dataclasses.fields(cls) if f.name != "num_samples"]
        return cls(**{k: sum(p.get(k, 0) for p in parts) for k in keys}, num_samples=num_samples)
