"""The SYNTHETIC 5'UTR library: random N50 sequences (uniform A/C/G/U, as in the Sample et al. 2019 library
design) labelled by the two MRL proxies of `proxy` with Gaussian noise. Written as FASTA (for `svdd train prior`)
and CSV (name, sequence, mrl_a, mrl_b, split; for `svdd train oracle`).

    python -m svdd.tasks.rna_utr.data --out ~/.cache/svdd/rna-utr --num 20000 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from ...io import atomic_write
from ..folder.data import write_fasta
from .proxy import PROXY_A, PROXY_B

LENGTH = 50


def library(num: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join("ACGU"[k] for k in row) for row in rng.integers(0, 4, size=(num, LENGTH))]


def make(out: str | Path, num: int = 20000, seed: int = 0, test_fraction: float = 0.1) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seqs = library(num, seed)
    rng = np.random.default_rng([seed, 1])
    a = np.array([PROXY_A(s) for s in seqs]) + PROXY_A.noise * rng.standard_normal(num)
    b = np.array([PROXY_B(s) for s in seqs]) + PROXY_B.noise * rng.standard_normal(num)
    test = rng.random(num) < test_fraction
    names = [f"utr{k}" for k in range(num)]
    write_fasta(out / "library.fasta", names, seqs)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "sequence", "mrl_a", "mrl_b", "split"])
    for k in range(num):
        w.writerow([names[k], seqs[k], f"{a[k]:.4f}", f"{b[k]:.4f}", "test" if test[k] else "train"])
    atomic_write(out / "library.csv", buf.getvalue().encode())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--num", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(f"written: {make(a.out, a.num, a.seed)}/library.fasta, library.csv")


if __name__ == "__main__":
    main()
