"""The evaluation engine shared by every method: batched, chunked, de-duplicated and counted network and reward calls.

Every expensive call goes through `Engine`: rows are split into chunks of at most ``max_batch`` (peak memory is set
by ``max_batch``, not by N·M), identical rows of discrete models are evaluated once (on a GPU except where the row
sort's host-device sync costs more than it saves: see `Engine.predict`, `Engine.rewards`), and every row is counted.
Host-device syncs are kept to a few per step: counts and diagnostics stay on the device until the run ends, and on
a GPU the output checks of a step's calls are queued there and read once, at the step's end (`Engine.settle`).
Within ``max_batch``, the network and value-net call sites get the chunk size that ran fastest on copies of their
first call's rows (`BatchTuner`), remembered per machine (`BatchSizeStore`) so that a seed gives the same samples
again. Calls run under ``torch.inference_mode`` (``no_grad`` for models that differentiate
inside ``predict``); ``precision="bf16"`` runs networks and value nets under bf16 autocast (rewards stay fp32).
Randomness comes from three generators seeded from one seed -- transitions, selection/resampling, value estimation --
so that e.g. SVDD with M = 1 walks the same path as plain sampling whatever its selection rule draws.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .allocator import tune_heap
from .cost import Cost
from .errors import RewardUnavailable, RunError
from .models.base import Tensor
from .rewards import Reward, check_output

SEED_OFFSETS = {"model": 0, "select": 0x5E1EC7, "value": 0x7A1E}


@dataclass
class Failures:
    """Reward failures: candidates whose reward raised or was NaN get value −inf; the run goes on and counts them."""

    failed_rewards: int = 0
    first_error: str | None = None
    _any_success: bool = field(default=False, repr=False)


def unique_rows(x: Tensor, hashed: bool | None = None) -> tuple[Tensor, Tensor]:
    """Distinct rows of ``x`` and the inverse index (rows of x = uniq[inverse]).

    The rows come in one of two orders: that of the exact row sort ``torch.unique(dim=0)`` (on CPU, and
    ``hashed=False``), or, on a GPU where that sort is slow (and ``hashed=True``), the order of a 64-bit random linear
    hash of each row. Integer rows are found distinct by that hash either way, checked against the rows themselves (a
    collision falls back to the exact sort); for the sort's order only the distinct rows are then sorted, which gives
    exactly the same rows and inverse as sorting all rows: much faster with many repeats (65,536 rows of 3 tokens, 125
    distinct: 3.9 ms against 185), slower without (640 distinct rows of 200 tokens: 3.5 ms against 1.4; the hash is
    extra work there, small beside the network call on those rows)."""
    flat = x.reshape(x.shape[0], -1)
    if not x.is_floating_point() and not x.is_complex():
        w = _hash_weights(flat.shape[1], x.device)
        _, first, inverse = _unique_first(((flat.long() + 1) * w).sum(1))
        uniq = flat[first]
        if bool((uniq[inverse] == flat).all()):
            if not (x.is_cuda if hashed is None else hashed):
                uniq, order = torch.unique(uniq, dim=0, return_inverse=True)
                inverse = order[inverse]
            return uniq.reshape(-1, *x.shape[1:]), inverse
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    return uniq.reshape(-1, *x.shape[1:]), inverse


_HASH: dict[tuple[int, str], Tensor] = {}


def _hash_weights(k: int, device) -> Tensor:
    key = (k, str(device))
    if key not in _HASH:
        g = torch.Generator().manual_seed(0x5EED)
        _HASH[key] = (torch.randint(-2**62, 2**62, (k,), generator=g, dtype=torch.long) | 1).to(device)
    return _HASH[key]


def _unique_first(h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct values of 1-D ``h``, the index of one occurrence of each, and the inverse index."""
    vals, inverse = torch.unique(h, return_inverse=True)
    first = torch.zeros(vals.shape[0], dtype=torch.long, device=h.device).scatter_(
        0, inverse, torch.arange(h.shape[0], device=h.device))
    return vals, first, inverse


