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
LOCK = ".svdd.lock"  # held (flock) by the process that writes the folder; ignored when a folder's contents are listed


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
            if entries(path):
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


def clear(path: Path) -> None:
    """Remove what a folder holds (its lock file stays: another process may be waiting on it)."""
    for child in entries(path):
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


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
    """What one chunk of a run needs, as plain data (task and its options, method and options, engine settings): a
    worker process or a Ray actor builds the task once and then runs any chunk of the run. ``task`` is a registered
    task's name or a `svdd.tasks.Task` (your own model and reward: see `sample_run`)."""

    def __init__(self, task: Any, task_options: dict[str, Any], method: str, options: dict[str, Any],
                 settings: dict[str, Any], progress: bool = False):
        self.task, self.task_options, self.method = task, dict(task_options), method
        self.options, self.settings, self.progress = dict(options), dict(settings), progress
        self._spec = None
        self._start: torch.Tensor | None = None  # a warm start's samples, read from its file once
        self.reward_pool = None  # a `svdd.distributed.RayRewardPool` that evaluates the reward instead (Ray engine)

    @property
    def spec(self):
        if self._spec is None:
            from .tasks import get_task
            task = get_task(self.task) if isinstance(self.task, str) else self.task
            self._spec = task.make(**self.task_options)
            if self.reward_pool is not None:
                self._spec.reward = self.reward_pool.reward(self._spec.reward)
        return self._spec

    def config(self, num_samples: int, seed: int, chunk_size: int) -> dict[str, Any]:
        """The run's config: what its chunks depend on (the task's weight hashes included; a warm start's file by
        its content hash)."""
        from .compare import _plain
        cfg = {"task": self.spec.config, "method": self.method, "options": _plain(self.options),
               "num_samples": num_samples, "seed": seed, "chunk_size": chunk_size, **self.settings}
        if isinstance(self.options.get("init_samples"), (str, Path)):
            cfg["init_samples_sha256"] = hashlib.sha256(Path(self.options["init_samples"]).read_bytes()).hexdigest()
        return cfg

    def start_rows(self) -> torch.Tensor | None:
        """The samples of a warm start given as a file (``options["init_samples"]``: a path the task reads)."""
        path = self.options.get("init_samples")
        if not isinstance(path, (str, Path)):
            return None
        if self._start is None:
            if self.spec.read_samples is None:
                raise ValueError(f"this task cannot read samples from a file ({path}); pass init_samples as a tensor")
            self._start = self.spec.read_samples(path)
        return self._start

    def options_for(self, start: int | None = None, stop: int | None = None) -> dict[str, Any]:
        """The method options with the task's value net and a warm start's rows [start, stop) filled in."""
        opts = self.spec.resolve(self.options)
        rows = self.start_rows()
        if rows is not None:
            opts["init_samples"] = rows[start:stop]
        return opts

    def __call__(self, chunk: dict[str, int]) -> dict[str, Any]:
        """Run one chunk: the `RunFolder.write_chunk` keyword arguments."""
        import dataclasses

        from .api import sample
        spec = self.spec
        res = sample(spec.model, spec.reward, self.method, num_samples=chunk["stop"] - chunk["start"],
                     seed=chunk["seed"], progress=self.progress, **self.settings,
                     **self.options_for(chunk["start"], chunk["stop"]))
        with torch.no_grad():
            ev = spec.eval_reward(res.samples) if spec.eval_reward is not None else None
        return {"samples": res.samples, "rewards": res.rewards, "eval_rewards": ev,
                "text": spec.decode(res.samples) if spec.decode is not None else None,
                "meta": {"cost": dataclasses.asdict(res.cost), "diagnostics": res.diagnostics.summary(),
                         "log_z": res.log_z, "run_config": res.config}}

    def __getstate__(self):  # ship the description, not the built task: each worker builds its own once
        return {**self.__dict__, "_spec": None, "_start": None}


