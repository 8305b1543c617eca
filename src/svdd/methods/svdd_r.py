"""SVDD-R: SVDD followed, at every selection step, by a global step that replaces a small fraction of the
lowest-value samples by copies of the highest-value ones (paper, late version). A particle method without
potentials: the move is an SVDD step, the resampling rule is "the k worst become copies of the k best"."""

from __future__ import annotations

import dataclasses
import math

import torch

from .base import check_alpha, check_positive_int, register
from .particles import ParticleMethod
from .svdd import SVDD


@register
@dataclasses.dataclass
class SVDDR(ParticleMethod):
    name = "svdd-r"
    test_options = {"M": 3, "replace_fraction": 0.25}
    weighted = False
    M: int = 10
    alpha: float = 0.0
    replace_fraction: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("M", self.M)
        check_alpha(self.alpha)
        if not 0 <= self.replace_fraction < 1:
            raise ValueError(f"replace_fraction must be in [0, 1), got {self.replace_fraction!r}")

    def check(self, model, reward):
        if self.M > 1:
            super().check(model, reward)

    def check_run(self, num_samples):
        k = self.replace_fraction * num_samples
        if 0 < self.replace_fraction and k < 1:
            import warnings
            warnings.warn(f"svdd-r replaces int(replace_fraction * num_samples) = int({self.replace_fraction:g} * "
                          f"{num_samples}) = 0 samples per step: this run is plain svdd. Use num_samples >= "
                          f"{math.ceil(1 / self.replace_fraction)} or replace_fraction >= {1 / num_samples:.3g}",
                          RuntimeWarning, stacklevel=3)

    def move(self, engine, state, i, score):
        kernel = SVDD(M=self.M if score is not None else 1, alpha=self.alpha, value=score or self.value)
        return kernel.step(engine, state, i)

    def resample_rule(self, engine, state, w, last):
        n = state.x.shape[0]
        k = int(self.replace_fraction * n)
        if k == 0:
            return None
        order = torch.nan_to_num(state.values, nan=-torch.inf, posinf=torch.inf).argsort(descending=True, stable=True)
        idx = torch.arange(n, device=state.x.device)
        idx[order[n - k:]] = order[:k]  # the k worst become copies of the k best
        return idx
