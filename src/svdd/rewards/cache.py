"""A reward cache: each distinct sample is scored once, in memory and optionally in an SQLite file shared by processes.

`CachedReward` maps every row of a batch to a string key (default: a digest of the row's dtype, shape and bytes; a
task may pass its own, e.g. the canonical SMILES of a token row, so that two rows encoding one molecule share one
call). A batch is answered from memory first, then from the SQLite file for the keys still missing (one batched
SELECT), and the wrapped reward is called ONCE on one representative row per distinct key left. New values go to
memory and to the file before the call returns.

Failure policy: a NaN result (a failed reward) is returned but not cached unless ``cache_failures=True`` (a stored
failure is kept as SQL NULL, and a later success overwrites it, never the reverse). If the wrapped reward raises,
the exception is re-raised -- the engine then isolates the failing rows by calling row by row -- and what the call
had already found stays cached.

The SQLite file uses WAL mode, a busy timeout and ``INSERT ... ON CONFLICT`` upserts, so several processes may read
and write it at once; the connection is opened lazily in each process (never pickled, reopened after a fork).
One table holds every reward: ``rewards(namespace, key, value, seconds, created)``, keyed by (namespace, key); the
namespace (default: the reward's name) separates rewards and settings sharing one file.

Accounting per run: the engine calls ``begin_run()`` when a run starts. A hit on a key already asked for in the same
run is a ``run_hit`` (the method asked twice for one molecule); any other hit was answered from an earlier run or
another process. The engine reports the first kind as cache hits and counts the second kind among the run's reward
calls (as ``stored_hits``), so that a run's call count is a property of the method and seed, not of what happened
to be cached before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import Reward, as_reward, check_output

Tensor = torch.Tensor

_SCHEMA = ("CREATE TABLE IF NOT EXISTS rewards (namespace TEXT NOT NULL, key TEXT NOT NULL, value REAL, "
           "seconds REAL, created REAL, PRIMARY KEY (namespace, key))")
_UPSERT = ("INSERT INTO rewards (namespace, key, value, seconds, created) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, seconds = excluded.seconds, "
           "created = excluded.created WHERE rewards.value IS NULL AND excluded.value IS NOT NULL")


@dataclass
class RewardStats:
    """Counters of an expensive reward. ``calls``: rows (items) really evaluated; ``hits``: rows answered by a cache;
    ``failures``: NaN results of real calls; ``seconds``: wall time spent evaluating. A `ParallelReward` also counts
    the failures by cause (``timeouts``, ``crashes``, ``errors``) and keeps the ``first_error``.
    ``after - before`` of two snapshots gives the counts of the calls in between."""

    calls: int = 0
    hits: int = 0
    run_hits: int = 0  # of the hits, rows whose key was already asked for in the current run (see begin_run)
    failures: int = 0
    seconds: float = 0.0
    timeouts: int = 0
    crashes: int = 0
    errors: int = 0
    first_error: str | None = None

    def __sub__(self, other: "RewardStats") -> "RewardStats":
        return RewardStats(**{f.name: getattr(self, f.name) - getattr(other, f.name)
                              for f in dataclasses.fields(self) if f.name != "first_error"},
                           first_error=self.first_error)


def row_digest(row: Tensor) -> str:
    """Default cache key: a hex digest of a row's dtype, shape and bytes."""
    row = row.detach().cpu().contiguous()
    h = hashlib.blake2b(f"{row.dtype}{tuple(row.shape)}".encode(), digest_size=20)
    h.update(row.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class CachedReward(Reward):
    """Wrap ``reward`` so that each distinct sample (by ``key``) is evaluated once.

    Args:
        reward: the expensive reward (any callable; e.g. a `svdd.rewards.ParallelReward`, which then only sees the
            rows missing from the cache).
        key: ``key(row) -> str`` for one sample row (on the CPU); rows with equal keys share one evaluation.
            Default: `row_digest` (equal dtype, shape and bytes).
        path: an SQLite file (parent folders are created) shared by runs and processes; None: memory only.
        namespace: separates rewards / settings within one file; default: the reward's name.
        cache_failures: also cache NaN results (default: a failed sample is tried again next time).

    ``stats`` (`RewardStats`) counts real calls, hits, failures and seconds inside the wrapped reward;
    ``stats_snapshot()`` returns a copy for deltas. Not differentiable. ``close()`` closes the file and the wrapped
    reward (when it has a ``close``).
    """

    def __init__(self, reward: Any, key: Callable[[Tensor], str] | None = None, path: str | os.PathLike | None = None,
                 namespace: str | None = None, cache_failures: bool = False):
        self.reward = as_reward(reward)
        super().__init__(None, name=self.reward.name, differentiable=False)
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function of one sample row returning a str, got {type(key).__name__}")
        self.key = key or row_digest
        self.path = None if path is None else Path(path)
        self.namespace = str(namespace) if namespace is not None else self.name
        self.cache_failures = bool(cache_failures)
        self.memory: dict[str, float] = {}
        self.stats = RewardStats()
        self._run: set[str] = set()  # keys asked for since begin_run()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None

    # -- the SQLite file ------------------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # first use in this process (or after a fork)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=120.0, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 120000")
            for attempt in range(20):  # switching to WAL takes a lock the busy handler may not wait for
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    if attempt == 19:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _db_get(self, keys: list[str]) -> dict[str, float]:
        conn, found = self._db(), {}
        for a in range(0, len(keys), 500):
            part = keys[a:a + 500]
            q = f"SELECT key, value FROM rewards WHERE namespace = ? AND key IN ({','.join('?' * len(part))})"
            for k, v in conn.execute(q, [self.namespace, *part]):
                if v is not None or self.cache_failures:
                    found[k] = math.nan if v is None else float(v)
        return found

    def _db_put(self, values: dict[str, float], seconds: float) -> None:
        conn, now = self._db(), time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT, [(self.namespace, k, None if math.isnan(v) else v, seconds, now)
                                       for k, v in values.items()])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- evaluation -----------------------------------------------------------------------------------------------
    def begin_run(self) -> None:
        """Start a new run: later hits on keys asked for before count as answers from earlier runs."""
        self._run = set()

    def __call__(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        xc = x.detach().cpu()
        keys = [str(self.key(xc[j])) for j in range(n)]
        missing: dict[str, int] = {}  # key -> its representative row
        for j, k in enumerate(keys):
            if k not in self.memory:
                missing.setdefault(k, j)
        if missing and self.path is not None:
            found = self._db_get(list(missing))
            self.memory.update(found)
            for k in found:
                del missing[k]
        new: dict[str, float] = {}
        if missing:
            rows = list(missing.values())
            self.stats.calls += len(rows)
            t0 = time.perf_counter()
            try:
                raw = self.reward(x[rows])
            finally:
                seconds = time.perf_counter() - t0
                self.stats.seconds += seconds
            vals = check_output(raw, len(rows), self.name).detach().double().cpu().tolist()
            new = dict(zip(missing, vals))
            self.stats.failures += sum(math.isnan(v) for v in vals)
            keep = new if self.cache_failures else {k: v for k, v in new.items() if not math.isnan(v)}
            self.memory.update(keep)
            if keep and self.path is not None:
                self._db_put(keep, seconds / len(rows))
        self.stats.hits += n - len(new)
        for j, k in enumerate(keys):  # after success only: a row answered without a call, for a key asked before
            if not (k in new and missing[k] == j) and k in self._run:
                self.stats.run_hits += 1
            self._run.add(k)
        return torch.tensor([new[k] if k in new else self.memory[k] for k in keys], dtype=torch.float64,
                            device=x.device)

    def stats_snapshot(self) -> RewardStats:
        return dataclasses.replace(self.stats)

    def config(self) -> dict[str, Any]:
        return {"type": "cached", "namespace": self.namespace, "path": None if self.path is None else str(self.path)}

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        close = getattr(self.reward, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> "CachedReward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"], state["_pid"] = None, None
        return state

    def __repr__(self) -> str:
        return f"CachedReward({self.reward!r}, namespace={self.namespace!r}, path={self.config()['path']!r})"