def check_options(method: str, options: dict[str, Any]) -> None:
    """A known method name, and options it has (an option it does not have is an error naming it)."""
    import dataclasses

    from .methods import METHODS
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    fields = {f.name for f in dataclasses.fields(METHODS[method])}
    bad = sorted(set(options) - fields)
    if bad:
        raise ValueError(f"method {method!r} has no option(s) {bad}; its options: {sorted(fields)}")


SETTINGS = ("max_batch", "reward_budget", "precision", "auto_batch", "dedupe", "budget")  # `svdd.sample` options in a run config


def sample_run(out: str | Path, task: Any, method: str = "svdd", *, num_samples: int | None = None, seed: int = 0,
               chunk_size: int = 256, task_options: dict[str, Any] | None = None,
               options: dict[str, Any] | None = None, engine: str = "local", workers: int = 2,
               address: str | None = None, gpus_per_worker: float = 0.0, reward_workers: int = 0,
               cpus_per_reward_worker: float = 1.0, write_on: str = "workers", resume: bool = False,
               overwrite: bool = False,
               progress: bool | None = None, command: str | None = None, on_open: Callable | None = None,
               **settings: Any):
    """A durable run: ``num_samples`` samples of ``method`` on ``task`` in chunks, each written to the run folder
    ``out`` as it finishes, merged at the end into the task's usual files (samples.pt, rewards.csv, run.json, and
    the task's own sample files). What `svdd sample` does, from Python.

    Args:
        task: a registered task's name (`svdd tasks`) or a `svdd.tasks.Task` whose ``build(**task_options)`` returns
            a `TaskSpec` with your model and reward (for Ray, ``build`` must be importable or picklable by Ray).
        options: the method's options (M, alpha, value, select_every, ...).
        engine: 'local' (this process; under torchrun, this rank's share of the chunks) or 'ray' (``workers`` actors,
            ``gpus_per_worker`` GPUs each, on the cluster at ``address`` or a local one).
        reward_workers: Ray only: evaluate the reward in this many separate Ray actors (``cpus_per_reward_worker``
            CPUs each), shared by the model workers -- for a slow reward such as docking. The samples are the same.
        write_on: Ray only: 'workers' write their chunk files into ``out`` (a file system they all see), 'driver':
            they send the chunks back and this process writes them.
        resume: continue the run in ``out`` (finished chunks are checked and kept; a config change is an error naming
            it); ``overwrite``: replace the run there. Without either, ``out`` must be empty or absent.
        settings: `svdd.sample` options (max_batch, reward_budget, precision, auto_batch, dedupe).

    Returns the merged `SampleResult` (its ``config["run"]`` says how many chunks ran in this call), or None on a
    torchrun rank other than 0. The folder is locked while the run writes it.
    """
    import inspect
    import sys

    from .api import sample
    from .distributed import run_ray, run_torchrun, torchrun_world
    from .methods import get_method
    from .tasks import get_task
    bad = sorted(set(settings) - set(SETTINGS))
    if bad:
        raise TypeError(f"sample_run() got unexpected option(s) {bad}; method options go in options=, run settings "
                        f"are {list(SETTINGS)}")
    defaults = inspect.signature(sample).parameters
    settings = {k: settings.get(k, defaults[k].default) for k in SETTINGS}
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if (reward_workers or write_on != "workers") and engine != "ray":
        raise ValueError(f"reward_workers={reward_workers} and write_on={write_on!r} are options of engine='ray'")
    task_obj = get_task(task) if isinstance(task, str) else task
    options, task_options = dict(options or {}), dict(task_options or {})
    check_options(method, options)
    world = torchrun_world()
    if world is not None and engine == "ray":
        raise ValueError("the Ray engine under torchrun: use one of them")
    asked_device = task_options.get("device")
    if world is not None and str(asked_device).startswith("cuda"):
        task_options["device"] = f"cuda:{world[2]}"  # one GPU per rank (torchrun's LOCAL_RANK)
    if engine == "ray" and str(asked_device).startswith("cuda") and not gpus_per_worker:
        raise ValueError("the Ray engine with device cuda needs gpus_per_worker (e.g. 1): Ray hides the GPUs from "
                         "workers that reserve none")
    if progress is None:
        progress = sys.stderr.isatty()
    job = SampleJob(task, task_options, method, options, settings, progress=progress and world is None)
    spec = job.spec
    rows = job.start_rows()
    n = num_samples if num_samples is not None else (task_obj.num_samples if rows is None else rows.shape[0])
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {n!r}")
    config = job.config(n, seed, chunk_size)
    if asked_device is not None:  # as asked, not per rank: a run resumes under any engine
        config["task"] = {**config["task"], "options": {**config["task"].get("options", {}), "device": asked_device}}
    m = get_method(method, **job.options_for())  # bad options fail here, before the folder is written
    if "init_samples" in options:
        m.check_run(n)  # the warm start's rows against num_samples
    m.check(spec.model, spec.reward)
    path = Path(out)
    leader = world is None or world[0] == 0
    took = lock_folder(path) if leader else False
    try:
        def open_run(join: bool) -> RunFolder:
            run = RunFolder.open(path, config, plan(n, chunk_size, seed), resume=resume or join,
                                 overwrite=overwrite and not join, command=command)
            if on_open is not None:
                on_open(run)
            return run

        if world is not None:
            run = run_torchrun(open_run, job, progress=progress)
            if run is None:  # not rank 0: rank 0 merges and reports
                return None
            ran = len(run.chunks)
        else:
            run = open_run(False)
            if engine == "ray":
                ran = run_ray(run, job, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
                              reward_workers=reward_workers, cpus_per_reward_worker=cpus_per_reward_worker,
                              write_on=write_on, progress=progress)
            else:
                ran = run_chunks(run, job, progress)
        return _merge(run, spec, n, seed, chunk_size, ran)
    finally:
        if took:
            unlock_folder(path)


