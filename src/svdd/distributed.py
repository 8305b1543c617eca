"""Spreading a run's chunks over processes and machines, with existing engines: torchrun and Ray.

Chunks are pure functions of (config, chunk seed) and every finished chunk is a file in the run folder, so any
process may run any chunk and the merged output is the same as one process's (for batch-invariant networks; see
the README's reproducibility notes). The run folder must be on a file system every process sees.

* torchrun (``torchrun --nproc-per-node K -m svdd sample ...``): rank r runs the unfinished chunks k with
  k % K == r; rank 0 opens the folder first, shows the progress bar and merges at the end. Gloo backend (CPU; with
  ``--device cuda`` rank r uses cuda:LOCAL_RANK).
* Ray (``svdd sample --engine ray [--address auto] --workers K [--gpus-per-worker G]``): K actors each build the task
  once and run chunks handed out by the driver, writing their files themselves; the driver shows progress and merges.
  With ``--reward-workers R`` the reward runs in R further actors shared by the model workers (a slow reward such as
  docking gets its own CPUs, or its own machines, apart from the networks): each model worker keeps the task's reward
  cache and sends only the rows it misses, split over the R actors.
"""

from __future__ import annotations

import os
from typing import Any

from .rewards import Reward
from .runs import RunFolder, SampleJob


def torchrun_world() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun with more than one process, else None. Only torchrun's
    own variables count (TORCHELASTIC_RUN_ID with RANK and WORLD_SIZE): a WORLD_SIZE left by another launcher is not
    a process group to join."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "TORCHELASTIC_RUN_ID" not in os.environ or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def run_torchrun(open_run, job: SampleJob, progress: bool) -> RunFolder | None:
    """Run this rank's share of the chunks. ``open_run(resume_only)`` opens the run folder (rank 0 first, as asked;
    the others then join the run it opened). Returns the folder on rank 0 after every rank finished, else None."""
    from datetime import timedelta

    import torch.distributed as dist
    from tqdm.auto import tqdm
    rank, world, _ = torchrun_world()
    dist.init_process_group("gloo", timeout=timedelta(days=7))  # ranks with fewer chunks wait at the barrier
    try:
        run, failure = None, None
        if rank == 0:
            try:
                run = open_run(False)
            except Exception as exc:  # tell the other ranks, who would otherwise wait at the barrier
                failure = exc
        box = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        dist.broadcast_object_list(box, src=0)
        if failure is not None:
            raise failure
        if box[0] is not None:
            raise SystemExit(0)  # rank 0 reports the error
        if rank != 0:
            run = open_run(True)
        mine = [c for c in run.chunks if c["chunk"] % world == rank and not run.done(c["chunk"])]
        bar = tqdm(total=len(mine), desc=f"chunks (rank 0 of {world})", disable=not (progress and rank == 0))
        for c in mine:
            run.write_chunk(c["chunk"], **job(c))
            bar.update()
        bar.close()
        dist.barrier()
        return run if rank == 0 else None
    finally:
        dist.destroy_process_group()


class _RewardWorker:
    """A Ray actor holding one instance of a task's reward -- the expensive part behind its cache, when the reward is
    a `CachedReward` (the model workers keep the cache). Built without the task's device option: the networks it
    also builds stay on the CPU, unused."""

    def __init__(self, job: SampleJob):
        from .rewards.cache import CachedReward
        options = {k: v for k, v in job.task_options.items() if k != "device"}
        reward = SampleJob(job.task, options, job.method, job.options, job.settings).spec.reward
        self.reward = reward.reward if isinstance(reward, CachedReward) else reward

    def evaluate(self, x):
        import torch
        stats = getattr(self.reward, "stats_snapshot", None)
        before = stats() if stats is not None else None
        with torch.no_grad():
            out = torch.as_tensor(self.reward(x)).detach().cpu()
        return out, (stats() - before if before is not None else None)


class RayRewardPool:
    """Handles of `_RewardWorker` actors; ``reward(task_reward)`` gives the reward a model worker uses instead."""

    def __init__(self, actors: list):
        self.actors = list(actors)

    def reward(self, task_reward):
        import copy

        from .rewards.cache import CachedReward
        if isinstance(task_reward, CachedReward):  # keep the cache here; its misses go to the pool
            local = copy.copy(task_reward)
            local.reward = RemoteReward(self.actors, getattr(task_reward.reward, "name", task_reward.name))
            return local
        return RemoteReward(self.actors, task_reward.name)


