"""Molecules as SELFIES token rows: MOSES data, a fixed vocabulary, SMILES ⇄ tokens.

MOSES (Polykovskiy et al. 2020; 1,584,663 drug-like ZINC molecules for training, 176,074 for testing) is read from the
data files of the pip package ``molsets`` (installed with ``--no-deps`` by the set-up; the package itself is never
imported). Molecules are SELFIES strings (Krenn et al. 2020) cut into tokens of a fixed vocabulary and padded with
``[nop]`` to ``SEQ_LEN`` tokens. The SELFIES decoder skips ``[nop]`` wherever it stands and turns every token string
into a valid molecule, so every generated row decodes to a valid molecule by construction (an all-padding row is the
empty molecule, counted invalid). Output molecules are canonical SMILES (RDKit).
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ...io import cache_dir  # noqa: F401  (also what the molecule trainers import from here)

#: the SELFIES tokens of MOSES (every token of the training set but 6 explicit-[H] molecules) + the padding token
PAD = "[nop]"
VOCAB: tuple[str, ...] = (
    PAD, "[C]", "[=C]", "[#C]", "[N]", "[=N]", "[#N]", "[NH1]", "[O]", "[=O]", "[S]", "[=S]", "[P]", "[F]", "[Cl]",
    "[Br]", "[Ring1]", "[=Ring1]", "[Ring2]", "[=Ring2]", "[Branch1]", "[=Branch1]", "[#Branch1]", "[Branch2]",
    "[=Branch2]", "[#Branch2]")
INDEX = {t: k for k, t in enumerate(VOCAB)}
SEQ_LEN = 56


class MoleculeError(ValueError):
    """A SMILES that cannot be parsed or does not fit the vocabulary / length; the message names it."""


def _require(module: str, pip: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the molecule task needs {pip!r}: pip install '{pip}' (or `make install`)") from None


def canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES, or None when RDKit cannot parse it."""
    Chem = _require("rdkit.Chem", "rdkit")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() > 0 else None


def encode_one(smiles: str, seq_len: int = SEQ_LEN) -> list[int]:
    """One SMILES → token indices padded to ``seq_len``. Raises `MoleculeError` naming the SMILES."""
    sf = _require("selfies", "selfies")
    if not isinstance(smiles, str) or not smiles.strip():
        raise MoleculeError(f"not a SMILES string: {smiles!r}")
    if canonical(smiles) is None:
        raise MoleculeError(f"RDKit cannot parse the SMILES {smiles!r}")
    try:
        tokens = list(sf.split_selfies(sf.encoder(smiles, strict=True)))
    except Exception as exc:  # selfies.EncoderError
        raise MoleculeError(f"cannot encode the SMILES {smiles!r} as SELFIES: {exc}") from None
    unknown = sorted({t for t in tokens if t not in INDEX})
    if unknown:
        raise MoleculeError(f"SMILES {smiles!r} has SELFIES tokens outside the vocabulary: {unknown}")
    if len(tokens) > seq_len:
        raise MoleculeError(f"SMILES {smiles!r} is {len(tokens)} SELFIES tokens long; the model takes at most {seq_len}")
    return [INDEX[t] for t in tokens] + [INDEX[PAD]] * (seq_len - len(tokens))


def encode(smiles: Iterable[str], seq_len: int = SEQ_LEN) -> torch.Tensor:
    """SMILES → long tokens (n, seq_len). Raises `MoleculeError` naming the first bad SMILES."""
    rows = [encode_one(s, seq_len) for s in smiles]
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), seq_len)


def to_selfies(tokens: torch.Tensor) -> list[str]:
    if tokens.is_floating_point() or tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < len(VOCAB):
        bad = tokens if tokens.is_floating_point() else tokens[(tokens < 0) | (tokens >= len(VOCAB))]
        raise ValueError(f"molecule token rows must hold integers in [0, {len(VOCAB)}) (no mask token); got "
                         f"{bad.flatten()[:5].tolist()}")
    return ["".join(VOCAB[int(k)] for k in row if int(k) != INDEX[PAD]) for row in tokens.reshape(-1, tokens.shape[-1])]


@lru_cache(maxsize=1 << 18)
def _decode_selfies(s: str) -> str | None:
    sf = _require("selfies", "selfies")
    try:
        smiles = sf.decoder(s)
    except Exception:
        return None
    return canonical(smiles) if smiles else None


