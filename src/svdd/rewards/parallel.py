"""A reward evaluated item by item in a pool of worker processes, with a per-item timeout (e.g. a docking program).

`ParallelReward` turns a batch into picklable items (``to_item``, default: the rows as Python lists) and evaluates
``item_fn(item) -> float`` in ``workers`` long-lived processes (stdlib `multiprocessing`, "spawn" context by default).
Each worker has its own pipe and takes one item at a time; ``init(*init_args)`` runs once in each worker when it
starts (load a receptor, precompute grid maps, store them in a module global that ``item_fn`` reads). Workers start
on the first call and are reused across calls.

Failure policy -- one bad item never stops the batch; its value is NaN and the cause is counted in ``stats``:
  * an exception in ``item_fn`` (or a result that is not a number): ``errors``; the message is kept (``first_error``);
  * an item running past ``timeout`` seconds: ``timeouts``; its worker is killed and restarted;
  * a worker that dies (``os._exit``, segfault, out-of-memory kill): ``crashes``; the worker is restarted.
A worker runs in its own process group, so a timeout also kills the programs ``item_fn`` started (a docking binary).
Errors of the setup itself are raised: ``init`` raising, or a worker that dies before it is ready (``item_fn``
cannot be imported), raises RuntimeError on this and every later call.

``close()`` (or ``with ParallelReward(...) as r:``) stops the workers; they are also stopped when the object is
garbage-collected and at interpreter exit. ``workers=0`` runs ``item_fn`` in the calling process (for debugging: no
timeout, a crash takes the caller down). Not thread-safe: call it from one thread at a time.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import pickle
import signal
import time
import weakref
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

import torch

from . import Reward
from .cache import RewardStats

Tensor = torch.Tensor


def _worker_main(conn, item_fn: Callable, init: Callable | None, init_args: tuple) -> None:
    """A worker's loop: run ``init``, say ready, then evaluate items until told to stop (None) or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # own process group: a timeout kills the programs item_fn started too
    try:
        if init is not None:
            init(*init_args)
    except BaseException as exc:
        conn.send(("init-error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if msg is None:
            return
        tag, item = msg
        try:
            value, err = float(item_fn(item)), None
        except Exception as exc:
            value, err = math.nan, f"{type(exc).__name__}: {exc}"
        conn.send(("done", tag, value, err))


class _Worker:
    def __init__(self, ctx, item_fn, init, init_args):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, item_fn, init, init_args), daemon=True,
                                name="svdd-reward-worker")
        self.proc.start()
        child.close()  # the parent keeps one end only, so a dead worker reads as EOF
        self.ready, self.task, self.deadline = False, None, math.inf

    def stop(self, graceful: bool = True) -> None:
        """Ask the worker to exit (graceful), else / then terminate and kill it and its process group; reap it."""
        if graceful:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(1.0)
        group = self.ready and hasattr(os, "killpg")  # a ready worker leads its own process group
        for sig, grace in ((signal.SIGTERM, 0.5), (getattr(signal, "SIGKILL", signal.SIGTERM), None)):
            if group:  # signal the whole group: also the programs item_fn started
                try:
                    os.killpg(self.proc.pid, sig)
                except OSError:  # nobody left in the group
                    pass
            elif self.proc.is_alive():
                os.kill(self.proc.pid, sig)
            self.proc.join(grace)
            if not group and not self.proc.is_alive():
                break
        self.conn.close()


def _shutdown(slots: list) -> None:
    for k, w in enumerate(slots):
        if w is not None:
            w.stop()
            slots[k] = None


def _default_to_item(x: Tensor) -> list:
    return x.tolist()


