"""Gradient guidance as a model wrapper (DPS, Chung et al. 2023; classifier guidance): a guided model is a model.

`GuidedModel(model, objective, on=..., scale=...)` has the base model's prior, denoiser and schedule; its transition
is the base transition tilted by the gradient of an objective:

* ``on='x0'`` (DPS): the gradient of a differentiable reward at the model's x̂0 -- through Tweedie's formula and the
  network for continuous models; at the soft x̂0 (the denoiser's probabilities) for masked models;
* ``on='xt'`` (classifier guidance): the gradient of a value net ``f(x_i, t)`` at the state itself (masked models:
  at the one-hot state, the first-order gain g_v − g_mask of unmasking a position to v).

Continuous models move by ``shift``, masked models tilt the unmasking probabilities by ``exp(shift_v)``, with

* ``scale_mode='relative'`` (default): the shift has ``scale`` times the size of the step's own noise --
  ``scale · σ_i · sqrt(d) · g / ‖g‖`` per sample (d: sample size; no shift where σ_i = 0); masked: the gradient,
  centred per position, divided by its root mean square over the masked positions, times ``scale`` (nats). One
  setting then means the same thing on every model and reward;
* ``scale_mode='absolute'``: ``scale · g`` as is (the scale must then be tuned per model and reward).

Because guidance lives in the model, every method runs on a guided model unchanged (``svdd.sample(GuidedModel(...),
reward, 'svdd', M=10)``). Its network output holds the base output and the gradient side by side; the objective's
calls are counted by the engine (reward or value evaluations, and gradient evaluations).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .models.base import DiffusionModel, Tensor

SCALE_MODES = ("relative", "absolute")


class GuidedModel(DiffusionModel):
    needs_grad = True  # predict differentiates the objective: the engine calls it under no_grad, not inference_mode

    def __init__(self, model: Any, objective: Callable[..., Tensor], *, on: str = "x0", scale: float = 1.0,
                 scale_mode: str = "relative"):
        if on not in ("x0", "xt"):
            raise ValueError(f"on must be 'x0' (gradient of a reward at x̂0) or 'xt' (of a value net), got {on!r}")
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale >= 0:
            raise ValueError(f"scale must be a number >= 0, got {scale!r}")
        if scale_mode == "relative" and not getattr(model, "discrete", False) and not hasattr(model, "noise_std"):
            raise ValueError(f"scale_mode='relative' needs the step's noise level, but {type(model).__name__} has no "
                             "noise_std(i); use scale_mode='absolute'")
        self.base, self.objective, self.on, self.scale, self.scale_mode = model, objective, on, float(scale), scale_mode
        self.num_steps = model.num_steps
        self.discrete = bool(getattr(model, "discrete", False))
        self.stochastic = bool(getattr(model, "stochastic", True))
        self._cost = None
        self._shapes: tuple[torch.Size, torch.Size, torch.dtype] | None = None

    def __getattr__(self, name):  # everything else (device, seq_len, sample_denoise, ...) is the base model's
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def bind_cost(self, cost) -> None:
        """The engine's counters: the objective's calls are added to them."""
        self._cost = cost

    def config(self) -> dict[str, Any]:
        base = self.base.config() if hasattr(self.base, "config") else {"class": type(self.base).__name__}
        return {"class": "GuidedModel", "on": self.on, "scale": self.scale, "scale_mode": self.scale_mode,
                "objective": getattr(self.objective, "name", type(self.objective).__name__), "base": base}

    # the protocol --------------------------------------------------------------------------------------------------
    def prior(self, n, generator):
        return self.base.prior(n, generator)

    def time(self, i):
        return self.base.time(i)

    def deterministic_step(self, i):
        f = getattr(self.base, "deterministic_step", None)
        return bool(f(i)) if f is not None else False

    def predict(self, x: Tensor, i: int) -> Tensor:
        """The base network output and the objective's gradient, flattened side by side in one row per state."""
        pred, grad = self._masked_gradient(x, i) if self.discrete else self._continuous_gradient(x, i)
        if self._cost is not None:
            field = "reward_evals" if self.on == "x0" else "value_evals"
            setattr(self._cost, field, getattr(self._cost, field) + x.shape[0])
            if self.on == "x0":  # the reward's gradient: real calls, never cached
                self._cost.reward_calls += x.shape[0]
            self._cost.gradient_evals += x.shape[0]
        grad = torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)  # a non-finite gradient: no guidance
        self._shapes = (pred.shape[1:], grad.shape[1:], pred.dtype)
        wide = torch.promote_types(pred.dtype, torch.float32)  # fp16 outputs: the gradient keeps float32
        return torch.cat([pred.to(wide).flatten(1), grad.to(wide).flatten(1)], 1)

    def split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        ps, gs, dtype = self._shapes
        k = math.prod(ps)
        return out[:, :k].reshape(-1, *ps).to(dtype), out[:, k:].reshape(-1, *gs)

    def denoise(self, x, out, i):
        return self.base.denoise(x, self.split(out)[0], i)

    def sample_denoise(self, x, out, i, generator, k):
        return self.base.sample_denoise(x, self.split(out)[0], i, generator, k)

    def step(self, x: Tensor, out: Tensor, i: int, generator: torch.Generator, num_children: int = 1) -> Tensor:
        pred, grad = self.split(out)
        if self.discrete:
            return self.base.step(x, pred, i, generator, num_children, tilt=self._masked_tilt(x, grad))
        shift = self._continuous_shift(grad, i)
        children = self.base.step(x, pred, i, generator, num_children)
        return children + (shift.repeat_interleave(num_children, 0) if num_children > 1 else shift)

    def log_likelihood(self, x0):
        return self.base.log_likelihood(x0)

    # gradients ------------------------------------------------------------------------------------------------------
    def _t(self, x: Tensor, i: int) -> Tensor:
        return torch.full((x.shape[0],), self.base.time(i), device=x.device)

    def _continuous_gradient(self, x, i):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            if self.on == "x0":
                pred = self.base.predict(xg, i)
                target = self.objective(self.base.denoise(xg, pred, i))
            else:
                pred, target = None, self.objective(xg, self._t(x, i))
            (grad,) = torch.autograd.grad(target.reshape(-1).sum(), xg)
        if pred is None:
            with torch.no_grad():
                pred = self.base.predict(x, i)
        return pred.detach(), grad

    def _masked_gradient(self, x, i):
        with torch.no_grad():
            pred = self.base.predict(x, i)
        v = self.base.vocab_size
        with torch.enable_grad():
            if self.on == "x0":  # at the soft x̂0: denoiser probabilities (carried-over tokens are one-hot)
                soft = pred[..., :v].exp().detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self.objective(soft).reshape(-1).sum(), soft)
            else:  # first-order change of the value when a masked token becomes v: g_v − g_mask
                onehot = F.one_hot(x, v + 1).float().requires_grad_(True)
                (g,) = torch.autograd.grad(self.objective(onehot, self._t(x, i)).reshape(-1).sum(), onehot)
                g = g[..., :v] - g[..., v:]
        return pred, g

    def _continuous_shift(self, grad: Tensor, i: int) -> Tensor:
        if self.scale_mode == "absolute":
            return self.scale * grad
        sigma = float(self.base.noise_std(i))
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (grad.ndim - 1)))
        return self.scale * sigma * math.sqrt(grad[0].numel()) * grad / norm

    def _masked_tilt(self, x: Tensor, grad: Tensor) -> Tensor:
        if self.scale_mode == "absolute":
            return self.scale * grad
        masked = (x == self.base.mask_index).unsqueeze(-1)
        g = (grad - grad.mean(-1, keepdim=True)) * masked
        count = (masked.flatten(1).sum(1) * grad.shape[-1]).clamp_min(1)
        rms = (g.flatten(1).pow(2).sum(1) / count).sqrt().clamp_min(1e-30).view(-1, 1, 1)
        return self.scale * g / rms
