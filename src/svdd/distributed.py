"""Execution backends: the chunks of one or several runs in this process, over torchrun ranks, or on Ray actors.

Chunks are pure functions of (config, chunk seed) and every finished chunk is a file in its run folder, so any
process may run any chunk and the merged output is the same as one process's (for batch-invariant networks; see
the docs' reproducibility notes). The run folders must be on a file system every process sees. `svdd sample`,
`svdd compare` and `svdd frontier` all run on these backends (a comparison's runs share one pool of workers).

* torchrun (``torchrun --nproc-per-node K -m svdd sample|compare|frontier ...``): the k-th chunk of all the runs is
  rank k % K's; rank 0 opens the folders first, shows the progress bar and merges at the end. Gloo backend (CPU;
  with ``--device cuda`` rank r uses cuda:LOCAL_RANK).
* Ray (``--backend ray [--address auto] --workers K [--gpus-per-worker G]``): K actors each build the task once
  and run chunks handed out by the driver, writing their files themselves; the driver shows progress and merges.
  With ``--reward-workers R`` the reward runs in R further actors shared by the model workers (a slow reward such as
  docking gets its own CPUs, or its own machines, apart from the networks): each model worker keeps the task's reward
  cache and sends only the rows it misses, split over the R actors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .job import ChunkJob, task_key
from .rewards import Reward
from .store import RunFolder


def torchrun_world() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun with more than one process, else None. Only torchrun's
    own variables count (TORCHELASTIC_RUN_ID with RANK and WORLD_SIZE): a WORLD_SIZE left by another launcher is not
    a process group to join."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "TORCHELASTIC_RUN_ID" not in os.environ or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


@dataclass(frozen=True)
class Backend:
    """Where a run's chunks execute: ``kind`` 'local' (this process; under torchrun, this rank's share) or 'ray'
    (``workers`` actors with ``gpus_per_worker`` GPUs each, on the cluster at ``address`` or a local one; the reward
    in ``reward_workers`` further actors of ``cpus_per_reward_worker`` CPUs; chunk files written by the workers or,
    ``write_on='driver'``, by this process). Not part of a run's spec: every backend gives the same samples."""

    kind: str = "local"
    workers: int = 2
    address: str | None = None
    gpus_per_worker: float = 0.0
    reward_workers: int = 0
    cpus_per_reward_worker: float = 1.0
    write_on: str = "workers"

    def __post_init__(self):
        if self.kind not in ("local", "ray"):
            raise ValueError(f"backend must be 'local' or 'ray', got {self.kind!r}")
        if (self.reward_workers or self.write_on != "workers") and self.kind != "ray":
            raise ValueError(f"reward_workers={self.reward_workers} and write_on={self.write_on!r} are options of the "
                             "'ray' backend")
        if self.write_on not in ("workers", "driver"):
            raise ValueError(f"write_on must be 'workers' or 'driver', got {self.write_on!r}")
        if not (isinstance(self.cpus_per_reward_worker, (int, float)) and self.cpus_per_reward_worker > 0):
            raise ValueError(f"cpus_per_reward_worker must be a number > 0, got {self.cpus_per_reward_worker!r}")


Item = tuple[int, dict]  # (which run, its chunk)


def pending(runs: list[RunFolder]) -> list[Item]:
    """The unfinished chunks of several runs, in a fixed order (run by run, chunk by chunk)."""
    return [(r, c) for r, run in enumerate(runs) for c in run.chunks if not run.done(c["chunk"])]


def run_local(runs: list[RunFolder], jobs: list[ChunkJob], progress: bool = False) -> int:
    """Run every unfinished chunk of ``runs`` in this process, each written as soon as it is done. Returns how many
    ran."""
    from tqdm.auto import tqdm
    todo = pending(runs)
    total = sum(len(r.chunks) for r in runs)
    bar = tqdm(total=total, initial=total - len(todo), desc="chunks", disable=not progress)
    for r, c in todo:
        runs[r].write_chunk(c["chunk"], **jobs[r](c))
        bar.update()
    bar.close()
    return len(todo)


def run_torchrun(open_runs, jobs: list[ChunkJob], progress: bool) -> list[RunFolder] | None:
    """Run this rank's share of the chunks of several runs: the k-th chunk of the whole list (finished or not) is
    rank k % world's. ``open_runs(join)`` opens the run folders (rank 0 first, as asked; the others then join the
    runs it opened). Returns the folders on rank 0 after every rank finished, else None."""
    from datetime import timedelta

    import torch.distributed as dist
    from tqdm.auto import tqdm
    rank, world, _ = torchrun_world()
    dist.init_process_group("gloo", timeout=timedelta(days=7))  # ranks with fewer chunks wait at the barrier
    try:
        runs, failure = None, None
        if rank == 0:
            try:
                runs = open_runs(False)
            except Exception as exc:  # tell the other ranks, who would otherwise wait at the barrier
                failure = exc
        box = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        dist.broadcast_object_list(box, src=0)
        if failure is not None:
            raise failure
        if box[0] is not None:
            raise SystemExit(0)  # rank 0 reports the error
        if rank != 0:
            runs = open_runs(True)
        every = [(r, c) for r, run in enumerate(runs) for c in run.chunks]
        mine = [(r, c) for k, (r, c) in enumerate(every) if k % world == rank and not runs[r].done(c["chunk"])]
        bar = tqdm(total=len(mine), desc=f"chunks (rank 0 of {world})", disable=not (progress and rank == 0))
        for r, c in mine:
            runs[r].write_chunk(c["chunk"], **jobs[r](c))
            bar.update()
        bar.close()
        dist.barrier()
        return runs if rank == 0 else None
    finally:
        dist.destroy_process_group()


