"""One run three ways -- one process, torchrun with K ranks, Ray with K actors -- timed end to end (start-up
included), outputs checked identical. Writes a Markdown table.

    python benchmarks/bench_engines.py --task dna-enhancer --num-samples 128 --chunk-size 16 --workers 2 \
        --set-option num_steps=32 --out results/bench/engines-cpu.md
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
    ways = {"one process": [str(BIN / "svdd"), *base],
            f"torchrun, {a.workers} ranks": [str(BIN / "torchrun"), "--nproc-per-node", str(a.workers), "-m", "svdd",
                                             *base],
            f"ray, {a.workers} actors": [str(BIN / "svdd"), *base, "--engine", "ray", "--workers", str(a.workers)]}
    tmp = Path(tempfile.mkdtemp())
    rows, outputs = [], {}
    for name, cmd in ways.items():
        out = tmp / name.split(",")[0].replace(" ", "-")
        t0 = time.perf_counter()
        p = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
        sec = time.perf_counter() - t0
        if p.returncode:
            sys.exit(f"{name} failed:\n{p.stderr}")
        outputs[name] = (out / "samples.txt").read_text() if (out / "samples.txt").exists() else \
            (out / "samples.pt").read_bytes()
        rows.append((name, sec, a.num_samples / sec))
        print(f"{name:24s} {sec:8.1f} s  {a.num_samples / sec:7.2f} samples/s", flush=True)
    same = len(set(outputs.values())) == 1
    one = rows[0][1]
    lines = [f"# `svdd sample` three ways: {a.task}, {a.num_samples} samples, chunks of {a.chunk_size}",
             "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; wall time includes "
             "start-up (imports, Ray's local instance, torchrun's rendezvous). Outputs identical: "
             f"{'yes' if same else 'NO'}. Options: {' '.join(a.task_option) or 'none'}.", "",
             "| way | wall s | samples / s | vs one process |", "|---|---|---|---|"]
    lines += [f"| {n} | {s:.1f} | {r:.2f} | {one / s:.2f}x |" for n, s, r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    shutil.rmtree(tmp, ignore_errors=True)
    if not same:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
