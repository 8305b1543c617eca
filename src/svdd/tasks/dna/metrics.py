"""Sequence metrics of the DNA task: k-mer spectra, GC content, AUROC."""

from __future__ import annotations

import torch


def kmer_freq(x: torch.Tensor, k: int) -> torch.Tensor:
    w = torch.tensor([4 ** (k - 1 - j) for j in range(k)])
    codes = (x.unfold(1, k, 1) * w).sum(-1).flatten()
    c = torch.bincount(codes, minlength=4**k).double()
    return c / c.sum()


def gc_content(x: torch.Tensor) -> torch.Tensor:
    return ((x == 1) | (x == 2)).double().mean(1)


def auroc(score: torch.Tensor, label: torch.Tensor) -> float:
    order = score.argsort()
    ranks = torch.empty_like(order, dtype=torch.double)
    ranks[order] = torch.arange(1, len(score) + 1, dtype=torch.double)
    pos = label.bool()
    npos, nneg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))
