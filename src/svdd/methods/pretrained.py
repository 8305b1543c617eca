"""Plain ancestral sampling from the pre-trained model (the reference every method is compared with)."""

from __future__ import annotations

import dataclasses

from ..result import Diagnostics
from .base import History, Method, register


@register
@dataclasses.dataclass
class Pretrained(Method):
    name = "pretrained"

    def run(self, engine, num_samples):
        model, gen = engine.model, engine.gen["model"]
        hist, diag = History(engine), Diagnostics()
        x = model.prior(num_samples, gen)
        for i in engine.trange(model.num_steps, self.name):
            pred = engine.predict(x, i)
            hist.add(x, pred, i)
            x = model.step(x, pred, i, gen)
            diag.record()
        hist.add(x, None, model.num_steps)
        return x, engine.rewards(x), diag, hist.tensor()
