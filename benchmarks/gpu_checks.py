"""Checks of the GPU path that the CPU test suite can only imitate (run by ``benchmarks/gpu.sh``).

1. Host-device syncs per SVDD step on the device, counted by CUDA's own sync detector
   (``torch.cuda.set_sync_debug_mode("warn")``: a warning per call that waits for the device), with the step's checks
   queued (``Engine.few_syncs``, the default on a GPU) and at every call (``svdd-eager``); the samples must be equal.
2. The queued checks still stop a run: a denoiser returning NaN and a reward returning +inf raise `RunError` naming
   the network / reward.

    python benchmarks/gpu_checks.py                 # cuda
    python benchmarks/gpu_checks.py --device cpu    # the same logic on CPU (syncs are not counted there)
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch

import svdd
from svdd.engine import Engine
from svdd.errors import RunError
from svdd.tasks.dna import OracleReward, load_networks


def syncs_per_step(model, reward, device: str, few_syncs: bool, n: int) -> tuple[list[int], torch.Tensor]:
    saved = Engine.FEW_SYNCS_DEVICES
    Engine.FEW_SYNCS_DEVICES = saved if few_syncs else ()
    counts: list[int] = []
    try:
        svdd.sample(model, reward, "svdd", num_samples=n, M=10, seed=1)  # warm-up, chunk sizes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                res = svdd.sample(model, reward, "svdd", num_samples=n, M=10, seed=0,
                                  callback=lambda i, s, info: counts.append(len(caught)))
            finally:
                if device == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
    finally:
        Engine.FEW_SYNCS_DEVICES = saved
    return [b - a for a, b in zip(counts, counts[1:])], res.samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("-N", type=int, default=64)
    p.add_argument("-T", type=int, default=16)
    args = p.parse_args()
    nets = load_networks()
    den, oracle = nets["denoiser"].to(args.device).eval(), nets["guidance"].to(args.device).eval()
    model = svdd.MaskedDiffusion(den, seq_len=200, vocab_size=4, num_steps=args.T, device=args.device,
                                 time_independent=True)
    reward = OracleReward(oracle, "hepg2-guidance")
    few, few_x = syncs_per_step(model, reward, args.device, True, args.N)
    eager, eager_x = syncs_per_step(model, reward, args.device, False, args.N)
    print(f"syncs per step, steps 1..{args.T - 1}: queued checks {few}; checks at every call {eager}")
    print(f"same samples: {bool(torch.equal(few_x, eager_x))}")

    class NaNDenoiser(torch.nn.Module):
        def forward(self, x, t=None):
            return den(x) * math.nan

    failures = []
    bad_model = svdd.MaskedDiffusion(NaNDenoiser(), seq_len=200, vocab_size=4, num_steps=4, device=args.device)
    for what, run in [("NaN denoiser", lambda: svdd.sample(bad_model, reward, "svdd", num_samples=8, M=2)),
                      ("+inf reward", lambda: svdd.sample(model, lambda x: torch.full((x.shape[0],), math.inf,
                                                                                       device=x.device),
                                                          "svdd", num_samples=8, M=2))]:
        try:
            run()
        except RunError as exc:
            print(f"{what}: RunError: {exc}")
        else:
            failures.append(what)
            print(f"{what}: NO ERROR")
    if failures:
        raise SystemExit(f"queued checks did not stop: {failures}")


if __name__ == "__main__":
    main()
