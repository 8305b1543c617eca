"""Benchmark: SVDD-PM on the shipped DNA networks (denoiser + guidance oracle), svdd against the official call pattern;
``--task NAME`` runs the same on another shipped task's model and guidance reward.

Variants, each in its own process (its peak memory is its own), in one invocation:

* ``official`` -- the official SVDD code's call pattern, in a process with glibc's default heap settings: per step
  one network call on the N current states, then a Python loop over the M candidates, each drawn, run through the
  network (batches of N, no reuse of the kept candidate's output) and scored by the oracle; one last network call for
  the final noise removal:
  T·(M + 1) + 1 network rows and T·M oracle rows per sample, under ``torch.no_grad`` (a continuous model's last
  candidates are clean and scored as they are, and it has no final call: T + (T − 1)·M network rows).
* ``official-heap`` -- the same loop after `svdd.allocator.tune_heap` (the heap settings every svdd CPU run applies):
  the two call patterns compared with the same allocator.
* ``svdd`` -- ``svdd.sample(..., "svdd", M=M)`` with the defaults (max_batch 1024 on CPU for these rows, chunk sizes
  tuned, fp32).
* ``fixed`` -- the same with ``auto_batch=False``: chunks of exactly max_batch (the behaviour before tuning). Its
  samples must equal ``svdd``'s (the check is printed).
* ``bf16`` -- defaults plus ``precision="bf16"`` (bf16 autocast for the denoiser; the oracle stays fp32).
* ``nodedupe`` -- ``dedupe=False`` (every candidate row evaluated); ``mb1024`` / ``mb256`` -- ``max_batch`` 1024 /
  256 (1024 is the CPU default for rows of more than 128 bytes, e.g. DNA's, and was the whole CPU default before
  small rows got more: see `svdd.engine.default_max_batch`; the GPU default is 8192); ``compile`` --
  ``torch.compile`` of the denoiser; ``svdd-noheap`` -- defaults with ``SVDD_MALLOC_TUNING=0`` (glibc's default heap settings); ``svdd-eager`` -- defaults
  with every output check at its call (``Engine.few_syncs`` off: a GPU's behaviour before the checks were queued
  until the step's end; the same samples, on CPU the same code path as ``svdd``); ``rows64`` / ``rows256`` -- a
  fixed chunk size of 64 / 256 rows at every call site (``batch_sizes``) instead of the measured one: the check
  whether the chunk-size tuner earns its rules.

Chunk sizes come from the machine's store (``$SVDD_CACHE/batch_sizes.json``): the first process for a new model,
row shape or max_batch measures them, inside its time (on the 2-core AVX2 CPU, svdd with a fresh store ran 3.54 s /
sample against 3.15 with the sizes stored: ~25 s of timing); the later ones read them.

``--profile`` times the pieces of one step on the device first (network and oracle at N and N·M rows, the
transition, exact and hashed de-duplication; on CPU, the denoiser's chunks one at a time on all threads against
chunks in parallel Python threads of one intra-op thread each).

``--trace FILE.md`` writes a torch.profiler summary of ``--trace-variants`` (default ``official,svdd``): wall time,
kernel time, kernel launches and host-device syncs per step, and the ops with the most host and device time.

``--memory 64,256,1024`` adds peak-memory runs of ``svdd`` at those N with ``--memory-max-batch`` (default 256) and
``--memory-steps`` steps (peak memory does not grow with T): peak RSS above the process's RSS before sampling on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. On CPU each N runs twice: with the heap settings svdd applies (what a
user's process shows; `svdd.allocator`: freed memory stays in the process, up to 128 MiB of it) and with glibc's mmap
threshold pinned at 256 KiB (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, which svdd leaves alone), where
every tensor of 256 KiB or more is returned to the system when freed, so that RSS follows the memory actually in use
(these runs are slower: their times are not speed measurements).

    python benchmarks/bench_dna.py                                   # CPU: N 64, M 10, T 128, 2 threads
    python benchmarks/bench_dna.py --device cuda -N 256 --variants official,svdd,nodedupe,bf16 --memory 64,256,1024
    python benchmarks/bench_dna.py --task molecule-qed -N 32 --variants official,svdd --repeats 3

With ``--task`` both patterns call the task's guidance reward object as the task builds it (a task whose reward sits
behind an in-memory cache, as the molecule tasks', starts each process with an empty cache), and T defaults to the
task's number of steps; ``--profile`` measures the DNA networks only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

VARIANTS = {"official": {}, "official-heap": {}, "svdd": {}, "fixed": {"auto_batch": False}, "bf16": {"precision": "bf16"},
            "nodedupe": {"dedupe": False}, "mb1024": {"max_batch": 1024}, "mb256": {"max_batch": 256},
            "compile": {}, "svdd-noheap": {}, "svdd-eager": {},
            # a plain fixed chunk size at every call site instead of the measured one (the tuner's keep-or-drop check)
            "rows64": {"batch_sizes": {"network": 64, "value": 64, "reward": 64}},
            "rows256": {"batch_sizes": {"network": 256, "value": 256, "reward": 256}}}
VARIANT_ENV = {"svdd-noheap": {"SVDD_MALLOC_TUNING": "0"}}  # glibc's default heap settings for this variant


def build(args):
    if args.task:
        from svdd.tasks import get_task
        task = get_task(args.task)
        opts = {**({"num_steps": args.T} if args.T else {}), **({"device": args.device} if "device" in task.options else {})}
        if args.device != "cpu" and "device" not in task.options:
            raise SystemExit(f"task {args.task!r} runs on the CPU only (it has no device option)")
        spec = task.make(**opts)
        return spec.model, spec.reward
    from svdd import MaskedDiffusion
    from svdd.tasks.dna import OracleReward, load_networks
    nets = load_networks()
    den, oracle = nets["denoiser"].to(args.device).eval(), nets["guidance"].to(args.device).eval()
    model = MaskedDiffusion(den, seq_len=200, vocab_size=4, num_steps=args.T, device=args.device, time_independent=True)
    return model, OracleReward(oracle, "hepg2-guidance")


class RSSWatch:
    """Peak resident memory above the level at start, read from /proc/self/statm every 2 ms by a thread (the
    process-wide ru_maxrss also holds the model-loading peak)."""

    def __init__(self):
        import threading
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self.rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def loop(self):
        while not self.done.wait(0.002):
            self.peak = max(self.peak, self.rss())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return (max(self.peak, self.rss()) - self.base) / 2**20


def run_official(args, model, reward):
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    n, T, rows = args.N, model.num_steps, {"network": 0, "reward": 0}
    discrete = getattr(model, "discrete", False)
    with torch.no_grad():
        x = model.prior(n, g)
        for i in range(T):
            pred = model.predict(x, i)
            cands, values = [], []
            for _ in range(args.M):  # the official loop: one candidate batch at a time
                c = model.step(x, pred, i, g)
                clean = i + 1 == T and not discrete  # a continuous model's last candidates are clean: no call
                values.append(reward(c if clean else model.denoise(c, model.predict(c, i + 1), i + 1)))
                cands.append(c)
            rows["network"] += n * (args.M + 1 if i + 1 < T or discrete else 1)
            rows["reward"] += n * args.M
            best = torch.stack(values, 1).argmax(1)
            x = torch.stack(cands, 1)[torch.arange(n, device=x.device), best]
            r = torch.stack(values, 1).max(1).values
        if discrete:
            model.predict(x, T)  # the official final noise-removal call of masked diffusion
            rows["network"] += n
    return x, r.double(), rows, {}


def run_variant(args, model, reward):
    """One run of ``args.variant``: (samples, rewards, rows per call site, chunk sizes)."""
    if not args.variant.startswith("official"):
        opts = dict(VARIANTS[args.variant])
        if args.max_batch and "max_batch" not in opts:
            opts["max_batch"] = args.max_batch
        return run_svdd(args, model, reward, opts)
    if args.variant == "official-heap":
        from svdd.allocator import tune_heap
        tune_heap()  # process-wide, once: the settings an svdd CPU run applies when it starts
    return run_official(args, model, reward)


def run_svdd(args, model, reward, opts):
    import svdd
    if args.variant == "compile":
        model.network = torch.compile(model.network, dynamic=True)
    few_syncs = svdd.engine.Engine.FEW_SYNCS_DEVICES
    if args.variant == "svdd-eager":
        svdd.engine.Engine.FEW_SYNCS_DEVICES = ()  # for this run only (--trace runs variants in one process)
    try:
        res = svdd.sample(model, reward, "svdd", num_samples=args.N, M=args.M, seed=args.seed, progress=False, **opts)
    finally:
        svdd.engine.Engine.FEW_SYNCS_DEVICES = few_syncs
    rows = {"network": res.cost.network_evals, "reward": res.cost.reward_evals}
    return res.samples, res.rewards, rows, res.config["batch_sizes"]


def child(args):
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    model, reward = build(args)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    watch = RSSWatch()
    t0 = time.perf_counter()
    x, r, rows, sizes = run_variant(args, model, reward)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else watch.stop()
    if args.save:
        torch.save({"samples": x.cpu(), "rewards": r.cpu()}, args.save)
    print(json.dumps({"T": model.num_steps, "wall_s": wall, "network_rows": rows["network"], "reward_rows": rows["reward"],
                      "peak_mb": peak, "median_reward": float(r.median()), "batch_sizes": sizes}))


PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "262144", "MALLOC_TRIM_THRESHOLD_": "262144"}


def spawn(args, variant, extra=(), save=None, env=None):
    cmd = [sys.executable, __file__, "--variant", variant, "--device", args.device, "-N", str(args.N), "-M", str(args.M),
           "-T", str(args.T or 0), "--threads", str(args.threads), "--seed", str(args.seed), *extra]
    if args.task:
        cmd += ["--task", args.task]
    if args.cudnn_benchmark:
        cmd.append("--cudnn-benchmark")
    if args.max_batch:
        cmd += ["--max-batch", str(args.max_batch)]
    if save:
        cmd += ["--save", save]
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # reported, and the other variants go on
        print(f"variant {variant} failed:\n{out.stderr[-3000:]}", file=sys.stderr, flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name (Linux), widest vector instructions (they decide the kernels torch
    runs) and core count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    name = f"{platform.processor() or platform.machine()} CPU"
    try:
        name = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    isa = ("AVX-512 BF16" if torch.cpu._is_avx512_bf16_supported() else "AVX-512" if torch.cpu._is_avx512_supported()
           else "AVX2" if torch.cpu._is_avx2_supported() else "no AVX2")
    return f"{name} ({isa}), {os.cpu_count()} cores"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("-N", type=int, default=64)
    p.add_argument("-M", type=int, default=10)
    p.add_argument("-T", type=int, default=0, help="steps (0: 128 for the DNA networks, else the task's default)")
    p.add_argument("--task", default="", help="a shipped task's model and guidance reward instead of the DNA networks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=0, help="max_batch of the svdd variants (0: their default)")
    p.add_argument("--variants", default="official,svdd,fixed,bf16")
    p.add_argument("--repeats", type=int, default=1, help="run the variant list this many times, alternated; best and median time")
    p.add_argument("--memory", default="", help="N values for peak-memory runs, e.g. 64,256,1024")
    p.add_argument("--memory-max-batch", type=int, default=256)
    p.add_argument("--memory-steps", type=int, default=8)
    p.add_argument("--out", default="", help="write NAME.json and NAME.md here (e.g. results/bench/cpu)")
    p.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--save", default="", help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True in every variant")
    p.add_argument("--trace", default="", help="write a torch.profiler summary of runs to this .md file")
    p.add_argument("--trace-variants", default="official,svdd", help="the variants --trace profiles")
    args = p.parse_args()
    if not args.task:
        args.T = args.T or 128
    else:
        from svdd.tasks import get_task
        try:
            get_task(args.task)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    if args.variant:
        return child(args)
    if args.profile and args.task:
        raise SystemExit("--profile measures the shipped DNA networks only: drop --task")
    if args.profile:
        profile(args)
    if args.trace:
        trace(args)
    names = variant_list(args.variants)
    if not names:  # --profile alone
        return
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    runs: dict[str, list[dict]] = {v: [] for v in names}
    for v in names:  # earlier runs' samples must not stand in for a failed variant's
        (tmp / f"bench-dna-{v}.pt").unlink(missing_ok=True)
    for _ in range(args.repeats):
        for v in names:
            r = spawn(args, v, save=str(tmp / f"bench-dna-{v}.pt"), env=VARIANT_ENV.get(v))
            if r is not None:
                runs[v].append(r)
                print(f"  {v}: {r['wall_s'] / args.N:.4g} s/sample", file=sys.stderr, flush=True)
    names = [v for v in names if runs[v]]
    best = {v: min(runs[v], key=lambda d: d["wall_s"]) for v in names}
    same = {}
    if "svdd" in names:
        ref = torch.load(tmp / "bench-dna-svdd.pt", weights_only=True)["samples"]
        for v in names:
            if v != "svdd" and not v.startswith("official"):
                same[v] = bool(torch.equal(torch.load(tmp / f"bench-dna-{v}.pt", weights_only=True)["samples"], ref))
    memory = []
    for n in [int(s) for s in args.memory.split(",") if s]:
        margs = argparse.Namespace(**{**vars(args), "N": n, "T": args.memory_steps, "max_batch": args.memory_max_batch})
        r = spawn(margs, "svdd")
        if r is not None:
            memory.append({"N": n, **r})
            if not args.device.startswith("cuda"):
                pinned = spawn(margs, "svdd", env=PINNED_MALLOC)
                if pinned is not None:
                    memory[-1]["pinned_peak_mb"] = pinned["peak_mb"]
    report(args, names, runs, best, same, memory)


def subject(args) -> str:
    return f"the {args.task} task (its model and guidance reward)" if args.task else "the shipped DNA networks"


def variant_list(text: str) -> list[str]:
    names = [v for v in text.split(",") if v]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; choose from {sorted(VARIANTS)}")
    return names


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def profile(args):
    """Milliseconds per call of the pieces of one SVDD-PM step, at N rows (one official call) and N·M rows."""
    from svdd.engine import unique_rows
    torch.set_num_threads(args.threads)
    model, reward = build(args)
    g = torch.Generator(device=args.device).manual_seed(0)
    cuda = args.device.startswith("cuda")

    def ms(f, reps=10):
        f()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        if cuda:
            torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - t0) / reps

    with torch.inference_mode():
        x = model.prior(args.N, g)
        for i in range(args.T // 2):  # a half-unmasked state
            x = model.step(x, model.predict(x, i), i, g)
        pred = model.predict(x, args.T // 2)
        cands = model.step(x, pred, args.T // 2, g, num_children=args.M)
        rows = {}
        for name, xx in (("N", x), ("N*M", cands)):
            rows[f"network ({name} rows)"] = ms(lambda: model.predict(xx, args.T // 2))
            rows[f"oracle ({name} rows)"] = ms(lambda: reward(xx.clamp(max=3)))
        rows["transition, M children of N"] = ms(lambda: model.step(x, pred, args.T // 2, g, num_children=args.M))
        rows["dedupe N*M rows, exact sort"] = ms(lambda: unique_rows(cands, hashed=False))
        rows["dedupe N*M rows, hashed"] = ms(lambda: unique_rows(cands, hashed=True))
        chunks = (16, 32, 64, 128, 256) + ((512, 1024, 2048, cands.shape[0]) if cuda else ())
        per_row = chunk_sweep(model, reward, cands, args.T // 2, sizes=chunks, sync=torch.cuda.synchronize if cuda else None)
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = chunk_sweep(model, reward, cands, args.T // 2, sizes=chunks, sync=torch.cuda.synchronize)
            per_row.update({f"{site} (bf16 autocast)": v for site, v in bf16.items()})
        if not cuda and args.threads > 1:
            rows.update(inter_op(model, cands, args.T // 2, args.threads))
    print(f"profile ({args.device}, N = {args.N}, M = {args.M}): " +
          "; ".join(f"{k} {v:.2f} ms" for k, v in rows.items()), flush=True)
    print("ms per row by chunk size (fastest of 6 interleaved rounds over the same rows): " + "; ".join(
        f"{site}: " + ", ".join(f"{b} {v:.3f}" for b, v in sizes.items()) for site, sizes in per_row.items()), flush=True)


def trace(args):
    """torch.profiler over one run of each of ``--trace-variants`` (default: the official loop and ``svdd``), each
    after an untraced run of the same configuration (warm-up, chunk-size timing): wall time, kernel time and count,
    host-device synchronisations, and the ops that take the most host and device time. All run in this process: on
    CPU the heap settings of the first svdd run (`svdd.allocator`) hold for every variant after it."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    lines = [f"# torch.profiler, {subject(args)}: N = {args.N}, M = {args.M}, {args.device} ({device_name(args.device)})", ""]
    for variant in variant_list(args.trace_variants):
        vargs = argparse.Namespace(**{**vars(args), "variant": variant})
        model, reward = build(vargs)
        T = model.num_steps
        run = lambda: run_variant(vargs, model, reward)  # noqa: E731
        run()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch_profile(activities=acts) as prof:
            run()
            if cuda:
                torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        avg = prof.key_averages()
        dev = "self_device_time_total" if hasattr(avg[0], "self_device_time_total") else "self_cuda_time_total"
        kernels = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
        busy = sum(e.device_time if hasattr(e, "device_time") else e.cuda_time for e in kernels) / 1e3
        calls = {e.key: e.count for e in avg if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize",
                                                         "cudaMemcpyAsync", "cudaLaunchKernel", "aten::item",
                                                         "aten::_local_scalar_dense", "aten::nonzero")}
        lines += [f"## {variant}", "", f"T = {T}: wall {1000 * wall:.0f} ms under the profiler ({1000 * wall / T:.2f} ms "
                  f"per step); device kernels {len(kernels)} ({len(kernels) / T:.0f} per step), busy {busy:.0f} ms "
                  f"({busy / T:.2f} ms per step); host calls: {json.dumps(calls)}", "", "```",
                  avg.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)]
        if cuda:
            lines += [avg.table(sort_by=dev, row_limit=25, max_name_column_width=60)]
        lines += ["```", ""]
    write_atomic(Path(args.trace), "\n".join(lines) + "\n")
    print(f"trace written to {args.trace}", flush=True)


