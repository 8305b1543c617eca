"""Durable runs: a run folder of chunks with derived seeds, each chunk written atomically once finished.

A run of N samples is split into chunks of ``chunk_size`` samples (SMC: each chunk is one particle group). Chunk k
draws from seed ``chunk_seed(seed, k)`` -- the run seed itself for chunk 0, so a run that fits one chunk equals
``svdd.sample(..., seed=seed)`` -- so the union of the chunks is the same whichever process made them, in any order.

Folder layout::

    RUN/manifest.json               config, its hash, package version, the chunk table, the command
    RUN/chunks/chunk-00003.parquet  one per finished chunk: index, sample (tokens or flattened values), text,
                                    reward, eval_reward; cost, diagnostics and the config hash in its metadata
    RUN/chunks/chunk-00003.sha256   the Parquet file's hash, written after it: a chunk without a matching hash
                                    (torn, truncated, edited) is redone on resume

Every file is written to a temporary name, flushed, fsync'ed and renamed. A resumed run equals an uninterrupted one
(the chunks are deterministic functions of their seeds); a resume with a different config is an error naming the
keys that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

FORMAT = 1
MANIFEST = "manifest.json"


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


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file: flushed, fsync'ed, renamed, and the folder fsync'ed."""
    import uuid
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across processes and hosts
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # folders cannot be fsync'ed on some systems
        pass


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class RunFolder:
    """A run folder: the manifest, the finished chunks, and the merged outputs once all are done."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path, self.manifest = Path(path), manifest
        self.chunks_dir = self.path / "chunks"

    # opening -----------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, config: dict[str, Any], chunks: list[dict[str, int]], *, resume: bool = False,
             overwrite: bool = False, command: list[str] | None = None) -> "RunFolder":
        """Start a run in ``path`` (it must be empty or absent, or ``overwrite`` a previous run folder), or resume
        the run already there (``resume``: the config must be the same)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is an existing file, not a run folder")
        config = json.loads(json.dumps(config, default=str))  # as it will read back
        manifest_path = path / MANIFEST
        if resume and not manifest_path.exists():  # nothing to resume yet: start the run (an empty folder only)
            if path.exists() and any(path.iterdir()):
                raise ValueError(f"{path} holds no run to resume (no {MANIFEST}) but is not empty; pick another folder")
            resume = False
        if resume:
            try:
                old = json.loads(manifest_path.read_text())
            except ValueError as exc:
                raise ValueError(f"{manifest_path} is not readable JSON ({exc}); start again with --overwrite") from None
            if old.get("config_hash") != config_hash(config):
                keys = _diff(old.get("config"), config) or ["(format)"]
                then = ", ".join(f"{k}={_get(old.get('config'), k)!r}" for k in keys[:5])
                now = ", ".join(f"{k}={_get(config, k)!r}" for k in keys[:5])
                raise ValueError(f"{path} holds a run with another config: {', '.join(keys)} differ(s) (the run: "
                                 f"{then}; now: {now}). Resume it with the same options, or start again with "
                                 "--overwrite")
            run = cls(path, old)
            run.chunks_dir.mkdir(parents=True, exist_ok=True)
            return run
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise ValueError(f"{path} is not empty: pass --resume {path} to continue the run in it, or "
                                 "--overwrite to replace it")
            if not manifest_path.exists():
                raise ValueError(f"{path} is not empty and holds no svdd run ({MANIFEST}): --overwrite only replaces "
                                 "a run folder; pick another --out")
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        path.mkdir(parents=True, exist_ok=True)
        from . import __version__
        manifest = {"format": FORMAT, "svdd_version": __version__, "config": config,
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

    def write_chunk(self, k: int, samples: torch.Tensor, rewards: torch.Tensor, *, eval_rewards=None, text=None,
                    meta: dict[str, Any] | None = None) -> None:
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
               "eval_rewards": None, "text": None}
        if "eval_reward" in table.column_names:
            out["eval_rewards"] = torch.tensor(table.column("eval_reward").to_numpy())
        if "text" in table.column_names:
            out["text"] = table.column("text").to_pylist()
        return out

    def merged(self) -> dict[str, Any]:
        """Every chunk, in sample order: samples, rewards, eval rewards and text concatenated; per-chunk metadata."""
        missing = [c["chunk"] for c in self.chunks if not self.done(c["chunk"])]
        if missing:
            raise ValueError(f"{self.path}: chunk(s) {missing[:10]} are missing or damaged; resume the run to redo them")
        parts = [self.read_chunk(c["chunk"]) for c in self.chunks]
        cat = {"samples": torch.cat([p["samples"] for p in parts]), "rewards": torch.cat([p["rewards"] for p in parts]),
               "meta": [p["meta"] for p in parts]}
        cat["eval_rewards"] = torch.cat([p["eval_rewards"] for p in parts]) \
            if all(p["eval_rewards"] is not None for p in parts) else None
        cat["text"] = sum((p["text"] for p in parts), []) if all(p["text"] is not None for p in parts) else None
        return cat


