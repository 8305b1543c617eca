"""Best-of-N, compute-matched as in the paper: draw M·N samples from the pre-trained model, keep the global top N."""

from __future__ import annotations

import dataclasses

import torch

from .base import Method, check_positive_int, register
from .pretrained import Pretrained


@register
@dataclasses.dataclass
class BestOfN(Method):
    name = "best-of-n"
    M: int = 10

    def __post_init__(self):
        check_positive_int("M", self.M)

    def run(self, engine, num_samples):
        x, r, diag, hist = Pretrained().run(engine, num_samples * self.M)
        keep = torch.nan_to_num(r, nan=-torch.inf, neginf=-torch.inf, posinf=torch.inf).topk(num_samples).indices  # descending reward
        return x[keep], r[keep], diag, (hist[:, keep] if hist is not None else None)