def inter_op(model, rows, level, threads, chunk=32, rounds=6):
    """Milliseconds per row of the denoiser over ``rows`` in chunks of ``chunk``: one call at a time with ``threads``
    intra-op threads (what the engine does) against ``threads`` Python threads calling it at once with one intra-op
    thread each (chunks in parallel); fastest of ``rounds`` alternated rounds. Stops if the outputs differ."""
    from concurrent.futures import ThreadPoolExecutor
    parts = [rows[a:a + chunk] for a in range(0, rows.shape[0], chunk)]
    one = lambda c: model.predict(c, level)  # noqa: E731
    best = {}
    with ThreadPoolExecutor(threads) as pool:
        ways = {f"denoiser per row, chunks one at a time on {threads} threads": (threads, lambda: [one(c) for c in parts]),
                f"denoiser per row, {threads} chunks at once on 1 thread each": (1, lambda: list(pool.map(one, parts)))}
        ref = None
        for _ in range(rounds):
            for name, (n, run) in ways.items():
                torch.set_num_threads(n)
                run()  # warm-up
                t0 = time.perf_counter()
                out = torch.cat(run())
                best[name] = min(best.get(name, float("inf")), 1000 * (time.perf_counter() - t0) / rows.shape[0])
                if ref is None:
                    ref = out
                elif not torch.equal(out, ref):
                    raise SystemExit(f"{name}: outputs differ from one call at a time")
    torch.set_num_threads(threads)
    return best


