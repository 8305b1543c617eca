"""Gaussian (continuous) diffusion: DDPM / DDIM transitions for epsilon-, x0- and v-prediction networks.

Forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``. The reverse step from timestep t to s < t is the
DDIM family (Song et al. 2021, eq. 12): ``x_s = sqrt(abar_s) x̂0 + sqrt(1 - abar_s - sigma^2) ε̂ + sigma z`` with
``sigma = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)``. eta = 1 is DDPM's ancestral step
with the posterior variance; eta = 0 is deterministic DDIM (no use for SVDD: all candidates would be identical).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .base import DiffusionModel, Tensor

PREDICTIONS = ("epsilon", "sample", "v_prediction")


def make_alphas_cumprod(schedule: str, num_train_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """ᾱ_t for t = 0 .. num_train_steps - 1: 'linear' (Ho et al. 2020) or 'cosine' (Nichol & Dhariwal 2021)."""
    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
    elif schedule == "cosine":
        s = 0.008
        f = lambda t: math.cos((t / num_train_steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(num_train_steps)], dtype=torch.float64)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'linear' or 'cosine' (or pass alphas_cumprod)")
    return torch.cumprod(1.0 - betas, dim=0)


def summarize_steps(timesteps: Sequence[int], limit: int = 64) -> list[int] | dict:
    """The timesteps as a list, or first / last / count and a hash of the list when longer than ``limit``."""
    ts = [int(t) for t in timesteps]
    if len(ts) <= limit:
        return ts
    import hashlib
    digest = hashlib.sha256(",".join(map(str, ts)).encode()).hexdigest()[:16]
    return {"first": ts[0], "last": ts[-1], "count": len(ts), "sha256": digest}


def x0_from_output(x: Tensor, pred: Tensor, sa, s1, prediction: str) -> Tensor:
    """x̂0 from a network output at sqrt(ᾱ) = sa, sqrt(1 − ᾱ) = s1: Tweedie for epsilon, the output itself for
    'sample', and sa·x − s1·v for v-prediction (v = sa·ε − s1·x0)."""
    if prediction == "epsilon":
        return (x - s1 * pred) / sa
    if prediction == "sample":
        return pred
    return sa * x - s1 * pred


class GaussianDiffusion(DiffusionModel):
    """A continuous diffusion model around ``network(x, t) -> output`` (t: long tensor of training timesteps).

    Args:
        network: the pre-trained denoiser; called under ``torch.no_grad`` except for gradient guidance.
        sample_shape: shape of ONE sample, e.g. ``(2,)`` or ``(3, 32, 32)``.
        prediction: 'epsilon', 'sample' (x0) or 'v_prediction'.
        schedule: 'linear' or 'cosine', or a 1-D tensor of ᾱ_t over the training timesteps.
        num_steps: number of sampling steps T (evenly spaced timesteps), unless ``timesteps`` is given.
        timesteps: any strictly decreasing subset of training timesteps to sample on.
        eta: DDIM stochasticity (1.0 = DDPM ancestral sampling, the paper's setting).
        clip_denoised: clamp x̂0 to [-c, c] when set.
    """

    def __init__(
        self,
        network: Callable[[Tensor, Tensor], Tensor],
        sample_shape: Sequence[int],
        *,
        prediction: str = "epsilon",
        schedule: str | Tensor = "linear",
        num_train_steps: int = 1000,
        num_steps: int | None = None,
        timesteps: Sequence[int] | None = None,
        eta: float = 1.0,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        clip_denoised: float | None = None,
        device: str | torch.device = "cpu",
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta < float("inf"):
            raise ValueError(f"GaussianDiffusion: eta must be a finite number >= 0 (1 = DDPM ancestral steps, "
                             f"0 = deterministic DDIM), got {eta!r}")
        self.network = network
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.prediction = prediction
        self.eta = float(eta)
        self.clip_denoised = clip_denoised
        self.device = torch.device(device)
        self.schedule = schedule if isinstance(schedule, str) else "custom"
        self.betas = (float(beta_start), float(beta_end)) if isinstance(schedule, str) else None
        if isinstance(schedule, str):
            abar = make_alphas_cumprod(schedule, num_train_steps, beta_start, beta_end)
        else:
            abar = torch.as_tensor(schedule, dtype=torch.float64).flatten()
            if not bool(((abar > 0) & (abar <= 1)).all()) or not bool((abar[1:] <= abar[:-1]).all()):
                raise ValueError("alphas_cumprod must be non-increasing values in (0, 1]")
            num_train_steps = abar.numel()
        self.num_train_steps = num_train_steps
        self.alphas_cumprod = abar
        if timesteps is None:
            n = num_steps if num_steps is not None else num_train_steps
            if not 1 <= n <= num_train_steps:
                raise ValueError(f"num_steps must be in [1, {num_train_steps}], got {n}")
            timesteps = np.unique(np.linspace(0, num_train_steps - 1, n).round().astype(np.int64))[::-1].tolist()
        ts = [int(t) for t in timesteps]
        if any(b >= a for a, b in zip(ts, ts[1:])) or ts[-1] < 0 or ts[0] >= num_train_steps:
            raise ValueError(f"timesteps must be strictly decreasing within [0, {num_train_steps - 1}], got {ts[:5]}...")
        self.timesteps = ts
        self.num_steps = len(ts)
        # ᾱ at every level 0..T (level T is the clean sample, ᾱ = 1)
        self._abar = torch.cat([abar[ts], torch.ones(1, dtype=torch.float64)])

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.eta > 0

    def time(self, i: int) -> float:
        return 0.0 if i >= self.num_steps else (self.timesteps[i] + 1) / self.num_train_steps

    def prior(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn((n, *self.sample_shape), generator=generator, device=self.device)

    def predict(self, x: Tensor, i: int) -> Tensor:
        t = torch.full((x.shape[0],), self.timesteps[i], dtype=torch.long, device=x.device)
        return self.network(x, t)

    def _coef(self, i: int, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self._abar[i]
        return a.sqrt().to(x.dtype), (1 - a).sqrt().to(x.dtype)

    def eps_x0(self, x: Tensor, pred: Tensor, i: int) -> tuple[Tensor, Tensor]:
        """Noise and clean-sample estimates (ε̂, x̂0) from the network output (Tweedie for epsilon-prediction)."""
        sa, s1 = self._coef(i, x)
        x0 = x0_from_output(x, pred, sa, s1, self.prediction)
        if self.prediction == "epsilon":
            eps = pred
        elif self.prediction == "sample":
            eps = (x - sa * pred) / s1
        else:
            eps = s1 * x + sa * pred
        if self.clip_denoised is not None:
            x0 = x0.clamp(-self.clip_denoised, self.clip_denoised)
            eps = (x - sa * x0) / s1
        return eps, x0

    def denoise(self, x: Tensor, pred: Tensor, i: int) -> Tensor:
        return self.eps_x0(x, pred, i)[1]

    def noise_std(self, i: int) -> float:
        """Standard deviation sigma of the noise added at step i (DDIM eq. 16)."""
        a_t, a_s = float(self._abar[i]), float(self._abar[i + 1])
        return self.eta * math.sqrt((1 - a_s) / (1 - a_t)) * math.sqrt(max(1 - a_t / a_s, 0.0))

    def _mean_std(self, x: Tensor, pred: Tensor, i: int) -> tuple[Tensor, float]:
        eps, x0 = self.eps_x0(x, pred, i)
        a_s = float(self._abar[i + 1])
        sigma = self.noise_std(i)
        mean = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps
        return mean, sigma

    def step(self, x: Tensor, pred: Tensor, i: int, generator: torch.Generator, num_children: int = 1) -> Tensor:
        mean, sigma = self._mean_std(x, pred, i)
        if num_children > 1:
            mean = mean.repeat_interleave(num_children, dim=0)
        if sigma == 0.0:
            return mean
        z = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + sigma * z

    def renoise(self, x0: Tensor, i: int, generator: torch.Generator) -> Tensor:
        if i >= self.num_steps:
            return x0.clone()
        sa, s1 = self._coef(i, x0)
        return sa * x0 + s1 * torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)

    def deterministic_step(self, i: int) -> bool:
        """True where all children of a state coincide (the last step lands on x̂0; eta = 0 everywhere)."""
        return self.eta == 0 or i == self.num_steps - 1

    def config(self) -> dict:
        """Schedule, timesteps, sampler settings and a hash of the network's weights."""
        from ..io import tensor_hash, weights_hash
        beta_start, beta_end = self.betas or (None, None)
        return {"class": type(self).__name__, "num_steps": self.num_steps, "sample_shape": list(self.sample_shape),
                "prediction": self.prediction, "schedule": self.schedule,
                "alphas_cumprod_sha256": tensor_hash(self.alphas_cumprod), "num_train_steps": self.num_train_steps,
                "beta_start": beta_start, "beta_end": beta_end, "timesteps": summarize_steps(self.timesteps),
                "eta": self.eta, "clip_denoised": self.clip_denoised, "device": str(self.device),
                "network": type(self.network).__name__, "network_weights": weights_hash(self.network)}
