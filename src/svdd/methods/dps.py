"""DPS-style gradient guidance (Chung et al. 2023) -- the baseline that needs a differentiable reward or value net.

Plain ancestral sampling on a `svdd.guidance.GuidedModel`: the gradient of the reward at x̂0 (``target='reward'``)
or of a value net at the state (``target='value'``, classifier guidance) tilts every step. ``scale`` is relative to
the step's noise by default (``scale_mode='relative'``, see `svdd.guidance`), so one setting transfers between models
and rewards; ``scale_mode='absolute'`` adds ``scale · gradient`` as is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..guidance import SCALE_MODES, GuidedModel
from ..values import LearnedValue, ValueEstimator
from .base import register
from .pretrained import Pretrained


@register
@dataclasses.dataclass
class DPS(Pretrained):
    name = "dps"
    test_options = {"scale": 0.5}  # needs a differentiable reward
    honours_budget = False  # every step calls the reward (or value net) for its gradient
    scale: float = 1.0
    target: str = "reward"  # 'reward' (gradient of r at x̂0) or 'value' (gradient of a value net at x_i)
    value: Any = None  # value net for target='value'
    scale_mode: str = "relative"

    def __post_init__(self):
        if self.target not in ("reward", "value"):
            raise ValueError(f"target must be 'reward' or 'value', got {self.target!r}")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or not self.scale >= 0:
            raise ValueError(f"scale must be a number >= 0, got {self.scale!r}")
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        if self.target == "reward" and self.value is not None:
            raise ValueError("dps with target='reward' takes no value net; use target='value' for classifier guidance")
        if self.target == "value":
            if self.value is None:
                raise ValueError("dps with target='value' needs a value net (value=...)")
            if not (isinstance(self.value, LearnedValue) or isinstance(self.value, torch.nn.Module)
                    or (callable(self.value) and not isinstance(self.value, ValueEstimator))):
                raise ValueError(f"dps with target='value' needs a differentiable value net f(x, t) (an nn.Module, a "
                                 f"callable or a LearnedValue), got {type(self.value).__name__}")
            self.value = self.value if isinstance(self.value, LearnedValue) else LearnedValue(self.value)

    def check(self, model, reward):
        if self.target == "reward" and not getattr(reward, "differentiable", False):
            raise ValueError(f"dps needs a differentiable reward, but {reward.name!r} does not declare "
                             "differentiable=True; use target='value' with a value net, or a derivative-free method (svdd)")

    def wrap_model(self, model, reward):
        """The guided model this method samples from."""
        if self.target == "reward":
            return GuidedModel(model, reward, on="x0", scale=self.scale, scale_mode=self.scale_mode)
        net = self.value.net
        return GuidedModel(model, lambda x, t: net(x, t).reshape(-1), on="xt", scale=self.scale,
                           scale_mode=self.scale_mode)
