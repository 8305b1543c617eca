"""Spreading a run's chunks over processes and machines, with existing engines: torchrun and Ray.

Chunks are pure functions of (config, chunk seed) and every finished chunk is a file in the run folder, so any
process may run any chunk and the merged output is the same as one process's (for batch-invariant networks; see
the README's reproducibility notes). The run folder must be on a file system every process sees.

* torchrun (``torchrun --nproc-per-node K -m svdd sample ...``): rank r runs the unfinished chunks k with
  k % K == r; rank 0 opens the folder first, shows the progress bar and merges at the end. Gloo backend (CPU; with
  ``--device cuda`` rank r uses cuda:LOCAL_RANK).
* Ray (``svdd sample --engine ray [--address auto] --workers K [--gpus-per-worker G]``): K actors each build the task
  once and run chunks handed out by the driver, writing their files themselves; the driver shows progress and merges.
"""

from __future__ import annotations

import os
from typing import Any

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


class _ChunkWorker:
    """A Ray actor: builds the task once, then runs chunks and writes their files into the run folder."""

    def __init__(self, job: SampleJob, path: str, manifest: dict[str, Any]):
        from pathlib import Path
        self.job, self.run = job, RunFolder(Path(path), manifest)

    def run_chunk(self, chunk: dict[str, int]) -> int:
        self.run.write_chunk(chunk["chunk"], **self.job(chunk))
        return chunk["chunk"]


def run_ray(run: RunFolder, job: SampleJob, *, workers: int = 2, address: str | None = None,
            gpus_per_worker: float = 0.0, progress: bool = False) -> int:
    """Run the unfinished chunks of ``run`` on ``workers`` Ray actors (one chunk at a time each). Returns how many
    chunks ran. Starts a local Ray instance unless one is running or ``address`` names a cluster."""
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'svdd[ray]'") from None
    from tqdm.auto import tqdm
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    have = ray.cluster_resources()
    for name, each in (("CPU", 1.0), ("GPU", gpus_per_worker)):
        if each and workers * each > have.get(name, 0.0):
            raise ValueError(f"--workers {workers} needs {workers * each:g} {name}s, but the Ray cluster has "
                             f"{have.get(name, 0.0):g}: use fewer workers (the extra ones would never start)")
    actor = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(_ChunkWorker)
    todo = [c for c in run.chunks if not run.done(c["chunk"])]
    pool = [actor.remote(job, str(run.path.resolve()), run.manifest) for _ in range(min(workers, max(len(todo), 1)))]
    bar = tqdm(total=len(run.chunks), initial=len(run.chunks) - len(todo), desc="chunks (ray)", disable=not progress)
    pending, queue = {}, list(todo)
    try:
        for a in pool:
            if queue:
                pending[a.run_chunk.remote(queue.pop(0))] = a
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            a = pending.pop(ref)
            try:
                ray.get(ref)  # a worker's error stops the run here (finished chunks stay in the folder)
            except ray.exceptions.RayTaskError as exc:  # the worker's own exception (e.g. a RunError naming the reward)
                raise exc.as_instanceof_cause() from None
            except ray.exceptions.RayActorError as exc:
                from .errors import RunError
                raise RunError(f"a Ray worker died ({exc.__class__.__name__}: out of memory, or a crash in native "
                               "code?); finished chunks are kept: resume the run") from None
            bar.update()
            if queue:
                pending[a.run_chunk.remote(queue.pop(0))] = a
    finally:
        bar.close()
        for a in pool:
            ray.kill(a)
    return len(todo)
