"""Masked (absorbing-state) discrete diffusion in the style of MDLM (Sahoo et al. 2024).

Tokens are ``0 .. vocab_size - 1``; the mask token is ``vocab_size``. Log-linear schedule: a token is masked at time
t with probability ``(1 - eps) t``. Sampling walks t over ``linspace(1, eps, T + 1)``. SUBS parameterisation: the
denoiser never predicts the mask, and already unmasked tokens are carried over unchanged. One reverse step from t to
s < t, for a masked position with denoiser probabilities p(x0):

    q(x_s = v) = p(v) (m_t - m_s) / m_t,     q(x_s = mask) = m_s / m_t,     m_u = (1 - eps) u

Categorical draws are done in float64 (float32 truncates rare tokens). At the last step every token still masked is
filled by the denoiser's argmax (MDLM's noise-removal step; here it reuses the last network output).
"""

from __future__ import annotations

import numbers
from typing import Callable

import torch

from .base import DiffusionModel, Tensor


def sample_categorical(probs: Tensor, generator: torch.Generator) -> Tensor:
    """Draw one index along the last axis with probability ``probs`` (float64 exponential race, as MDLM)."""
    probs = probs.to(torch.float64)
    u = torch.rand(probs.shape, generator=generator, dtype=torch.float64, device=probs.device)
    return (probs / (1e-10 - (u + 1e-10).log())).argmax(dim=-1)


