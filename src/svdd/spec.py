"""A run as one value: `RunSpec` (task, method and its options, `RunSettings`, seed, number of samples, chunk size).

Every command describes its runs this way -- `svdd sample` one spec, `svdd compare` one per (method, seed), `svdd
frontier` one per (family, budget or M, seed) -- and one executor (`svdd.runs.execute`) runs them into run folders
(`svdd.store`). A spec is frozen and hashable, its ``key`` is the hash of its canonical JSON, and
``RunSpec.from_dict(spec.to_dict()) == spec``: the manifest and ``run.json`` of a run folder hold it, so that
`svdd.rerun` (``svdd rerun OUT``) rebuilds the run from the folder alone.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .budget import as_budget
from .io import canonical_json, config_hash

SPEC_FORMAT = 1


def _check_int(name: str, v: Any, low: int = 1, high: int | None = None) -> int:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < low or (high is not None and v >= high):
        bound = f">= {low}" + (f" and < 2**{high.bit_length() - 1}" if high else "")
        raise ValueError(f"{name} must be an int {bound}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class RunSettings:
    """How a run evaluates (the `svdd.sample` options that are not the method's): see `svdd.sample` for each.
    ``batch_sizes``: the chunk size each call site used (``{"network": 128, ...}``), replayed by a rerun so that a
    run on a GPU gives the same samples again; None measures them (``auto_batch``)."""

    max_batch: int | None = None
    auto_batch: bool = True
    precision: str = "fp32"
    dedupe: bool = True
    max_reward_failures: int = 32
    budget: Any = None  # a `svdd.Budget` (or its dict / string form)
    reward_budget: float | None = None
    batch_sizes: Mapping[str, int] | None = None

    def __post_init__(self):
        if self.max_batch is not None:
            object.__setattr__(self, "max_batch", _check_int("max_batch", self.max_batch))
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        for name in ("auto_batch", "dedupe"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_int("max_reward_failures", self.max_reward_failures)
        object.__setattr__(self, "budget", as_budget(self.budget))
        rb = self.reward_budget
        if rb is not None and (isinstance(rb, bool) or not isinstance(rb, (int, float)) or not 0 <= rb < float("inf")):
            raise ValueError(f"reward_budget must be a finite number >= 0 (reward calls per sample) or None, got {rb!r}")
        if self.batch_sizes is not None:
            if not isinstance(self.batch_sizes, Mapping):
                raise ValueError(f"batch_sizes must be a dict of call site -> rows, got {self.batch_sizes!r}")
            sizes = {str(k): (None if v is None else _check_int(f"batch_sizes[{k!r}]", v))
                     for k, v in sorted(self.batch_sizes.items())}
            object.__setattr__(self, "batch_sizes", _Frozen(sizes))

    def sample_options(self) -> dict[str, Any]:
        """These settings as keyword arguments of `svdd.sample`."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["batch_sizes"] = None if self.batch_sizes is None else dict(self.batch_sizes)
        return d

    def to_dict(self) -> dict[str, Any]:
        d = self.sample_options()
        d["budget"] = None if self.budget is None else self.budget.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSettings":
        _known(cls, d, "run settings")
        return cls(**d)


class _Frozen(dict):
    """A dict that is hashable and refuses changes (the mappings inside a frozen spec)."""

    def __hash__(self):
        return hash(canonical_json(self))

    def __reduce__(self):  # pickled (Ray) as a plain dict rebuilt whole: unpickling must not call __setitem__
        return (_Frozen, (dict(self),))

    def _refuse(self, *a, **k):
        raise TypeError("a RunSpec is frozen: build a new one with dataclasses.replace")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse


def _known(cls, d: Mapping[str, Any], what: str) -> None:
    if not isinstance(d, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(d).__name__}")
    bad = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if bad:
        raise ValueError(f"{what} has unknown field(s) {bad}; known: {[f.name for f in dataclasses.fields(cls)]}")


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON data, or an error naming ``where`` (a value net object has no JSON form)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{k}]") for k, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ValueError(f"{where} = {type(value).__name__} object has no JSON form, so the run could not be rebuilt from "
                     "its folder; give it by name (e.g. value='task' for the task's value net) or run it with "
                     "svdd.sample")


