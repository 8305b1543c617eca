"""DPS scale sweep: does one relative scale transfer between tasks?

For every task, DPS runs at a list of RELATIVE scales (the guidance shift measured in units of the step's own noise
for continuous models, in nats of logit tilt for masked models; see `svdd.guidance`) and, for reference, at the
absolute scale the task's comparison uses. The table lists the median guidance reward, the held-out evaluation
reward where the task has one, the naturalness / set metrics, and the cost.

    python benchmarks/dps_sweep.py --tasks toy-gmm,toy-motif,dna-enhancer --num-samples 64 --out results/dps-sweep
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from svdd.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="toy-gmm,toy-motif,dna-enhancer")
    p.add_argument("--scales", default="0,0.1,0.3,1,3,10")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="results/dps-sweep")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    out = Path(args.out)
    rows = []
    for name in args.tasks.split(","):
        task = get_task(name)
        spec = task.make(**({"device": args.device} if args.device and "device" in task.options else {}))
        base = dict(task.methods["dps"])
        base.pop("method")
        settings = [("absolute (task)", base)] + [
            (f"relative {float(s):g}", {**base, "scale": float(s), "scale_mode": "relative"}) for s in args.scales.split(",")]
        for label, opts in settings:
            rec = _one_run(spec, opts, args.seed, args.num_samples)
            row = {"task": name, "target": opts.get("target", "reward"), "setting": label, "scale": opts["scale"],
                   "reward_median": float(np.nanmedian(rec["rewards"]))}
            if rec["eval_rewards"] is not None:
                row["eval_median"] = float(np.nanmedian(rec["eval_rewards"]))
            if rec["naturalness"] is not None:
                row["naturalness_median"] = float(np.nanmedian(rec["naturalness"]))
            row.update({k: float(v) for k, v in rec["metrics"].items()})
            row["diversity"] = rec["diversity"]
            row["wall_s_per_sample"] = rec["cost"]["wall_seconds"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    (out / "sweep.md").write_text(
        f"# DPS scale sweep\n\n`python benchmarks/dps_sweep.py {' '.join(argv)}`: {args.num_samples} samples, "
        f"seed {args.seed}. Relative scale: the guidance shift in units of the step's noise (continuous) or nats of "
        "logit tilt (masked); 'absolute (task)' is the scale the task's comparison uses.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _one_run(spec, opts: dict, seed: int, num_samples: int) -> dict:
    """One DPS run scored as a comparison scores it: both oracles, naturalness, set metrics, diversity."""
    import torch

    from svdd import sample
    from svdd.report import diversity
    res = sample(spec.model, spec.reward, "dps", num_samples=num_samples, seed=seed, max_batch=1024,
                 **spec.resolve(opts))
    with torch.no_grad():
        ev = spec.eval_reward(res.samples) if spec.eval_reward is not None else None
        nat = spec.naturalness(res.samples) if spec.naturalness is not None else None
    return {"rewards": res.rewards.numpy(), "cost": res.cost.per_sample(),
            "eval_rewards": None if ev is None else torch.as_tensor(ev).double().cpu().numpy(),
            "naturalness": None if nat is None else nat.double().cpu().numpy(),
            "metrics": {k: f(res.samples) for k, f in spec.set_metrics.items()}, "diversity": diversity(res.samples)}


if __name__ == "__main__":
    raise SystemExit(main())
