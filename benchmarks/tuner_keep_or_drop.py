"""Does the chunk-size tuner earn its rules? SVDD-PM with the measured chunk sizes (``svdd``: the tuner, sizes read
from this machine's store after the first repeat) against plain fixed sizes at every call site (``rows64``,
``rows256``: `RunSettings.batch_sizes`) and chunks of exactly ``max_batch`` (``fixed``), on every shipped task at a
small size, through `benchmarks/bench_dna.py`. One table: seconds per sample (best and median of the repeats) and
each variant's best time over the best of all. The samples of every variant must equal ``svdd``'s on CPU.

    python benchmarks/tuner_keep_or_drop.py --repeats 2 --out results/bench/tuner-keep-or-drop-cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# task (bench_dna --task; "" = the shipped DNA networks) -> its size arguments
CASES = {"dna-enhancer": ["-N", "32", "-T", "32"], "rna-utr-mrl": ["--task", "rna-utr-mrl", "-N", "64"],
         "molecule-qed": ["--task", "molecule-qed", "-N", "32"],
         "fashion-compress": ["--task", "fashion-compress", "-N", "4", "-T", "10"],
         "toy-motif": ["--task", "toy-motif", "-N", "2000"], "toy-gmm": ["--task", "toy-gmm", "-N", "20000"]}
VARIANTS = "svdd,rows64,rows256,fixed"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tasks", default=",".join(CASES))
    p.add_argument("--out", required=True, help="NAME: writes NAME.md and NAME.json, and NAME-<task>.md/.json")
    args = p.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks.split(","):
        stem = f"{out}-{task}"
        cmd = [sys.executable, str(HERE / "bench_dna.py"), *CASES[task], "--variants", VARIANTS,
               "--repeats", str(args.repeats), "--out", stem]
        print(" ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        rec = json.loads(Path(f"{stem}.json").read_text())
        rows.append((task, rec))
    lines = [f"# Chunk-size tuner against fixed sizes (`python benchmarks/tuner_keep_or_drop.py --repeats "
             f"{args.repeats} --out {args.out}`)", "",
             "Seconds per sample of SVDD-PM (M = 10), best [median] of the repeats; ratio = the variant's best over "
             "the best variant's best (1.00 = fastest). `svdd`: the tuner's measured sizes; `rows64` / `rows256`: "
             "that many rows per call at every site; `fixed`: chunks of exactly `max_batch`.", "",
             "| task | size | " + " | ".join(VARIANTS.split(",")) + " | same samples |",
             "|---|---|" + "---|" * len(VARIANTS.split(",")) + "---|"]
    summary = {}
    for task, rec in rows:
        n = int(CASES[task][CASES[task].index("-N") + 1])
        per = {v: [r["wall_s"] / n for r in rec["runs"][v]] for v in VARIANTS.split(",") if rec["runs"].get(v)}
        best = {v: min(r) for v, r in per.items()}
        med = {v: statistics.median(r) for v, r in per.items()}
        top = min(best.values())
        cells = [f"{best[v]:.4g} [{med[v]:.4g}] ({best[v] / top:.2f})" if v in best else "-"
                 for v in VARIANTS.split(",")]
        same = all(rec.get("same_samples_as_svdd", {}).values())
        lines.append(f"| {task} | {' '.join(CASES[task][-4:] if task != 'dna-enhancer' else CASES[task])} | "
                     + " | ".join(cells) + f" | {same} |")
        sizes = {v: rec["runs"][v][0].get("batch_sizes") for v in per}
        summary[task] = {"best": best, "median": med, "same_samples": rec.get("same_samples_as_svdd", {}),
                         "batch_sizes": sizes}
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
