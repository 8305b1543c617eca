"""Networks of the DNA task: the masked-diffusion denoiser, two cell-type oracles of different architectures, and
the SVDD-MC value network. Oracles take long tokens (n, L) or soft one-hot / probabilities (n, L, 4) -- the latter
is what gradient guidance differentiates. The value net takes tokens with the mask (n, L) or one-hot (n, L, 5)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..folder.networks import SeqValueNet

VOCAB = 4


def _onehot(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.float() if x.is_floating_point() else F.one_hot(x, k).float()


class DilatedDenoiser(nn.Module):
    """Masked-diffusion denoiser: token embedding, ``stacks`` stacks of residual dilated convolutions (kernel 9,
    dilations 1, 1, 4, 16, 64), per-position logits over the 4 bases. Not time-conditioned (the number of masks
    tells the noise level)."""

    def __init__(self, hidden: int = 64, stacks: int = 2, kernel: int = 9, dilations=(1, 1, 4, 16, 64)):
        super().__init__()
        self.config = {"hidden": hidden, "stacks": stacks, "kernel": kernel, "dilations": list(dilations)}
        self.emb = nn.Embedding(VOCAB + 1, hidden)
        self.norms = nn.ModuleList()
        self.convs = nn.ModuleList()
        for _ in range(stacks):
            for d in dilations:
                self.norms.append(nn.GroupNorm(1, hidden))
                self.convs.append(nn.Conv1d(hidden, hidden, kernel, padding=d * (kernel - 1) // 2, dilation=d))
        self.out_norm = nn.GroupNorm(1, hidden)
        self.out = nn.Conv1d(hidden, VOCAB, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h = self.emb(x).transpose(1, 2).contiguous()  # one copy here, not one per layer (same values)
        for norm, conv in zip(self.norms, self.convs):
            h = h + conv(F.gelu(norm(h)))
        return self.out(F.gelu(self.out_norm(h))).transpose(1, 2)


class ConvOracle(nn.Module):
    """Guidance oracle: a plain CNN (conv 15 / pool / conv 9 / pool / conv 5, global max + mean pool, MLP)."""

    def __init__(self, hidden: int = 128, classes: int = 4, dropout: float = 0.2):
        super().__init__()
        self.config = {"hidden": hidden, "classes": classes, "dropout": dropout}
        self.c1 = nn.Conv1d(VOCAB, hidden, 15, padding=7)
        self.c2 = nn.Conv1d(hidden, hidden, 9, padding=4)
        self.c3 = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _onehot(x, VOCAB).transpose(1, 2)
        h = F.max_pool1d(F.relu(self.c1(h)), 4)
        h = F.max_pool1d(F.relu(self.c2(self.drop(h))), 4)
        h = F.relu(self.c3(self.drop(h)))
        return self.head(torch.cat([h.amax(-1), h.mean(-1)], 1))


class DilatedResOracle(nn.Module):
    """Evaluation oracle: a different architecture -- residual dilated convolutions with batch norm and attention
    pooling over positions."""

    def __init__(self, hidden: int = 64, classes: int = 4, dilations=(1, 2, 4, 8, 16), dropout: float = 0.1):
        super().__init__()
        self.config = {"hidden": hidden, "classes": classes, "dilations": list(dilations), "dropout": dropout}
        self.inp = nn.Conv1d(VOCAB, hidden, 11, padding=5)
        self.blocks = nn.ModuleList([nn.Sequential(nn.BatchNorm1d(hidden), nn.ReLU(),
                                                   nn.Conv1d(hidden, hidden, 5, padding=2 * d, dilation=d),
                                                   nn.Dropout(dropout)) for d in dilations])
        self.att = nn.Conv1d(hidden, 1, 1)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(_onehot(x, VOCAB).transpose(1, 2))
        for b in self.blocks:
            h = h + b(h)
        a = torch.softmax(self.att(h), dim=-1)
        return self.head((h * a).sum(-1))


class ValueNet(SeqValueNet):
    """SVDD-MC value net f(x_t, t) of the DNA task: the folder tasks' value net with 4 bases, an input kernel of 9 and
    dilations up to 32. Takes tokens with the mask (n, L) or one-hot (n, L, 5)."""

    def __init__(self, hidden: int = 64, dilations=(1, 2, 4, 8, 16, 32)):
        super().__init__(VOCAB, hidden=hidden, dilations=dilations, kernel=9)
        self.config = {"hidden": hidden, "dilations": list(dilations)}  # as the shipped weights' record has it


def hepg2_logit(logits: torch.Tensor) -> torch.Tensor:
    """log P(HepG2) − log P(not HepG2) from 4-class logits (class 0 = HepG2)."""
    return logits[:, 0] - torch.logsumexp(logits[:, 1:], dim=1)
