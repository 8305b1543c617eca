"""Comparisons and frontiers as lists of run specs: planning, running on the shared executor, reporting.

A comparison is one `RunSpec` per (method, seed); a frontier one per (family, M) or (family, budget, seed). Every
run goes into its own run folder under ``OUT/runs/`` (the store `svdd sample` uses), all of them run on one backend
(this process, torchrun or Ray) with the same resume and lock guarantees, and `svdd.report` writes the tables and
figures from the store at the end (``svdd report OUT`` again at any time).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch

from .distributed import Backend
from .io import atomic_write, describe_diff, plain_options
from .report import STUDY_FORMAT, Hooks, report
from .spec import RunSettings, RunSpec
from .store import MANIFEST, RunFolder, plan, read_manifest


@dataclasses.dataclass
class Study:
    """A comparison or frontier: its runs (label, seed, spec, where it goes) and what its report needs."""

    kind: str  # "compare" or "frontier" (the command)
    mode: str  # "compare", "frontier" (M sweep) or "budget-frontier"
    entries: list[dict[str, Any]]  # {"label", "seed", "spec", "path", and "family", "M", "budget" for frontiers}
    info: dict[str, Any]  # num_samples, seeds, settings, families, budget_kind ...
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)  # what a resume must keep (runs may be added)

    def manifest(self, task_info: dict[str, Any], command: str | None) -> dict[str, Any]:
        from . import __version__
        runs = [{k: (v.to_dict(strict=False) if k == "spec" else v) for k, v in e.items()} for e in self.entries]
        return {"format": STUDY_FORMAT, "kind": self.kind, "mode": self.mode, "svdd_version": __version__,
                "task": task_info, "runs": runs, **self.info, "shared": {"task": task_info["config"], **self.shared},
                "command": command}


def method_entry(entry: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    """(method name, options, budget) of a task's comparison entry ``{"method": name, **options, "budget": ...}``."""
    opts = dict(entry)
    name = opts.pop("method")
    return name, opts, opts.pop("budget", None)


def _settings(name: str, settings: RunSettings, budget: Any) -> RunSettings:
    """A run's settings: a method that takes no budget (its every step calls the reward or value net for a gradient,
    e.g. DPS) runs unbudgeted; its calls are reported as they are."""
    from .methods.base import method_class
    if not method_class(name).honours_budget:
        return dataclasses.replace(settings, budget=None, reward_budget=None)
    return dataclasses.replace(settings, budget=budget) if budget is not None else settings


def comparison(task: Any, methods: dict[str, dict[str, Any]], *, seeds, num_samples: int, settings: RunSettings,
               task_options: dict[str, Any] | None = None, chunk_size: int | None = None,
               info: dict[str, Any] | None = None, mode: str = "compare", kind: str = "compare",
               extra: dict[str, dict[str, Any]] | None = None) -> Study:
    """Every method (label -> ``{"method": name, **options}``) at every seed: one spec each, evaluated fully
    (held-out reward, naturalness, set metrics). ``chunk_size`` None: one chunk per run (its samples are then those of
    `svdd.sample` at the seed)."""
    entries = []
    for label, entry in methods.items():
        name, opts, budget = method_entry(entry)
        for seed in seeds:
            spec = RunSpec(task, name, opts, num_samples, seed, chunk_size or num_samples, dict(task_options or {}),
                           _settings(name, settings, budget), evaluate=True)
            entries.append({"label": label, "seed": seed, "spec": spec, "path": f"runs/{label}-seed{seed}",
                            "options": {"method": name, **plain_options(opts)}, **(extra or {}).get(label, {})})
    shared = {"num_samples": num_samples, "chunk_size": chunk_size, "settings": settings.to_dict()}
    if mode == "budget-frontier":
        shared["seeds"] = list(seeds)
    return Study(kind, mode, entries, {"num_samples": num_samples, "seeds": list(seeds), **(info or {})},
                 {**shared, **(info or {}).get("shared", {})})


