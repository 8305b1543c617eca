"""Command line: ``svdd tasks``, ``svdd sample``, ``svdd compare``."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _options(pairs: list[str], flag: str = "--set") -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p or not p.split("=", 1)[0].strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = _value(v)
    return out


# argparse types: a bad value is reported by argparse as "argument --flag: ..." (exit status 2) before any work
def _int_at_least(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low or (high is not None and v >= high):
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}{f' and < 2**{high.bit_length() - 1}' if high else ''}, "
                                             f"got {text!r}")
        return v
    return parse


_positive = _int_at_least(1)
_seed = _int_at_least(0, 2 ** 62)


def _int_list(what: str, low: int, high: int | None = None):
    one = _int_at_least(low, high)

    def parse(text: str) -> list[int]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        values = [one(s) for s in items]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{what} must differ, got {repeated} more than once in {text!r}")
        return values
    return parse


def _budget(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of reward calls, got {text!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v


def _task_options(args, task) -> dict:
    opts = _options(args.task_option, "--task-option")
    if args.klass is not None:
        if "target" not in task.options:
            raise ValueError(f"--class {args.klass!r}: task {task.name!r} has no target class (its options: "
                             f"{list(task.options) or 'none'})")
        opts["target"] = args.klass
    if args.device is not None:
        opts["device"] = args.device
    if "device" in opts:
        import torch
        try:
            dev = torch.device(opts["device"])
        except (RuntimeError, TypeError):
            raise ValueError(f"--device {opts['device']!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {opts['device']!r}: this torch ({torch.__version__}) sees no CUDA device")
    return opts


def _check_out(path: str) -> Path:
    """The output folder, created and checked writable before any work (an error here costs nothing)."""
    import os
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {path!r} is an existing file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".svdd-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"--out {path!r} cannot be written: {exc.strerror or exc}") from None
    return out


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def cmd_tasks(args) -> int:
    from .tasks import TASKS
    for t in TASKS.values():
        print(f"{t.name:16s} {t.description}")
        print(f"{'':16s} compare methods: {', '.join(t.methods)}; default samples per method: {t.num_samples}")
    return 0


def _overrides(args) -> dict:
    """The method options given by --M, --alpha and --set (--set wins)."""
    opts = {k: getattr(args, k) for k in ("M", "alpha", "select_every") if getattr(args, k, None) is not None}
    opts.update(_options(args.set))
    return opts


def _fields(method: str) -> set[str]:
    import dataclasses

    from .methods import METHODS
    return {f.name for f in dataclasses.fields(METHODS[method])}


def _apply_overrides(methods: dict[str, dict], overrides: dict) -> dict[str, dict]:
    """`compare`'s rule: an override goes to every compared method that has the option and is skipped by the others;
    an option that none of them has, or an override that makes two compared methods identical, is an error."""
    out, used = {}, set()
    for label, entry in methods.items():
        mine = {k: v for k, v in overrides.items() if k in _fields(entry["method"])}
        used |= set(mine)
        out[label] = {**entry, **mine}
    unused = sorted(set(overrides) - used)
    if unused:
        have = {label: entry["method"] for label, entry in methods.items()}
        raise ValueError(f"no compared method has option(s) {unused}; compared: {have}")
    labels = list(out)
    for k, a in enumerate(labels):
        for b in labels[k + 1:]:
            if out[a] == out[b] and methods[a] != methods[b]:
                ea, eb = methods[a], methods[b]
                keys = sorted(key for key in set(ea) | set(eb) if ea.get(key) != eb.get(key))
                was = "; ".join(f"{key} {ea.get(key, 'default')} and {eb.get(key, 'default')}" for key in keys)
                given = ", ".join(f"{key}={overrides[key]!r}" for key in keys)
                raise ValueError(f"{given} would make {a!r} and {b!r} identical (the task compares them at {was}); "
                                 f"leave the option out, or pick one of them with --methods")
    return out


def _is_run_folder(path: Path, command: str) -> bool:
    """Whether ``path`` holds output of ``svdd <command>`` (a manifest; for compare also an older folder of runs)."""
    from .runs import MANIFEST
    if (path / MANIFEST).exists():
        return True
    return command == "compare" and ((path / "runs").is_dir() or (path / "summary.json").exists())


def _run_dir(args) -> Path:
    """The run folder of `sample` / `compare`: --out, or the folder of --resume (the same one when both are given);
    a non-empty --out needs --resume or --overwrite, and --overwrite only replaces svdd's own output."""
    if args.resume and args.out and Path(args.resume).resolve() != Path(args.out).resolve():
        raise ValueError(f"--resume {args.resume!r} and --out {args.out!r} name different folders; give one of them")
    if not (args.resume or args.out):
        raise ValueError(f"{args.command} needs --out OUT (a new run) or --resume OUT (continue the run in OUT)")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: give one of them")
    path = Path(args.resume or args.out)
    if args.resume and not _is_run_folder(path, args.command) and path.is_dir() and any(path.iterdir()):
        raise ValueError(f"--resume {str(path)!r}: no svdd {args.command} run there, and the folder is not empty")
    if not args.resume and path.is_dir() and any(path.iterdir()):
        if not args.overwrite:
            raise ValueError(f"--out {str(path)!r} is not empty: pass --resume {path} to continue the run in it, or "
                             "--overwrite to replace it")
        if not _is_run_folder(path, args.command):
            raise ValueError(f"--out {str(path)!r} is not empty and holds no svdd {args.command} run: --overwrite only "
                             "replaces svdd's own output; pick another --out")
        if args.command == "compare":  # sample's folder is replaced by RunFolder.open
            import shutil
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    _check_out(str(path))
    return path


