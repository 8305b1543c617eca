"""Does ``precision="bf16"`` cost reward? SVDD-PM on the shipped DNA networks in fp32 and bf16 over several seeds,
each run in its own process; the rewards of all seeds pooled per variant and compared with a Mann-Whitney U test.

Variants: ``fp32`` (the default), ``bf16`` (``precision="bf16"``: the denoiser under bf16 autocast, the oracle in
fp32), ``bf16-head32`` (the same with the denoiser's output head -- last GroupNorm, GELU and the 1x1 convolution to
the logits -- taken out of autocast, in fp32: bf16 logits tie where fp32 ones do not, and a tie's argmax is the first
base). Rewards: the guidance oracle (what SVDD maximises) and the held-out evaluation oracle.

    python benchmarks/bf16_reward.py --seeds 10,11,12,13 -N 128 --out results/bench/cpu-bf16-reward
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("fp32", "bf16", "bf16-head32")


class Fp32(torch.nn.Module):
    """A module run outside autocast, in fp32."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        with torch.autocast(h.device.type, enabled=False):
            return self.module(h.float())


def one(variant: str, seed: int, n: int, m: int, steps: int, threads: int) -> dict:
    import svdd
    from svdd.tasks.dna import OracleReward, load_networks
    torch.set_num_threads(threads)
    nets = load_networks()
    den = nets["denoiser"].eval()
    if variant == "bf16-head32":  # autocast already runs GroupNorm (hence the GELU after it) in fp32: the 1x1 conv
        den.out = Fp32(den.out)
    model = svdd.MaskedDiffusion(den, seq_len=200, vocab_size=4, num_steps=steps, time_independent=True)
    t0 = time.perf_counter()
    res = svdd.sample(model, OracleReward(nets["guidance"].eval(), "hepg2-guidance"), "svdd", num_samples=n, M=m,
                      seed=seed, progress=False, precision="fp32" if variant == "fp32" else "bf16")
    seconds = time.perf_counter() - t0
    with torch.inference_mode():
        held_out = OracleReward(nets["evaluation"].eval(), "hepg2-evaluation")(res.samples).double()
    return {"variant": variant, "seed": seed, "s_per_sample": seconds / n, "rewards": res.rewards.tolist(),
            "eval": held_out.tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="10,11,12,13")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("-N", type=int, default=128)
    p.add_argument("-M", type=int, default=10)
    p.add_argument("-T", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="", help="write NAME.json and NAME.md")
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.N, args.M, args.T, args.threads)))
        return
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant(s) {bad}; expected some of {list(VARIANTS)}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for v in variants:  # alternated: a slow spell of a shared machine falls on every variant alike
            cmd = [sys.executable, __file__, "--one", v, str(seed), "-N", str(args.N), "-M", str(args.M),
                   "-T", str(args.T), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = torch.tensor(runs[-1]["rewards"])
            print(f"{v} seed {seed}: median reward {r.median():.3f}, {runs[-1]['s_per_sample']:.3f} s / sample",
                  file=sys.stderr, flush=True)
    text = report(args, variants, runs)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": " ".join(["python", "benchmarks/bf16_reward.py", *sys.argv[1:]]),
                  "torch": torch.__version__, "runs": runs}
        for suffix, body in ((".json", json.dumps(record, indent=1)), (".md", text)):
            with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False) as f:
                f.write(body)
            os.replace(f.name, out.with_suffix(suffix))


def report(args, variants: list[str], runs: list[dict]) -> str:
    from scipy.stats import mannwhitneyu
    pooled = {v: {k: torch.tensor([x for r in runs if r["variant"] == v for x in r[k]], dtype=torch.float64)
                  for k in ("rewards", "eval")} for v in variants}
    seeds = sorted({r["seed"] for r in runs})
    lines = [f"SVDD-PM on the shipped DNA networks: N = {args.N} per run, M = {args.M}, T = {args.T}, seeds "
             f"{', '.join(map(str, seeds))}, {args.threads} CPU threads; rewards pooled over the seeds "
             f"({args.N * len(seeds)} samples per variant)", "",
             "| variant | guidance reward: median (mean) | held-out oracle: median (mean) | per-seed medians | s / sample (mean over seeds) |",
             "|---|---|---|---|---|"]
    for v in variants:
        g, e = pooled[v]["rewards"], pooled[v]["eval"]
        per_seed = ", ".join(f"{torch.tensor(r['rewards']).median():.2f}" for r in runs if r["variant"] == v)
        sec = sum(r["s_per_sample"] for r in runs if r["variant"] == v) / len(seeds)
        lines.append(f"| {v} | {g.median():.3f} ({g.mean():.3f}) | {e.median():.3f} ({e.mean():.3f}) | {per_seed} | "
                     f"{sec:.3f} |")
    lines += ["", "Mann-Whitney U, two-sided, pooled guidance rewards (held-out oracle in brackets):", ""]
    for i, a in enumerate(variants):
        for b in variants[i + 1:]:
            pg = mannwhitneyu(pooled[a]["rewards"].numpy(), pooled[b]["rewards"].numpy()).pvalue
            pe = mannwhitneyu(pooled[a]["eval"].numpy(), pooled[b]["eval"].numpy()).pvalue
            lines.append(f"* {a} against {b}: p = {pg:.3f} ({pe:.3f})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