def _merge(run: RunFolder, spec, n: int, seed: int, chunk_size: int, ran: int):
    """The merged output of a finished run folder, written beside its chunks; the `SampleResult`."""
    import dataclasses
    import json

    from .engine import Cost
    from .result import Diagnostics, SampleResult
    merged = run.merged()
    metas = merged["meta"]
    cost = Cost(**{k: sum(m["cost"][k] for m in metas) for k in dataclasses.asdict(Cost()) if k != "num_samples"},
                num_samples=n)
    run_config = {**metas[0]["run_config"], "num_samples": n, "seed": seed, "chunk_size": chunk_size,
                  "chunk_seeds": [c["seed"] for c in run.chunks]}
    res = SampleResult(samples=merged["samples"], rewards=merged["rewards"], diagnostics=Diagnostics(), cost=cost,
                       config=run_config)
    out = res.save(run.path)
    summary = res.summary()
    diags = [m["diagnostics"] for m in metas]
    summary["diagnostics"] = {"steps": diags[0]["steps"],
                              **{k: sum(d[k] for d in diags) for k in ("resampling_events", "failed_candidates",
                                                                        "all_candidates_failed")},
                              "min_ess": min((d["min_ess"] for d in diags if d["min_ess"] is not None), default=None)}
    summary["log_z_per_chunk"] = [m["log_z"] for m in metas] if any(m["log_z"] is not None for m in metas) else None
    atomic_write(out / "run.json", json.dumps({"config": run_config, "summary": summary, "task": spec.config,
                                               "chunks": len(metas)}, indent=2, default=str).encode())
    if spec.write_samples is not None:
        rewards = {spec.reward.name: res.rewards}
        if merged["eval_rewards"] is not None:
            rewards[spec.eval_reward.name] = merged["eval_rewards"]
        spec.write_samples(out, res.samples, rewards)
    if merged["text"] is not None:
        lines = "".join(f"{s}\t{r:.6g}\n" for s, r in zip(merged["text"], res.rewards.tolist()))
        atomic_write(out / "samples.txt", lines.encode())
    res.config["run"] = {"path": str(run.path), "chunks": len(metas), "chunks_run_now": ran}
    return res
