"""Does ``torch.compile`` make the shipped DNA networks cheaper per row? Time per row of the denoiser and the
guidance oracle, eager against compiled with static shapes (one compile per batch size, as a chunked engine with
padded chunks would see), at the given batch sizes, alternated over rounds in one process.

Variants: ``eager``; ``compiled`` (``torch.compile(dynamic=False)``); ``dynamic`` (``dynamic=True``: one graph for
every batch size, as an engine whose chunks vary would need without padding); ``frozen`` (the same with inductor's
``freezing``: weights folded in as constants, on CPU prepacked for oneDNN); on CUDA also ``graphs``
(``mode="reduce-overhead"``: CUDA graphs, no launch cost per kernel). Prints and writes (``--out``) a table of ms per
row (best and median round), the ratio of the best to eager's best at the same size, the compile time, and how far
the outputs are from eager's (largest absolute difference; for the denoiser the share of positions whose argmax
base agrees).

    python benchmarks/compile_rows.py --out results/bench/cpu-compile-rows                       # 2 CPU threads
    python benchmarks/compile_rows.py --device cuda --sizes 2048 --variants eager,dynamic,graphs --out DIR/h100-compile-rows
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


VARIANTS = {"eager": None,  # variant -> torch.compile's keyword arguments (None: the network as it is)
            "compiled": {"dynamic": False},
            "dynamic": {"dynamic": True},
            "frozen": {"dynamic": False, "options": {"freezing": True}},
            "graphs": {"dynamic": False, "mode": "reduce-overhead"}}


def build(variant: str, net: torch.nn.Module):
    kwargs = VARIANTS[variant]
    return net if kwargs is None else torch.compile(net, **kwargs)


def per_row_ms(fn, x: torch.Tensor, calls: int) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        fn(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(x)
        sync()
    return (time.perf_counter() - t0) / calls / x.shape[0] * 1e3


def report(args, rows: list, failed: list) -> None:
    from bench_dna import device_name as describe  # the benchmarks' one description of a device (this script's folder)
    device_name = describe(args.device) + ("" if args.device.startswith("cuda") else f", {args.threads} threads")
    lines = [f"# Shipped DNA networks per row, eager vs torch.compile: {device_name}, torch {torch.__version__}; "
             f"{args.rounds} alternated rounds of about {args.rows_per_round} rows", "",
             "| network | rows per call | variant | ms / row, best (median) | eager's best / best | compile + first "
             "calls (s) | max abs diff to eager | argmax agrees |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = "-" if r["argmax_agrees"] is None else f"{r['argmax_agrees']:.4f}"
        lines.append(f"| {r['network']} | {r['rows']} | {r['variant']} | {r['ms_per_row_best']:.4f} "
                     f"({r['ms_per_row_median']:.4f}) | {r['speedup_vs_eager_best']:.2f}x | {r['compile_s']:.1f} | "
                     f"{r['max_abs_diff']:.2e} | {agree} |")
    lines += [""] + [f"Failed: {f}" for f in failed] if failed else []
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if args.out:
        from svdd.io import atomic_write
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out.with_name(out.name + ".md"), text.encode())
        atomic_write(out.with_name(out.name + ".json"), json.dumps(
            {"device": device_name, "torch": torch.__version__, "command": " ".join(sys.argv), "rows": rows,
             "failed": failed}, indent=1).encode())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", default=None, help="batch sizes (default 32,64 on CPU, 256,2048 on CUDA)")
    p.add_argument("--variants", default=None, help="default eager,compiled,frozen (CUDA: and graphs); also dynamic")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--rows-per-round", type=int, default=640, help="rows each variant runs per round and size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    args = p.parse_args()
    from svdd.tasks.dna import load_networks

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sizes = [int(s) for s in (args.sizes or ("256,2048" if cuda else "32,64")).split(",")]
    variants = (args.variants or ("eager,compiled,frozen,graphs" if cuda else "eager,compiled,frozen")).split(",")
    if "eager" not in variants or set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants {','.join(variants)}: must include eager (the ratios are to it) and name only "
                         f"{', '.join(VARIANTS)}")
    nets = load_networks()
    gen = torch.Generator().manual_seed(0)
    rows, failed = [], []
    for name, net, vocab in (("denoiser", nets["denoiser"], 5), ("guidance oracle", nets["guidance"], 4)):
        net = net.eval().to(dev)
        for size in sizes:
            x = torch.randint(0, vocab, (size, 200), generator=gen).to(dev)
            with torch.inference_mode():
                ref = net(x).float()
            fns, info = {}, {}
            for v in variants:
                t0 = time.perf_counter()
                try:
                    fn = build(v, net)
                    with torch.inference_mode():
                        out = fn(x).float().clone()
                        if v == "graphs":  # CUDA graphs record on the second and later calls
                            fn(x)
                    if cuda:
                        torch.cuda.synchronize()
                except Exception as e:  # a missing compiler or triton: report it, time the others
                    print(f"{name}, {size} rows, {v}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    failed.append(f"{name}, {size} rows, {v}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                    continue
                agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item() if name == "denoiser" else None
                info[v] = {"compile_s": time.perf_counter() - t0, "max_abs_diff": (out - ref).abs().max().item(),
                           "argmax_agrees": agree}
                fns[v] = fn
            times = {v: [] for v in fns}
            calls = max(1, args.rows_per_round // size)
            for _ in range(args.rounds):
                for v in fns:
                    times[v].append(per_row_ms(fns[v], x, calls))
            best_eager = min(times["eager"])
            for v in fns:
                ts = sorted(times[v])
                rows.append({"network": name, "rows": size, "variant": v, "ms_per_row_best": ts[0],
                             "ms_per_row_median": ts[len(ts) // 2], "speedup_vs_eager_best": best_eager / ts[0],
                             **info[v]})
                print(json.dumps(rows[-1]), flush=True)
            del fns
            torch._dynamo.reset()
            report(args, rows, failed)  # so far: a cut-off run keeps it


if __name__ == "__main__":
    main()