def cmd_sample(args) -> int:
    import dataclasses
    import json

    from .engine import Cost
    from .methods import METHODS
    from .result import Diagnostics, SampleResult
    from .runs import RunFolder, SampleJob, plan, run_chunks
    from .tasks import get_task
    task = get_task(args.task)
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; expected one of {sorted(METHODS)}")
    opts = _overrides(args)
    fields = _fields(args.method)
    bad = sorted(set(opts) - fields)
    if bad:
        raise ValueError(f"method {args.method!r} has no option(s) {bad}; its options: {sorted(fields)}")
    task_options = _task_options(args, task)
    from .distributed import run_ray, run_torchrun, torchrun_world
    world = torchrun_world()
    if world is not None and args.engine == "ray":
        raise ValueError("--engine ray under torchrun: use one of them")
    asked_device = task_options.get("device")
    if world is not None and str(asked_device).startswith("cuda"):
        task_options["device"] = f"cuda:{world[2]}"  # one GPU per rank (torchrun's LOCAL_RANK)
    if args.engine == "ray" and str(asked_device).startswith("cuda") and not args.gpus_per_worker:
        raise ValueError("--engine ray with --device cuda needs --gpus-per-worker (e.g. 1): Ray hides the GPUs "
                         "from workers that reserve none")
    path = _run_dir(args) if world is None or world[0] == 0 else Path(args.resume or args.out)
    settings = {"max_batch": args.max_batch, "reward_budget": args.reward_budget, "precision": args.precision,
                "auto_batch": args.auto_batch, "dedupe": args.dedupe}
    job = SampleJob(task.name, task_options, args.method, opts, settings, progress=_progress(args) and world is None)
    spec = job.spec
    n = args.num_samples if args.num_samples is not None else task.num_samples
    config = job.config(n, args.seed, args.chunk_size)
    if asked_device is not None:  # as asked, not per rank: a run resumes under any engine
        config["task"] = {**config["task"], "options": {**config["task"].get("options", {}), "device": asked_device}}
    from .methods import get_method
    method = get_method(args.method, **spec.resolve(opts))  # bad options fail here, before the folder is written
    method.check(spec.model, spec.reward)

    def open_run(join: bool) -> RunFolder:
        args._run = RunFolder.open(path, config, plan(n, args.chunk_size, args.seed), resume=bool(args.resume) or join,
                                   overwrite=args.overwrite and not join, command=_resume_command(args, path))
        return args._run

    if world is not None:
        run = run_torchrun(open_run, job, progress=_progress(args))
        if run is None:  # not rank 0: rank 0 merges and reports
            return 0
        ran = len(run.chunks)
    else:
        run = open_run(False)
    if world is None:
        ran = run_ray(run, job, workers=args.workers, address=args.address, gpus_per_worker=args.gpus_per_worker,
                      progress=_progress(args)) if args.engine == "ray" else run_chunks(run, job, _progress(args))
    merged = run.merged()
    metas = merged["meta"]
    cost = Cost(**{k: sum(m["cost"][k] for m in metas) for k in dataclasses.asdict(Cost()) if k != "num_samples"},
                num_samples=n)
    run_config = {**metas[0]["run_config"], "num_samples": n, "seed": args.seed, "chunk_size": args.chunk_size,
                  "chunk_seeds": [c["seed"] for c in run.chunks]}
    res = SampleResult(samples=merged["samples"], rewards=merged["rewards"], diagnostics=Diagnostics(), cost=cost,
                       config=run_config)
    out = res.save(path)
    summary = res.summary()
    diags = [m["diagnostics"] for m in metas]
    summary["diagnostics"] = {"steps": diags[0]["steps"],
                              **{k: sum(d[k] for d in diags) for k in ("resampling_events", "failed_candidates",
                                                                        "all_candidates_failed")},
                              "min_ess": min((d["min_ess"] for d in diags if d["min_ess"] is not None), default=None)}
    summary["log_z_per_chunk"] = [m["log_z"] for m in metas] if any(m["log_z"] is not None for m in metas) else None
    (out / "run.json").write_text(json.dumps({"config": run_config, "summary": summary, "task": spec.config,
                                              "chunks": len(metas)}, indent=2, default=str))
    if spec.write_samples is not None:
        rewards = {spec.reward.name: res.rewards}
        if merged["eval_rewards"] is not None:
            rewards[spec.eval_reward.name] = merged["eval_rewards"]
        spec.write_samples(out, res.samples, rewards)
    if merged["text"] is not None:
        with open(out / "samples.txt", "w") as f:
            for s, r in zip(merged["text"], res.rewards.tolist()):
                f.write(f"{s}\t{r:.6g}\n")
    c = summary["cost_per_sample"]
    resumed = f" ({len(metas) - ran} of {len(metas)} chunks from the earlier run)" if ran < len(metas) else ""
    print(f"{args.method} on {task.name}: {summary['num_samples']} samples{resumed}, reward median "
          f"{summary['reward_median']:.4f}, p90 {summary['reward_p90']:.4f}; per sample: {c['network_evals']:.1f} network "
          f"evals, {c['reward_evals']:.1f} reward evals ({c['reward_calls']:.1f} reward calls, of which "
          f"{c['stored_hits']:.1f} were answered by earlier runs; {c['cache_hits']:.1f} repeats answered by the cache; "
          f"{c['reward_seconds']:.3g} s in the reward); written to {out}")
    return 0


