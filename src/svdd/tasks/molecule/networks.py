"""Networks of the molecule task: the masked-diffusion denoiser over SELFIES tokens (a small bidirectional
transformer) and the SVDD-MC value network. Both take long tokens (n, L) with the mask token ``vocab_size``."""

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


def embed(table: nn.Embedding, x: torch.Tensor) -> torch.Tensor:
    """Token embedding of long tokens (n, L), or of one-hot / probability rows (n, L, V + 1) -- the latter is what
    gradient guidance (DPS through the value net) differentiates."""
    return x.to(table.weight.dtype) @ table.weight if x.is_floating_point() else table(x)


class ValueNet(nn.Module):
    """SVDD-MC value net f(x_t, t): a small transformer on tokens (mask included) or their one-hot rows, with the
    time added to every position's embedding, mean + max pooled, MLP head."""

    def __init__(self, vocab: int = 26, seq_len: int = 56, dim: int = 96, layers: int = 3, heads: int = 4):
        super().__init__()
        self.config = {"vocab": vocab, "seq_len": seq_len, "dim": dim, "layers": layers, "heads": heads}
        self.tok = nn.Embedding(vocab + 1, dim)
        self.pos = nn.Parameter(torch.randn(seq_len, dim) * 0.02)
        self.time = nn.Linear(1, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(2 * dim + 1), nn.Linear(2 * dim + 1, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = t.float().view(-1, 1)
        h = self.encoder(embed(self.tok, x) + self.pos[: x.shape[1]] + self.time(tt).unsqueeze(1))
        return self.head(torch.cat([h.mean(1), h.amax(1), tt], 1)).squeeze(-1)