class BatchTuner:
    """Chooses the chunk size of one call site by timing it once, before the site's first real call.

    Sizes 16, 32, 64, ... below the upper bound, and the bound itself (or the first call's row count when smaller),
    each run on copies of that call's rows once untimed (warm-up: allocator, oneDNN / cuDNN plans) and ``reps``
    times timed, in rounds that alternate the sizes (a burst of load on a shared machine slows every size of a round,
    not all runs of one size); the smallest size within ``TIE`` (5%) of the least time per row wins (larger chunks
    cost memory, and such differences are within the noise of a shared machine), and every real chunk has it. When
    the first call's row count is among those fastest sizes (later calls are often larger: a masked model's first
    steps have few distinct rows, a user's trial run fewer samples than the next), the sizes from twice that count up
    to the bound are timed one after the other (a warm-up run and one timed run each), on copies of the same rows,
    each at least 10% cheaper per row than the best so far becoming the choice, until two sizes in a row are not (the
    cost per row often falls in steps: the toy GMM's exact network costs about the same per row at 4,096 rows as at
    2,000, a quarter less at 8,192; a network that costs the same per row at any size is timed on two larger sizes,
    not on ever larger copies). The outputs of the
    timing runs are dropped, so a run computes what it would with that chunk size fixed: a network whose output for a
    row depends on the batch size (most do, in the last bits) still gives the same samples for the same seed as long
    as the choice is the same -- which the `BatchSizeStore` keeps across processes. A size that runs out of GPU
    memory is dropped with every larger one.
    """

    SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
    GAIN = 0.9  # past the first call's row count, a larger size must be at least 10% cheaper per row
    MISSES = 2  # ... and the timing stops at the second size in a row that is not (cost per row often falls in steps)
    TIE = 0.05  # sizes within 5% of the least time per row count as equally fast: the smallest of them wins

    def __init__(self, upper: int, reps: int = 2, store: "BatchSizeStore | None" = None, key: str | None = None):
        self.upper, self.reps, self.store, self.key = upper, reps, store, key
        self.best: dict[int, float] = {}  # size -> least seconds per row measured
        self.choice: int | None = store.get(key) if store is not None and key is not None else None

    def chunks(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> list[Tensor]:
        n = x.shape[0]
        if self.choice is None and n >= 2 * self.SIZES[0]:
            self.calibrate(fn, x)
        cuts = self.cuts(n, self.choice or self.upper, self.upper)
        return [fn(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]

    @staticmethod
    def cuts(n: int, size: int, upper: int) -> list[int]:
        """Chunk boundaries of n rows in chunks of ``size`` (at most ``upper``)."""
        cuts = list(range(0, n, size)) + [n]
        if len(cuts) > 2 and n - cuts[-2] == 1 and size < upper:
            del cuts[-2]  # no chunk of one row (CPU kernels may round it differently): the previous one takes it
        return cuts

    def calibrate(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> int:
        top = min(self.upper, x.shape[0])
        tried = [s for s in self.SIZES if s < top] + [top]
        sizes = list(tried)
        for r in range(self.reps + 1):  # round 0 warms every size up; the sizes alternate within each round
            for s in list(sizes):
                sec = self._time_rows(fn, x, s)
                if sec is None:  # out of memory: this size and every larger one do not fit
                    for big in [t for t in sizes if t >= s]:
                        sizes.remove(big)
                        self.best.pop(big, None)
                    break
                if r:
                    self.best[s] = min(self.best.get(s, float("inf")), sec / s)
        if not self.best:
            raise RuntimeError(f"no chunk size of {tried} could be evaluated")
        fast = self.fast_sizes(self.best)
        self.choice = min(fast)
        if top < self.upper and top in fast:  # the call's row count is among the fastest: larger chunks may be cheaper
            misses = 0
            for s in [s for s in self.SIZES if 2 * top <= s < self.upper] + [self.upper]:
                secs = [self._time_rows(fn, x, s) for _ in range(2)]  # the first one warms up
                if None in secs:
                    break
                self.best[s] = secs[1] / s
                if self.best[s] <= self.GAIN * self.best[self.choice]:
                    self.choice, misses = s, 0
                else:
                    misses += 1
                    if misses == self.MISSES:
                        break
        if self.store is not None and self.key is not None:
            self.store.put(self.key, self.choice)
        return self.choice

    @classmethod
    def fast_sizes(cls, per_row: dict[int, float]) -> list[int]:
        """The sizes whose seconds per row are within ``TIE`` of the least."""
        least = min(per_row.values())
        return [s for s, sec in per_row.items() if sec <= (1 + cls.TIE) * least]

    @classmethod
    def smallest_fast(cls, per_row: dict[int, float]) -> int:
        """The smallest size whose seconds per row are within ``TIE`` of the least."""
        return min(cls.fast_sizes(per_row))

    def _time_rows(self, fn, x: Tensor, size: int) -> float | None:
        """Seconds ``fn`` takes on ``size`` copies of the rows of x; None when they run out of GPU memory."""
        rows = x[torch.arange(size, device=x.device) % x.shape[0]]
        try:
            return self._time(fn, rows)
        except torch.OutOfMemoryError:
            del rows
            torch.cuda.empty_cache()
            return None

    @staticmethod
    def _time(fn, rows: Tensor) -> float:
        sync = torch.cuda.synchronize if rows.is_cuda else (lambda *a: None)
        sync(rows.device)
        t0 = time.perf_counter()
        fn(rows)
        sync(rows.device)
        return time.perf_counter() - t0


class BatchSizeStore:
    """Measured chunk sizes in ``batch_sizes.json`` under `svdd.io.cache_dir` (written atomically), keyed by call
    site, model identity (weights hash), row shape, device, torch version and threads: a rerun on the same machine
    uses the same sizes, hence gives the same samples. Delete the file to measure again."""

    def __init__(self, path=None):
        from .io import cache_dir
        self.path = path or cache_dir() / "batch_sizes.json"

    def _read(self) -> dict:
        import json
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> int | None:
        v = self._read().get(key)
        return v if isinstance(v, int) and v > 0 else None

    def put(self, key: str, size: int) -> None:
        import json

        from .io import atomic_write
        data = self._read()
        data[key] = int(size)
        try:
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError:  # a read-only cache folder: the size holds for this process only
            pass


_TUNERS: dict[tuple, tuple[Any, BatchTuner]] = {}  # shared by the runs of one process: calibrate once per site


def _identity(owner: Any) -> str | None:
    """A name for ``owner`` that is the same in every process: its weights hash (or its model's config)."""
    import json
    from .io import weights_hash
    if isinstance(owner, torch.nn.Module):
        h = weights_hash(owner)
        return None if h is None else f"{type(owner).__name__}:{h}"
    config = getattr(owner, "config", None)
    if callable(config):
        try:
            return json.dumps(config(), sort_keys=True, default=str)
        except Exception:
            return None
    # a reward or value function that holds networks as attributes (e.g. an oracle's ``net``): their weights name it
    modules = sorted(((k, v) for k, v in getattr(owner, "__dict__", {}).items() if isinstance(v, torch.nn.Module)),
                     key=lambda kv: kv[0])
    try:
        hashes = [(k, weights_hash(v), type(v).__name__) for k, v in modules]
    except Exception:  # weights that cannot be read here (meta tensors, offloaded or sharded ones)
        return None
    if not any(h for _, h, _ in hashes):
        return None
    return f"{type(owner).__name__}:{getattr(owner, 'name', '')}:" + ",".join(
        f"{k}={h or t}" for k, h, t in hashes)  # a module without weights (an activation) by its type


def _device_name(device: torch.device) -> str:
    import os
    import platform
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}:{platform.processor() or platform.machine()}:{os.cpu_count()}cpus"


def _tuner(site: str, owner: Any, x: Tensor, upper: int, precision: str = "fp32") -> BatchTuner:
    key = (site, id(owner), tuple(x.shape[1:]), x.dtype, str(x.device), upper, precision)
    ref, tuner = _TUNERS.get(key, (None, None))
    if tuner is None or ref() is not owner:  # a new owner (or one that reuses a dead owner's id)
        ident = _identity(owner)
        disk = None if ident is None else "|".join(map(str, (
            site, ident, tuple(x.shape[1:]), x.dtype, _device_name(x.device), torch.__version__,
            f"threads={torch.get_num_threads()}", f"max_batch={upper}",
            *([] if precision == "fp32" else [f"precision={precision}"]),
            "sizes-4")))  # "sizes-4": the smallest size within 5% of the fastest, measured past a small first
        # call until two sizes in a row gain nothing (sizes stored under older keys were chosen otherwise)
        tuner = BatchTuner(upper, store=BatchSizeStore() if disk else None, key=disk)
        try:
            _TUNERS[key] = (weakref.ref(owner), tuner)
        except TypeError:  # not weak-referenceable: calibrate within this run only
            pass
    return tuner


SMALL_ROWS_BYTES = 256 * 1024  # small rows: the default max_batch holds up to this many bytes of them


def default_max_batch(device: Any = "cpu", row_bytes: int | None = None) -> int:
    """The default ``max_batch``: 1024 rows on CPU (where networks' throughput peaks well below that), 8192 on a GPU
    (which holds all N·M rows of a typical run) -- or more for small rows: the largest power of two of rows that
    holds at most `SMALL_ROWS_BYTES` (256 KiB) of input rows, if that is more. Rows of a few bytes (2-D points, short
    token strings) cost mostly the fixed cost of a call and a slice (Python, op dispatch): 32,768 rows of a 2-D fp32
    point. Rows of more than 128 bytes (e.g. 24 int64 tokens, 33 fp32 values) keep 1024 on CPU, those of more than
    16 bytes keep 8192 on a GPU. ``row_bytes`` None: the default for large rows."""
    base = 8192 if torch.device(device).type == "cuda" else 1024
    rows = SMALL_ROWS_BYTES // row_bytes if row_bytes and row_bytes > 0 else 0
    return max(base, 1 << rows.bit_length() - 1) if rows else base


class Engine:
    FEW_SYNCS_DEVICES = ("cuda",)  # device types where the engine avoids host-device syncs (see ``few_syncs``)

    def __init__(self, model: Any, reward: Reward, *, max_batch: int | None = None, seed: int = 0, progress: bool = False,
                 return_x0: bool = False, reward_budget: float | None = None, auto_batch: bool = True,
                 precision: str = "fp32", dedupe: bool = True, max_reward_failures: int = 32, budget=None,
                 batch_sizes: dict[str, int | None] | None = None):
        if max_batch is not None and (not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if not isinstance(max_reward_failures, int) or isinstance(max_reward_failures, bool) or max_reward_failures < 1:
            raise ValueError(f"max_reward_failures must be an int >= 1, got {max_reward_failures!r}")
        self.max_reward_failures = max_reward_failures  # consecutive failed reward calls before the reward is probed
        self._failed_calls = 0
        self._failed_rows: Tensor | int = 0  # reward rows that failed (NaN), counted on the rows' device
        self._canary: Tensor | None = None  # one row the reward scored before: the probe of a reward that may be gone
        self.auto_batch = bool(auto_batch)  # pick each call site's chunk size (<= max_batch) by timing
        self.precision = precision
        on_cpu = torch.device(getattr(model, "device", "cpu")).type == "cpu"
        self.cpu_heap = tune_heap() if on_cpu else None  # freed tensors stay in the heap (see `svdd.allocator`)
        if precision == "bf16" and on_cpu and not cpu_has_bf16():
            import warnings
            warnings.warn("precision='bf16' on a CPU without native bf16 instructions (no AVX-512 BF16 / AMX): bf16 is "
                          "emulated there and usually slower than fp32", RuntimeWarning, stacklevel=3)
        self.dedupe = bool(dedupe)  # evaluate identical rows of discrete models once
        # A host-device sync stalls the host until a GPU has run everything queued, so that the host's work and the
        # GPU's run one after the other. On a GPU (``few_syncs``) the output checks of network, value-net and reward
        # calls are queued as device-side flags and read together once per step (`settle`), and the row sort is
        # skipped where it saves few rows. On CPU, where a sync costs nothing, every check runs at its call.
        self.few_syncs = torch.device(getattr(model, "device", "cpu")).type in self.FEW_SYNCS_DEVICES
        self._pending: list[tuple[Tensor, tuple]] = []  # queued checks: (device-side flags, what to do with them)
        self._tuners: dict[str, BatchTuner] = {}
        # chunk sizes given per call site (a rerun replays the sizes its run used); other sites are measured
        self._given_sizes = {k: v for k, v in (batch_sizes or {}).items() if v is not None}
        self._used_given: dict[str, int] = {}
        if reward_budget is not None and not (isinstance(reward_budget, (int, float)) and reward_budget >= 0):
            raise ValueError(f"reward_budget must be a number >= 0 (real reward calls) or None, got {reward_budget!r}")
        self.reward_budget = reward_budget  # the most real reward calls guidance may spend in this run
        from .budget import as_budget
        self.budget = as_budget(budget)  # per sample: everything the run spends (see `svdd.budget`)
        self.num_samples = 1  # set by the driver: the budget's multiplier
        self._row_seconds = {"network": 0.0, "reward": 0.0}  # seconds per row, measured in this run
        self.model = model
        self.reward = reward
        self._max_batch = max_batch  # None: `default_max_batch` of the first rows evaluated
        self.progress = progress
        self.return_x0 = return_x0  # methods keep the x̂0 history of the kept states
        self.seed = int(seed)
        self.cost = Cost()
        self.failures = Failures()
        device = getattr(model, "device", "cpu")
        bind = getattr(model, "bind_cost", None)  # models that call a reward / value net themselves (guidance)
        if bind is not None:
            bind(self.cost)
        self.gen = {k: torch.Generator(device=device).manual_seed(self.seed + off) for k, off in SEED_OFFSETS.items()}
        begin = getattr(reward, "begin_run", None)  # a reward cache: count this run's repeats apart
        if callable(begin):
            begin()
        self._t0 = time.perf_counter()

    @property
    def max_batch(self) -> int:
        """The most rows per call (and about the most candidates built at once): the user's, or `default_max_batch`
        of the first rows the engine evaluated (before any, the default for large rows)."""
        if self._max_batch is None:
            return default_max_batch(getattr(self.model, "device", "cpu"))
        return self._max_batch

    @property
    def discrete(self) -> bool:
        return bool(getattr(self.model, "discrete", False))

    def _map(self, fn: Callable[[Tensor], Tensor], x: Tensor, site: str, owner: Any, tune: bool = True,
             dedupe: bool = True) -> tuple[Tensor, Tensor | None]:
        """Apply ``fn`` to the distinct rows of x (discrete models; all rows otherwise) in chunks of at most max_batch
        (the site's tuned size). Returns the outputs of the evaluated rows and the inverse index (None: every row was
        evaluated)."""
        if self._max_batch is None and x.shape[0]:  # the default is set by the first rows evaluated
            self._max_batch = default_max_batch(x.device, x[0].numel() * x.element_size())
        inverse = None
        if dedupe and self.dedupe and self.discrete and x.shape[0] > 1:
            x, inverse = unique_rows(x, hashed=self.few_syncs)
        given = self._given_sizes.get(site) if tune else None
        if given is not None:
            self._used_given[site] = given
            cuts = BatchTuner.cuts(x.shape[0], given, max(given, self.max_batch))  # as the tuner cut them
            outs = [fn(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
        elif self.auto_batch and tune:
            tuner = self._tuners[site] = _tuner(site, owner, x, self.max_batch,
                                                self.precision if site != "reward" else "fp32")  # rewards run as given
            if tuner.choice is None and x.shape[0] >= 2 * tuner.SIZES[0]:
                saved = dataclasses.replace(self.cost)
                tuner.calibrate(fn, x)
                vars(self.cost).update(vars(saved))  # the timing runs are no part of the run's cost (a model that
                # counts its own calls into the engine's counters, e.g. gradient guidance, counted them)
            outs = tuner.chunks(fn, x)
        else:
            outs = [fn(x[a:a + self.max_batch]) for a in range(0, x.shape[0], self.max_batch)]
        return (torch.cat(outs) if len(outs) > 1 else outs[0]), inverse

    def _grad_free(self):
        """inference_mode, or no_grad for a model that differentiates inside ``predict`` (gradient guidance)."""
        return torch.no_grad() if getattr(self.model, "needs_grad", False) else torch.inference_mode()

    def _autocast(self, x: Tensor):
        return torch.autocast(x.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()

    def batch_sizes(self) -> dict[str, int | None]:
        """The chunk size each call site settled on (None: still measuring when the run ended)."""
        return {**{site: t.choice for site, t in self._tuners.items()}, **self._used_given}

    def predict(self, x: Tensor, i: int, parents: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Network output of states ``x`` at level ``i``. ``parents=(px, ppred)``: x holds x.shape[0] // len(px)
        children of each row of px, in order; with a ``time_independent`` model a child equal to its parent takes
        the parent's output (no call, not counted)."""
        if parents is None or not getattr(self.model, "time_independent", False):
            return self._predict(x, i)
        px, ppred = parents
        m = x.shape[0] // px.shape[0]
        same = (x.reshape(px.shape[0], m, -1) == px.reshape(px.shape[0], 1, -1)).all(-1).flatten()
        changed = (~same).nonzero().squeeze(1)  # the one host-device sync of this reuse
        # on a GPU the changed children skip the row sort: they repeat each other rarely (the parent reuse took the
        # repeats), and the sort's sync costs more there than the few rows it saves
        if changed.shape[0] == x.shape[0]:
            return self._predict(x, i, dedupe=not self.few_syncs)
        out = ppred.repeat_interleave(m, dim=0)
        if changed.shape[0]:
            out[changed] = self._predict(x[changed], i, dedupe=not self.few_syncs)
        return out

    def _predict(self, x: Tensor, i: int, dedupe: bool = True) -> Tensor:
        t0 = time.perf_counter()
        with self._grad_free(), self._autocast(x):
            out, inverse = self._map(lambda c: self.model.predict(c, i), x, "network", self.model, dedupe=dedupe)
        self._row_seconds["network"] = (time.perf_counter() - t0) / max(out.shape[0], 1)
        self._check(out, _network_name(self.model), i, neg_inf_ok=self.discrete)  # masked: −inf log-probs are fine
        self.cost.network_evals += out.shape[0]
        return out if inverse is None else out[inverse]

    def _check(self, out: Tensor, what: str, i: int | None, neg_inf_ok: bool = False, nan_ok: bool = False) -> None:
        """`_check_finite` of a call's output now, or with ``few_syncs`` one device-side flag read by `settle`."""
        if not self.few_syncs:
            return _check_finite(out, what, i, neg_inf_ok=neg_inf_ok, nan_ok=nan_ok)
        if out.is_floating_point() and out.numel():
            n = out.shape[0] if out.dim() else 1
            self._pending.append((_nonfinite(out, neg_inf_ok, nan_ok), ("output", what, i, n)))

    def settle(self) -> None:
        """Read the queued checks (`few_syncs`) with one host-device sync and act on them in call order: the first
        network or value-net output that held values it must not, or reward output that held +inf, raises here, as
        it would have at its call; failed reward calls are counted as there. Called after every step and at the end
        of a run, before anything sees the step's states."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        dev = pending[0][0].device
        flags = torch.cat([f.reshape(-1).to(dev, torch.long) for f, _ in pending]).tolist()  # the one sync
        k = 0
        for f, (kind, *args) in pending:
            got, k = flags[k:k + f.numel()], k + f.numel()
            if kind == "output" and got[0]:
                raise _nonfinite_error(args[0], args[1], *got, args[2])
            if kind == "reward":
                self._reward_outcome(*got, *args)

    def value_net(self, fn: Callable[[Tensor], Tensor], x: Tensor, owner: Any = None, i: int | None = None,
                  nan_ok: bool = False) -> Tensor:
        """Values of states ``x`` (at level ``i``) by a value net or function. NaN (unless ``nan_ok``: a value
        function that may fail, as a reward does) or +inf is an error naming it; −inf is a failed state."""
        with self._grad_free(), self._autocast(x):
            out, inverse = self._map(fn, x, "value", owner if owner is not None else fn)
        self._check(out, f"value net {_label(owner if owner is not None else fn)}", i, neg_inf_ok=True, nan_ok=nan_ok)
        self.cost.value_evals += out.shape[0]
        out = out.double()
        return out if inverse is None else out[inverse]

    def sample_chunks(self, n: int, m: int) -> list[slice]:
        """Slices of samples whose m candidates each are built, scored and selected together: about max_batch rows
        per slice (a multiple of 16 samples, so that CPU random draws match one unsplit draw), one slice when all
        n·m rows fit."""
        b = max(16, self.max_batch // m // 16 * 16)
        return [slice(a, min(a + b, n)) for a in range(0, n, b)]

    def affordable(self, calls: int, network_calls: int = 0, reserve_network: int = 0, reserve_reward: int = 0) -> bool:
        """Whether ``calls`` more real reward calls and ``network_calls`` network / value-net rows fit in the run's
        budgets (always, without one), together with what the rest of the run must still spend at the least
        (``reserve_*``: the pre-trained transition to the clean level, the final scores). Methods ask before an
        optional expense with its worst case (every candidate a real call)."""
        if self.reward_budget is not None and self.cost.reward_calls + calls > self.reward_budget:
            return False
        b = self.budget
        if b is None:
            return True
        n = self.num_samples
        if b.reward_calls is not None and self.cost.reward_calls + calls + reserve_reward > b.reward_calls * n:
            return False
        if b.network_calls is not None and self.network_calls() + network_calls + reserve_network > b.network_calls * n:
            return False
        if b.seconds is not None:
            ahead = ((network_calls + reserve_network) * self._row_seconds["network"]
                     + (calls + reserve_reward) * self._row_seconds["reward"])
            if time.perf_counter() - self._t0 + ahead > b.seconds * n:
                return False
        return True

    def network_calls(self) -> int:
        """Network rows spent so far, as a budget counts them: denoiser, value net and gradient evaluations."""
        c = self.cost
        return c.network_evals + c.value_evals + c.gradient_evals

    def rewards(self, x0: Tensor) -> Tensor:
        """Rewards of clean samples as float64, NaN where the reward raised or returned NaN. Calls and failures are
        both counted in distinct evaluated rows. With a reward cache (`svdd.rewards.CachedReward`: a reward with
        ``stats.hits`` / ``stats.run_hits``), rows this run had asked for before are cache hits, not reward calls;
        rows answered from earlier runs are reward calls and also ``stored_hits``."""
        stats = getattr(self.reward, "stats", None)
        hits0, run0, t0 = getattr(stats, "hits", 0), getattr(stats, "run_hits", 0), time.perf_counter()
        cheap = getattr(self.reward, "tune_batch", False)  # a reward that is a cheap batched network
        with self._grad_free():  # on a GPU such a reward scores repeated rows faster than sorting them out
            out, inverse = self._map(self._reward_chunk, x0, "reward", self.reward, tune=cheap,
                                     dedupe=not (cheap and self.few_syncs))
        self.cost.reward_seconds += time.perf_counter() - t0
        self._row_seconds["reward"] = (time.perf_counter() - t0) / max(out.shape[0], 1)
        hits, run_hits = getattr(stats, "hits", 0) - hits0, getattr(stats, "run_hits", 0) - run0
        self.cost.reward_evals += out.shape[0]
        self.cost.cache_hits += run_hits
        self.cost.stored_hits += hits - run_hits
        self.cost.reward_calls += out.shape[0] - run_hits
        self._failed_rows = self._failed_rows + torch.isnan(out).sum()  # read in `finish`: no sync per call
        return out if inverse is None else out[inverse]

    def _reward_chunk(self, x: Tensor) -> Tensor:
        """Rewards of one chunk. The reward gets a copy of the rows (one that edits its input cannot corrupt the
        samples). A batch that raises is retried row by row; a row that raises or returns NaN / −inf is a failure
        (NaN here, value −inf). Errors: +inf; every row of the run's first batch failing; ``max_reward_failures``
        consecutive calls that failed on every row (`RewardUnavailable`)."""
        n = x.shape[0]
        try:
            raw = self.reward(x.clone())
        except Exception as exc:  # isolate the failing rows (each retried row counts as a call); the run goes on
            self.settle()  # the earlier calls' outcomes first, in order
            self.failures.first_error = self.failures.first_error or f"{type(exc).__name__}: {exc}"
            out = torch.full((n,), torch.nan, dtype=torch.float64, device=x.device)
            for j in range(n):  # slow path, only taken when a batch raised
                try:
                    raw_j = self.reward(x[j:j + 1].clone())
                except Exception as exc_j:
                    self._reward_failed(exc_j)
                    continue
                out[j] = self._checked(raw_j, 1, x.device, x[j:j + 1], now=True)[0]
            if not self.failures._any_success:
                raise RunError(f"reward {self.reward.name!r} raised for every one of {n} samples of its first batch: "
                               f"{self.failures.first_error}") from exc
            return out
        return self._checked(raw, n, x.device, x)

    def _checked(self, raw: Any, n: int, device: torch.device, rows: Tensor, now: bool = False) -> Tensor:
        """A reward call's output as float64 on the rows' device: shape and dtype checked, +inf refused, −inf read as
        a failure (NaN). The outcome (`_reward_outcome`) is acted on now, or with ``few_syncs`` (unless ``now``) at
        the next `settle`."""
        out = check_output(raw, n, self.reward.name).double().to(device)
        if (now or not self.few_syncs) and bool(torch.isfinite(out.sum())):  # the common case, one reduction: every
            # row finite (NaN and ±inf make the sum non-finite; a sum that overflows takes the full count below)
            self._reward_outcome(0, n, n, rows if self._canary is None else None, None)
            return out.clone()  # not the reward's own tensor or array (which it may reuse)
        ok = torch.isfinite(out)
        counts = torch.stack([(out == torch.inf).sum(), ok.sum()])
        # the rows and where they succeeded are kept only while no row has succeeded yet (the canary comes from them)
        args = (n, rows, ok) if self._canary is None else (n, None, None)
        if self.few_syncs and not now:
            self._pending.append((counts, ("reward", *args)))
        else:
            self._reward_outcome(*counts.tolist(), *args)  # one host-device sync
        return torch.where(ok, out, torch.full_like(out, torch.nan))

    def _reward_outcome(self, pos_inf: int, good: int, n: int, rows: Tensor | None, ok: Tensor | None) -> None:
        """Act on one reward call's counts: +inf is an error, a call with no good row a failed call, and the run's
        first batch failing on every row (n >= 2) an error; the first good row becomes the canary."""
        name = self.reward.name
        if pos_inf:
            raise RunError(f"reward {name!r} returned +inf for {pos_inf} of {n} samples; "
                           "rewards must be finite (NaN or −inf marks a sample whose reward failed)")
        if not good:
            self._reward_failed(None)
        else:
            self._failed_calls = 0
            self.failures._any_success = True
            if self._canary is None and rows is not None:  # ok None: every row succeeded
                self._canary = rows[0 if ok is None else int(ok.nonzero()[0, 0]):][:1].clone()
        if not self.failures._any_success and n >= 2:  # one row failing (e.g. SMC's level 0) may be bad luck
            raise RunError(f"reward {name!r} returned NaN or −inf for every one of {n} samples of its first "
                           "batch: no sample can be scored (a reward marks a failed sample with NaN)")

    def _reward_failed(self, exc: BaseException | None) -> None:
        """Count a reward call that failed on every row (a retried row, or a batch that returned no value). After
        ``max_reward_failures`` in a row, probe the reward with a row it scored before: if that fails too, the reward
        is gone (`RewardUnavailable`); if it answers, the failures belong to the inputs and the run goes on. The probe
        is one more reward call, counted."""
        if exc is not None:
            self.failures.first_error = self.failures.first_error or f"{type(exc).__name__}: {exc}"
        self._failed_calls += 1
        if self._failed_calls < self.max_reward_failures:
            return
        calls, last = self._failed_calls, (f"{type(exc).__name__}: {exc}" if exc is not None else "NaN for every row")
        if self._canary is not None:
            self.cost.reward_evals += 1
            self.cost.reward_calls += 1
            try:
                probe = check_output(self.reward(self._canary.clone()), 1, self.reward.name).double()
            except Exception as probe_exc:
                last = f"{type(probe_exc).__name__}: {probe_exc}"
            else:
                if bool(torch.isfinite(probe).all()):
                    self._failed_calls = 0  # it still answers: these inputs fail, the reward is alive
                    return
        raise RewardUnavailable(
            f"reward {self.reward.name!r} failed on every row of {calls} calls in a row"
            f"{' and on a row it had scored before' if self._canary is not None else ''} (last: {last}); the run "
            "stops here. Rerun when the reward answers again: values a CachedReward computed are kept, and "
            "`svdd compare` keeps its finished runs (max_reward_failures sets the limit)")

    def trange(self, n: int, desc: str, start: int = 0):
        from tqdm.auto import trange
        return trange(start, n, desc=desc, disable=not self.progress, leave=False, dynamic_ncols=True)

    def finish(self, num_samples: int) -> Cost:
        self.settle()
        self.failures.failed_rewards += int(self._failed_rows)
        self._failed_rows = 0
        self.cost.wall_seconds = time.perf_counter() - self._t0
        self.cost.num_samples = num_samples
        return self.cost


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions: AVX-512 BF16 or AMX on x86 (oneDNN's own check also accepts plain
    AVX-512, where bf16 is emulated); elsewhere oneDNN's check."""
    import platform
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True  # unknown: no warning rather than a wrong one


def _label(obj: Any) -> str:
    return getattr(obj, "label", None) or getattr(obj, "__name__", None) or type(obj).__name__


def _network_name(model: Any) -> str:
    import inspect
    net = getattr(model, "unet", None) or getattr(model, "network", None)
    if net is None or inspect.ismethod(net):
        return f"model {type(model).__name__}"
    return f"network {_label(net)} of {type(model).__name__}"


def _nonfinite(out: Tensor, neg_inf_ok: bool, nan_ok: bool) -> Tensor:
    """Device-side counts [rows holding a value `_check_finite` refuses, rows holding NaN among them] (no sync)."""
    flat = out.reshape(out.shape[0] if out.dim() else 1, -1)
    if nan_ok:
        bad = (flat == torch.inf).any(1) if neg_inf_ok else torch.isinf(flat).any(1)
        return torch.stack([bad.sum(), torch.zeros_like(bad.sum())])
    if neg_inf_ok:
        top = flat.amax(1)  # NaN where the row holds one (amax propagates NaN), +inf where it holds +inf
        return torch.stack([(~(top < torch.inf)).sum(), torch.isnan(top).sum()])
    return torch.stack([(~torch.isfinite(flat).all(1)).sum(), torch.isnan(flat).any(1).sum()])


def _nonfinite_error(what: str, i: int | None, rows: int, nan_rows: int, n: int) -> RunError:
    kind = "NaN" if nan_rows else "infinite values"
    where = f" at level {i}" if i is not None else ""
    return RunError(f"{what} returned {kind}{where} for {rows} of {n} evaluated rows; svdd cannot select among "
                    "non-finite outputs (check the network's input range and weights)")


def _check_finite(out: Tensor, what: str, i: int | None, neg_inf_ok: bool = False, nan_ok: bool = False) -> None:
    """Raise a `RunError` naming ``what`` and the step when ``out`` holds NaN or +inf (or −inf unless ``neg_inf_ok``):
    a sampler cannot continue from them, and a selection among them would be silently arbitrary."""
    if not out.is_floating_point() or out.numel() == 0:
        return
    if not nan_ok and bool(out.amax() < torch.inf if neg_inf_ok else torch.isfinite(out.sum())):
        return  # one reduction (and one host-device sync) in the common case; NaN fails both tests
    rows, nan_rows = _nonfinite(out, neg_inf_ok, nan_ok).tolist()
    if rows:
        raise _nonfinite_error(what, i, rows, nan_rows, out.shape[0] if out.dim() else 1)
