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
    test_options = {"M": 3}
    M: int = 10

    def __post_init__(self):
        check_positive_int("M", self.M)

    def init(self, engine, n):
        return super().init(engine, n * self.draws_per_sample(engine, n))

    def draws_per_sample(self, engine, n: int) -> int:
        """M, or fewer when the run's budgets cannot pay for M·N draws (at least one draw per sample): each draw costs
        T network rows and one reward call. A seconds budget is not known in draws before the run; it is not used."""
        m, b = self.M, engine.reward_budget
        if b is not None:
            m = min(m, int(b // n))
        if engine.budget is not None:
            if engine.budget.reward_calls is not None:
                m = min(m, int(engine.budget.reward_calls))
            if engine.budget.network_calls is not None:
                m = min(m, int(engine.budget.network_calls // engine.model.num_steps))
        return max(1, m)

    def finish(self, engine, state):
        r = engine.rewards(state.x)
        keep = torch.nan_to_num(r, nan=-torch.inf, posinf=torch.inf).topk(engine.num_samples).indices  # descending reward
        return Final(state.x[keep], r[keep], keep)
