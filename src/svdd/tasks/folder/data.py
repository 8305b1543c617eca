"""Reading a user's sequences: FASTA (any alphabet) and CSV tables of sequences with measurements, every bad record
an error naming its file, record and position. Tokens are the alphabet's indices; a variable-length set is padded
at the end with one extra token (index ``len(alphabet)``), which the prior learns to place like any other letter."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

HOLDOUT_VALUES = ("test", "heldout", "held-out", "holdout", "valid", "validation")


@dataclass(frozen=True)
class Alphabet:
    letters: str
    length: int  # the longest sequence (fixed length when ``padded`` is False)
    padded: bool = False

    def __post_init__(self):
        if not self.letters or len(set(self.letters)) != len(self.letters) or not self.letters.isprintable() \
                or any(c.isspace() or c == "-" for c in self.letters):
            raise ValueError(f"alphabet must be distinct printable letters (no space, no '-'), got {self.letters!r}")
        if not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"sequence length must be an int >= 1, got {self.length!r}")

    @property
    def vocab_size(self) -> int:
        """Tokens the model generates: the letters, plus the padding token of a variable-length set."""
        return len(self.letters) + int(self.padded)

    @property
    def pad(self) -> int | None:
        return len(self.letters) if self.padded else None

    def to_dict(self) -> dict:
        return {"letters": self.letters, "length": self.length, "padded": self.padded}

    def encode(self, seqs: list[str], names: list[str] | None = None, source: str = "input") -> torch.Tensor:
        """(n, length) long tokens; an unknown letter or a sequence too long (or of the wrong length, when fixed) is
        an error naming the record and the 1-based position."""
        names = names if names is not None else [f"#{k + 1}" for k in range(len(seqs))]
        index = {c: k for k, c in enumerate(self.letters)}
        out = torch.full((len(seqs), self.length), self.pad if self.padded else 0, dtype=torch.long)
        for k, (name, s) in enumerate(zip(names, seqs)):
            if len(s) > self.length or (not self.padded and len(s) != self.length):
                want = f"at most {self.length}" if self.padded else f"{self.length} (a fixed-length set)"
                raise ValueError(f"{source}: record {name!r} has {len(s)} letters; expected {want}")
            for j, c in enumerate(s):
                t = index.get(c)
                if t is None:
                    raise ValueError(f"{source}: record {name!r} has {c!r} at position {j + 1}, not in the alphabet "
                                     f"{self.letters!r}")
                out[k, j] = t
        return out

    def decode(self, x: torch.Tensor) -> list[str]:
        letters = self.letters + ("" if not self.padded else "\0")
        return ["".join(letters[t] for t in row).replace("\0", "") for row in x.tolist()]


def read_fasta(path: str | Path) -> tuple[list[str], list[str]]:
    """(names, sequences) of a FASTA file, letters upper-cased, lines joined. Errors: a missing or binary file, no
    records, text before the first header, an empty record, a duplicate name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FASTA file")
    raw = path.read_bytes()
    if b"\0" in raw[:4096]:
        raise ValueError(f"{path} is a binary file, not FASTA text")
    names, seqs, seen = [], [], {}
    for ln, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            name = line[1:].split()[0] if line[1:].split() else f"(unnamed, line {ln})"
            if name in seen:
                raise ValueError(f"{path}: record {name!r} appears twice (lines {seen[name]} and {ln})")
            seen[name] = ln
            names.append(name)
            seqs.append([])
        elif not names:
            raise ValueError(f"{path}: line {ln} holds sequence text before the first '>' header")
        else:
            seqs[-1].append(line.upper())
    if not names:
        raise ValueError(f"{path}: no FASTA records (no '>' header line)")
    out = ["".join(s) for s in seqs]
    for name, s in zip(names, out):
        if not s:
            raise ValueError(f"{path}: record {name!r} (line {seen[name]}) has no sequence")
    return names, out


def write_fasta(path: str | Path, names: list[str], seqs: list[str], comments: list[str] | None = None) -> None:
    from ...io import atomic_write
    lines = [f">{n}{' ' + c if comments else ''}\n{s}\n" for n, s, c in
             zip(names, seqs, comments or [""] * len(names))]
    atomic_write(Path(path), "".join(lines).encode())


@dataclass
class Table:
    names: list[str]
    seqs: list[str]
    targets: torch.Tensor  # float64 values (regression) or 0/1 labels (classification)
    heldout: torch.Tensor | None  # bool per row from a split column, or None (random split)
    classes: list[str] | None = None  # classification: the label of class 0 and of class 1


def read_table(path: str | Path, sequence_column: str, target: str, *, kind: str = "regression",
               split_column: str | None = None) -> Table:
    """Sequences and one measurement per row of a CSV file (header row required). Errors name the file, line and
    value: missing columns, an empty sequence, a non-numeric or non-finite target (regression), more or fewer than
    two labels (classification), a split column with no held-out rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file")
    if kind not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {kind!r}")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in (sequence_column, target, split_column) if c is not None and c not in cols]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}; its columns: {cols}")
        names, seqs, raw, split = [], [], [], []
        for k, row in enumerate(reader):
            line = k + 2
            s = (row[sequence_column] or "").strip().upper()
            if not s:
                raise ValueError(f"{path}: line {line} has an empty {sequence_column!r}")
            v = (row[target] or "").strip()
            if kind == "regression":
                try:
                    val = float(v)
                except ValueError:
                    raise ValueError(f"{path}: line {line}: {target!r} is {v!r}, not a number") from None
                if not math.isfinite(val):
                    raise ValueError(f"{path}: line {line}: {target!r} is {v!r}, not a finite number")
                raw.append(val)
            else:
                if not v:
                    raise ValueError(f"{path}: line {line} has an empty {target!r} label")
                raw.append(v)
            names.append(f"line {line}")
            seqs.append(s)
            if split_column is not None:
                split.append((row[split_column] or "").strip().lower() in HOLDOUT_VALUES)
    if not seqs:
        raise ValueError(f"{path}: no data rows")
    classes = None
    if kind == "classification":
        classes = sorted(set(raw))
        if len(classes) != 2:
            raise ValueError(f"{path}: classification needs exactly 2 labels in {target!r}, found {len(classes)}: "
                             f"{classes[:10]}")
        targets = torch.tensor([float(classes.index(v)) for v in raw], dtype=torch.float64)
    else:
        targets = torch.tensor(raw, dtype=torch.float64)
    heldout = None
    if split_column is not None:
        heldout = torch.tensor(split)
        if not heldout.any() or heldout.all():
            raise ValueError(f"{path}: split column {split_column!r} must mark some rows (not all) held out with one "
                             f"of {list(HOLDOUT_VALUES)}; it marks {int(heldout.sum())} of {len(split)}")
    return Table(names, seqs, targets, heldout, classes)


def split(n: int, fraction: float, seed: int, *, min_train: int = 8, min_heldout: int = 2,
          source: str = "input") -> tuple[torch.Tensor, torch.Tensor]:
    """Random (train, held-out) row indices; too few rows for the split is an error."""
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction!r}")
    k = int(round(fraction * n))
    if k < min_heldout or n - k < min_train:
        raise ValueError(f"{source}: {n} rows are too few for a held-out fraction of {fraction}: need at least "
                         f"{min_train} to train on and {min_heldout} held out")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[k:], perm[:k]