@dataclass(frozen=True)
class RunSpec:
    """One run: ``num_samples`` samples of ``method`` (a registered name) with ``options`` on ``task``, in chunks of
    ``chunk_size`` samples from ``seed`` (chunk k > 0 draws from a seed derived from (seed, k)).

    ``task``: a registered task's name (`svdd tasks`), a folder task as ``{"prior": DIR, "oracle": DIR,
    "eval_oracle": DIR, "value": DIR}`` (see `svdd train`), or a `svdd.tasks.Task` object of one's own (its spec has
    no JSON form: a rerun then takes the task again). ``options``: the method's options as given (``value="task"``
    names the task's value net). ``evaluate``: also score every sample by the task's naturalness and the run by the
    task's set metrics (what `svdd compare` reports); the held-out reward is always scored."""

    task: Any
    method: str = "svdd"
    options: Mapping[str, Any] = field(default_factory=dict)
    num_samples: int = 64
    seed: int = 0
    chunk_size: int = 256
    task_options: Mapping[str, Any] = field(default_factory=dict)
    settings: RunSettings = field(default_factory=RunSettings)
    evaluate: bool = False

    def __post_init__(self):
        from .methods.base import method_class, option_names
        if not isinstance(self.method, str):
            raise ValueError(f"method must be a registered name, got {type(self.method).__name__}")
        fields = option_names(method_class(self.method))
        bad = sorted(set(self.options) - fields)
        if bad:
            raise ValueError(f"method {self.method!r} has no option(s) {bad}; its options: {sorted(fields)}")
        _check_int("num_samples", self.num_samples)
        _check_int("seed", self.seed, 0, 2 ** 62)
        _check_int("chunk_size", self.chunk_size)
        if isinstance(self.task, Mapping):
            bad = sorted(set(self.task) - {"prior", "oracle", "eval_oracle", "value"})
            if bad or not (self.task.get("prior") and self.task.get("oracle")):
                raise ValueError(f"a folder task is {{'prior': DIR, 'oracle': DIR[, 'eval_oracle': DIR, 'value': "
                                 f"DIR]}}, got {dict(self.task)!r}")
            object.__setattr__(self, "task", _Frozen({k: str(v) for k, v in self.task.items() if v}))
        elif not isinstance(self.task, str) and not callable(getattr(self.task, "make", None)):
            raise ValueError(f"task must be a registered name, a folder task dict or a svdd.tasks.Task, got "
                             f"{type(self.task).__name__}")
        if not isinstance(self.settings, RunSettings):
            raise ValueError(f"settings must be a svdd.spec.RunSettings, got {type(self.settings).__name__}")
        object.__setattr__(self, "options", _Frozen(self.options))
        object.__setattr__(self, "task_options", _Frozen(self.task_options))

    # identity --------------------------------------------------------------------------------------------------------
    @property
    def task_name(self) -> str:
        if isinstance(self.task, str):
            return self.task
        if isinstance(self.task, Mapping):
            return f"folder:{Path(self.task['prior']).name}+{Path(self.task['oracle']).name}"
        return getattr(self.task, "name", type(self.task).__name__)

    @property
    def key(self) -> str:
        """The run key: a hash of the spec's canonical JSON (objects without a JSON form by their type name)."""
        return config_hash(self.to_dict(strict=False))

    def __hash__(self):
        return hash(self.key)

    # JSON ------------------------------------------------------------------------------------------------------------
    def to_dict(self, strict: bool = True) -> dict[str, Any]:
        """The spec as JSON data. ``strict``: an option or task without a JSON form is an error naming it (else it is
        written by its type name, which `from_dict` refuses)."""
        def plain(v, where):
            try:
                return _plain(v, where)
            except ValueError:
                if strict:
                    raise
                return {"object": type(v).__name__}

        if isinstance(self.task, (str, Mapping)):
            task = plain(self.task, "task")
        elif strict:
            raise ValueError(f"task {self.task_name!r} is a Task object: it has no JSON form; svdd.rerun(path, "
                             "task=...) takes it again")
        else:
            task = {"object": self.task_name}
        return {"format": SPEC_FORMAT, "task": task, "method": self.method,
                "options": {k: plain(v, f"options.{k}") for k, v in sorted(self.options.items())},
                "num_samples": self.num_samples, "seed": self.seed, "chunk_size": self.chunk_size,
                "task_options": plain(dict(self.task_options), "task_options"), "settings": self.settings.to_dict(),
                "evaluate": self.evaluate}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], task: Any = None) -> "RunSpec":
        """The spec of ``to_dict``'s output; ``task`` replaces the stored task (needed for a Task object's run)."""
        d = dict(d)
        fmt = d.pop("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT:
            raise ValueError(f"run spec format {fmt!r} is not one this svdd reads ({SPEC_FORMAT})")
        _known(cls, d, "run spec")
        if task is not None:
            d["task"] = task
        elif isinstance(d.get("task"), Mapping) and "object" in d["task"]:
            raise ValueError(f"the run's task was a Task object ({d['task']['object']!r}) with no JSON form: pass it "
                             "again, svdd.rerun(path, task=...)")
        for k, v in d.get("options", {}).items():
            if isinstance(v, Mapping) and set(v) == {"object"}:
                raise ValueError(f"option {k!r} of the run was a {v['object']} object with no JSON form; rebuild the "
                                 "run with svdd.sample")
        if "settings" in d:
            d["settings"] = RunSettings.from_dict(d["settings"])
        d["options"] = _tuples(d.get("options", {}))
        return cls(**d)

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    # building --------------------------------------------------------------------------------------------------------
    def make_task(self):
        """The `svdd.tasks.Task` this spec names."""
        if isinstance(self.task, str):
            from .tasks import get_task
            return get_task(self.task)
        if isinstance(self.task, Mapping):
            from .tasks.folder import folder_task
            return folder_task(**self.task)
        return self.task


def _tuples(options: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples method options hold (e.g. ``select_window``)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