def _resume_command(args, path: Path) -> str:
    """The command that resumes this run: the same arguments, with --resume in place of --out / --overwrite."""
    import shlex
    argv, out, skip = list(getattr(args, "_argv", None) or sys.argv[1:]), [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--out", "--resume"):
            skip = True
            continue
        if a == "--overwrite" or a.startswith(("--out=", "--resume=")):
            continue
        out.append(a)
    return "svdd " + shlex.join(out + ["--resume", str(path)])  # argv starts with the command


def cmd_compare(args) -> int:
    from .compare import run_comparison, summarize, write_outputs
    from .methods import METHODS
    from .tasks import get_task
    task = get_task(args.task)
    methods = dict(task.methods)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in wanted if m not in methods and m not in METHODS]
        if bad or not wanted:
            raise ValueError(f"unknown method(s) {bad or args.methods!r}; task methods: {list(methods)}; "
                             f"all: {sorted(METHODS)}")
        methods = {m: methods.get(m, {"method": m}) for m in wanted}
    overrides = _overrides(args)
    methods = _apply_overrides(methods, overrides)
    seeds = args.seeds if args.seeds else list(task.quick.get("seeds", [0, 1, 2]) if args.quick else [0, 1, 2])
    task_options = _task_options(args, task)
    out = _run_dir(args)
    spec = task.make(**task_options)
    n = args.num_samples if args.num_samples is not None else \
        (task.quick.get("num_samples", task.num_samples) if args.quick else task.num_samples)
    _check_methods(methods, spec)
    _compare_manifest(args, out, {"task": spec.config, "num_samples": n, "max_batch": args.max_batch,
                                  "reward_budget": args.reward_budget})
    rows = run_comparison(task, spec, methods, seeds=seeds, num_samples=n, max_batch=args.max_batch,
                          progress=_progress(args), cache=out / "runs", reward_budget=args.reward_budget)
    summary = summarize(rows)
    settings = {"task": task.name, "num_samples": n, "seeds": seeds, "max_batch": args.max_batch,
                "task_options": task_options, "method_overrides": overrides, "reward_budget": args.reward_budget}
    table = write_outputs(rows, summary, out, task, spec, settings)
    print(table)
    print(f"\nwritten: {out}/table.md, table.csv, rewards.csv, reward_hist.png, summary.json")
    return 0


