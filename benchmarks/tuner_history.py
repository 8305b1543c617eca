"""Chunk sizes after a small trial run: does a run of N samples get the chunk size it would get on its own when a run
of fewer samples came first and measured the sizes?

The chunk-size tuner times a call site once, on its first call's rows, and stores the choice on disk for every later
run of the same model and row shape (`svdd.engine.BatchTuner`, `BatchSizeStore`). A user often tries a few samples
before the real run; the trial's first call has fewer rows, so the sizes are measured on them. For each of
``--stores`` empty stores (each a fresh process, ``SVDD_CACHE`` a new folder) this runs SVDD-PM on a shipped task
(default ``toy-gmm``) with ``--trial`` samples (seed 1), then with ``-N`` samples (seed 0) ``--runs`` times, and
prints the chosen sizes and seconds; then the same N-sample runs in a store that only ever saw N-sample runs
(``--stores`` more processes: the reference). The runs of one process and the reference give the same samples
(printed) whenever the sizes agree, for a batch-invariant network always.

    python benchmarks/tuner_history.py --out results/bench/cpu-tuner-history      # toy-gmm: 2,000 then 20,000
    python benchmarks/tuner_history.py --task toy-motif --trial 16 -N 256
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def child(args) -> None:
    import svdd
    from svdd.tasks import get_task
    torch.set_num_threads(args.threads)
    spec = get_task(args.task).make()
    runs = []
    plan = ([(args.trial, 1)] if args.trial else []) + [(args.N, 0)] * args.runs
    for n, seed in plan:
        t0 = time.perf_counter()
        res = svdd.sample(spec.model, spec.reward, "svdd", num_samples=n, M=args.M, seed=seed)
        runs.append({"n": n, "seconds": time.perf_counter() - t0, "sizes": res.config["batch_sizes"],
                     "samples": hashlib.sha256(res.samples.contiguous().numpy().tobytes()).hexdigest()[:12]})
    print(json.dumps(runs))


def spawn(args, trial: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as store:
        cmd = [sys.executable, __file__, "--child", "--task", args.task, "--trial", str(trial), "-N", str(args.N),
               "-M", str(args.M), "--runs", str(args.runs), "--threads", str(args.threads)]
        out = subprocess.run(cmd, env={**os.environ, "SVDD_CACHE": store}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="toy-gmm")
    p.add_argument("--trial", type=int, default=2000, help="samples of the first run in each fresh store")
    p.add_argument("-N", type=int, default=20000)
    p.add_argument("-M", type=int, default=10)
    p.add_argument("--runs", type=int, default=2, help="N-sample runs after the trial in each process")
    p.add_argument("--stores", type=int, default=3, help="fresh stores (processes) per arm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write OUT.md and OUT.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    arms: dict[str, list[list[dict]]] = {"after a trial": [], "reference": []}
    for _ in range(args.stores):  # the two arms alternate: a burst of load slows both
        arms["after a trial"].append(spawn(args, args.trial))
        arms["reference"].append(spawn(args, 0))
    lines = [f"SVDD-PM (M = {args.M}) on the {args.task} task, {args.N} samples: in a fresh chunk-size store after a "
             f"{args.trial}-sample trial run, and in a fresh store without one; {args.stores} stores (processes) "
             f"each, {args.runs} run(s) of {args.N} samples per process; {args.threads} threads; torch "
             f"{torch.__version__}",
             "", f"| arm | store | trial: s (sizes) | {args.N}-sample runs: s | sizes of the {args.N}-sample runs | "
                 "samples |", "|---|---|---|---|---|---|"]
    ref_hash = arms["reference"][0][0]["samples"]
    for arm, stores in arms.items():
        for k, runs in enumerate(stores):
            trial = [r for r in runs if r["n"] == args.trial and arm != "reference"][:1]
            full = [r for r in runs if r["n"] == args.N][-args.runs:]
            same = "same as reference 1" if all(r["samples"] == ref_hash for r in full) else "differ from reference 1"
            t = f"{trial[0]['seconds']:.2f} ({json.dumps(trial[0]['sizes'])})" if trial else "-"
            secs = ", ".join(f"{r['seconds']:.2f}" for r in full)
            lines.append(f"| {arm} | {k + 1} | {t} | {secs} | {json.dumps(full[-1]['sizes'])} | {same} |")
    med = {arm: statistics.median(r["seconds"] for runs in stores for r in runs if r["n"] == args.N)
           for arm, stores in arms.items()}
    lines += ["", f"median seconds of the {args.N}-sample runs: " + ", ".join(f"{a} {s:.2f}" for a, s in med.items())
              + f"; ratio {med['after a trial'] / med['reference']:.2f}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for path, body in ((out.with_suffix(".md"), text),
                           (out.with_suffix(".json"), json.dumps({"command": " ".join(sys.argv), "arms": arms},
                                                                 indent=1))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(body)
            os.replace(tmp, path)


if __name__ == "__main__":
    main()
