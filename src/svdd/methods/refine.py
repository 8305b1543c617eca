"""Iterative refinement: take finished samples part of the way back to noise and denoise them again with SVDD,
keeping whichever of the old and the new sample has the higher reward; repeat.

Round r: x_L ~ q(x_L | x0) (Gaussian: forward noise; masked: each token re-masked with the level's mask probability),
with L = T − round(renoise · T); then SVDD steps L → T; each sample keeps the better of its old and new version.
The first samples are an SVDD run from noise, or -- a warm start -- the user's own (``init_samples``: a known binder,
a library of enhancers): then no step from noise is taken. ``renoise = 0`` or ``rounds = 0`` changes nothing.

Budget: a round starts only when a plain round (T − L network rows and one reward call per sample) still fits.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ..models.base import DiffusionModel
from .base import Final, Method, State, advance, check_alpha, check_positive_int, register
from .svdd import SVDD

Tensor = torch.Tensor


@register
@dataclasses.dataclass
class Refine(Method):
    name = "refine"
    test_options = {"M": 3, "rounds": 1, "renoise": 0.25, "select_every": 2}  # needs the model's renoise
    keeps_history: ClassVar[bool] = False
    rounds: int = 3
    renoise: float = 0.25  # fraction of the steps each round goes back
    M: int = 10
    alpha: float = 0.0
    value: Any = None
    select_every: int = 1  # the SVDD passes select at every k-th step
    init_samples: Any = None  # clean samples to refine (one row per sample); None: an SVDD run from noise first

    def __post_init__(self):
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 0:
            raise ValueError(f"rounds must be an int >= 0, got {self.rounds!r}")
        if isinstance(self.renoise, bool) or not isinstance(self.renoise, (int, float)) or not 0 <= self.renoise <= 1:
            raise ValueError(f"renoise must be a fraction of the steps in [0, 1], got {self.renoise!r}")
        check_positive_int("M", self.M)
        check_alpha(self.alpha)
        if self.init_samples is not None and not isinstance(self.init_samples, torch.Tensor):
            raise TypeError(f"init_samples must be a tensor of clean samples (one row per sample), got "
                            f"{type(self.init_samples).__name__}")
        self.kernel = SVDD(M=self.M, alpha=self.alpha, value=self.value, select_every=self.select_every)
        self.value = self.kernel.value

    def check(self, model, reward):
        self.kernel.check(model, reward)
        if self.rounds and self.renoise and getattr(type(model), "renoise", None) in (None, DiffusionModel.renoise):
            raise ValueError(f"method 'refine' needs the model's renoise(x0, i, generator); {type(model).__name__} "
                             "does not implement it")

    def check_run(self, num_samples):
        if self.init_samples is not None and self.init_samples.shape[0] != num_samples:
            raise ValueError(f"init_samples holds {self.init_samples.shape[0]} samples but num_samples = {num_samples}; "
                             "refine returns one refined sample per given sample")

    def to_dict(self):
        d = super().to_dict()
        if self.init_samples is not None:
            d["init_samples"] = {"rows": int(self.init_samples.shape[0]), "shape": list(self.init_samples.shape[1:])}
        return d

    @classmethod
    def _option_from_json(cls, field, v):
        if field.name == "init_samples" and isinstance(v, dict):
            raise ValueError(f"method 'refine' option 'init_samples': the config holds only a summary of the samples "
                             f"({v}), not the samples; pass the tensor itself: Method.from_dict(config, "
                             "init_samples=x)")
        return super()._option_from_json(field, v)

    def init(self, engine, n):
        if self.init_samples is None:
            return self.kernel.init(engine, n)
        x = self.init_samples.to(getattr(engine.model, "device", "cpu"))
        return State(x=x, pred=None, level=engine.model.num_steps)

    def step(self, engine, state, i):
        return self.kernel.step(engine, state, i)

    def finish(self, engine, state):
        model, t = engine.model, engine.model.num_steps
        x0 = state.x
        r0 = state.rewards if state.rewards is not None else engine.rewards(x0)
        level = t - round(self.renoise * t)
        n = x0.shape[0]
        for _ in engine.trange(self.rounds if level < t else 0, "refine rounds"):
            if not engine.affordable(0, network_calls=n * (t - level), reserve_reward=n):  # no plain round fits
                break
            s = advance(engine, model.renoise(x0, level, engine.gen["model"]), level - 1)
            for i in range(level, t):
                s, _ = self.kernel.step(engine, s, i)
            r1 = s.rewards if s.rewards is not None else engine.rewards(s.x)
            better = torch.nan_to_num(r1, nan=-torch.inf) > torch.nan_to_num(r0, nan=-torch.inf)
            x0 = torch.where(better.view(-1, *[1] * (x0.dim() - 1)), s.x, x0)
            r0 = torch.where(better, r1, r0)
        return Final(x0, r0)
