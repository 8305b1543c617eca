"""Benchmark: SVDD-PM in svdd against a reference loop with the official code's call pattern.

The reference (as in the official SVDD code) loops over the M candidates in Python, scores each candidate batch
separately, and recomputes the network output of the kept state at the next step: T·(M + 1) network evaluations per
sample. svdd draws all N·M candidates in one call per step, evaluates them in chunks of ``max_batch`` rows, reuses
the kept candidate's output and scores identical candidates once.

Both run on the same masked diffusion model (dilated-convolution denoiser, random weights) and reward (a small CNN)
in the same invocation; each variant runs in its own subprocess so that its peak resident memory is its own.

    python benchmarks/bench_svdd.py --hidden 128 --length 200 -N 32 -M 10 -T 32
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn


class DilatedDenoiser(nn.Module):
    """Dilated 1-D convolutions (dilations 1, 1, 4, 16, 64 per stack), as the paper's DNA backbone, time-free."""

    def __init__(self, vocab=4, hidden=128, stacks=2):
        super().__init__()
        self.emb = nn.Embedding(vocab + 1, hidden)
        self.convs = nn.ModuleList([nn.Conv1d(hidden, hidden, 9, padding=4 * d, dilation=d)
                                    for _ in range(stacks) for d in (1, 1, 4, 16, 64)])
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, t):
        h = self.emb(x).transpose(1, 2)
        for c in self.convs:
            h = h + torch.relu(c(h))
        return self.out(h.transpose(1, 2))


class CNNReward(nn.Module):
    def __init__(self, vocab=4, hidden=64):
        super().__init__()
        self.conv = nn.Conv1d(vocab, hidden, 9, padding=4)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        h = torch.relu(self.conv(nn.functional.one_hot(x, 4).float().transpose(1, 2)))
        return self.head(h.mean(-1)).squeeze(-1)


def build(args):
    import svdd
    torch.manual_seed(0)
    net, rew = DilatedDenoiser(hidden=args.hidden, stacks=args.stacks).eval(), CNNReward().eval()
    model = svdd.MaskedDiffusion(net, seq_len=args.length, vocab_size=4, num_steps=args.T)
    return model, rew


def run_svdd(args):
    import svdd
    model, rew = build(args)
    t0 = time.perf_counter()
    res = svdd.sample(model, svdd.Reward(rew, name="cnn"), "svdd", num_samples=args.N, M=args.M, seed=0,
                      max_batch=args.max_batch, progress=False)
    wall = time.perf_counter() - t0
    c = res.cost
    return {"wall_s": wall, "network_evals": c.network_evals, "reward_evals": c.reward_evals,
            "median_reward": float(res.rewards.median())}


def run_reference(args):
    """The official code's pattern: Python loop over M, winner's network output recomputed."""
    model, rew = build(args)
    g = torch.Generator().manual_seed(0)
    counts = {"network_evals": 0, "reward_evals": 0}
    t0 = time.perf_counter()
    with torch.no_grad():
        x = model.prior(args.N, g)
        for i in range(model.num_steps):
            pred = model.predict(x, i)
            counts["network_evals"] += args.N
            cands, values = [], []
            for _ in range(args.M):
                c = model.step(x, pred, i, g)
                if i + 1 < model.num_steps:
                    x0 = model.denoise(c, model.predict(c, i + 1), i + 1)
                    counts["network_evals"] += args.N
                else:
                    x0 = c
                values.append(rew(x0))
                counts["reward_evals"] += args.N
                cands.append(c)
            best = torch.stack(values, 1).argmax(1)
            x = torch.stack(cands, 1)[torch.arange(args.N), best]
        r = rew(x)
    return {"wall_s": time.perf_counter() - t0, **counts, "median_reward": float(r.median())}


def child(args):
    torch.set_num_threads(args.threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = (run_svdd if args.variant == "svdd" else run_reference)(args)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mb"] = base / 1024
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--stacks", type=int, default=2)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("-N", type=int, default=32)
    p.add_argument("-M", type=int, default=10)
    p.add_argument("-T", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", choices=["svdd", "reference"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return child(args)
    base = [sys.executable, __file__] + [a for a in sys.argv[1:]]
    results = {}
    for name, extra in [("reference", ["--variant", "reference"]), ("svdd", ["--variant", "svdd"]),
                        ("svdd max_batch=64", ["--variant", "svdd", "--max-batch", "64"]),
                        ("svdd max_batch=N*M", ["--variant", "svdd", "--max-batch", str(args.N * args.M)])]:
        out = subprocess.run(base + extra, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    print(f"masked diffusion, dilated conv hidden {args.hidden} x {args.stacks * 5} layers, length {args.length}, "
          f"N = {args.N}, M = {args.M}, T = {args.T}, {args.threads} threads")
    print(f"{'variant':22s} {'s/sample':>9s} {'net evals/sample':>17s} {'reward evals/sample':>20s} {'peak RSS MB':>12s} "
          f"{'median reward':>14s}")
    for name, r in results.items():
        print(f"{name:22s} {r['wall_s'] / args.N:9.4f} {r['network_evals'] / args.N:17.1f} "
              f"{r['reward_evals'] / args.N:20.1f} {r['peak_rss_mb']:12.0f} {r['median_reward']:14.4f}")
    ref, ours = results["reference"], results["svdd"]
    print(f"speed-up (reference s / svdd s): {ref['wall_s'] / ours['wall_s']:.2f}x; network evaluations "
          f"{ref['network_evals'] / ours['network_evals']:.2f}x fewer; reward evaluations "
          f"{ref['reward_evals'] / ours['reward_evals']:.2f}x fewer")
    print(f"expected without de-duplication: reference T(M+1) = {args.T * (args.M + 1)}, svdd 1 + (T-1)M = "
          f"{1 + (args.T - 1) * args.M} network evaluations per sample")


if __name__ == "__main__":
    main()
