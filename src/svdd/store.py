"""The run store: a run folder of chunks with derived seeds, each chunk written atomically once finished.

A run of N samples is split into chunks of ``chunk_size`` samples (SMC: each chunk is one particle group). Chunk k
draws from seed ``chunk_seed(seed, k)`` -- the run seed itself for chunk 0, so a run that fits one chunk equals
``svdd.sample(..., seed=seed)`` -- so the union of the chunks is the same whichever process made them, in any order.

Folder layout::

    RUN/manifest.json               the run's spec (`svdd.spec.RunSpec`), its config and hash, package version, the
                                    chunk table, the command that resumes it
    RUN/chunks/chunk-00003.parquet  one per finished chunk: index, sample (tokens or flattened values), text,
                                    reward, eval_reward, naturalness; cost, diagnostics and the config hash in its
                                    metadata
    RUN/chunks/chunk-00003.sha256   the Parquet file's hash, written after it: a chunk without a matching hash
                                    (torn, truncated, edited) is redone on resume
    RUN/run.json, samples.pt, ...   the merged outputs, once every chunk is done

`svdd compare` and `svdd frontier` write one such folder per (method, seed) or (family, budget, seed) under
``OUT/runs/``. Every file is written to a temporary name, flushed, fsync'ed and renamed. A resumed run equals an
uninterrupted one (the chunks are deterministic functions of their seeds); a resume with a different config is an
error naming the keys that differ. The hashes guard against torn writes and chunks of another run, not against a
person with write access to the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_write, config_hash, describe_diff

FORMAT = 2  # 2: the manifest holds the run's spec (`svdd.spec.RunSpec`); 1 had its config only
MANIFEST = "manifest.json"
LOCK = ".svdd.lock"  # held (flock) by the process that writes the folder; ignored when a folder's contents are listed


def read_manifest(folder: str | Path, fmt: int, older: str = "", kinds: tuple[str, ...] | None = None
                  ) -> dict[str, Any] | None:
    """The manifest of a run or study folder (None when there is none). Unreadable JSON, output of another command
    (``kinds``) or another format are errors naming the folder and how to go on; ``older`` says what the older
    format held."""
    f = Path(folder) / MANIFEST
    if not f.exists():
        return None
    try:
        doc = json.loads(f.read_text())
    except ValueError as exc:
        raise ValueError(f"{f} is not readable JSON ({exc}); start again with --overwrite") from None
    kind = doc.get("kind", "sample")
    if kinds is not None and kind not in kinds:
        raise ValueError(f"{folder} holds the output of `svdd {kind}`, not of {' or '.join(kinds)}")
    if doc.get("format") != fmt:
        raise ValueError(f"{folder} was written by an older svdd ({older}format {doc.get('format')!r}; this one "
                         f"writes {fmt}): rerun it with --overwrite (or into a new folder)")
    return doc


def chunk_seed(seed: int, k: int) -> int:
    """The seed of chunk ``k``: ``seed`` for chunk 0, else a SeedSequence draw from (seed, k), in [0, 2**62)."""
    if k == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, np.uint64)[0] >> np.uint64(2))


def plan(num_samples: int, chunk_size: int, seed: int) -> list[dict[str, int]]:
    """ceil(num_samples / chunk_size) chunks of nearly equal size (at most ``chunk_size``; no tiny last chunk, which
    would be a one-particle SMC group)."""
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    k = -(-num_samples // chunk_size)
    cuts = [num_samples * j // k for j in range(k + 1)]
    return [{"chunk": j, "start": cuts[j], "stop": cuts[j + 1], "seed": chunk_seed(seed, j)} for j in range(k)]


def entries(path: Path) -> list[Path]:
    """What a folder holds, its lock file left out (a folder holding only the lock counts as empty)."""
    return [c for c in Path(path).iterdir() if c.name != LOCK] if Path(path).is_dir() else []


_HELD: dict[str, Any] = {}  # resolved folder -> the open lock file this process holds


def lock_folder(path: str | Path) -> bool:
    """Take the exclusive lock of a run folder (``fcntl.flock`` on ``path/.svdd.lock``, created with the folder): a
    second svdd process writing the same folder (sample, compare or frontier; another `--overwrite`) gets an error
    naming the holder instead of tearing the first one's files. The lock goes with the process however it ends (a
    `kill -9` leaves no stale lock). Re-entrant within a process. Returns whether this call took it (then
    `unlock_folder` releases it). No-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        return False
    import socket
    import time
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        return False
    f = open(path / LOCK, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ValueError(f"{path} is in use by another svdd run ({holder}); wait for it to end or stop it, "
                         "or pick another folder") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    f.flush()
    _HELD[key] = f
    return True


def unlock_folder(path: str | Path | None = None) -> None:
    """Release the lock of ``path`` (every lock this process holds when None)."""
    keys = list(_HELD) if path is None else [str(Path(path).resolve())]
    for key in keys:
        f = _HELD.pop(key, None)
        if f is not None:
            f.close()  # closing the file releases the flock


class RunFolder:
    """A run folder: the manifest, the finished chunks, and the merged outputs once all are done."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path, self.manifest = Path(path), manifest
        self.chunks_dir = self.path / "chunks"

    # opening -----------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, config: dict[str, Any], chunks: list[dict[str, int]], *, resume: bool = False,
             overwrite: bool = False, command: str | None = None, spec: dict[str, Any] | None = None,
             kind: str = "sample") -> "RunFolder":
        """Start a run in ``path`` (it must be empty or absent, or ``overwrite`` a previous run folder), or resume
        the run already there (``resume``: the config must be the same)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is an existing file, not a run folder")
        config = json.loads(json.dumps(config, default=str))  # as it will read back
        manifest_path = path / MANIFEST
        if resume and not manifest_path.exists():  # nothing to resume yet: start the run (an empty folder only)
            if entries(path):
                raise ValueError(f"{path} holds no run to resume (no {MANIFEST}) but is not empty; pick another folder")
            resume = False
        if resume:
            old = read_manifest(path, FORMAT)
            if old.get("config_hash") != config_hash(config):
                raise ValueError(f"{path} holds a run with another config: {describe_diff(old.get('config'), config)}. "
                                 "Resume it with the same options, or start again with --overwrite")
            if old.get("chunks") != chunks:  # the chunk plan is derived from the run's spec, never read from the folder
                raise ValueError(f"{manifest_path}: its chunk table differs from the plan of its own run (samples, "
                                 "chunk size, seed); the folder was edited: start again with --overwrite")
            run = cls(path, {**old, "chunks": chunks, "command": command})  # the resume hint: this call's, not the folder's
            run.chunks_dir.mkdir(parents=True, exist_ok=True)
            return run
        if entries(path):
            if not overwrite:
                raise ValueError(f"{path} is not empty: pass --resume {path} to continue the run in it, or "
                                 "--overwrite to replace it")
            if not manifest_path.exists():
                raise ValueError(f"{path} is not empty and holds no svdd run ({MANIFEST}): --overwrite only replaces "
                                 "a run folder; pick another --out")
            clear(path)
        path.mkdir(parents=True, exist_ok=True)
        from . import __version__
        manifest = {"format": FORMAT, "kind": kind, "svdd_version": __version__, "spec": spec, "config": config,
                    "config_hash": config_hash(config), "chunks": chunks, "command": command}
        atomic_write(manifest_path, json.dumps(manifest, indent=2).encode())
        run = cls(path, manifest)
        run.chunks_dir.mkdir(exist_ok=True)
        return run

    # chunks ------------------------------------------------------------------------------------------------------------
    @property
    def chunks(self) -> list[dict[str, int]]:
        return self.manifest["chunks"]

    def _file(self, k: int) -> Path:
        return self.chunks_dir / f"chunk-{k:05d}.parquet"

    def done(self, k: int) -> bool:
        """Whether chunk k finished: its file exists and matches the hash written after it."""
        f, h = self._file(k), self._file(k).with_suffix(".sha256")
        if not (f.exists() and h.exists()):
            return False
        return hashlib.sha256(f.read_bytes()).hexdigest() == h.read_text().strip()

    def finished(self) -> list[int]:
        return [c["chunk"] for c in self.chunks if self.done(c["chunk"])]

    def write_chunk(self, k: int, samples: torch.Tensor, rewards: torch.Tensor, *, eval_rewards=None, naturalness=None,
                    text=None, meta: dict[str, Any] | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        c = self.chunks[k]
        n = samples.shape[0]
        if n != c["stop"] - c["start"]:
            raise ValueError(f"chunk {k} should hold {c['stop'] - c['start']} samples, got {n}")
        flat = samples.detach().cpu().reshape(n, -1)
        cols = {"index": pa.array(np.arange(c["start"], c["stop"], dtype=np.int64)),
                "sample": pa.array(list(flat.numpy()), type=pa.list_(pa.from_numpy_dtype(flat.numpy().dtype))),
                "reward": pa.array(rewards.detach().double().cpu().numpy())}
        if eval_rewards is not None:
            cols["eval_reward"] = pa.array(torch.as_tensor(eval_rewards).double().cpu().numpy())
        if naturalness is not None:
            cols["naturalness"] = pa.array(torch.as_tensor(naturalness).double().cpu().numpy())
        if text is not None:
            cols["text"] = pa.array(list(text), type=pa.string())
        info = {"config_hash": self.manifest["config_hash"], "chunk": k, "seed": c["seed"],
                "sample_shape": list(samples.shape[1:]), "dtype": str(samples.dtype).replace("torch.", ""),
                **(meta or {})}
        table = pa.table(cols).replace_schema_metadata({"svdd": json.dumps(info, default=str)})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        f = self._file(k)
        atomic_write(f, data)
        atomic_write(f.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())

    def read_chunk(self, k: int) -> dict[str, Any]:
        import pyarrow.parquet as pq
        table = pq.read_table(self._file(k))
        info = json.loads(table.schema.metadata[b"svdd"])
        if info.get("config_hash") != self.manifest["config_hash"]:
            raise ValueError(f"{self._file(k)} belongs to another run (config hash {info.get('config_hash')})")
        rows = np.stack(table.column("sample").to_numpy(zero_copy_only=False)) if table.num_rows else np.zeros((0,))
        samples = torch.from_numpy(rows.astype(info["dtype"])).reshape(table.num_rows, *info["sample_shape"])
        out = {"samples": samples, "rewards": torch.tensor(table.column("reward").to_numpy()), "meta": info,
               "eval_rewards": None, "naturalness": None, "text": None}
        for col, key in (("eval_reward", "eval_rewards"), ("naturalness", "naturalness")):
            if col in table.column_names:
                out[key] = torch.tensor(table.column(col).to_numpy())
        if "text" in table.column_names:
            out["text"] = table.column("text").to_pylist()
        return out

    def merged(self) -> dict[str, Any]:
        """Every chunk, in sample order: samples, rewards, eval rewards, naturalness and text concatenated; per-chunk
        metadata."""
        missing = [c["chunk"] for c in self.chunks if not self.done(c["chunk"])]
        if missing:
            raise ValueError(f"{self.path}: chunk(s) {missing[:10]} are missing or damaged; resume the run to redo them")
        parts = [self.read_chunk(c["chunk"]) for c in self.chunks]
        cat = {"samples": torch.cat([p["samples"] for p in parts]), "rewards": torch.cat([p["rewards"] for p in parts]),
               "meta": [p["meta"] for p in parts]}
        for key in ("eval_rewards", "naturalness"):
            cat[key] = torch.cat([p[key] for p in parts]) if all(p[key] is not None for p in parts) else None
        cat["text"] = sum((p["text"] for p in parts), []) if all(p["text"] is not None for p in parts) else None
        return cat


def clear(path: Path) -> None:
    """Remove what a folder holds (its lock file stays: another process may be waiting on it)."""
    for child in entries(path):
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