def with_overrides(name: str, opts: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``opts`` with the overrides the method ``name`` has (the rule `compare` and `frontier` share: an override goes
    to every method that has the option and is skipped by the others)."""
    from .methods.base import method_class, option_names
    have = option_names(method_class(name))
    return {**opts, **{k: v for k, v in (overrides or {}).items() if k in have}}


def frontier(task: Any, Ms: list[int], *, seed: int, num_samples: int, settings: RunSettings, smc_alpha: float,
             value_net: bool, task_options: dict[str, Any] | None = None, chunk_size: int | None = None,
             overrides: dict[str, Any] | None = None) -> Study:
    """SVDD-PM, Best-of-N and (when the task ships a value net) SVDD-MC at each M, and SMC: one seed. ``overrides``
    (e.g. alpha) go to every method that has them."""
    points = [("svdd-pm", M, "svdd", {"M": M}) for M in Ms] + [("best-of-n", M, "best-of-n", {"M": M}) for M in Ms]
    if value_net:
        points += [("svdd-mc", M, "svdd", {"M": M, "value": "task"}) for M in Ms]
    points.append(("smc", 1, "smc", {"alpha": smc_alpha}))
    entries = []
    for family, M, name, opts in points:
        opts = with_overrides(name, opts, overrides)
        spec = RunSpec(task, name, opts, num_samples, seed, chunk_size or num_samples, dict(task_options or {}),
                       _settings(name, settings, None))
        entries.append({"label": f"{family}-M{M}", "family": family, "M": M, "seed": seed, "spec": spec,
                        "path": f"runs/{family}-M{M}-seed{seed}", "options": {"method": name, **opts}})
    return Study("frontier", "frontier", entries, {"num_samples": num_samples, "seeds": [seed],
                                                   "settings": settings.to_dict()},
                 {"num_samples": num_samples, "seed": seed, "chunk_size": chunk_size, "settings": settings.to_dict()})


def budget_frontier(task: Any, budgets: list[float], families: list[str], *, seeds, num_samples: int,
                    settings: RunSettings, num_steps: int, smc_alpha: float, value_net: bool,
                    kind: str = "reward_calls", task_options: dict[str, Any] | None = None,
                    chunk_size: int | None = None, overrides: dict[str, Any] | None = None) -> Study:
    """Every family at every budget (``kind`` per sample) over seeds; a family whose spending does not depend on the
    budget runs once. ``overrides`` (e.g. alpha) go to every method that has them."""
    known = budget_families()
    bad = sorted(set(families) - set(known))
    if bad:
        raise ValueError(f"unknown families {bad}; expected some of {list(known)}")
    if not value_net:
        families = [f for f in families if f != "svdd-mc"]
    methods, extra = {}, {}
    for fam in families:
        for b in budgets if not budget_free(fam, kind) else [None]:
            label = fam if b is None else f"{fam}@{b:g}"
            plan = budget_plan(fam, b if b is not None else max(budgets), num_steps, kind, smc_alpha=smc_alpha)
            methods[label] = with_overrides(plan["method"], plan, overrides)
            extra[label] = {"family": fam, "budget": b}
    return comparison(task, methods, seeds=seeds, num_samples=num_samples, settings=settings,
                      task_options=task_options, chunk_size=chunk_size, mode="budget-frontier", kind="frontier",
                      extra=extra, info={"budget_kind": kind, "families": families,
                                         "settings": settings.to_dict(), "shared": {"budget_kind": kind}})


def run_study(out: str | Path, study: Study, *, backend: Backend | None = None, progress: bool | None = None,
              command: str | None = None, hooks: Hooks | None = None, on_open=None,
              tasks: dict[str, Any] | None = None) -> tuple[str, list[str]] | None:
    """Run every run of ``study`` into ``out/runs`` (finished runs are kept: an interrupted study resumes), the
    reference rows of a task with real data, then the report. Returns (table, files written), or None on a
    torchrun rank other than 0."""
    from .distributed import torchrun_world
    from .job import ChunkJob
    from .runs import execute
    out = Path(out)
    first = study.entries[0]["spec"]
    tasks = {} if tasks is None else tasks  # built once, for the header and every run (`ChunkJob.tasks`)
    task = ChunkJob(first, tasks=tasks).task
    world = torchrun_world()
    leader = world is None or world[0] == 0
    if leader:
        old = _previous(out)
        info = {"name": first.task_name, "description": getattr(first.make_task(), "description", ""),
                "naturalness_name": task.naturalness_name, "reward": getattr(task.reward, "name", "reward"),
                "eval_reward": getattr(task.eval_reward, "name", None), "config": task.config,
                "model": task.model.config() if callable(getattr(task.model, "config", None))
                else type(task.model).__name__}
        if study.mode == "compare" and task.reference is not None:
            study.entries += reference_entries(out, task, study.info["seeds"], study.info["num_samples"])
        manifest = json.loads(json.dumps(study.manifest(info, command), default=str))  # as it reads back
        if old is not None and old.get("shared") != manifest["shared"]:
            what = "comparison" if study.kind == "compare" else study.kind
            raise ValueError(f"{out} holds a {what} with other settings: "
                             f"{describe_diff(old.get('shared'), manifest['shared'])}. Resume it with the same "
                             "settings, or start again with --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / MANIFEST, json.dumps(manifest, indent=2).encode())
    runs = [(e["spec"], out / e["path"]) for e in study.entries if e.get("reference") is None]
    done = execute(runs, backend=backend, resume=True, progress=progress, command=command, on_open=on_open,
                   tasks=tasks)
    if done is None:
        return None
    hooks = hooks or Hooks(task.write_samples, task.figure)
    return report(out, hooks)


def _previous(out: Path) -> dict[str, Any] | None:
    """The manifest of the study already in ``out`` (None: none yet). A folder of an older svdd whose runs are there
    as .pt files is an error saying how to go on; one whose manifest and tables are all it holds (e.g. committed
    results) is a record only: the study starts in it."""
    if list(out.glob("runs/*.pt")) or not (out / MANIFEST).exists():
        return read_manifest(out, STUDY_FORMAT, older="its runs are .pt files, ")
    try:
        return read_manifest(out, STUDY_FORMAT)
    except ValueError:
        if json.loads((out / MANIFEST).read_text()).get("format") == 1:  # nothing of it can be reused
            return None
        raise


def reference_entries(out: Path, task, seeds, num_samples: int) -> list[dict[str, Any]]:
    """Real data (e.g. random test images) as runs of their own, ``runs/test-data-seed<k>``: the same statistics
    where the data itself sits, at zero cost. Written once; a resume keeps them."""
    entries = []
    for seed in seeds:
        path = out / "runs" / f"test-data-seed{seed}"
        config = {"reference": True, "task": task.config, "num_samples": num_samples, "seed": seed}
        run = RunFolder.open(path, config, plan(num_samples, num_samples, seed), resume=True, kind="reference")
        if not (run.done(0) and (path / "run.json").exists()):
            x = task.reference(num_samples, seed).to(getattr(task.model, "device", "cpu"))  # where the rewards live
            with torch.no_grad():
                r = torch.as_tensor(task.reward(x)).double().cpu()
                ev = torch.as_tensor(task.eval_reward(x)).double().cpu() if task.eval_reward is not None else None
            zero = {k: 0.0 for k in ("network_evals", "reward_evals", "value_evals", "wall_seconds", "reward_calls",
                                     "cache_hits", "reward_seconds")}
            metrics = {k: f(x) for k, f in task.set_metrics.items()}
            run.write_chunk(0, x.cpu(), r, eval_rewards=ev)
            atomic_write(path / "run.json", json.dumps({"summary": {"cost_per_sample": zero, "metrics": metrics}},
                                                       default=str).encode())
        entries.append({"label": "test-data", "seed": seed, "path": f"runs/test-data-seed{seed}", "reference": True,
                        "options": {"method": "real test images"}})
    return entries


# Every method at the same budgets -------------------------------------------------------------------------------------

BUILT_IN = ("pretrained", "best-of-n", "svdd-pm", "svdd-r", "smc", "smc-fk", "beam", "branch-select", "tree", "refine",
            "svdd-mc")  # families with a plan of their own below (and this order in tables and figures)


def budget_families() -> tuple[str, ...]:
    """Every family of the budget frontier: the built-in ones, then every other registered method that takes a budget
    and has the options of the generic plan (M candidates, select_every)."""
    from .methods import METHODS
    from .methods.base import option_names
    extra = [m for m, cls in METHODS.items() if m not in BUILT_IN and m != "svdd" and cls.honours_budget
             and {"M", "select_every"} <= option_names(cls)]
    return BUILT_IN + tuple(extra)


FAMILIES = budget_families()  # at import (a method registered later: call `budget_families()`)


KINDS = ("reward_calls", "network_calls")


def _every(steps: float, per_selection: float, room: float) -> int:
    """The selection interval k so that (steps / k) selections of ``per_selection`` calls fit ``room``, at least 1
    (no room: an interval longer than any run -- the first step only, if the engine's budget check lets it)."""
    return max(1, math.ceil(steps * per_selection / room)) if room > 0 else 10 ** 9


def budget_plan(family: str, budget: float, num_steps: int, kind: str = "reward_calls", *, M: int = 10,
                smc_alpha: float = 1.0) -> dict[str, Any]:
    """Method options of ``family`` at ``budget`` (reward calls or network rows per sample): each method spreads its
    spending over the run (a selection interval, a number of draws or candidates) and the engine's `svdd.Budget`
    caps what it spends. A family whose spending of that kind does not depend on the budget (see `budget_free`) gets
    its fixed options."""
    if kind not in KINDS:
        raise ValueError(f"unknown budget kind {kind!r}; expected one of {KINDS}")
    b, t, rew = float(budget), num_steps, kind == "reward_calls"
    if family == "pretrained":
        return {"method": "pretrained"}
    if family == "svdd-mc" and rew:
        return {"method": "svdd", "M": M, "value": "task"}
    if family == "smc" and not rew:  # SMC's network rows are the pre-trained chain's: it weighs at every step
        return {"method": "smc", "alpha": smc_alpha}
    if family == "smc-fk" and not rew:
        return {"method": "smc", "alpha": smc_alpha, "potential": "max", "tempering": "linear"}
    wide = max(M, int((b - 1) // t) if rew else int((b - t) // t) + 1)  # more candidates once every step can select
    if family == "best-of-n":
        plan: dict[str, Any] = {"method": "best-of-n", "M": max(1, int(b if rew else b // t))}
    elif family in ("svdd-pm", "svdd-r", "beam"):
        name = {"svdd-pm": "svdd", "svdd-r": "svdd-r", "beam": "beam"}[family]
        k = _every(t, wide, b - 1) if rew else _every(t, wide - 1, b - t)
        plan = {"method": name, "M": wide, "select_every": k}
    elif family in ("smc", "smc-fk"):
        plan = {"method": "smc", "alpha": smc_alpha, "select_every": _every(t, 1, b - 2)}
        if family == "smc-fk":
            plan.update(potential="max", tempering="linear")
    elif family == "branch-select":
        width = 4 if rew else 2
        k = _every(t, M * width, b - 1) if rew else _every(t, width * (M - 1), b - width * t)
        plan = {"method": "branch-select", "M": M, "width": width, "select_every": k}
    elif family == "tree":
        plan = {"method": "tree", "M": M}
    elif family == "svdd-mc":  # network rows: the value net's M rows per selection
        plan = {"method": "svdd", "M": M, "value": "task", "select_every": _every(t, M, b - t)}
    elif family == "refine":  # two rounds over the last quarter of the steps
        rounds, renoise = 2, 0.25
        steps = t * (1 + rounds * renoise)
        k = _every(steps, M, b - 1 - rounds) if rew else _every(steps, M - 1, b - steps)
        plan = {"method": "refine", "M": M, "rounds": rounds, "renoise": renoise, "select_every": k}
    elif family in budget_families():  # a registered method with M candidates and a schedule: spread like SVDD-PM
        k = _every(t, wide, b - 1) if rew else _every(t, wide - 1, b - t)
        plan = {"method": family, "M": wide, "select_every": k}
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {budget_families()}")
    return {**plan, "budget": f"{kind}={b:g}"}


def budget_free(family: str, kind: str) -> bool:
    """Families run once, not per budget: what they spend of ``kind`` does not depend on it."""
    return family == "pretrained" or (family == "svdd-mc" and kind == "reward_calls") or \
        (family in ("smc", "smc-fk") and kind == "network_calls")


