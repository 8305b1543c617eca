"""Docking benchmarks of the molecule task (PARP1, AutoDock Vina): what a molecule costs in docking calls.

    python benchmarks/molecule_docking.py throughput --molecules 16            # 1 vs 2 worker processes
    python benchmarks/molecule_docking.py frontier --num-samples 8 --out results/molecule-docking-parp1/frontier
    python benchmarks/molecule_docking.py redock --compare results/molecule-docking-parp1

* throughput: the same MOSES test molecules docked by a pool of 1 and of 2 worker processes (pools started and their
  grid maps computed before the clock starts); molecules per second and the ratio.
* frontier: median docking reward against REAL docking calls per molecule (distinct molecules a run asks for; a
  molecule asked twice in a run is a cache hit) for Best-of-N at several M, SVDD-PM with selection schedules (select
  every k-th step, M = 10) and with per-molecule call budgets, SVDD-MC (value net; one call per molecule, for the
  final score), and plain SVDD-PM (selection at every step). All runs share one SQLite cache, so a molecule is docked
  once for the whole benchmark, but every run's call count is its own (see `svdd.rewards.CachedReward`).
* redock: every method's final molecules (all seeds) of a `svdd compare` run, re-scored with Vina's ``vinardo``
  scoring function, with heavy-atom counts and ligand efficiency (score per heavy atom), next to the guidance score
  and the held-out re-docking (exhaustiveness 2, another seed) that the comparison already computed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _table(rows: list[dict], keys: list[str]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows])


def _write(out: Path, stem: str, rows: list[dict], keys: list[str], header: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = _table(rows, keys)
    (out / f"{stem}.md").write_text(header + "\n\n" + table + "\n")
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return table


def throughput(args) -> None:
    from svdd.rewards.chem import VinaDocking
    from svdd.tasks.molecule.data import encode, moses_smiles
    x = encode(moses_smiles("test")[1000:1000 + args.molecules])
    dock = VinaDocking(exhaustiveness=args.exhaustiveness)
    rows, ref = [], None
    for workers in (1, 2):
        pool = dock.reward(workers=workers, timeout=300).start()
        t0 = time.perf_counter()
        r = pool(x)
        dt = time.perf_counter() - t0
        pool.close()
        ref = r if ref is None else ref
        rows.append({"workers": workers, "molecules": len(x), "seconds": dt, "molecules_per_s": len(x) / dt,
                     "same_scores_as_1_worker": bool(torch.equal(r, ref)), "failed": int(torch.isnan(r).sum())})
    rows[1]["speedup"] = rows[1]["molecules_per_s"] / rows[0]["molecules_per_s"]
    rows[0]["speedup"] = 1.0
    print(_write(Path(args.out), "throughput", rows, list(rows[1]),
                 f"# Docking throughput: 1 vs 2 worker processes\n\n{len(x)} MOSES test molecules, PARP1, "
                 f"exhaustiveness {args.exhaustiveness}, one Vina thread per worker, on "
                 f"{torch.get_num_threads()}-thread CPU (`python benchmarks/molecule_docking.py throughput "
                 f"--molecules {args.molecules}`)."))


def frontier(args) -> None:
    from svdd import sample
    from svdd.io import config_hash
    from svdd.io import plain_options as _plain
    from svdd.tasks import get_task
    task = get_task("molecule-docking-parp1")
    spec = task.make(num_steps=args.num_steps, cache=args.cache, workers=args.workers)
    T = spec.model.num_steps
    runs = [("pretrained", "pretrained", {}, None)]
    runs += [(f"best-of-n M={m}", "best-of-n", {"M": m}, None) for m in args.bon]
    if spec.value_net is not None:
        runs.append(("svdd-mc M=10", "svdd", {"M": 10, "value": "task"}, None))
    runs += [(f"svdd-pm every {k}", "svdd", {"M": 10, "select_every": k}, None) for k in args.every]
    runs += [(f"svdd-pm budget {b}", "svdd", {"M": 10}, b) for b in args.budgets]
    if args.plain:
        runs.append(("svdd-pm every step (plain)", "svdd", {"M": 10}, None))
    out = Path(args.out)
    rows = []
    done = {}
    # resume: a finished configuration is kept only if it ran with these networks, sizes and seed
    key = config_hash({"task": spec.config, "num_samples": args.num_samples, "seed": args.seed})
    if (out / "frontier.json").exists():
        done = {r["config"]: r for r in json.loads((out / "frontier.json").read_text()) if r.get("key") == key}
    for label, method, opts, budget in runs:
        if label in done:
            rows.append(done[label])
            continue
        inner = spec.reward.reward.stats_snapshot() if hasattr(spec.reward, "reward") else None
        t0 = time.perf_counter()
        res = sample(spec.model, spec.reward, method, num_samples=args.num_samples, seed=args.seed,
                     reward_budget=budget, progress=not args.quiet, **spec.resolve(opts))
        executed = (spec.reward.reward.stats - inner).calls if inner is not None else None
        c = res.cost.per_sample()
        r = res.rewards.numpy()
        rows.append({"config": label, "method": method, "options": json.dumps(_plain(opts)), "budget": budget,
                     "reward_median": float(np.nanmedian(r)), "reward_p90": float(np.nanquantile(r, 0.9)),
                     "docking_calls_per_molecule": c["reward_calls"], "reward_evals_per_molecule": c["reward_evals"],
                     "cache_hits_per_molecule": c["cache_hits"], "executed_here": executed,
                     "failed": int(np.isnan(r).sum()), "wall_seconds": time.perf_counter() - t0, "key": key})
        print(json.dumps(rows[-1]), flush=True)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "frontier.json.tmp"
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(out / "frontier.json")
    keys = ["config", "reward_median", "reward_p90", "docking_calls_per_molecule", "reward_evals_per_molecule",
            "cache_hits_per_molecule", "executed_here", "failed", "wall_seconds"]
    print(_write(out, "frontier", rows, keys,
                 f"# molecule-docking-parp1: docking reward versus docking calls\n\n{args.num_samples} molecules, "
                 f"seed {args.seed}, T = {T}. docking calls = distinct molecules a run docks (its repeats are cache "
                 "hits); reward evals = what the run would dock without a cache (distinct token rows); executed here = "
                 "calls not already in the shared cache when the run started (depends on the order of runs)."))
    plot(rows, out / "frontier.png", f"PARP1 docking: reward vs docking calls ({args.num_samples} molecules)")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = {"best-of-n": ("^", "Best-of-N (M = 2, 5, 10, 20)"), "svdd-pm every": ("o", "SVDD-PM, select every k"),
              "svdd-pm budget": ("D", "SVDD-PM, call budget"), "plain": ("X", "SVDD-PM every step"),
              "svdd-mc": ("s", "SVDD-MC"), "pretrained": ("*", "pre-trained")}
    for key, (marker, name) in groups.items():
        g = [r for r in rows if key in r["config"] and not (key == "svdd-pm every" and "plain" in r["config"])]
        if g:
            g = sorted(g, key=lambda r: r["docking_calls_per_molecule"])
            ax.plot([r["docking_calls_per_molecule"] for r in g], [r["reward_median"] for r in g], marker=marker,
                    label=name)
            for r in g:
                ax.annotate(r["config"].split(" ")[-1], (r["docking_calls_per_molecule"], r["reward_median"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("real docking calls per molecule")
    ax.set_ylabel("median docking reward, max(-score, 0) (kcal/mol)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def redock(args) -> None:
    from svdd.rewards.chem import VinaDocking, heavy_atoms
    from svdd.rewards.parallel import ParallelReward
    from svdd.rewards.cache import CachedReward
    from svdd.rewards.chem import dock_score_item, init_docking
    folder = Path(args.compare)
    files = sorted((folder / "samples").glob("*/**/samples.csv")) + sorted((folder / "samples").glob("*/samples.csv"))
    per_method: dict[str, list[dict]] = {}
    for f in dict.fromkeys(files):
        method = f.relative_to(folder / "samples").parts[0]
        per_method.setdefault(method, []).extend(csv.DictReader(open(f)))
    dock = VinaDocking(sf_name="vinardo", exhaustiveness=args.exhaustiveness, seed=2)
    todo = sorted({r["smiles"] for rows in per_method.values() for r in rows if r["smiles"]})
    pool = ParallelReward(dock_score_item, to_item=lambda idx: [(todo[i], dock) for i in idx.tolist()],
                          workers=args.workers, timeout=30, init=init_docking, init_args=dock.init_args,
                          name=dock.name)  # raw scores (kcal/mol) of the SMILES as written
    pool = CachedReward(pool, key=lambda row: todo[int(row)], path=args.cache, namespace=dock.name + "-score")
    scores = dict(zip(todo, pool(torch.arange(len(todo))).tolist())) if todo else {}
    pool.close()
    out_rows = []
    for method, rows in per_method.items():
        guide = [k for k in rows[0] if k.startswith("reward_docking") and k.endswith("-seed1")]
        held = [k for k in rows[0] if k.startswith("reward_docking") and k.endswith("-seed2")]
        smiles = [r["smiles"] for r in rows if r["smiles"]]
        ha = np.array([heavy_atoms(s) for s in smiles])
        vinardo = np.array([scores[s] for s in smiles])
        row = {"method": method, "molecules": len(rows), "valid": len(smiles)}
        for name, cols in (("guidance", guide), ("heldout", held)):
            if cols:
                v = np.array([float(r[cols[0]]) for r in rows if r["smiles"]])  # rewards = -score (>= 0)
                row[f"{name}_reward_median"] = float(np.nanmedian(v))
                row[f"{name}_LE_median"] = float(np.nanmedian(v / ha))
        row["vinardo_score_median"] = float(np.nanmedian(vinardo))
        row["vinardo_LE_median"] = float(np.nanmedian(-vinardo / ha))
        row["heavy_atoms_median"] = float(np.median(ha))
        out_rows.append(row)
    keys = list(dict.fromkeys(k for r in out_rows for k in r))
    print(_write(folder, "redock", out_rows, keys,
                 f"# molecule-docking-parp1: held-out re-docking\n\nEvery seed's final molecules per method. guidance = "
                 f"Vina, exhaustiveness 1, seed 1 (the reward guidance saw); heldout = Vina, exhaustiveness 2, seed 2; "
                 f"vinardo = the vinardo scoring function, exhaustiveness {args.exhaustiveness}, seed 2 (kcal/mol, lower "
                 "is better). LE = ligand efficiency, reward (or -score) per heavy atom: docking scores grow with size. "
                 f"`python benchmarks/molecule_docking.py redock --compare {args.compare}`"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--molecules", type=int, default=16)
    t.add_argument("--exhaustiveness", type=int, default=1)
    t.add_argument("--out", default="results/molecule-docking-parp1/throughput")
    f = sub.add_parser("frontier")
    f.add_argument("--num-samples", type=int, default=8)
    f.add_argument("--num-steps", type=int, default=32)
    f.add_argument("--bon", type=int, nargs="*", default=[2, 5, 10, 20], help="Best-of-N M values")
    f.add_argument("--every", type=int, nargs="*", default=[8, 4], help="SVDD-PM select_every values")
    f.add_argument("--budgets", type=float, nargs="*", default=[40], help="SVDD-PM reward budgets per molecule")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--workers", type=int, default=2)
    f.add_argument("--cache", default=str(Path.home() / ".cache" / "svdd" / "docking.sqlite"))
    f.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                   help="also plain SVDD-PM (selection at every step; the most docking calls)")
    f.add_argument("--quiet", action="store_true")
    f.add_argument("--out", default="results/molecule-docking-parp1/frontier")
    r = sub.add_parser("redock")
    r.add_argument("--compare", default="results/molecule-docking-parp1")
    r.add_argument("--exhaustiveness", type=int, default=1)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--cache", default=str(Path.home() / ".cache" / "svdd" / "docking.sqlite"))
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    {"throughput": throughput, "frontier": frontier, "redock": redock}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
