"""Kill and resume across engines: the same run (1) uninterrupted in one process, (2) started with torchrun, killed
with SIGTERM part-way, resumed with Ray actors; the merged outputs must be identical. Writes a Markdown record.

    python benchmarks/kill_resume.py --num-samples 100000 --chunk-size 1000 --kill-after 120 \
        --out results/bench/kill-resume-cpu.md
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="toy-motif")
    ap.add_argument("--num-samples", type=int, default=100000)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--kill-after", type=float, default=120.0, help="seconds before SIGTERM reaches torchrun")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = ["sample", "--task", a.task, "--num-samples", str(a.num_samples), "--chunk-size", str(a.chunk_size),
            "--quiet"]
    tmp = Path(tempfile.mkdtemp())
    one, two = tmp / "one", tmp / "two"
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "svdd"), *base, "--out", str(one)], check=True, capture_output=True)
    t_one = time.perf_counter() - t0
    print(f"uninterrupted, one process: {t_one:.1f} s", flush=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([str(BIN / "torchrun"), "--nproc-per-node", "2", "-m", "svdd", *base, "--out", str(two)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(a.kill_after)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    t_kill = time.perf_counter() - t0
    done = len(list((two / "chunks").glob("*.sha256")))
    total = -(-a.num_samples // a.chunk_size)
    line = next((ln for ln in err.splitlines() if "interrupted" in ln), "(no line)")
    print(f"torchrun killed after {t_kill:.1f} s (exit {p.returncode}): {done} of {total} chunks kept; {line}", flush=True)
    t0 = time.perf_counter()
    r = subprocess.run([str(BIN / "svdd"), *base, "--engine", "ray", "--workers", "2", "--resume", str(two)],
                       capture_output=True, text=True)
    t_res = time.perf_counter() - t0
    if r.returncode:
        sys.exit(r.stderr)
    h1, h2 = (hashlib.sha256((d / "samples.pt").read_bytes()).hexdigest()[:16] for d in (one, two))
    same = (one / "samples.txt").read_text() == (two / "samples.txt").read_text() if (one / "samples.txt").exists() \
        else h1 == h2
    print(f"resumed with Ray: {t_res:.1f} s; outputs identical: {same}", flush=True)
    text = (f"# Kill and resume across engines: {a.task}, {a.num_samples} samples, chunks of {a.chunk_size}\n\n"
            f"`python benchmarks/kill_resume.py --task {a.task} --num-samples {a.num_samples} --chunk-size "
            f"{a.chunk_size} --kill-after {a.kill_after:g}`\n\n"
            f"| step | wall s | note |\n|---|---|---|\n"
            f"| one process, uninterrupted | {t_one:.1f} | samples.pt sha256 {h1} |\n"
            f"| torchrun, 2 ranks, SIGTERM after {a.kill_after:g} s | {t_kill:.1f} | exit {p.returncode}; {done} of "
            f"{total} chunks kept |\n"
            f"| resumed with `--engine ray --workers 2` | {t_res:.1f} | samples.pt sha256 {h2} |\n\n"
            f"Merged outputs identical (samples.txt): {'yes' if same else 'NO'}.\n\nLast line torchrun's rank 0 "
            f"printed: `{line.strip()}`\n")
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    if not same:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