def decode(tokens: torch.Tensor) -> list[str | None]:
    """Token rows → canonical SMILES (None for the empty molecule)."""
    return [_decode_selfies(s) for s in to_selfies(tokens)]


# MOSES ------------------------------------------------------------------------------------------------------------
def moses_file(split: str) -> Path:
    """Path of MOSES's ``train`` or ``test`` SMILES file inside the installed ``molsets`` package."""
    from importlib.util import find_spec
    if split not in ("train", "test"):
        raise ValueError(f"MOSES split must be 'train' or 'test', got {split!r}")
    spec = find_spec("moses")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("MOSES data not found: install it with `pip install --no-deps molsets==0.3.1` "
                                "(part of `make install`)")
    path = Path(spec.origin).parent / "dataset" / "data" / f"{split}.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: reinstall with `pip install --no-deps molsets==0.3.1`")
    return path


@lru_cache(maxsize=2)
def moses_smiles(split: str) -> tuple[str, ...]:
    with gzip.open(moses_file(split), "rt") as f:
        lines = f.read().split("\n")
    if lines[0].strip().upper() != "SMILES":
        raise ValueError(f"unexpected header {lines[0]!r} in {moses_file(split)}")
    return tuple(s.strip() for s in lines[1:] if s.strip())


def _encode_or_none(smiles: str) -> list[int] | None:
    try:
        return encode_one(smiles)
    except MoleculeError:
        return None


def moses_tokens(split: str, limit: int | None = None, workers: int = 2) -> torch.Tensor:
    """MOSES molecules of a split as token rows (molecules that do not fit the vocabulary or length are dropped),
    cached as a ``.npy`` file (no pickle) under ``$SVDD_CACHE`` (default ``~/.cache/svdd``)."""
    smiles = moses_smiles(split)[:limit]
    path = cache_dir() / f"moses-{split}-{len(smiles)}-L{SEQ_LEN}-V{len(VOCAB)}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.int64))
    if workers > 1:
        from multiprocessing import get_context
        with get_context("spawn").Pool(workers) as pool:
            rows = pool.map(_encode_or_none, smiles, chunksize=2048)
    else:
        rows = [_encode_or_none(s) for s in smiles]
    arr = np.array([r for r in rows if r is not None], dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)
    return torch.from_numpy(arr.astype(np.int64))



# Carried token arrays (training without RDKit / SELFIES / molsets) ------------------------------------------------
SPLITS = ("train", "test")


def tokens_file(folder: str | Path, split: str) -> Path:
    return Path(folder) / f"moses-{split}-L{SEQ_LEN}-V{len(VOCAB)}.npz"


def export_tokens(folder: str | Path) -> dict[str, tuple[int, int]]:
    """Write every MOSES split's token rows (``moses_tokens``, all molecules that fit) as a compressed ``.npz`` (uint8
    ``tokens`` + the ``vocab`` strings; no pickle) into ``folder``; returns {file name: (molecules, bytes)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in SPLITS:
        arr = moses_tokens(split).numpy().astype(np.uint8)
        path = tokens_file(folder, split)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, tokens=arr, vocab=np.array(VOCAB))
        os.replace(tmp, path)
        out[path.name] = (arr.shape[0], path.stat().st_size)
    return out


def load_tokens(folder: str | Path, split: str) -> torch.Tensor:
    """Token rows (uint8, (n, SEQ_LEN)) of a split written by `export_tokens`; checks the vocabulary and length.
    Needs numpy only (no RDKit, SELFIES or molsets)."""
    path = tokens_file(folder, split)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: write it with `python -m svdd.tasks.molecule.train export-tokens "
                                f"--out {folder}` where MOSES, RDKit and SELFIES are installed")
    with np.load(path, allow_pickle=False) as f:
        tokens, vocab = f["tokens"], tuple(f["vocab"].tolist())
    if vocab != VOCAB or tokens.ndim != 2 or tokens.shape[1] != SEQ_LEN or tokens.dtype != np.uint8:
        raise ValueError(f"{path} holds {tokens.dtype} tokens {tokens.shape} over {len(vocab)} tokens; expected uint8 "
                         f"(n, {SEQ_LEN}) over this package's {len(VOCAB)}-token vocabulary")
    return torch.from_numpy(tokens)
