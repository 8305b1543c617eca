"""Networks of a folder task, sized by its alphabet: the masked-diffusion denoiser (the prior), a CNN oracle and the
SVDD-MC value net. Tokens (n, L) in; the prior and the value net also see the mask token (index ``vocab``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SeqDenoiser(nn.Module):
    """Token embedding (the vocabulary and the mask), a learned position embedding, residual dilated convolutions,
    per-position logits over the vocabulary. Not time-conditioned (the number of masks tells the noise level)."""

    def __init__(self, vocab: int, length: int, hidden: int = 64, kernel: int = 5, dilations=(1, 2, 4, 8, 1, 2, 4, 8)):
        super().__init__()
        self.config = {"vocab": vocab, "length": length, "hidden": hidden, "kernel": kernel,
                       "dilations": list(dilations)}
        self.emb = nn.Embedding(vocab + 1, hidden)
        self.pos = nn.Parameter(torch.zeros(1, hidden, length))
        self.norms = nn.ModuleList([nn.GroupNorm(1, hidden) for _ in dilations])
        self.convs = nn.ModuleList([nn.Conv1d(hidden, hidden, kernel, padding=d * (kernel - 1) // 2, dilation=d)
                                    for d in dilations])
        self.out_norm = nn.GroupNorm(1, hidden)
        self.out = nn.Conv1d(hidden, vocab, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h = (self.emb(x).transpose(1, 2) + self.pos).contiguous()  # one copy here, not one per layer (same values)
        for norm, conv in zip(self.norms, self.convs):
            h = h + conv(F.gelu(norm(h)))
        return self.out(F.gelu(self.out_norm(h))).transpose(1, 2)


class SeqOracle(nn.Module):
    """CNN oracle: one-hot tokens, three convolutions with pooling, global max + mean pooling, an MLP to one output
    (a regression value, or the logit of class 1)."""

    def __init__(self, vocab: int, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.config = {"vocab": vocab, "hidden": hidden, "dropout": dropout}
        self.c1 = nn.Conv1d(vocab, hidden, 9, padding=4)
        self.c2 = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.c3 = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x.float() if x.is_floating_point() else F.one_hot(x, self.config["vocab"]).float()).transpose(1, 2)
        h = F.relu(self.c1(h))
        h = F.relu(self.c2(self.drop(h)))
        h = F.relu(self.c3(self.drop(h)))
        return self.head(torch.cat([h.amax(-1), h.mean(-1)], 1)).squeeze(-1)


class SeqValueNet(nn.Module):
    """SVDD-MC value net f(x_t, t): one-hot with the mask channel (tokens, or probabilities over them), the time as an
    extra channel, residual dilated convolutions, pooled to one value."""

    def __init__(self, vocab: int, hidden: int = 64, dilations=(1, 2, 4, 8, 16), kernel: int = 5):
        super().__init__()
        self.config = {"vocab": vocab, "hidden": hidden, "dilations": list(dilations), "kernel": kernel}
        self.inp = nn.Conv1d(vocab + 2, hidden, kernel, padding=kernel // 2)
        self.blocks = nn.ModuleList([nn.Sequential(nn.GroupNorm(1, hidden), nn.GELU(),
                                                   nn.Conv1d(hidden, hidden, 5, padding=2 * d, dilation=d))
                                     for d in dilations])
        self.head = nn.Sequential(nn.Linear(2 * hidden + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.vocab = vocab

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        oh = x.float() if x.is_floating_point() else F.one_hot(x, self.vocab + 1).float()
        tt = t.float().view(-1, 1, 1).expand(oh.shape[0], oh.shape[1], 1)
        h = self.inp(torch.cat([oh, tt], -1).transpose(1, 2))
        for b in self.blocks:
            h = h + b(h)
        return self.head(torch.cat([h.amax(-1), h.mean(-1), t.float().view(-1, 1)], 1)).squeeze(-1)
