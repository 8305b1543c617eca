"""An enumerable masked-diffusion problem: every sequence of length 3 over 4 tokens, with an exact denoiser.

The transition kernels of the sampler's Markov chain are built here by enumeration from the MDLM step formula (not
from the package's code), so the distribution the pre-trained chain produces, the exact soft values and the tilted
target are all known exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

L, V, MASK = 3, 4, 4
STATES = list(itertools.product(range(V + 1), repeat=L))  # 125 states at any level (mask = 4)
INDEX = {s: k for k, s in enumerate(STATES)}
CLEAN = [k for k, s in enumerate(STATES) if MASK not in s]
POW = torch.tensor([(V + 1) ** (L - 1 - l) for l in range(L)])


def state_index(x: torch.Tensor) -> torch.Tensor:
    return (x.long() * POW).sum(-1)


class Problem:
    def __init__(self, seed: int = 0, num_steps: int = 4, reward_scale: float = 2.0, first_token=None,
                 concentration: float = 0.8):
        rng = np.random.default_rng(seed)
        self.first_token = None if first_token is None else np.asarray(first_token, dtype=float)
        self.p = rng.dirichlet(np.full(V**L, concentration))  # data distribution over the 64 clean sequences
        self.r = rng.uniform(0, reward_scale, V**L)  # reward table
        self.clean = [s for s in STATES if MASK not in s]
        self.T = num_steps
        eps = 1e-5
        self.times = np.linspace(1.0, eps, num_steps + 1)
        self.move = (1 - eps) * self.times
        # exact denoiser: p(x0_l = v | visible tokens) for every state
        self.marg = np.zeros((len(STATES), L, V))
        for k, s in enumerate(STATES):
            w = np.array([self.p[j] if all(a == MASK or a == b for a, b in zip(s, c)) else 0.0
                          for j, c in enumerate(self.clean)])
            w = w / w.sum()
            for j, c in enumerate(self.clean):
                for l in range(L):
                    self.marg[k, l, c[l]] += w[j]
        self.kernels = [self._kernel(i) for i in range(num_steps)]

    def model(self, cls=None):
        """The sampler: a masked diffusion (``cls``, default `svdd.MaskedDiffusion`) around the exact denoiser."""
        import svdd
        return (cls or svdd.MaskedDiffusion)(self.network, seq_len=L, vocab_size=V, num_steps=self.T)

    # the "pre-trained network": exact posterior marginals as logits
    def network(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = torch.from_numpy(self.marg)[state_index(x)]
        return m.clamp_min(1e-300).log().float()

    def _kernel(self, i: int) -> np.ndarray:
        """P_i[s, c]: probability that the sampler moves from state s at level i to c at level i + 1."""
        mt, ms = self.move[i], self.move[i + 1]
        last = i == self.T - 1
        P = np.zeros((len(STATES), len(STATES)))
        for k, s in enumerate(STATES):
            options = []
            for l, a in enumerate(s):
                if a != MASK:
                    options.append({a: 1.0})
                    continue
                probs = {v: self.marg[k, l, v] * (mt - ms) / mt for v in range(V)}
                if last:  # noise removal: a token still masked becomes the argmax
                    best = int(np.argmax(self.marg[k, l]))
                    probs[best] += ms / mt
                else:
                    probs[MASK] = ms / mt
                options.append(probs)
            for combo in itertools.product(*[list(o.items()) for o in options]):
                c = tuple(v for v, _ in combo)
                P[k, INDEX[c]] += math.prod(q for _, q in combo)
        return P

    def start(self) -> np.ndarray:
        """The sampler's law at level 0: all masked, unless ``first_token`` (a law over the first token) is set."""
        d = np.zeros(len(STATES))
        if self.first_token is None:
            d[INDEX[(MASK,) * L]] = 1.0
        else:
            for a, q in enumerate(self.first_token):
                d[INDEX[(a,) + (MASK,) * (L - 1)]] = q
        return d

    def pretrained_dist(self) -> np.ndarray:
        d = self.start()
        for P in self.kernels:
            d = d @ P
        return d[CLEAN]

    def normalizer(self, alpha: float) -> float:
        """Z = E_pre[exp(r(x0)/alpha)] under the chain from ``start``."""
        return float(self.pretrained_dist() @ np.exp(self.r / alpha))

    def reward_full(self) -> np.ndarray:
        r = np.zeros(len(STATES))
        r[CLEAN] = self.r
        return r

    def soft_values(self, alpha: float) -> list[np.ndarray]:
        """v_i(s) = alpha log E[exp(r(x0)/alpha) | x_i = s] under the chain, for levels 0..T (−inf: unreachable)."""
        h = np.exp(self.reward_full() / alpha) * np.isin(np.arange(len(STATES)), CLEAN)
        hs = [h]
        for P in reversed(self.kernels):
            hs.append(P @ hs[-1])
        hs = hs[::-1]
        with np.errstate(divide="ignore"):
            return [alpha * np.log(x) for x in hs]

    def mean_values(self) -> list[np.ndarray]:
        """E[r(x0) | x_i = s] under the chain (the alpha -> 0 surrogate), levels 0..T."""
        h = self.reward_full()
        hs = [h]
        for P in reversed(self.kernels):
            hs.append(P @ hs[-1])
        return hs[::-1]

    def tilted(self, alpha: float) -> np.ndarray:
        q = self.pretrained_dist() * np.exp(self.r / alpha)
        return q / q.sum()

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        full = torch.from_numpy(self.reward_full())
        return full[state_index(x)]

    def table_value(self, tables: list[np.ndarray]):
        tabs = [torch.from_numpy(t) for t in tables]
        return lambda x, i: tabs[i][state_index(x)]


