"""SVDD-R: SVDD followed, at every selection step, by a global step that replaces a small fraction of the
lowest-value samples by copies of the highest-value ones (paper, late version)."""

from __future__ import annotations

import dataclasses

import torch

from .base import register
from .svdd import SVDD


@register
@dataclasses.dataclass
class SVDDR(SVDD):
    name = "svdd-r"
    replace_fraction: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.replace_fraction < 1:
            raise ValueError(f"replace_fraction must be in [0, 1), got {self.replace_fraction!r}")

    def after_step(self, engine, x, pred, values, i, diag):
        n = x.shape[0]
        k = int(self.replace_fraction * n)
        if values is None or k == 0:
            return x, pred
        order = torch.nan_to_num(values, nan=-torch.inf, neginf=-torch.inf, posinf=torch.inf).argsort(descending=True, stable=True)
        idx = torch.arange(n, device=x.device)
        idx[order[n - k:]] = order[:k]  # the k worst become copies of the k best
        diag.resampled[-1] = True
        return x[idx], (pred[idx] if pred is not None else None)
