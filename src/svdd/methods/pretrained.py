"""Plain ancestral sampling from the pre-trained model (the reference every method is compared with)."""

from __future__ import annotations

import dataclasses

from .base import Method, State, StepInfo, advance, register, start


@register
@dataclasses.dataclass
class Pretrained(Method):
    name = "pretrained"
    test_options = {}

    def init(self, engine, n):
        return start(engine, n)

    def step(self, engine, state: State, i: int):
        x = engine.model.step(state.x, state.pred, i, engine.gen["model"])
        return advance(engine, x, i), StepInfo()