def chunk_sweep(model, reward, rows, level, sizes=(16, 32, 64, 128, 256), rounds=6, sync=None):
    """Milliseconds per row of the denoiser and the oracle when ``rows`` are evaluated in chunks of each size; the
    sizes alternate within every round, and the fastest round counts (a shared machine's noise only adds time)."""
    x0 = model.denoise(rows, model.predict(rows, level), level)
    best: dict[str, dict[int, float]] = {"denoiser": {}, "oracle": {}}
    sizes = [b for b in sizes if b <= rows.shape[0]]
    for _ in range(rounds):
        for b in sizes:
            for site, fn, xx in (("denoiser", lambda c: model.predict(c, level), rows), ("oracle", reward, x0)):
                fn(xx[:b])  # warm-up of this shape
                if sync:
                    sync()
                t0 = time.perf_counter()
                for a in range(0, xx.shape[0] - b + 1, b):
                    fn(xx[a:a + b])
                if sync:
                    sync()
                ms = 1000 * (time.perf_counter() - t0) / (xx.shape[0] // b * b)
                best[site][b] = min(best[site].get(b, float("inf")), ms)
    return best


def report(args, names, runs, best, same, memory):
    dev = device_name(args.device)
    T = args.T or next((r["T"] for v in names for r in runs[v]), "?")
    lines = [f"SVDD-PM on {subject(args)}: N = {args.N}, M = {args.M}, T = {T}, seed {args.seed}, "
             f"{args.device} ({dev}), {args.threads} threads; {args.repeats} alternated run(s) of each variant"
             + ("; cudnn.benchmark on" if args.cudnn_benchmark else ""), "",
             f"| variant | s / sample (best) | s / sample (median) | network rows / sample | "
             f"{'reward' if args.task else 'oracle'} rows / sample | "
             "peak memory of the best run (MB) | median reward | speed-up vs official (best) | speed-up (medians) | batch sizes | "
             "same samples as svdd |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = best.get("official")
    med = {v: statistics.median(r["wall_s"] for r in runs[v]) for v in names}
    for v in names:
        b = best[v]
        ratio = f"{base['wall_s'] / b['wall_s']:.2f}x" if base else "-"
        mratio = f"{med['official'] / med[v]:.2f}x" if base else "-"
        lines.append(f"| {v} | {b['wall_s'] / args.N:.4g} | {med[v] / args.N:.4g} | {b['network_rows'] / args.N:.1f} | "
                     f"{b['reward_rows'] / args.N:.1f} | {b['peak_mb']:.0f} | {b['median_reward']:.3f} | {ratio} | "
                     f"{mratio} | {json.dumps(b['batch_sizes']) if b['batch_sizes'] else '-'} | {same.get(v, '-')} |")
    if args.repeats > 1:
        lines += ["", "all times (s / sample): " + "; ".join(
            f"{v}: " + ", ".join(f"{r['wall_s'] / args.N:.4g}" for r in runs[v]) for v in names)]
    if memory:
        cpu, n0 = not args.device.startswith("cuda"), memory[0]["N"]
        lines += ["", f"Peak memory of `svdd` (defaults, max_batch = {args.memory_max_batch}, T = {args.memory_steps}; "
                      + ("peak RSS above the RSS before sampling, with svdd's heap settings and with glibc's "
                         "mmap threshold pinned at 256 KiB, where freed tensors leave RSS at once)" if cpu else
                         "torch.cuda.max_memory_allocated)") + ":", ""]
        if cpu:
            lines += [f"| N | peak RSS (MB) | ratio to N = {n0} | peak RSS, pinned mmap threshold (MB) | ratio to N = {n0} "
                      "| s / sample (svdd's heap settings) |", "|---|---|---|---|---|---|"]
        else:
            lines += [f"| N | peak memory (MB) | ratio to N = {n0} | s / sample |", "|---|---|---|---|"]
        for m in memory:
            ratio = f"{m['peak_mb'] / max(memory[0]['peak_mb'], 1e-9):.2f}"
            pinned = ""
            if cpu:
                p0, p = memory[0].get("pinned_peak_mb"), m.get("pinned_peak_mb")
                pinned = (f" {p:.0f} | {p / max(p0, 1e-9):.2f} |" if p is not None and p0 is not None else " - | - |")
            lines.append(f"| {m['N']} | {m['peak_mb']:.0f} | {ratio} |{pinned} {m['wall_s'] / m['N']:.4f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"device": dev, "command": "python benchmarks/bench_dna.py " + " ".join(sys.argv[1:]),
                  "torch": torch.__version__, "runs": runs, "same_samples_as_svdd": same, "memory": memory}
        for suffix, body in ((".json", json.dumps(record, indent=1)), (".md", text + "\n")):
            write_atomic(out.with_name(out.name + suffix), body)


if __name__ == "__main__":
    main()
