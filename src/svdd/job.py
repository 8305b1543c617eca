"""`ChunkJob`: what a process needs to run any chunk of a run -- its `RunSpec` -- with the task built once.

A job pickles as its spec (plain data), so a torchrun rank or a Ray actor builds the task itself; the jobs of one
execution (e.g. every run of a comparison) share a cache of built tasks, so a process builds a task once for all.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping

import torch

from .io import canonical_json, plain_options
from .spec import RunSpec

def task_key(spec: RunSpec) -> str:
    """Which built task a spec needs: its task (a Task object by identity) and task options."""
    task = spec.task if isinstance(spec.task, str) else dict(spec.task) if isinstance(spec.task, Mapping) \
        else f"object:{id(spec.task)}"
    return canonical_json([task, dict(spec.task_options)])


class ChunkJob:
    """Runs chunks of one run (``job(chunk) -> RunFolder.write_chunk keyword arguments``)."""

    def __init__(self, spec: RunSpec, progress: bool = False, tasks: dict[str, Any] | None = None):
        self.spec, self.progress = spec, progress
        self.tasks = {} if tasks is None else tasks  # built tasks shared by the jobs of one execution
        self._start: torch.Tensor | None = None  # a warm start's samples, read from its file once
        self.reward_pool = None  # a `svdd.distributed.RayRewardPool` that evaluates the reward instead (Ray)

    @property
    def task(self):
        """The built task (`svdd.tasks.TaskSpec`)."""
        key = task_key(self.spec)
        if key not in self.tasks:
            built = self.spec.make_task().make(**self.spec.task_options)
            if self.reward_pool is not None:
                built.reward = self.reward_pool.reward(built.reward)
            self.tasks[key] = built
        return self.tasks[key]

    def config(self) -> dict[str, Any]:
        """What the run's chunks depend on: the spec with the task's weight hashes (a warm start's file by its content
        hash). A resume compares it with the folder's."""
        s = self.spec
        cfg = {"task": self.task.config, "method": s.method, "options": plain_options(dict(s.options)),
               "num_samples": s.num_samples, "seed": s.seed, "chunk_size": s.chunk_size,
               "evaluate": s.evaluate, **s.settings.to_dict()}
        if isinstance(s.options.get("init_samples"), (str, Path)):
            cfg["init_samples_sha256"] = hashlib.sha256(Path(s.options["init_samples"]).read_bytes()).hexdigest()
        return cfg

    def start_rows(self) -> torch.Tensor | None:
        """The samples of a warm start given as a file (``options["init_samples"]``: a path the task reads)."""
        path = self.spec.options.get("init_samples")
        if not isinstance(path, (str, Path)):
            return None
        if self._start is None:
            if self.task.read_samples is None:
                raise ValueError(f"this task cannot read samples from a file ({path}); pass init_samples as a tensor")
            self._start = self.task.read_samples(path)
        return self._start

    def options_for(self, start: int | None = None, stop: int | None = None) -> dict[str, Any]:
        """The method options with the task's value net and a warm start's rows [start, stop) filled in."""
        from .methods.base import resolve_alias
        opts = self.task.resolve(resolve_alias(self.spec.method, dict(self.spec.options))[1])
        rows = self.start_rows()
        if rows is not None:
            opts["init_samples"] = rows[start:stop]
        return opts

    def method(self):
        """The method config, checked against the task's model and reward (bad options fail before any work)."""
        from .methods import get_method
        m = get_method(self.spec.method, **self.options_for())
        if "init_samples" in self.spec.options:
            m.check_run(self.spec.num_samples)  # the warm start's rows against num_samples
        m.check(self.task.model, self.task.reward)
        return m

    def __call__(self, chunk: dict[str, int]) -> dict[str, Any]:
        """Run one chunk: the `RunFolder.write_chunk` keyword arguments."""
        from .api import sample
        task, s = self.task, self.spec
        res = sample(task.model, task.reward, s.method, num_samples=chunk["stop"] - chunk["start"],
                     seed=chunk["seed"], progress=self.progress, **s.settings.sample_options(),
                     **self.options_for(chunk["start"], chunk["stop"]))
        with torch.no_grad():
            ev = task.eval_reward(res.samples) if task.eval_reward is not None else None
            nat = task.naturalness(res.samples) if s.evaluate and task.naturalness is not None else None
        return {"samples": res.samples, "rewards": res.rewards, "eval_rewards": ev, "naturalness": nat,
                "text": task.decode(res.samples) if task.decode is not None else None,
                "meta": {"cost": dataclasses.asdict(res.cost), "diagnostics": res.diagnostics.summary(),
                         "log_z": res.log_z, "run_config": res.config}}

    def __getstate__(self):  # ship the description, not the built task: each worker builds its own once
        return {**self.__dict__, "_start": None, "tasks": {}}