def empirical(x: torch.Tensor) -> np.ndarray:
    idx = state_index(x).numpy()
    counts = np.bincount(idx, minlength=len(STATES))
    assert counts.sum() == counts[CLEAN].sum(), "a sample still holds a mask token"
    return counts[CLEAN] / counts.sum()


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def sampling_tolerance(q: np.ndarray, n: int, inflation: float = 1.0, delta: float = 1e-4) -> float:
    """A high-probability bound on TV(empirical of n draws, q): E[TV] <= 0.5 Σ sqrt(c q(1-q)/n), plus a McDiarmid
    deviation sqrt(c log(1/delta) / (2n)) (one draw moves the empirical TV by at most 1/n). ``inflation`` c > 1
    accounts for correlated draws (weighting and resampling)."""
    return 0.5 * float(np.sqrt(inflation * q * (1 - q) / n).sum()) + math.sqrt(inflation * math.log(1 / delta) / (2 * n))


def argmax_kernel(P_row: np.ndarray, values: np.ndarray, M: int) -> np.ndarray:
    """Exact law of the kept child when M i.i.d. children are drawn from P_row and the first of maximal value is kept:
    a value group g wins with probability G^M − F^M (F: mass of lower values, G = F + mass of g), and inside a group
    the first drawn child is c with probability p(c) / p(g)."""
    out = np.zeros_like(P_row)
    support = np.flatnonzero(P_row > 0)
    vals = np.round(values[support], 12)
    F = 0.0
    for v in np.unique(vals):
        members = support[vals == v]
        pg = P_row[members].sum()
        out[members] = ((F + pg) ** M - F**M) * P_row[members] / pg
        F += pg
    return out


def argmax_law(problem, M: int) -> np.ndarray:
    values = problem.mean_values()
    d = problem.start()
    for i, P in enumerate(problem.kernels):
        K = np.array([argmax_kernel(P[s], values[i + 1], M) if d[s] > 0 else np.zeros(len(STATES))
                      for s in range(len(STATES))])
        d = d @ K
    return d[CLEAN]