class _RewardWorker:
    """A Ray actor holding one instance of a task's reward -- the expensive part behind its cache, when the reward is
    a `CachedReward` (the model workers keep the cache). Built without the task's device option: the networks it
    also builds stay on the CPU, unused."""

    def __init__(self, job: ChunkJob):
        import dataclasses

        from .rewards.cache import CachedReward
        options = {k: v for k, v in job.spec.task_options.items() if k != "device"}
        reward = ChunkJob(dataclasses.replace(job.spec, task_options=options)).task.reward
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
    """A Ray actor: runs chunks of any run it is handed (building each task once) and writes their files."""

    def __init__(self, reward_pool=None):
        self.tasks, self.reward_pool = {}, reward_pool

    def run_chunk(self, job: ChunkJob, path: str, manifest: dict[str, Any], chunk: dict[str, int], write: bool = True):
        """Run a chunk and write its file (``write``), or return its contents for the driver to write (workers on
        machines that do not see the run folder)."""
        from pathlib import Path
        job.tasks, job.reward_pool = self.tasks, self.reward_pool
        out = job(chunk)
        if not write:
            return out
        RunFolder(Path(path), manifest).write_chunk(chunk["chunk"], **out)
        return chunk["chunk"]


def run_ray(runs: list[RunFolder], jobs: list[ChunkJob], backend: Backend, progress: bool = False) -> int:
    """Run the unfinished chunks of ``runs`` on ``backend.workers`` Ray actors (one chunk at a time each), with the
    reward in ``backend.reward_workers`` separate actors when asked. Each chunk file is written by its worker
    (``write_on='workers'``: the folders are on a file system every worker sees) or by this driver from what the
    worker returns (``'driver'``). Returns how many chunks ran. Starts a local Ray instance unless one is running or
    ``backend.address`` names a cluster."""
    try:
        import ray
    except ImportError:
        raise ValueError("the Ray backend needs Ray: pip install 'svdd[ray]'") from None
    from tqdm.auto import tqdm
    b = backend
    if not ray.is_initialized():
        ray.init(address=b.address, include_dashboard=False, log_to_driver=False)
    have = ray.cluster_resources()
    need = {"CPU": b.workers + b.reward_workers * b.cpus_per_reward_worker, "GPU": b.workers * b.gpus_per_worker}
    for name, total in need.items():
        if total > have.get(name, 0.0):
            raise ValueError(f"--workers {b.workers}{f' and --reward-workers {b.reward_workers}' if b.reward_workers else ''} "
                             f"need {total:g} {name}s, but the Ray cluster has {have.get(name, 0.0):g}: use fewer "
                             "workers (the extra ones would never start)")
    todo = pending(runs)
    tasks = {task_key(j.spec) for j in jobs}
    if b.reward_workers and len(tasks) > 1:
        raise ValueError("reward workers serve one task: run the tasks one at a time")
    rewarders, pool_of_rewards = [], None
    if b.reward_workers and todo:
        rewarders = [ray.remote(num_cpus=b.cpus_per_reward_worker)(_RewardWorker).remote(jobs[0])
                     for _ in range(b.reward_workers)]
        pool_of_rewards = RayRewardPool(rewarders)
    actor = ray.remote(num_cpus=1, num_gpus=b.gpus_per_worker)(_ChunkWorker)
    pool = [actor.remote(pool_of_rewards) for _ in range(min(b.workers, max(len(todo), 1)))]
    total = sum(len(r.chunks) for r in runs)
    bar = tqdm(total=total, initial=total - len(todo), desc="chunks (ray)", disable=not progress)
    waiting, queue = {}, list(todo)
    write = b.write_on == "workers"

    def submit(a):
        r, c = queue.pop(0)
        waiting[a.run_chunk.remote(jobs[r], str(runs[r].path.resolve()), runs[r].manifest, c, write)] = (a, r, c)

    try:
        for a in pool:
            if queue:
                submit(a)
        while waiting:
            (ref,), _ = ray.wait(list(waiting), num_returns=1)
            a, r, c = waiting.pop(ref)
            try:
                got = ray.get(ref)  # a worker's error stops the run here (finished chunks stay in the folder)
                if not write:
                    runs[r].write_chunk(c["chunk"], **got)
            except ray.exceptions.RayTaskError as exc:  # the worker's own exception (e.g. a RunError naming the reward)
                raise exc.as_instanceof_cause() from None
            except ray.exceptions.RayActorError as exc:
                from .errors import RunError
                raise RunError(f"a Ray worker died ({exc.__class__.__name__}: out of memory, or a crash in native "
                               "code?); finished chunks are kept: resume the run") from None
            bar.update()
            if queue:
                submit(a)
    finally:
        bar.close()
        for a in pool + rewarders:
            ray.kill(a)
    return len(todo)
