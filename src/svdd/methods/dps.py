"""DPS-style gradient guidance (Chung et al. 2023) -- the baseline that needs a differentiable reward or value net.

Continuous models: x_{i+1} = pre-trained step + scale · ∇_{x_i} r(x̂0(x_i)) (gradient through Tweedie's x̂0 and the
network), or ∇_{x_i} f(x_i, t) with a value net (classifier guidance). Masked models: the unmasking distribution of
every masked position is tilted by exp(scale · g_v), g the gradient of the reward at the soft x̂0 (denoiser
probabilities), or of the value net at the one-hot input (g_v − g_mask).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..result import Diagnostics
from ..values import LearnedValue
from .base import History, Method, register


@register
@dataclasses.dataclass
class DPS(Method):
    name = "dps"
    scale: float = 1.0
    target: str = "reward"  # 'reward' (gradient of r at x̂0) or 'value' (gradient of a value net at x_i)
    value: Any = None  # value net for target='value'

    def __post_init__(self):
        if self.target not in ("reward", "value"):
            raise ValueError(f"target must be 'reward' or 'value', got {self.target!r}")
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale!r}")
        if self.target == "value":
            if self.value is None:
                raise ValueError("dps with target='value' needs a value net (value=...)")
            self.value = self.value if isinstance(self.value, LearnedValue) else LearnedValue(self.value)

    def check(self, model, reward):
        if self.target == "reward" and not getattr(reward, "differentiable", False):
            raise ValueError(f"dps needs a differentiable reward, but {reward.name!r} does not declare "
                             "differentiable=True; use target='value' with a value net, or a derivative-free method (svdd)")

    def run(self, engine, num_samples):
        model, gen = engine.model, engine.gen["model"]
        hist, diag = History(engine), Diagnostics()
        x = model.prior(num_samples, gen)
        for i in engine.trange(model.num_steps, self.name):
            if self.target == "reward":
                objective, on = engine.reward, "x0"
            else:
                t = model.time(i)
                objective, on = (lambda z: self.value.net(z, torch.full((z.shape[0],), t, device=z.device)).reshape(-1)), "xt"
            pred, grad = self._chunked_gradient(engine, x, i, objective, on)
            hist.add(x, pred, i)
            x = model.guided_step(x, pred, i, gen, grad, self.scale)
            diag.record()
        hist.add(x, None, model.num_steps)
        return x.detach(), engine.rewards(x.detach()), diag, hist.tensor()

    def _chunked_gradient(self, engine, x, i, objective, on):
        preds, grads = [], []
        for a in range(0, x.shape[0], engine.max_batch):
            p, g = engine.model.guidance_gradient(x[a:a + engine.max_batch], i, objective, on)
            preds.append(p)
            grads.append(g)
        engine.cost.network_evals += x.shape[0]
        engine.cost.gradient_evals += x.shape[0]
        return torch.cat(preds), torch.cat(grads)