class RemoteReward(Reward):
    """A reward evaluated by Ray actors: a batch is split into one contiguous part per actor and the values come back
    in order. An error raised by the reward is raised here (the engine's failure policy applies); ``stats`` sums the
    actors' counters (calls, failures, timeouts, crashes) for this caller."""

    def __init__(self, actors: list, name: str):
        from .rewards.cache import RewardStats
        super().__init__(None, name=name, differentiable=False)
        self.actors, self.stats = list(actors), RewardStats()

    def __call__(self, x):
        import ray
        import torch
        n, k = x.shape[0], min(len(self.actors), max(x.shape[0], 1))
        cuts = [n * j // k for j in range(k + 1)]
        xc = x.detach().cpu()
        refs = [a.evaluate.remote(xc[cuts[j]:cuts[j + 1]]) for j, a in enumerate(self.actors[:k])]
        try:
            parts = ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None
        for _, delta in parts:
            if delta is not None:
                for f in ("calls", "hits", "failures", "seconds", "timeouts", "crashes", "errors"):
                    setattr(self.stats, f, getattr(self.stats, f) + getattr(delta, f))
                self.stats.first_error = self.stats.first_error or delta.first_error
        return torch.cat([p for p, _ in parts]).to(x.device)

    def stats_snapshot(self):
        import dataclasses
        return dataclasses.replace(self.stats)


class _ChunkWorker:
    """A Ray actor: builds the task once, then runs chunks and writes their files into the run folder."""

    def __init__(self, job: SampleJob, path: str, manifest: dict[str, Any]):
        from pathlib import Path
        self.job, self.run = job, RunFolder(Path(path), manifest)

    def run_chunk(self, chunk: dict[str, int], write: bool = True):
        """Run a chunk and write its file (``write``), or return its contents for the driver to write (workers on
        machines that do not see the run folder)."""
        out = self.job(chunk)
        if not write:
            return out
        self.run.write_chunk(chunk["chunk"], **out)
        return chunk["chunk"]


def run_ray(run: RunFolder, job: SampleJob, *, workers: int = 2, address: str | None = None,
            gpus_per_worker: float = 0.0, reward_workers: int = 0, cpus_per_reward_worker: float = 1.0,
            write_on: str = "workers", progress: bool = False) -> int:
    """Run the unfinished chunks of ``run`` on ``workers`` Ray actors (one chunk at a time each), with the reward in
    ``reward_workers`` separate actors when asked. Each chunk file is written by its worker (``write_on='workers'``:
    the folder is on a file system every worker sees) or by this driver from what the worker returns
    (``'driver'``). Returns how many chunks ran. Starts a local Ray instance unless one is running or ``address``
    names a cluster."""
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'svdd[ray]'") from None
    from tqdm.auto import tqdm
    if write_on not in ("workers", "driver"):
        raise ValueError(f"write_on must be 'workers' or 'driver', got {write_on!r}")
    if not (isinstance(cpus_per_reward_worker, (int, float)) and cpus_per_reward_worker > 0):
        raise ValueError(f"cpus_per_reward_worker must be a number > 0, got {cpus_per_reward_worker!r}")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    have = ray.cluster_resources()
    need = {"CPU": workers + reward_workers * cpus_per_reward_worker, "GPU": workers * gpus_per_worker}
    for name, total in need.items():
        if total > have.get(name, 0.0):
            raise ValueError(f"--workers {workers}{f' and --reward-workers {reward_workers}' if reward_workers else ''} "
                             f"need {total:g} {name}s, but the Ray cluster has {have.get(name, 0.0):g}: use fewer "
                             "workers (the extra ones would never start)")
    todo = [c for c in run.chunks if not run.done(c["chunk"])]
    rewarders = []
    if reward_workers and todo:
        rewarders = [ray.remote(num_cpus=cpus_per_reward_worker)(_RewardWorker).remote(job)
                     for _ in range(reward_workers)]
        job = copy_job(job, RayRewardPool(rewarders))
    actor = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(_ChunkWorker)
    pool = [actor.remote(job, str(run.path.resolve()), run.manifest) for _ in range(min(workers, max(len(todo), 1)))]
    bar = tqdm(total=len(run.chunks), initial=len(run.chunks) - len(todo), desc="chunks (ray)", disable=not progress)
    pending, queue = {}, list(todo)
    try:
        write = write_on == "workers"
        for a in pool:
            if queue:
                c = queue.pop(0)
                pending[a.run_chunk.remote(c, write)] = (a, c)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            a, c = pending.pop(ref)
            try:
                got = ray.get(ref)  # a worker's error stops the run here (finished chunks stay in the folder)
                if not write:
                    run.write_chunk(c["chunk"], **got)
            except ray.exceptions.RayTaskError as exc:  # the worker's own exception (e.g. a RunError naming the reward)
                raise exc.as_instanceof_cause() from None
            except ray.exceptions.RayActorError as exc:
                from .errors import RunError
                raise RunError(f"a Ray worker died ({exc.__class__.__name__}: out of memory, or a crash in native "
                               "code?); finished chunks are kept: resume the run") from None
            bar.update()
            if queue:
                c = queue.pop(0)
                pending[a.run_chunk.remote(c, write)] = (a, c)
    finally:
        bar.close()
        for a in pool + rewarders:
            ray.kill(a)
    return len(todo)


def copy_job(job: SampleJob, pool: RayRewardPool) -> SampleJob:
    """The job with its reward evaluated by ``pool`` (the run's config, and so its chunks, are the same)."""
    import copy
    out = copy.copy(job)
    out._spec, out.reward_pool = None, pool
    return out