class ParallelReward(Reward):
    """Evaluate ``item_fn`` on each sample of a batch in a pool of ``workers`` processes (see the module docstring).

    Args:
        item_fn: ``item_fn(item) -> float``, a picklable (top-level) function; runs in a worker.
        to_item: ``to_item(x) -> list`` of ``len(x)`` picklable items, in the calling process (default: ``x.tolist()``).
        workers: number of worker processes; 0 runs ``item_fn`` in the calling process (debugging, no timeout).
        timeout: seconds one item may take before its worker is killed (its value: NaN); None: no limit.
        init, init_args: ``init(*init_args)`` runs once in every worker process when it starts (again after a
            restart), e.g. to load data into a module global that ``item_fn`` reads.
        name: the reward's name (default: ``item_fn.__name__``).
        context: the multiprocessing start method: "spawn" (default; every worker imports its modules afresh) or
            "forkserver" (POSIX; a server process imports them once and forks every worker: cheap restarts).

    Returns a float64 tensor of ``len(x)`` values in input order, NaN for failed items. ``stats`` (`RewardStats`):
    calls (items evaluated), failures (NaN results), seconds (wall time of the calls), timeouts, crashes, errors,
    first_error.
    """

    def __init__(self, item_fn: Callable[[Any], float], *, to_item: Callable[[Tensor], Sequence] | None = None,
                 workers: int = 2, timeout: float | None = None, init: Callable | None = None,
                 init_args: tuple = (), name: str | None = None, context: str = "spawn"):
        if not callable(item_fn):
            raise TypeError(f"item_fn must be a function item -> float, got {type(item_fn).__name__}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0 (0: run in this process), got {workers!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        if init is not None and not callable(init):
            raise TypeError(f"init must be a function or None, got {type(init).__name__}")
        if context not in ("spawn", "forkserver"):
            raise ValueError(f"context must be 'spawn' or 'forkserver', got {context!r}")
        if workers:
            for what, obj in (("item_fn", item_fn), ("init", init), ("init_args", init_args)):
                try:
                    pickle.dumps(obj)
                except Exception as exc:
                    raise TypeError(f"{what} must be picklable to reach the worker processes (a top-level function, "
                                    f"not a lambda or closure): {exc}") from exc
        super().__init__(None, name=name or getattr(item_fn, "__name__", "parallel"), differentiable=False)
        self.item_fn, self.to_item, self.workers, self.timeout = item_fn, to_item or _default_to_item, workers, timeout
        self.init, self.init_args, self.context = init, tuple(init_args), context
        self.stats = RewardStats()
        self._setup()

    def _setup(self) -> None:
        self._slots: list[_Worker | None] = [None] * self.workers
        self._finalizer = weakref.finalize(self, _shutdown, self._slots)  # also runs at interpreter exit
        self._init_error: str | None = None
        self._inline_ready = False
        self._seq = 0

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [w.proc.pid for w in self._slots if w is not None and w.proc.is_alive()]

    def __call__(self, x: Tensor) -> Tensor:
        items = list(self.to_item(x))
        if len(items) != x.shape[0]:
            raise ValueError(f"to_item returned {len(items)} items for a batch of {x.shape[0]} samples")
        t0 = time.perf_counter()
        try:
            out = self._run_inline(items) if self.workers == 0 else self._run_pool(items)
        finally:
            self.stats.seconds += time.perf_counter() - t0
        self.stats.calls += len(items)
        self.stats.failures += sum(math.isnan(v) for v in out)
        return torch.tensor(out, dtype=torch.float64, device=x.device)

    def _fail(self, kind: str, msg: str) -> None:
        setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        self.stats.first_error = self.stats.first_error or msg

    def _run_inline(self, items: list) -> list[float]:
        if not self._inline_ready and self.init is not None:
            self.init(*self.init_args)
        self._inline_ready = True
        out = []
        for item in items:
            try:
                out.append(float(self.item_fn(item)))
            except Exception as exc:
                out.append(math.nan)
                self._fail("errors", f"{type(exc).__name__}: {exc}")
        return out

    def start(self) -> "ParallelReward":
        """Start the workers now and wait until each has run ``init`` (otherwise the first call does it)."""
        if self.workers:
            self._run_pool([], warm=True)
        return self

    def _run_pool(self, items: list, warm: bool = False) -> list[float]:
        if self._init_error:
            raise RuntimeError(self._init_error)
        out = [math.nan] * len(items)
        todo = deque(range(len(items)))
        self._seq += 1
        slots, ctx = self._slots, mp.get_context(self.context)
        if self.context == "forkserver":  # when the server starts, it imports these once; a new worker is a fork
            mods = ["__main__", __name__] + [getattr(f, "__module__", None) for f in (self.item_fn, self.init)]
            ctx.set_forkserver_preload([m for m in dict.fromkeys(mods) if m])
        try:
            while todo or any((w.task is not None or (warm and not w.ready)) if w else warm for w in slots):
                for k, w in enumerate(slots):  # start missing workers, hand items to idle ready ones
                    if w is None and (todo or warm):
                        w = slots[k] = _Worker(ctx, self.item_fn, self.init, self.init_args)
                    if w is not None and w.ready and w.task is None and todo:
                        idx = todo.popleft()
                        try:
                            w.conn.send(((self._seq, idx), items[idx]))
                        except OSError:  # it died while idle: restart it, the item goes back in line
                            todo.appendleft(idx)
                            w.stop(graceful=False)
                            slots[k] = None
                            continue
                        w.task = (self._seq, idx)
                        w.deadline = time.monotonic() + self.timeout if self.timeout else math.inf
                live = [w for w in slots if w is not None]
                wait_s = min((w.deadline for w in live), default=math.inf) - time.monotonic()
                ready = set(wait([o for w in live for o in (w.conn, w.proc.sentinel)],
                                 None if wait_s == math.inf else max(wait_s, 0.0)))
                for k, w in enumerate(slots):
                    if w is None:
                        continue
                    if w.conn in ready or w.proc.sentinel in ready:
                        msg = None
                        try:
                            if w.conn.poll():
                                msg = w.conn.recv()
                        except (EOFError, OSError):
                            pass
                        if msg is None:  # the worker died
                            w.proc.join(1.0)
                            code = w.proc.exitcode
                            if not w.ready:
                                self._init_error = (f"a worker of reward {self.name!r} exited (code {code}) before it "
                                                    f"was ready: item_fn or init could not be loaded or init crashed "
                                                    f"(see the worker's stderr)")
                                raise RuntimeError(self._init_error)
                            if w.task is not None:
                                self._fail("crashes", f"item {w.task[1]}: the worker process died (exit code {code})")
                            w.stop(graceful=False)
                            slots[k] = None
                        elif msg[0] == "ready":
                            w.ready = True
                        elif msg[0] == "init-error":
                            self._init_error = f"init of reward {self.name!r} raised in a worker: {msg[1]}"
                            raise RuntimeError(self._init_error)
                        elif msg[1] == w.task:  # ("done", tag, value, error)
                            out[w.task[1]] = msg[2]
                            if msg[3] is not None:
                                self._fail("errors", f"item {w.task[1]}: {msg[3]}")
                            w.task, w.deadline = None, math.inf
                    elif w.task is not None and time.monotonic() >= w.deadline:
                        self._fail("timeouts", f"item {w.task[1]}: timed out after {self.timeout} s")
                        w.stop(graceful=False)
                        slots[k] = None
        except BaseException:  # interrupted or a setup error: busy workers would answer out of turn -> stop them
            for k, w in enumerate(slots):
                if w is not None and (w.task is not None or self._init_error):
                    w.stop(graceful=False)
                    slots[k] = None
            raise
        return out

    def stats_snapshot(self) -> RewardStats:
        return dataclasses.replace(self.stats)

    def config(self) -> dict[str, Any]:
        fn = self.item_fn
        return {"type": "parallel", "item_fn": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
                "workers": self.workers, "timeout": self.timeout}

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones, and tries a failed setup again)."""
        _shutdown(self._slots)
        self._init_error = None

    def __enter__(self) -> "ParallelReward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # the workers stay with this process; a copy starts its own
        state = {k: v for k, v in self.__dict__.items() if k not in ("_slots", "_finalizer")}
        state["_init_error"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def __repr__(self) -> str:
        return f"ParallelReward({self.name!r}, workers={self.workers}, timeout={self.timeout})"
