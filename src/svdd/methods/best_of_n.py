"""Best-of-N, compute-matched as in the paper: draw M·N samples from the pre-trained model, keep the global top N."""

from __future__ import annotations

import dataclasses

import torch

from .base import Final, check_positive_int, register
from .pretrained import Pretrained


@register
@dataclasses.dataclass
class BestOfN(Pretrained):
    name = "best-of-n"
    M: int = 10

    def __post_init__(self):
        check_positive_int("M", self.M)

    def init(self, engine, n):
        return super().init(engine, n * self.draws_per_sample(engine, n))

    def draws_per_sample(self, engine, n: int) -> int:
        """M, or fewer when the run's reward budget cannot score M·N draws (at least one draw per sample)."""
        b = engine.reward_budget
        return self.M if b is None else max(1, min(self.M, int(b // n)))

    def finish(self, engine, state):
        r = engine.rewards(state.x)
        keep = torch.nan_to_num(r, nan=-torch.inf, posinf=torch.inf).topk(engine.num_samples).indices  # descending reward
        return Final(state.x[keep], r[keep], keep)