class MaskedDiffusion(DiffusionModel):
    """A masked diffusion model around ``network(x, t) -> logits``.

    Args:
        network: maps long tokens ``(n, L)`` (mask = ``vocab_size``) and times ``(n,)`` in [0, 1] to logits
            ``(n, L, vocab_size)`` or ``(n, L, vocab_size + 1)`` (a mask logit is ignored).
        seq_len, vocab_size: sequence length L and number of real tokens V.
        num_steps: sampling steps T (the paper uses 128).
        eps: smallest time (MDLM: 1e-5).
        time_independent: the network ignores ``t`` (it reads the noise level from the number of masks, as MDLM
            without time conditioning): a candidate that unmasked nothing reuses its parent's output.
    """

    discrete = True

    def __init__(self, network: Callable[[Tensor, Tensor], Tensor], seq_len: int, vocab_size: int, *,
                 num_steps: int = 128, eps: float = 1e-5, device: str | torch.device = "cpu",
                 time_independent: bool = False):
        for name, v, low in (("seq_len", seq_len, 1), ("vocab_size", vocab_size, 2), ("num_steps", num_steps, 1)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low:
                raise ValueError(f"MaskedDiffusion: {name} must be an int >= {low}, got {v!r}")
        if not (isinstance(eps, (int, float)) and 0 < eps < 1):
            raise ValueError(f"MaskedDiffusion: eps must be in (0, 1), got {eps!r}")
        self.network = network
        self.seq_len = int(seq_len)
        self.vocab_size = int(vocab_size)
        self.mask_index = self.vocab_size
        self.num_steps = int(num_steps)
        self.eps = float(eps)
        self.device = torch.device(device)
        self.times = torch.linspace(1.0, self.eps, self.num_steps + 1, dtype=torch.float64)
        self.time_independent = bool(time_independent)

    @property
    def times(self) -> Tensor:
        """Times of the levels 0..T (float64, from 1 down to eps)."""
        return self._times

    @times.setter
    def times(self, value) -> None:
        self._times = torch.as_tensor(value, dtype=torch.float64)
        self._t = self._times.tolist()  # the same levels as Python floats: a step reads no tensor value

    def time(self, i: int) -> float:
        return 0.0 if i >= self.num_steps else self._t[i]

    def move_chance(self, t: float | Tensor):
        return (1 - self.eps) * t

    def prior(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.full((n, self.seq_len), self.mask_index, dtype=torch.long, device=self.device)

    def subs(self, logits: Tensor, x: Tensor) -> Tensor:
        """SUBS parameterisation: log-probabilities over V + 1 with mask at −inf and unmasked tokens carried over."""
        logits = logits[..., : self.vocab_size].float()
        logp = torch.log_softmax(logits, dim=-1)
        logp = torch.cat([logp, torch.full_like(logp[..., :1], -torch.inf)], dim=-1)
        unmasked = x != self.mask_index
        carry = torch.full_like(logp, -torch.inf).scatter_(-1, x.unsqueeze(-1), 0.0)
        return torch.where(unmasked.unsqueeze(-1), carry, logp)

    def predict(self, x: Tensor, i: int) -> Tensor:
        t = torch.full((x.shape[0],), self._t[i], device=x.device)
        try:
            logits = self.network(x, t)
        except IndexError as exc:  # typically an embedding without a row for the mask token
            raise ValueError(f"network {type(self.network).__name__} raised IndexError ({exc}) on tokens in "
                             f"[0, {self.vocab_size}] (mask token = vocab_size = {self.vocab_size}): does its "
                             f"embedding have vocab_size + 1 = {self.vocab_size + 1} rows?") from exc
        n, L, V = x.shape[0], self.seq_len, self.vocab_size
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) not in ((n, L, V), (n, L, V + 1)):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"network {type(self.network).__name__} returned logits of shape {got} for {n} sequences; "
                             f"expected ({n}, {L}, {V}) or ({n}, {L}, {V + 1}) (seq_len {L}, vocab_size {V})")
        return self.subs(logits, x)

    def denoise(self, x: Tensor, pred: Tensor, i: int) -> Tensor:
        return pred[..., : self.vocab_size].argmax(dim=-1)  # carry-over is built into SUBS

    def sample_denoise(self, x: Tensor, pred: Tensor, i: int, generator: torch.Generator, k: int) -> Tensor:
        probs = pred[..., : self.vocab_size].double().exp().repeat_interleave(k, dim=0)
        return sample_categorical(probs, generator)

    def transition_probs(self, x: Tensor, pred: Tensor, i: int) -> Tensor:
        """q(x_{i+1} | x_i) per position over V + 1 tokens (float64); unmasked positions stay (one-hot)."""
        m_t, m_s = self.move_chance(self._t[i]), self.move_chance(self._t[i + 1])
        p = pred.double().exp()  # (n, L, V + 1), mask column 0; SUBS makes unmasked positions one-hot already
        q = p * ((m_t - m_s) / m_t)
        q[..., self.mask_index] = m_s / m_t
        return torch.where((x == self.mask_index).unsqueeze(-1), q, p)

    def step(self, x: Tensor, pred: Tensor, i: int, generator: torch.Generator, num_children: int = 1,
             tilt: Tensor | None = None) -> Tensor:
        q = self.transition_probs(x, pred, i)
        if tilt is not None:  # tilted transition (gradient guidance): q(v) ∝ q(v) exp(tilt_v), masked positions only
            w = torch.cat([tilt.double(), torch.zeros_like(tilt[..., :1], dtype=torch.float64)], dim=-1)
            w = torch.where((x == self.mask_index).unsqueeze(-1), w, torch.zeros_like(w))
            q = q * (w - w.max(dim=-1, keepdim=True).values).exp()
            q = q / q.sum(-1, keepdim=True)
        x_rep = x.repeat_interleave(num_children, dim=0) if num_children > 1 else x
        q = q.repeat_interleave(num_children, dim=0) if num_children > 1 else q
        new = sample_categorical(q, generator)
        new = torch.where(x_rep == self.mask_index, new, x_rep)
        if i == self.num_steps - 1:  # noise removal: fill what is still masked with the argmax
            best = pred[..., : self.vocab_size].argmax(dim=-1)
            best = best.repeat_interleave(num_children, dim=0) if num_children > 1 else best
            new = torch.where(new == self.mask_index, best, new)
        return new

    def renoise(self, x0: Tensor, i: int, generator: torch.Generator) -> Tensor:
        """Each token masked with the level's mask probability (MDLM's forward process)."""
        if i >= self.num_steps:
            return x0.clone()
        u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)
        return torch.where(u < self.move_chance(self._t[i]), torch.full_like(x0, self.mask_index), x0)

    # naturalness --------------------------------------------------------------------------------------------------
    def nelbo(self, x0: Tensor, num_draws: int = 16, seed: int = 0, max_batch: int = 1024) -> Tensor:
        """Negative ELBO of clean sequences in nats (an upper bound on −log p), Monte Carlo over stratified times.

        Continuous-time MDLM bound for the log-linear schedule: E_t [ (1/t) Σ_{masked l} −log p(x0_l | x_t) ].
        """
        g = torch.Generator(device=x0.device).manual_seed(seed)
        n = x0.shape[0]
        total = torch.zeros(n, dtype=torch.float64, device=x0.device)
        for k in range(num_draws):
            u = (k + torch.rand(n, generator=g, device=x0.device, dtype=torch.float64)) / num_draws
            t = self.eps + (1 - self.eps) * u
            mask = torch.rand(x0.shape, generator=g, device=x0.device, dtype=torch.float64) < self.move_chance(t)[:, None]
            xt = torch.where(mask, torch.full_like(x0, self.mask_index), x0)
            nll = torch.empty(n, dtype=torch.float64, device=x0.device)
            with torch.no_grad():
                for a in range(0, n, max_batch):
                    sl = slice(a, a + max_batch)
                    logp = self.subs(self.network(xt[sl], t[sl].float()), xt[sl])
                    tok = logp.gather(-1, x0[sl].unsqueeze(-1)).squeeze(-1).double()
                    nll[sl] = -(tok * mask[sl]).sum(-1)
            total += nll / t
        return total / num_draws

    def log_likelihood(self, x0: Tensor) -> Tensor:
        return -self.nelbo(x0)

    def config(self) -> dict:
        """Sequence shape, schedule settings and a hash of the network's weights."""
        from ..io import weights_hash
        return {"class": type(self).__name__, "num_steps": self.num_steps, "seq_len": self.seq_len,
                "vocab_size": self.vocab_size, "eps": self.eps, "device": str(self.device),
                "time_independent": self.time_independent,
                "network": type(self.network).__name__, "network_weights": weights_hash(self.network)}
