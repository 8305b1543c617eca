"""The executor: runs described by `RunSpec` into run folders (`svdd.store`), on any backend, resumable.

`execute` takes a list of (spec, folder) pairs -- one for `svdd sample`, one per (method, seed) for `svdd compare`,
one per point for `svdd frontier` -- opens (or resumes) every folder, runs every unfinished chunk of all of them on
one backend (this process, torchrun ranks or Ray actors; `svdd.distributed`) and merges each folder's chunks into
its outputs. `sample_run` is the one-run form with keyword arguments, `rerun` rebuilds a run from its folder.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .distributed import Backend, run_local, run_ray, run_torchrun, torchrun_world
from .io import atomic_write
from .job import ChunkJob
from .spec import RunSettings, RunSpec
from .store import MANIFEST, RunFolder, lock_folder, plan, unlock_folder


def execute(runs: list[tuple[RunSpec, str | Path]], *, backend: Backend | None = None, resume: bool = False,
            overwrite: bool = False, progress: bool | None = None, command: str | None = None,
            on_open: Callable[[RunFolder], Any] | None = None, tasks: dict[str, Any] | None = None) -> list | None:
    """Run every (spec, folder) pair: open each folder (``resume``: continue the run there, its config must be the
    same; ``overwrite``: replace it; neither: the folder must be empty or absent), run all unfinished chunks on
    ``backend`` (default: this process; under torchrun, this rank's share), merge. Returns the merged
    `SampleResult` of each run in order, or None on a torchrun rank other than 0. The folders are locked meanwhile.
    ``tasks``: tasks the caller built already (`svdd.job.ChunkJob.tasks`), reused instead of built again."""
    import sys
    backend = backend or Backend()
    if progress is None:
        progress = sys.stderr.isatty()
    world = torchrun_world()
    if world is not None and backend.kind == "ray":
        raise ValueError("the Ray backend under torchrun: use one of them")
    jobs, configs = [], []
    tasks = {} if tasks is None else tasks  # built tasks (`ChunkJob.tasks`): once for every run that shares them
    for spec, _ in runs:
        asked = spec.task_options.get("device")
        if backend.kind == "ray" and str(asked).startswith("cuda") and not backend.gpus_per_worker:
            raise ValueError("the Ray backend with device cuda needs gpus_per_worker (e.g. 1): Ray hides the GPUs "
                             "from workers that reserve none")
        mine = spec
        if world is not None and str(asked).startswith("cuda"):  # one GPU per rank (torchrun's LOCAL_RANK)
            mine = dataclasses.replace(spec, task_options={**spec.task_options, "device": f"cuda:{world[2]}"})
        job = ChunkJob(mine, progress=progress and world is None and backend.kind == "local" and len(runs) == 1,
                       tasks=tasks)
        job.method()  # bad options fail here, before any folder is written
        config = job.config()
        if asked is not None:  # as asked, not per rank: a run resumes under any backend
            config["task"] = {**config["task"], "options": {**config["task"].get("options", {}), "device": asked}}
        jobs.append(job)
        configs.append(config)
    paths = [Path(p) for _, p in runs]
    leader = world is None or world[0] == 0
    took = [lock_folder(p) for p in paths] if leader else []
    before: list[int] = []  # finished chunks of each run when it was opened
    try:
        def open_runs(join: bool) -> list[RunFolder]:
            opened = []
            before.clear()
            for (spec, _), path, config in zip(runs, paths, configs):
                run = RunFolder.open(path, config, plan(spec.num_samples, spec.chunk_size, spec.seed),
                                     resume=resume or join, overwrite=overwrite and not join, command=command,
                                     spec=spec.to_dict(strict=False))
                if on_open is not None:
                    on_open(run)
                opened.append(run)
                before.append(len(run.finished()))
            return opened

        if world is not None:
            folders = run_torchrun(open_runs, jobs, progress=progress)
            if folders is None:  # not rank 0: rank 0 merges and reports
                return None
        else:
            folders = open_runs(False)
            run_ray(folders, jobs, backend, progress) if backend.kind == "ray" else run_local(folders, jobs, progress)
        return [merge(run, job, len(run.chunks) - b) for run, job, b in zip(folders, jobs, before)]
    finally:
        for p, t in zip(paths, took):
            if t:
                unlock_folder(p)


def merge(run: RunFolder, job: ChunkJob, ran: int | None = None):
    """The merged output of a finished run folder, written beside its chunks (samples.pt, rewards.csv, run.json
    with the replayable spec, the task's sample files); the `SampleResult`. ``ran``: how many of its chunks this
    call ran (None: all)."""
    from .cost import Cost
    from .result import Diagnostics, SampleResult
    spec, task = job.spec, job.task
    merged = run.merged()
    metas = merged["meta"]
    n = spec.num_samples
    cost = Cost.total([m["cost"] for m in metas], n)
    run_config = {**metas[0]["run_config"], "num_samples": n, "seed": spec.seed, "chunk_size": spec.chunk_size,
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
    if spec.evaluate:  # the task's set metrics of the whole run (e.g. uniqueness), for the reports
        summary["metrics"] = {k: f(res.samples) for k, f in task.set_metrics.items()}
    atomic_write(out / "run.json", json.dumps({"spec": replayable(spec, run_config).to_dict(strict=False),
                                               "config": run_config, "summary": summary, "task": task.config,
                                               "chunks": len(metas)}, indent=2, default=str).encode())
    if task.write_samples is not None:
        rewards = {task.reward.name: res.rewards}
        if merged["eval_rewards"] is not None:
            rewards[task.eval_reward.name] = merged["eval_rewards"]
        task.write_samples(out, res.samples, rewards)
    if merged["text"] is not None:
        lines = "".join(f"{s}\t{r:.6g}\n" for s, r in zip(merged["text"], res.rewards.tolist()))
        atomic_write(out / "samples.txt", lines.encode())
    res.config["run"] = {"path": str(run.path), "chunks": len(metas),
                         "chunks_run_now": len(metas) if ran is None else ran}
    return res


def replayable(spec: RunSpec, run_config: dict[str, Any]) -> RunSpec:
    """``spec`` with the chunk sizes its run used (so that a rerun replays them) where it measured them."""
    sizes = {k: v for k, v in (run_config.get("batch_sizes") or {}).items() if v is not None}
    if spec.settings.batch_sizes is not None or not sizes:
        return spec
    return dataclasses.replace(spec, settings=dataclasses.replace(spec.settings, batch_sizes=sizes))


def read_spec(path: str | Path, task: Any = None) -> RunSpec:
    """The spec of the run in folder ``path`` (its run.json once finished, else its manifest)."""
    path = Path(path)
    for name in ("run.json", MANIFEST):
        f = path / name
        if f.exists():
            try:
                doc = json.loads(f.read_text())
            except ValueError as exc:
                raise ValueError(f"{f} is not readable JSON ({exc})") from None
            if doc.get("kind") in ("compare", "frontier"):
                raise ValueError(f"{path} holds a `svdd {doc['kind']}`: rerun one of its runs, {path}/runs/<run>")
            if "spec" not in doc or doc["spec"] is None:
                if name == "run.json" and (path / MANIFEST).exists():
                    continue
                raise ValueError(f"{f} holds no run spec (written by an older svdd, or by svdd.sample's "
                                 "SampleResult.save): it cannot be rerun; run it again with its command")
            try:
                return RunSpec.from_dict(doc["spec"], task=task)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{f}: {exc}") from None
    raise ValueError(f"{path} holds no svdd run (no run.json or {MANIFEST})")


def rerun(path: str | Path, out: str | Path, *, task: Any = None, backend: Backend | None = None,
          progress: bool | None = None, overwrite: bool = False):
    """Run again the run stored in folder ``path`` -- from its spec alone, with the chunk sizes it used -- into the
    new folder ``out``. On CPU the samples equal the stored ones bit for bit. ``task``: the Task object of a run
    made from Python with one (it has no JSON form). Returns the new `SampleResult`; its ``config["rerun"]`` says
    whether the samples equal the stored ones (None when the stored run is unfinished)."""
    spec = read_spec(path, task=task)
    if Path(out).resolve() == Path(path).resolve():
        raise ValueError(f"rerun {path} into itself: give another folder")
    (res,) = execute([(spec, out)], backend=backend, progress=progress, overwrite=overwrite)
    old = Path(path) / "samples.pt"
    same = None
    if old.exists():
        stored = torch.load(old, weights_only=True)
        a, b = stored["rewards"].double(), res.rewards.double()  # NaN where a reward failed: equal as NaN
        same = torch.equal(stored["samples"], res.samples) and torch.equal(a.isnan(), b.isnan()) \
            and torch.equal(a.nan_to_num(), b.nan_to_num())
    res.config["rerun"] = {"from": str(path), "same_samples": same}
    return res


def sample_run(out: str | Path, task: Any, method: str = "svdd", *, num_samples: int | None = None, seed: int = 0,
               chunk_size: int = 256, task_options: dict[str, Any] | None = None,
               options: dict[str, Any] | None = None, backend: str | Backend = "local", workers: int = 2,
               address: str | None = None, gpus_per_worker: float = 0.0, reward_workers: int = 0,
               cpus_per_reward_worker: float = 1.0, write_on: str = "workers", resume: bool = False,
               overwrite: bool = False, evaluate: bool = False,
               progress: bool | None = None, command: str | None = None, on_open: Callable | None = None,
               engine: str | None = None, **settings: Any):
    """A durable run: ``num_samples`` samples of ``method`` on ``task`` in chunks, each written to the run folder
    ``out`` as it finishes, merged at the end into the task's usual files (samples.pt, rewards.csv, run.json, and
    the task's own sample files). What `svdd sample` does, from Python; `execute` with one `RunSpec`.

    Args:
        task: a registered task's name (`svdd tasks`), a folder task ``{"prior": DIR, "oracle": DIR, ...}``, or a
            `svdd.tasks.Task` whose ``build(**task_options)`` returns a `TaskSpec` with your model and reward (for
            Ray, ``build`` must be importable or picklable by Ray).
        options: the method's options (M, alpha, value, select_every, ...).
        backend: 'local' (this process; under torchrun, this rank's share of the chunks) or 'ray' (``workers``
            actors, ``gpus_per_worker`` GPUs each, on the cluster at ``address`` or a local one), or a
            `svdd.distributed.Backend`. (``engine`` is the old name of this argument.)
        reward_workers: Ray only: evaluate the reward in this many separate Ray actors (``cpus_per_reward_worker``
            CPUs each), shared by the model workers -- for a slow reward such as docking. The samples are the same.
        write_on: Ray only: 'workers' write their chunk files into ``out`` (a file system they all see), 'driver':
            they send the chunks back and this process writes them.
        resume: continue the run in ``out`` (finished chunks are checked and kept; a config change is an error naming
            it); ``overwrite``: replace the run there. Without either, ``out`` must be empty or absent.
        evaluate: also score every sample by the task's naturalness, and the run by its set metrics.
        settings: `svdd.spec.RunSettings` fields (max_batch, auto_batch, precision, dedupe, max_reward_failures,
            budget, reward_budget, batch_sizes).

    Returns the merged `SampleResult` (its ``config["run"]`` says how many chunks ran in this call), or None on a
    torchrun rank other than 0. The folder is locked while the run writes it.
    """
    if engine is not None:
        warnings.warn("sample_run(engine=...) is now backend=...; engine will be removed in the next release",
                      DeprecationWarning, stacklevel=2)
        backend = engine
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    bad = sorted(set(settings) - fields)
    if bad:
        raise TypeError(f"sample_run() got unexpected option(s) {bad}; method options go in options=, run settings "
                        f"are {sorted(fields)}")
    if not isinstance(backend, Backend):
        backend = Backend(backend, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
                          reward_workers=reward_workers, cpus_per_reward_worker=cpus_per_reward_worker,
                          write_on=write_on)
    options = dict(options or {})
    if num_samples is None:
        path = options.get("init_samples")
        if isinstance(path, (str, Path)):  # one refined sample per given one
            probe = ChunkJob(RunSpec(task, method, options, 1, seed, chunk_size, dict(task_options or {})))
            num_samples = probe.start_rows().shape[0]
        else:
            num_samples = (RunSpec(task, method, options, 1).make_task()).num_samples
    spec = RunSpec(task, method, options, num_samples, seed, chunk_size, dict(task_options or {}),
                   RunSettings(**settings), evaluate)
    out = execute([(spec, out)], backend=backend, resume=resume, overwrite=overwrite, progress=progress,
                  command=command, on_open=on_open)
    return None if out is None else out[0]