def _compare_manifest(args, out: Path, config: dict) -> None:
    """A comparison's manifest: the settings every (method, seed) run in ``out/runs`` shares. A resume with other
    settings is an error naming them; methods and seeds may be added (each run is stored under its own key)."""
    import json

    from . import __version__
    from .runs import MANIFEST, _diff, _get, atomic_write, config_hash
    config = json.loads(json.dumps(config, default=str))
    path = out / MANIFEST
    if args.resume and path.exists():
        old = json.loads(path.read_text())
        if old.get("config_hash") != config_hash(config):
            keys = _diff(old.get("config"), config)
            then = ", ".join(f"{k}={_get(old.get('config'), k)!r}" for k in keys[:5])
            now = ", ".join(f"{k}={_get(config, k)!r}" for k in keys[:5])
            raise ValueError(f"{out} holds a comparison with other settings: {', '.join(keys)} differ(s) (the run: "
                             f"{then}; now: {now}). Resume it with the same settings, or start again with --overwrite")
    manifest = {"format": 1, "kind": "compare", "svdd_version": __version__, "config": config,
                "config_hash": config_hash(config), "command": _resume_command(args, out)}
    atomic_write(path, json.dumps(manifest, indent=2).encode())


def _check_methods(methods: dict[str, dict], spec) -> None:
    """Build every compared method's config and check it against the model and reward before the first run, so that
    a bad option fails before any work, not after the methods before it ran."""
    from .methods import get_method
    for label, entry in methods.items():
        opts = dict(entry)
        name = opts.pop("method")
        try:
            get_method(name, **spec.resolve(opts)).check(spec.model, spec.reward)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"method {label!r}: {exc}") from None


