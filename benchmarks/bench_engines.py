"""One run several ways -- one process; torchrun with 1 and K ranks; Ray with 1 and K actors -- timed end to end
(start-up included), outputs checked identical; and the run folder's own cost (chunk files, hashes, manifest, merge)
as a share of the one-process run. Writes a Markdown table.

Workers scale over processes, one thread each (OMP_NUM_THREADS=1, as torchrun and Ray set it for several workers),
so "K vs 1" is the engines' scaling; "one process" (torch's default threads) is what a user gets without them.

    python benchmarks/bench_engines.py --task dna-enhancer --num-samples 128 --chunk-size 16 --workers 2 \
        --task-option num_steps=32 --out results/bench/engines-cpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dna-enhancer")
    ap.add_argument("--num-samples", type=int, default=128)
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--task-option", action="append", default=[])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = ["sample", "--task", a.task, "--num-samples", str(a.num_samples), "--chunk-size", str(a.chunk_size),
            "--quiet", *sum((["--task-option", o] for o in a.task_option), [])]
    k = a.workers
    ways = {"one process": ([str(BIN / "svdd"), *base], {}),
            "one process, 1 thread": ([str(BIN / "svdd"), *base], {"OMP_NUM_THREADS": "1"})}
    for w in (1, k):
        ways[f"torchrun, {w} rank(s)"] = ([str(BIN / "torchrun"), "--nproc-per-node", str(w), "-m", "svdd", *base],
                                         {"OMP_NUM_THREADS": "1"})
    for w in (1, k):
        ways[f"ray, {w} actor(s)"] = ([str(BIN / "svdd"), *base, "--backend", "ray", "--workers", str(w)],
                                     {"OMP_NUM_THREADS": "1"})
    tmp = Path(tempfile.mkdtemp())
    rows, outputs, secs = [], {}, {}
    for name, (cmd, env) in ways.items():
        out = tmp / name.replace(",", "").replace(" ", "-").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        p = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, env={**os.environ, **env})
        sec = time.perf_counter() - t0
        if p.returncode:
            sys.exit(f"{name} failed:\n{p.stderr}")
        outputs[name] = (out / "samples.txt").read_text() if (out / "samples.txt").exists() else \
            (out / "samples.pt").read_bytes()
        secs[name] = sec
        rows.append((name, sec, a.num_samples / sec))
        print(f"{name:24s} {sec:8.1f} s  {a.num_samples / sec:7.2f} samples/s", flush=True)
    folder = _folder_seconds(tmp / "one-process", tmp / "rewritten")
    same = len(set(outputs.values())) == 1
    one = rows[0][1]
    lines = [f"# `svdd sample` several ways: {a.task}, {a.num_samples} samples, chunks of {a.chunk_size}",
             "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; wall time includes "
             "start-up (imports, Ray's local instance, torchrun's rendezvous). Workers run one thread each "
             f"(OMP_NUM_THREADS=1). Outputs identical: {'yes' if same else 'NO'}. "
             f"Options: {' '.join(a.task_option) or 'none'}.", "",
             "| way | wall s | samples / s | vs one process | vs 1 worker of its backend |", "|---|---|---|---|---|"]
    for n, s_, r in rows:
        base_name = n.replace(f"{k} rank(s)", "1 rank(s)").replace(f"{k} actor(s)", "1 actor(s)")
        vs = f"{secs[base_name] / s_:.2f}x" if base_name != n else ""
        lines.append(f"| {n} | {s_:.1f} | {r:.2f} | {one / s_:.2f}x | {vs} |")
    lines += ["", f"Run folder cost: writing the {folder['chunks']} chunk files with their hashes, the manifest and the "
              f"merged output again from the one-process run's samples took {folder['seconds']:.3f} s, "
              f"{100 * folder['seconds'] / one:.2f}% of that run's {one:.1f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    shutil.rmtree(tmp, ignore_errors=True)
    if not same:
        sys.exit("outputs differ")


def _folder_seconds(done: Path, fresh: Path) -> dict:
    """Seconds to write a finished run's folder again (chunk files + hashes, manifest, merged outputs), without the
    sampling: what the run folder adds to a run."""
    import json

    from svdd.job import ChunkJob
    from svdd.runs import merge
    from svdd.spec import RunSpec
    from svdd.store import RunFolder
    old = RunFolder(done, json.loads((done / "manifest.json").read_text()))
    parts = [old.read_chunk(c["chunk"]) for c in old.chunks]
    cfg = old.manifest["config"]
    job = ChunkJob(RunSpec.from_dict(old.manifest["spec"]))
    job.task  # built before the clock starts
    t0 = time.perf_counter()
    run = RunFolder.open(fresh, cfg, old.chunks)
    for c, part in zip(old.chunks, parts):
        run.write_chunk(c["chunk"], part["samples"], part["rewards"], eval_rewards=part["eval_rewards"],
                        text=part["text"], meta=part["meta"])
    merge(run, job)
    return {"seconds": time.perf_counter() - t0, "chunks": len(old.chunks)}


if __name__ == "__main__":
    main()