def _get(config: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(config, dict) or key not in config:
            return "<absent>"
        config = config[key]
    return config


def run_chunks(run: RunFolder, one: Callable[[dict[str, int]], dict[str, Any]], progress: bool = False) -> int:
    """Run every chunk not finished yet (``one(chunk) -> write_chunk keyword arguments``), in order, each written as
    soon as it is done. Returns how many chunks this call ran."""
    from tqdm.auto import tqdm
    todo = [c for c in run.chunks if not run.done(c["chunk"])]
    bar = tqdm(total=len(run.chunks), initial=len(run.chunks) - len(todo), desc="chunks", disable=not progress)
    for c in todo:
        run.write_chunk(c["chunk"], **one(c))
        bar.update()
    bar.close()
    return len(todo)


class SampleJob:
    """What one chunk of a `svdd sample` run needs, as plain data (task name and options, method and options, engine
    settings): a worker process or a Ray actor builds the task once and then runs any chunk of the run."""

    def __init__(self, task: str, task_options: dict[str, Any], method: str, options: dict[str, Any],
                 settings: dict[str, Any], progress: bool = False):
        self.task, self.task_options, self.method = task, dict(task_options), method
        self.options, self.settings, self.progress = dict(options), dict(settings), progress
        self._spec = None

    @property
    def spec(self):
        if self._spec is None:
            from .tasks import get_task
            self._spec = get_task(self.task).make(**self.task_options)
        return self._spec

    def config(self, num_samples: int, seed: int, chunk_size: int) -> dict[str, Any]:
        """The run's config: what its chunks depend on (the task's weight hashes included)."""
        from .compare import _plain
        return {"task": self.spec.config, "method": self.method, "options": _plain(self.options),
                "num_samples": num_samples, "seed": seed, "chunk_size": chunk_size, **self.settings}

    def __call__(self, chunk: dict[str, int]) -> dict[str, Any]:
        """Run one chunk: the `RunFolder.write_chunk` keyword arguments."""
        import dataclasses

        from .api import sample
        spec = self.spec
        res = sample(spec.model, spec.reward, self.method, num_samples=chunk["stop"] - chunk["start"],
                     seed=chunk["seed"], progress=self.progress, **self.settings, **spec.resolve(self.options))
        with torch.no_grad():
            ev = spec.eval_reward(res.samples) if spec.eval_reward is not None else None
        return {"samples": res.samples, "rewards": res.rewards, "eval_rewards": ev,
                "text": spec.decode(res.samples) if spec.decode is not None else None,
                "meta": {"cost": dataclasses.asdict(res.cost), "diagnostics": res.diagnostics.summary(),
                         "log_z": res.log_z, "run_config": res.config}}

    def __getstate__(self):  # ship the description, not the built task: each worker builds its own once
        return {**self.__dict__, "_spec": None}