def cmd_frontier(args) -> int:
    from .compare import run_frontier
    from .methods.base import check_alpha
    from .tasks import get_task
    task = get_task(args.task)
    bad = sorted(set(_overrides(args)) - {"alpha"})
    if bad:
        raise ValueError(f"frontier sweeps M over --Ms and takes no other method option; got {bad}")
    if args.alpha is not None:
        check_alpha(args.alpha, positive=True)
    task_options = _task_options(args, task)
    _check_out(args.out)
    spec = task.make(**task_options)
    table = run_frontier(task, spec, args.Ms, num_samples=args.num_samples if args.num_samples is not None else 64,
                         seed=args.seed,
                         max_batch=args.max_batch, out=Path(args.out), progress=_progress(args), smc_alpha=args.alpha,
                         reward_budget=args.reward_budget)
    print(table)
    print(f"\nwritten: {args.out}/frontier.md, frontier.csv, frontier.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svdd", description="Reward-guided sampling from pre-trained diffusion models.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list registered tasks").set_defaults(func=cmd_tasks)

    def common(sp, out_required=True):
        sp.add_argument("--task", required=True, help="task name (see `svdd tasks`)")
        sp.add_argument("--num-samples", type=_positive, default=None, help="samples per method (default: the task's)")
        sp.add_argument("--max-batch", type=_positive, default=None,
                        help="most rows per network/value/reward call (default: 1024 on CPU, 8192 on a GPU)")
        sp.add_argument("--M", type=int, default=None, help="candidates per step M (see the method options rule)")
        sp.add_argument("--alpha", type=float, default=None, help="temperature alpha (see the method options rule)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any other method option, repeatable (see the method options rule)")
        sp.add_argument("--select-every", type=_positive, default=None,
                        help="select / weight only at every k-th step (same as --set select_every=K)")
        sp.add_argument("--class", dest="klass", default=None, help="target class of class-reward tasks (index or name)")
        sp.add_argument("--device", default=None, help="torch device of tasks that take one (e.g. cuda)")
        sp.add_argument("--task-option", action="append", metavar="KEY=VALUE", help="any other task option, repeatable")
        sp.add_argument("--reward-budget", type=_budget, default=None, metavar="CALLS",
                        help="most real reward calls per sample that guidance may spend (expensive rewards)")
        sp.add_argument("--out", required=out_required, help="output folder")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("sample", help="run one method on one task", description="Run one method on one task. "
                       "Method options rule: --M, --alpha and --set are options of --method; one it does not have "
                       "is an error naming it.")
    common(s, out_required=False)
    s.add_argument("--method", default="svdd", help="pretrained, best-of-n, svdd, smc, svdd-r, dps")
    s.add_argument("--chunk-size", type=_positive, default=256,
                   help="samples per chunk (default 256): each finished chunk is written to OUT/chunks at once, so an "
                        "interrupted run resumes from it; chunk k > 0 draws from a seed derived from (seed, k)")
    s.add_argument("--resume", metavar="OUT", default=None,
                   help="continue the run in OUT (same options): finished chunks are checked and kept, the rest run; "
                        "starts the run when OUT holds none yet")
    s.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where chunks run: this process (default; under torchrun, this rank's share) or Ray actors")
    s.add_argument("--workers", type=_positive, default=2, help="Ray actors (--engine ray)")
    s.add_argument("--address", default=None, help="Ray cluster address, e.g. auto (--engine ray; default: local)")
    s.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (--engine ray)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: network and value nets under bf16 autocast (rewards stay as they are)")
    s.add_argument("--no-auto-batch", dest="auto_batch", action="store_false",
                   help="chunks of exactly --max-batch rows instead of the fastest measured size")
    s.add_argument("--no-dedupe", dest="dedupe", action="store_false",
                   help="evaluate every candidate row, also identical ones (token models)")
    s.set_defaults(func=cmd_sample)
    c = sub.add_parser("compare", help="run several methods on one task and write a table and a histogram",
                       description="Run several methods on one task; write a table and a histogram. Method options "
                       "rule: --M, --alpha and --set KEY=VALUE override that option in every compared method that has "
                       "it (the task's entries included) and are skipped by methods without it; an option that no "
                       "compared method has is an error, and so is an override that would make two compared methods "
                       "identical (e.g. --alpha on dna-enhancer, whose 'smc' and 'smc-cold' differ only in alpha): "
                       "then pick one of them with --methods.")
    common(c, out_required=False)
    c.add_argument("--resume", metavar="OUT", default=None,
                   help="continue the comparison in OUT: its finished (method, seed) runs are reused, methods and "
                        "seeds may be added, other settings are an error; starts it when OUT holds none yet")
    c.add_argument("--overwrite", action="store_true", help="replace the comparison already in --out")
    c.add_argument("--methods", default=None, help="comma-separated subset (default: the task's list)")
    c.add_argument("--seeds", type=_int_list("seeds", 0, 2 ** 62), default=None,
                   help="comma-separated distinct seeds (default 0,1,2; --quick: the task's)")
    c.add_argument("--quick", action="store_true", help="the task's quick setting (fewer samples and seeds)")
    c.set_defaults(func=cmd_compare)
    f = sub.add_parser("frontier", help="reward versus cost for SVDD and Best-of-N at several M, and SMC",
                       description="Reward versus cost for SVDD and Best-of-N at each M of --Ms, and SMC. Method "
                       "options rule: --alpha sets SMC's alpha (default: the task's); --M and --set are errors.")
    common(f)
    f.add_argument("--Ms", type=_int_list("candidate counts", 1), default="1,2,5,10,20,40",
                   help="comma-separated candidate counts")
    f.add_argument("--seed", type=_seed, default=0)
    f.set_defaults(func=cmd_frontier)
    return p


def _interrupted(args) -> str:
    """One line on what an interrupted command kept and how to go on."""
    run = getattr(args, "_run", None)
    if args.command == "sample" and run is not None:
        done = len(run.finished())
        return (f"interrupted: {done} of {len(run.chunks)} chunk(s) finished and kept in {run.path}; resume with: "
                f"{run.manifest.get('command') or 'the same command with --resume ' + str(run.path)}")
    if args.command == "compare":
        out = Path(args.resume or args.out)
        done = sorted((out / "runs").glob("*.pt")) if (out / "runs").is_dir() else []
        return (f"interrupted: {len(done)} finished (method, seed) run(s) are kept in {out / 'runs'}; resume with: "
                f"{_resume_command(args, out)}")
    return f"interrupted: nothing was written to {args.out or args.resume}; rerun the command to start again"


_TERMINATED: list[bool] = []


def _terminate(signum, frame):
    _TERMINATED.append(True)
    raise KeyboardInterrupt  # SIGTERM ends a run the way Ctrl-C does: what finished is kept, one line says so


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    from .errors import RunError
    args = build_parser().parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input; anything else is a bug and keeps its traceback
        print(f"svdd: error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:  # a fault found during the run (a reward gone, a network returning NaN)
        print(f"svdd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"svdd: {_interrupted(args)}", file=sys.stderr)
        return 143 if _TERMINATED else 130  # the shells' 128 + signal number
    except BrokenPipeError:  # e.g. `svdd tasks | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
