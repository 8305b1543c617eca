"""The model protocol: what a pre-trained diffusion model must provide to be guided by `svdd`.

A sampling run walks through levels ``0, 1, ..., T``: level 0 is pure noise (the prior), level ``T`` is a clean
sample. Step ``i`` moves a state from level ``i`` to level ``i + 1``. The protocol splits each step in two:

* ``predict(x, i)`` -- the one expensive, deterministic network call on states at level ``i`` (``i < T``). It returns
  the network output (noise prediction, logits, ...) as a tensor with one row per state.
* ``step(x, pred, i, generator, num_children)`` -- the cheap random transition ``p_pre(x_{i+1} | x_i)`` built from
  that output. It draws ``num_children`` children for every row, so the M candidates of a sample come from ONE
  network output, and the output computed for a candidate is reused when that candidate becomes the next state.
* ``denoise(x, pred, i)`` -- the model's own estimate x̂0 of the clean sample (Tweedie / posterior mean for Gaussian
  models, per-position argmax with carry-over for masked models).

Rows of ``step``'s output are sample-major: the children of row ``r`` are rows ``r*num_children ...``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

Tensor = torch.Tensor

REQUIRED = ("num_steps", "prior", "predict", "step", "denoise")


class DiffusionModel(ABC):
    """Base class for models usable by every `svdd` method. Subclass it, or duck-type the same attributes."""

    #: number of denoising steps T
    num_steps: int
    #: True for token models: identical candidates are then scored once per step
    discrete: bool = False
    #: True when ``step`` with one network output can give distinct children (False for e.g. DDIM with eta = 0)
    stochastic: bool = True
    #: True when ``predict(x, i)`` does not depend on ``i`` for a given x (a masked denoiser without time input):
    #: a candidate equal to its parent then reuses the parent's output instead of a network call
    time_independent: bool = False

    @abstractmethod
    def prior(self, n: int, generator: torch.Generator) -> Tensor:
        """Draw ``n`` states at level 0."""

    @abstractmethod
    def predict(self, x: Tensor, i: int) -> Tensor:
        """Network output for states ``x`` at level ``i`` (deterministic; one row per state)."""

    @abstractmethod
    def step(self, x: Tensor, pred: Tensor, i: int, generator: torch.Generator, num_children: int = 1) -> Tensor:
        """Draw ``num_children`` states at level ``i + 1`` for every row of ``x`` (rows sample-major)."""

    @abstractmethod
    def denoise(self, x: Tensor, pred: Tensor, i: int) -> Tensor:
        """Estimate x̂0 of the clean sample from states at level ``i`` and their network output."""

    def time(self, i: int) -> float:
        """Continuous time of level ``i`` in [0, 1] (1 = noise, 0 = clean); the input of learned value networks."""
        return 1.0 - i / self.num_steps

    # Optional hooks ------------------------------------------------------------------------------------------
    def sample_denoise(self, x: Tensor, pred: Tensor, i: int, generator: torch.Generator, k: int) -> Tensor:
        """Draw ``k`` completions x0 ~ p(x0 | x_i) per row (rows sample-major). Optional."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample_denoise (needed for num_completions > 1)")

    def renoise(self, x0: Tensor, i: int, generator: torch.Generator) -> Tensor:
        """Draw x_i ~ q(x_i | x0) by the forward (noising) process: clean samples taken back to level ``i``
        (level T: unchanged). Optional; needed by iterative refinement."""
        raise NotImplementedError(f"{type(self).__name__} does not implement renoise (needed by method 'refine')")

    def log_likelihood(self, x0: Tensor) -> Tensor | None:
        """A naturalness score of clean samples under the model (e.g. an ELBO), or None when not available."""
        return None

    def config(self) -> dict[str, Any]:
        """A JSON-able description of the model, written into run configs; override to add what a run depends on."""
        return {"class": type(self).__name__, "num_steps": self.num_steps}


def check_model(model: Any) -> None:
    """Raise a TypeError naming what is missing when ``model`` does not implement the protocol."""
    missing = [name for name in REQUIRED if not hasattr(model, name)]
    if missing:
        raise TypeError(
            f"{type(model).__name__} does not implement the svdd model protocol: missing {', '.join(missing)}. "
            "Subclass svdd.DiffusionModel (or use svdd.GaussianDiffusion / svdd.MaskedDiffusion) and provide "
            "num_steps, prior(n, generator), predict(x, i), step(x, pred, i, generator, num_children), denoise(x, pred, i)."
        )
    for name in REQUIRED[1:]:
        if not callable(getattr(model, name)):
            raise TypeError(f"{type(model).__name__}.{name} must be callable")
    t = model.num_steps
    if not isinstance(t, int) or t < 1:
        raise ValueError(f"model.num_steps must be a positive int, got {t!r}")
