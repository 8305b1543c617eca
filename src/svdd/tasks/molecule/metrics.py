"""Set metrics of generated molecules: validity, uniqueness and novelty against MOSES train (MOSES conventions),
internal diversity (1 − mean Tanimoto similarity over DISTINCT pairs of Morgan radius-2 fingerprints, 2048 bits;
MOSES's IntDiv also averages the self-pairs, which lowers it by about (1 − mean similarity)/n) and Wasserstein-1
distances of property distributions to MOSES test."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np

from .data import cache_dir, canonical, moses_smiles

PROPERTIES = ("qed", "sa", "mw", "logp", "heavy_atoms")


def validity(smiles: Sequence[str | None]) -> float:
    return float(np.mean([s is not None for s in smiles])) if len(smiles) else float("nan")


def uniqueness(smiles: Sequence[str | None]) -> float:
    valid = [s for s in smiles if s is not None]
    return len(set(valid)) / len(valid) if valid else float("nan")


@lru_cache(maxsize=1)
def train_set() -> frozenset[str]:
    """Canonical SMILES of MOSES train (canonicalised once with this RDKit, cached as a text file)."""
    path = cache_dir() / f"moses-train-canonical-rdkit{_rdkit_version()}.txt"
    if not path.exists():
        out = [canonical(s) or s for s in moses_smiles("train")]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(out))
        os.replace(tmp, path)
    return frozenset(path.read_text().split("\n"))


def _rdkit_version() -> str:
    import rdkit
    return rdkit.__version__


def novelty(smiles: Sequence[str | None]) -> float:
    """Fraction of the distinct valid molecules not in MOSES train."""
    uniq = {s for s in smiles if s is not None}
    return float(np.mean([s not in train_set() for s in uniq])) if uniq else float("nan")


def fingerprints(smiles: Sequence[str | None]):
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles if s is not None]


def internal_diversity(smiles: Sequence[str | None]) -> float:
    """1 − mean Tanimoto similarity over distinct pairs of valid molecules (duplicates count as similarity 1)."""
    from rdkit import DataStructs
    fps = fingerprints(smiles)
    n = len(fps)
    if n < 2:
        return float("nan")
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1:])) for i in range(n - 1))
    return 1.0 - total / (n * (n - 1) / 2)


def properties(smiles: Sequence[str | None]) -> dict[str, np.ndarray]:
    """QED, SA score (1 = easy .. 10 = hard), molecular weight, Crippen logP and heavy-atom count of valid ones."""
    from ...rewards.chem import heavy_atoms, logp, molecular_weight, qed, sa_score
    fns = {"qed": qed, "sa": sa_score, "mw": molecular_weight, "logp": logp, "heavy_atoms": heavy_atoms}
    valid = [s for s in smiles if s is not None]
    return {k: np.array([f(s) for s in valid], dtype=float) for k, f in fns.items()}


@lru_cache(maxsize=4)
def test_properties(n: int = 5000, seed: int = 0) -> dict[str, np.ndarray]:
    """Properties of ``n`` random MOSES test molecules (the reference of the Wasserstein distances)."""
    test = moses_smiles("test")
    idx = np.random.default_rng(seed).choice(len(test), size=min(n, len(test)), replace=False)
    return properties([test[i] for i in idx])


def wasserstein(smiles: Sequence[str | None], n_ref: int = 5000) -> dict[str, float]:
    from scipy.stats import wasserstein_distance
    mine, ref = properties(smiles), test_properties(n_ref)
    return {f"w1_{k}": float(wasserstein_distance(mine[k][~np.isnan(mine[k])], ref[k][~np.isnan(ref[k])]))
            if np.isfinite(mine[k]).any() else float("nan") for k in PROPERTIES}


def report(smiles: Sequence[str | None], with_novelty: bool = True) -> dict[str, float]:
    """Every metric of a set of generated molecules."""
    out = {"n": len(smiles), "validity": validity(smiles), "uniqueness": uniqueness(smiles),
           "internal_diversity": internal_diversity(smiles)}
    if with_novelty:
        out["novelty"] = novelty(smiles)
    out.update(wasserstein(smiles))
    return out
