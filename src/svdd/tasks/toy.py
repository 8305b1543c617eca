"""Small built-in tasks whose "pre-trained" models are exact, so every number they give can be checked.

* ``toy-motif`` -- DNA-like sequences (length 24, tokens ACGT) from a fixed first-order Markov chain; the masked
  diffusion denoiser is the exact posterior of each masked position given the visible tokens (forward-backward), so
  the model IS the data distribution. Reward: best match of a TATA-box position weight matrix (differentiable on
  one-hot input, so the gradient baseline can run). Naturalness: exact log-likelihood under the chain.
* ``toy-gmm`` -- a 2-D Gaussian mixture with its exact noise prediction; reward: the linear reward x_1 + x_2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models import GaussianDiffusion, MaskedDiffusion
from ..rewards import Reward

ALPHABET = "ACGT"


class MarkovChain:
    """A first-order Markov chain over V tokens with its exact masked-position posteriors."""

    def __init__(self, init: torch.Tensor, trans: torch.Tensor):
        self.init, self.trans = init.double(), trans.double()
        self.V = init.numel()

    @classmethod
    def seeded(cls, vocab: int = 4, seed: int = 0, concentration: float = 0.7):
        g = torch.Generator().manual_seed(seed)
        gamma = torch.distributions.Gamma(torch.full((vocab, vocab), concentration), torch.ones(vocab, vocab))
        with torch.random.fork_rng():  # Gamma draws from the global RNG: seed it without touching the caller's state
            torch.manual_seed(seed)
            trans = gamma.sample()
        trans = trans / trans.sum(1, keepdim=True)
        init = torch.rand(vocab, generator=g) + 0.5
        return cls(init / init.sum(), trans)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lp = self.init.log()[x[:, 0]]
        return lp + self.trans.log()[x[:, :-1], x[:, 1:]].sum(1)

    def posteriors(self, x: torch.Tensor, mask_index: int) -> torch.Tensor:
        """p(x_l = v | visible tokens) for every position: (n, L, V), by normalised forward-backward."""
        n, L = x.shape
        emit = torch.ones(n, L, self.V, dtype=torch.float64, device=x.device)
        vis = x != mask_index
        emit[vis] = F.one_hot(x[vis], self.V).double()
        fwd = torch.empty_like(emit)
        a = self.init * emit[:, 0]
        fwd[:, 0] = a / a.sum(1, keepdim=True)
        for l in range(1, L):
            a = (fwd[:, l - 1] @ self.trans) * emit[:, l]
            fwd[:, l] = a / a.sum(1, keepdim=True)
        bwd = torch.ones_like(emit)
        for l in range(L - 2, -1, -1):
            b = (emit[:, l + 1] * bwd[:, l + 1]) @ self.trans.T
            bwd[:, l] = b / b.sum(1, keepdim=True)
        post = fwd * bwd
        return post / post.sum(-1, keepdim=True)


class ExactMarkovDenoiser(torch.nn.Module):
    def __init__(self, chain: MarkovChain, mask_index: int):
        super().__init__()
        self.chain, self.mask_index = chain, mask_index

    def forward(self, x, t):
        return self.chain.posteriors(x, self.mask_index).clamp_min(1e-30).log().float()


class PWMReward(Reward):
    """Best log-odds match of a position weight matrix over all windows (soft-max over windows with temperature 0
    for token input). Accepts long tokens (n, L) or soft one-hot / probabilities (n, L, V): then differentiable."""

    def __init__(self, pwm: torch.Tensor, name: str = "pwm-max"):
        super().__init__(None, name=name, differentiable=True)
        self.pwm = pwm.float()  # (K, V) log-odds

    def __call__(self, x):
        oh = F.one_hot(x, self.pwm.shape[1]).float() if not x.is_floating_point() else x.float()
        k = self.pwm.shape[0]
        windows = oh.unfold(1, k, 1)  # (n, L-k+1, V, k)
        scores = torch.einsum("nwvk,kv->nw", windows, self.pwm)
        return scores.max(dim=1).values if not x.is_floating_point() else torch.logsumexp(scores * 4, 1) / 4


def tata_pwm() -> torch.Tensor:
    """Log-odds PWM of a TATA box (TATAAA) with position-specific consensus strengths, so scores are graded."""
    motif, strength = "TATAAA", [0.7, 0.8, 0.6, 0.75, 0.5, 0.65]
    p = torch.zeros(len(motif), 4)
    for k, (c, s) in enumerate(zip(motif, strength)):
        p[k] = (1 - s) / 3
        p[k, ALPHABET.index(c)] = s
    return (p / 0.25).log()


def decode(x: torch.Tensor) -> list[str]:
    return ["".join(ALPHABET[int(t)] if t < 4 else "N" for t in row) for row in x.tolist()]


def build_toy_motif(num_steps: int = 32, seq_len: int = 24):
    chain = MarkovChain.seeded(4, seed=0)
    model = MaskedDiffusion(ExactMarkovDenoiser(chain, 4), seq_len=seq_len, vocab_size=4, num_steps=num_steps)
    return model, PWMReward(tata_pwm(), name="tata-pwm"), chain


class GMMEpsilon(torch.nn.Module):
    """Exact noise prediction of a Gaussian mixture data distribution under the VP forward process."""

    def __init__(self, weights, means, std, alphas_cumprod):
        super().__init__()
        self.logw = torch.as_tensor(weights, dtype=torch.float64).log()
        self.means = torch.as_tensor(means, dtype=torch.float64)  # (K, D)
        self.std = float(std)
        self.abar = alphas_cumprod.double()

    def forward(self, x, t):
        a = self.abar[t].unsqueeze(-1)  # (n, 1)
        var = a * self.std**2 + 1 - a  # (n, 1)
        mu = a.sqrt().unsqueeze(1) * self.means.unsqueeze(0)  # (n, K, D)
        diff = x.double().unsqueeze(1) - mu
        logp = self.logw - 0.5 * (diff**2).sum(-1) / var
        resp = torch.softmax(logp, dim=1).unsqueeze(-1)
        score = -(resp * diff).sum(1) / var
        return (-(1 - a).sqrt() * score).to(x.dtype)


def build_toy_gmm(num_steps: int = 100):
    from ..models.gaussian import make_alphas_cumprod
    abar = make_alphas_cumprod("linear", 1000)
    net = GMMEpsilon([0.5, 0.3, 0.2], [[-2.0, -2.0], [2.0, -1.0], [0.0, 2.5]], 0.5, abar)
    model = GaussianDiffusion(net, (2,), schedule=abar, num_steps=num_steps, eta=1.0)
    reward = Reward(lambda x: x.sum(dim=1), name="x1+x2", differentiable=True)
    return model, reward, net


def gmm_log_density(net: GMMEpsilon, x: torch.Tensor) -> torch.Tensor:
    d = x.shape[1]
    diff = x.double().unsqueeze(1) - net.means.unsqueeze(0)
    logp = net.logw - 0.5 * (diff**2).sum(-1) / net.std**2 - d * math.log(net.std * math.sqrt(2 * math.pi))
    return torch.logsumexp(logp, dim=1)
