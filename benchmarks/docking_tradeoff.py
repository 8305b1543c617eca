"""Docking speed / score trade-off: Vina's exhaustiveness (and scoring function) on a few MOSES test molecules.

One process, Vina with ``cpu`` threads. The one-off grid-map computation per scoring function is timed separately;
per-molecule times include ligand preparation (RDKit + meeko, a few ms). Prints a Markdown table.

    python benchmarks/docking_tradeoff.py --molecules 6 --exhaustiveness 1,2,4,8 --vinardo 1
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def main(argv=None) -> int:
    from svdd.rewards import chem
    from svdd.tasks.molecule.data import moses_smiles

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecules", type=int, default=6, help="first N molecules of MOSES's test split")
    p.add_argument("--exhaustiveness", default="1,2,4,8", help="comma-separated list (scoring function vina)")
    p.add_argument("--vinardo", default="1", help="exhaustiveness list for vinardo ('' for none)")
    p.add_argument("--target", default="PARP1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpu", type=int, default=1)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    smiles = list(moses_smiles("test")[:args.molecules])
    runs = [("vina", int(e)) for e in args.exhaustiveness.split(",") if e]
    runs += [("vinardo", int(e)) for e in args.vinardo.split(",") if e]

    maps = {}
    rows = []
    for sf, ex in runs:
        if sf not in maps:
            t = time.perf_counter()
            chem.init_docking(args.target, sf, args.cpu, args.seed)
            maps[sf] = time.perf_counter() - t
        times, scores = [], []
        for s in smiles:
            t = time.perf_counter()
            scores.append(chem.dock_score(s, args.target, exhaustiveness=ex, sf_name=sf, cpu=args.cpu, seed=args.seed))
            times.append(time.perf_counter() - t)
        ok = [v for v in scores if math.isfinite(v)]
        rows.append((sf, ex, sum(times) / len(times), max(times), sum(ok) / max(len(ok), 1), len(ok), scores))
        print(f"# {sf} ex{ex}: " + " ".join(f"{v:.2f}" for v in scores), file=sys.stderr, flush=True)

    print(f"{args.target}, {len(smiles)} MOSES test molecules, cpu={args.cpu}, seed={args.seed}; "
          + ", ".join(f"maps ({sf}): {t:.1f} s" for sf, t in maps.items()))
    print()
    print("| scoring | exhaustiveness | mean s / molecule | max s | mean score (kcal/mol) | docked |")
    print("|---|---|---|---|---|---|")
    for sf, ex, mean_t, max_t, mean_s, n, _ in rows:
        print(f"| {sf} | {ex} | {mean_t:.2f} | {max_t:.2f} | {mean_s:.2f} | {n}/{len(smiles)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
