"""Networks of the molecule task: the masked-diffusion denoiser over SELFIES tokens (a small bidirectional
transformer) and the SVDD-MC value network (convolutional). Both take long tokens (n, L) with the mask token
``vocab_size``."""

from __future__ import annotations

import torch
import torch.nn as nn


class TransformerDenoiser(nn.Module):
    """Token + learned position embeddings, ``layers`` pre-norm transformer encoder layers, per-position logits over
    the ``vocab`` real tokens. Not time-conditioned: the number of masks tells the noise level."""

    def __init__(self, vocab: int = 26, seq_len: int = 56, dim: int = 128, layers: int = 6, heads: int = 4,
                 ff: int = 512, dropout: float = 0.0):
        super().__init__()
        self.config = {"vocab": vocab, "seq_len": seq_len, "dim": dim, "layers": layers, "heads": heads, "ff": ff,
                       "dropout": dropout}
        self.tok = nn.Embedding(vocab + 1, dim)
        self.pos = nn.Parameter(torch.randn(seq_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h = self.tok(x) + self.pos[: x.shape[1]]
        return self.out(self.norm(self.encoder(h)))


class ValueNet(nn.Module):
    """SVDD-MC value net f(x_t, t): one-hot tokens with the mask channel (or one-hot / probability rows (n, L, V + 1),
    what DPS through the value net differentiates) and the time as an extra channel, residual dilated convolutions,
    max + mean pooling, MLP head. (A small transformer fitted no better on these rollouts and trained 3x slower.)"""

    def __init__(self, vocab: int = 26, hidden: int = 96, dilations=(1, 2, 4, 8, 1, 2, 4, 8)):
        super().__init__()
        self.config = {"vocab": vocab, "hidden": hidden, "dilations": list(dilations)}
        self.vocab = vocab
        self.inp = nn.Conv1d(vocab + 2, hidden, 5, padding=2)
        self.blocks = nn.ModuleList([nn.Sequential(nn.GroupNorm(1, hidden), nn.GELU(),
                                                   nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d))
                                     for d in dilations])
        self.head = nn.Sequential(nn.Linear(2 * hidden + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        oh = x.float() if x.is_floating_point() else nn.functional.one_hot(x, self.vocab + 1).float()
        tt = t.float().view(-1, 1, 1).expand(oh.shape[0], oh.shape[1], 1)
        h = self.inp(torch.cat([oh, tt], -1).transpose(1, 2))
        for b in self.blocks:
            h = h + b(h)
        return self.head(torch.cat([h.amax(-1), h.mean(-1), t.float().view(-1, 1)], 1)).squeeze(-1)
