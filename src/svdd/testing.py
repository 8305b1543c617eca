"""Checks for your own models: ``check_model_contract(model)`` runs a model through the protocol of
`svdd.models.base` and raises an AssertionError naming the first rule it breaks. ``METHOD_CASES``: a quick,
non-default config of every registered method, for tests that run them all."""

from __future__ import annotations

import json
from typing import Any

import torch

Tensor = torch.Tensor

__all__ = ["check_model_contract", "METHOD_CASES"]

def _method_cases() -> dict[str, dict[str, Any]]:
    from .methods import METHODS
    return {name: dict(cls.test_options) for name, cls in METHODS.items() if cls.test_options is not None}


#: method name -> its ``test_options``: small non-default options making a valid quick run, declared by each method
#: class; every registered method needs them (tests/test_registry.py checks it). JSON-plain: they round-trip through
#: `to_dict`.
METHOD_CASES: dict[str, dict[str, Any]] = _method_cases()


class _Checker:
    def __init__(self, model: Any, n: int, k: int, seed: int, atol: float):
        self.model, self.n, self.k, self.seed, self.atol = model, n, k, seed, atol
        self.name = type(model).__name__
        self.device = getattr(model, "device", "cpu")

    def fail(self, msg: str):
        raise AssertionError(f"{self.name} breaks the svdd model protocol: {msg}")

    def gen(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def same(self, a: Tensor, b: Tensor) -> bool:
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point() or a.is_complex():
            return bool(torch.allclose(a, b, rtol=1e-5, atol=self.atol, equal_nan=True))
        return bool(torch.equal(a, b))

    # single calls ---------------------------------------------------------------------------------------------------
    def prior(self, seed: int) -> Tensor:
        x = self.model.prior(self.n, self.gen(seed))
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] != self.n:
            self.fail(f"prior({self.n}, generator) must return a tensor with {self.n} rows, got "
                      f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        return x

    def predict(self, x: Tensor, i: int, twice: bool = False) -> Tensor:
        pred = self.model.predict(x, i)
        if not isinstance(pred, Tensor) or pred.ndim < 1 or pred.shape[0] != x.shape[0]:
            self.fail(f"predict(x, {i}) must return one row per state ({x.shape[0]}), got "
                      f"{tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__}")
        if twice:
            again = self.model.predict(x, i)
            if not self.same(pred, again):
                self.fail(f"predict(x, {i}) is not deterministic: two calls on the same states differ by up to "
                          f"{_max_diff(pred, again):.3g} (atol {self.atol}); the methods reuse one network output "
                          "for every candidate of a state")
            one = self.model.predict(x[:1], i)
            if x.shape[0] > 1 and not self.same(one, pred[:1]):
                self.fail(f"predict(x[:1], {i}) differs from the first row of predict(x, {i}) by up to "
                          f"{_max_diff(one, pred[:1]):.3g} (atol {self.atol}): a row's output must not depend on the "
                          "other rows of its batch (runs are split into batches of max_batch rows; e.g. batch norm "
                          "in training mode: call .eval())")
        return pred

    def step(self, x: Tensor, pred: Tensor, i: int, seed: int, k: int) -> Tensor:
        out = self.model.step(x, pred, i, self.gen(seed), num_children=k)
        want = (x.shape[0] * k, *x.shape[1:])
        if not isinstance(out, Tensor) or tuple(out.shape) != want:
            self.fail(f"step(x, pred, {i}, generator, num_children={k}) on {x.shape[0]} states of shape "
                      f"{tuple(x.shape[1:])} must return shape {want}, got "
                      f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
        if out.dtype != x.dtype:
            self.fail(f"step(..., {i}, ...) changed the state dtype from {x.dtype} to {out.dtype}")
        return out

    # properties -----------------------------------------------------------------------------------------------------
    def sample_major(self, x: Tensor, pred: Tensor, y: Tensor, pred_y: Tensor, i: int) -> tuple[bool, bool]:
        """Replace one row r of x by another state (same generator): only children r*k .. r*k+k-1 may change.
        Returns whether some row was replaced and whether some child of a replaced row changed."""
        k, seed = self.k, self.seed + 100 + i
        base = self.step(x, pred, i, seed, k)
        replaced_any, changed_any = False, False
        for r in range(x.shape[0]):
            if self.same(x[r], y[r]):
                continue
            replaced_any = True
            x2, p2 = x.clone(), pred.clone()
            x2[r], p2[r] = y[r], pred_y[r]
            out = self.step(x2, p2, i, seed, k)
            moved = [j for j in range(out.shape[0]) if not self.same(out[j], base[j])]
            outside = [j for j in moved if j // k != r]
            if outside:
                self.fail(f"step(..., {i}, ..., num_children={k}): replacing state {r} of {x.shape[0]} changed output "
                          f"rows {outside}, outside rows {r * k}..{r * k + k - 1}. Children must be sample-major (the "
                          f"children of row r are rows r*k .. r*k+k-1, e.g. repeat_interleave, not repeat), and the "
                          "random draws of a row must not depend on the other rows")
            changed_any |= bool(moved)
        return replaced_any, changed_any

    def carry_over(self, x: Tensor, kids: Tensor, i: int) -> None:
        mask = self.model.mask_index
        k = kids.shape[0] // x.shape[0]
        for r in range(x.shape[0]):
            kept = (kids[r * k:(r + 1) * k] == x[r]) | (x[r] == mask)
            if not bool(kept.all()):
                self.fail(f"step(..., {i}, ...): a child of state {r} changed one of its unmasked tokens (masked "
                          "models carry unmasked tokens into every child)")

    def run(self) -> None:
        from .models import check_model
        try:
            check_model(self.model)
        except (TypeError, ValueError) as exc:
            raise AssertionError(str(exc)) from None
        m, T, k = self.model, self.model.num_steps, self.k
        det = getattr(m, "deterministic_step", None)
        levels = sorted({0, T // 2, T - 1})
        xa, xb = self.prior(self.seed), self.prior(self.seed + 1)
        if not self.same(xa, self.prior(self.seed)):
            self.fail("prior(n, generator) gives different states for two generators with the same seed")
        ga, gb = self.gen(self.seed + 2), self.gen(self.seed + 3)
        stochastic_seen, replaced, block_changed = False, False, False
        for i in range(T):
            check = i in levels
            pa = self.predict(xa, i, twice=check)
            pb = self.predict(xb, i)
            # 1. children: shape, sample-major order, carry-over
            if check:
                r, c = self.sample_major(xa, pa, xb, pb, i)
                replaced, block_changed = replaced or r, block_changed or c
                if hasattr(m, "mask_index"):
                    self.carry_over(xa, self.step(xa, pa, i, self.seed + 200, k), i)
            # 2. deterministic_step(i) says whether children differ between generators
            c1, c2 = self.step(xa, pa, i, self.seed + 300, k), self.step(xa, pa, i, self.seed + 301, k)
            identical = bool(torch.equal(c1, c2))
            stochastic_seen |= not identical
            if det is not None and bool(det(i)) != identical:
                self.fail(f"deterministic_step({i}) is {bool(det(i))}, but step with two different generator seeds "
                          f"gave {'identical' if identical else 'different'} children")
            xa = m.step(xa, pa, i, ga, num_children=1)
            xb = m.step(xb, pb, i, gb, num_children=1)
        if replaced and not block_changed:
            self.fail("step ignores its input: replacing a state by another never changed its children")
        stochastic = bool(getattr(m, "stochastic", True))
        if not stochastic and stochastic_seen:
            self.fail("stochastic is False, but some step gave different children for different generator seeds")
        if stochastic and not stochastic_seen and T > 1:
            self.fail("stochastic is True, but every step gave identical children for different generator seeds "
                      "(set stochastic = False for deterministic samplers)")
        self.clean(xa, levels)
        self.optional(xa)
        self.m1_is_pretrained()

    def clean(self, x0: Tensor, levels: list[int]) -> None:
        """denoise returns clean-sample shapes; at a state without mask tokens a masked model returns it unchanged."""
        m = self.model
        x = self.prior(self.seed)
        for i in levels:
            est = m.denoise(x, self.predict(x, i), i)
            if not isinstance(est, Tensor) or est.shape != x0.shape:
                self.fail(f"denoise(x, predict(x, {i}), {i}) must have the shape of clean samples {tuple(x0.shape)}, "
                          f"got {tuple(est.shape) if isinstance(est, Tensor) else type(est).__name__}")
            if est.dtype != x0.dtype:
                self.fail(f"denoise(x, pred, {i}) returns {est.dtype}, but clean samples are {x0.dtype} "
                          "(rewards see both)")
            if hasattr(m, "mask_index") and not bool((x0 == m.mask_index).any()):
                back = m.denoise(x0, self.predict(x0, i), i)
                if not torch.equal(back, x0):
                    self.fail(f"denoise at a state without mask tokens (level {i}) must return the state itself")
        if hasattr(m, "mask_index") and bool((x0 == m.mask_index).any()):
            self.fail("clean samples (level T) still hold mask tokens")

    def optional(self, x0: Tensor) -> None:
        m, T = self.model, self.model.num_steps
        if hasattr(m, "time"):
            ts = [m.time(i) for i in range(T + 1)]
            if not all(isinstance(t, (int, float)) and 0.0 <= t <= 1.0 for t in ts):
                self.fail(f"time(i) must be a float in [0, 1] for every level 0..T, got {ts[:4]}...")
            if any(b > a for a, b in zip(ts, ts[1:])):
                self.fail("time(i) must not increase with the level (1 = noise, 0 = clean)")
        if hasattr(m, "sample_denoise"):
            x = self.prior(self.seed)
            pred = self.predict(x, 0)
            try:
                draws = m.sample_denoise(x, pred, 0, self.gen(self.seed), self.k)
            except NotImplementedError:
                draws = None
            if draws is not None and tuple(draws.shape) != (self.n * self.k, *x0.shape[1:]):
                self.fail(f"sample_denoise(x, pred, 0, generator, {self.k}) must return shape "
                          f"{(self.n * self.k, *x0.shape[1:])}, got {tuple(draws.shape)}")
        if hasattr(m, "log_likelihood"):
            ll = m.log_likelihood(x0)
            if ll is not None and (not isinstance(ll, Tensor) or tuple(ll.shape) != (self.n,)):
                self.fail(f"log_likelihood(x0) must return None or one value per sample ({self.n},), got "
                          f"{tuple(ll.shape) if isinstance(ll, Tensor) else type(ll).__name__}")
        if hasattr(m, "config"):
            cfg = m.config()
            if not isinstance(cfg, dict):
                self.fail(f"config() must return a dict, got {type(cfg).__name__}")
            try:
                json.dumps(cfg)
            except (TypeError, ValueError) as exc:
                self.fail(f"config() must be JSON-serialisable: {exc}")

    def m1_is_pretrained(self) -> None:
        """SVDD with M = 1 and pre-trained sampling draw the same samples, bit for bit."""
        from .api import sample

        def total(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], -1).double().sum(1)

        kw = dict(num_samples=self.n, seed=self.seed, progress=False)
        a = sample(self.model, total, "pretrained", **kw).samples
        b = sample(self.model, total, "svdd", M=1, **kw).samples
        if not torch.equal(a, b):
            self.fail(f"svdd with M = 1 and pretrained sampling (seed {self.seed}) give different samples (largest "
                      f"difference {_max_diff(a, b):.3g}): step or predict keeps hidden state between calls, or step "
                      "with num_children=1 differs from the draw used for candidates")


def _max_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max())


def check_model_contract(model: Any, *, n: int = 4, num_children: int = 3, seed: int = 0, atol: float = 1e-6) -> None:
    """Run ``model`` through the svdd model protocol and raise an AssertionError naming the first rule it breaks.

    Checks: ``prior`` gives ``n`` rows (the same for the same seed); ``predict`` gives one row per state, is
    deterministic and does not depend on the other rows of its batch; ``step(..., num_children=k)`` gives ``n·k``
    rows of the state's shape, sample-major (replacing state r changes only rows ``r*k .. r*k+k-1``); masked models
    carry unmasked tokens into every child; ``deterministic_step(i)`` and ``stochastic`` agree with whether two
    generator seeds give different children; ``denoise`` has the clean-sample shape and dtype (and returns a state
    without mask tokens unchanged); ``time``, ``sample_denoise``, ``log_likelihood`` and ``config`` (when present)
    return what the protocol says; SVDD with M = 1 reproduces pre-trained sampling bit for bit.
    Float comparisons use ``atol`` plus a relative tolerance of 1e-5; the check makes about ``4·T`` network calls on
    ``n`` rows.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r} (checking the order of children needs two states)")
    if not isinstance(num_children, int) or num_children < 2:
        raise ValueError(f"num_children must be an int >= 2, got {num_children!r}")
    with torch.no_grad():
        _Checker(model, n, num_children, seed, atol).run()
