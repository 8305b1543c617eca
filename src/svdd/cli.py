"""Command line: ``svdd tasks``, ``sample``, ``compare``, ``frontier``, ``report``, ``rerun``, ``train``.

`sample`, `compare` and `frontier` describe their runs as `svdd.spec.RunSpec` values and run them on one executor
(`svdd.runs.execute`): the same store, backends (local, torchrun, Ray), settings, resume and lock for all three."""

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


def _compute_budget(text: str) -> str:
    from .budget import as_budget
    try:
        as_budget(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _number_list(what: str):
    def parse(text: str) -> list[float]:
        try:
            values = [float(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not values or any(not 0 < v < float("inf") for v in values) or len(set(values)) < len(values):
            raise argparse.ArgumentTypeError(f"expected distinct positive {what}, got {text!r}")
        return sorted(values)
    return parse


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


def _get_task(args):
    """The registered task of --task, or the folder task of --prior / --oracle (/ --eval-oracle / --value)."""
    from .tasks import get_task
    folders = {k: getattr(args, k, None) for k in ("prior", "oracle", "eval_oracle", "value")}
    if not any(folders.values()):
        if not args.task:
            raise ValueError(f"{args.command} needs --task NAME (see `svdd tasks`) or --prior DIR --oracle DIR")
        return get_task(args.task)
    if args.task:
        raise ValueError(f"--task {args.task!r} and --prior/--oracle name two tasks: give one of them")
    if not (folders["prior"] and folders["oracle"]):
        raise ValueError("a folder task needs both --prior DIR and --oracle DIR (from `svdd train prior` and "
                         "`svdd train oracle`)")
    from .tasks.folder import folder_task
    from .tasks.folder.train import read_info
    for k, kind in (("prior", "prior"), ("oracle", "oracle"), ("eval_oracle", "oracle"), ("value", "value")):
        if folders[k]:
            read_info(folders[k], kind)  # a missing or unfinished folder is named before any work
    return folder_task(**folders)


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
    from .methods.base import method_class, option_names
    return option_names(method_class(method))


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
    """Whether ``path`` holds output of ``svdd <command>`` (its manifest; also an older compare or frontier folder
    without one). Output of another command is an error naming it."""
    import json

    from .store import MANIFEST
    if (path / MANIFEST).exists():
        try:
            kind = json.loads((path / MANIFEST).read_text()).get("kind", "sample")
        except ValueError:
            kind = command  # unreadable: the command's own checks name it
        if kind != command:
            raise ValueError(f"{path} holds the output of `svdd {kind}`, not of `svdd {command}`; pick another folder")
        return True
    old = {"compare": ("runs", "summary.json"), "frontier": ("frontier.md",)}.get(command, ())
    return any((path / name).exists() for name in old)


def _run_dir(args) -> Path:
    """The run folder of `sample` / `compare`: --out, or the folder of --resume (the same one when both are given);
    a non-empty --out needs --resume or --overwrite, and --overwrite only replaces svdd's own output."""
    if args.resume and args.out and Path(args.resume).resolve() != Path(args.out).resolve():
        raise ValueError(f"--resume {args.resume!r} and --out {args.out!r} name different folders; give one of them")
    if not (args.resume or args.out):
        raise ValueError(f"{args.command} needs --out OUT (a new run) or --resume OUT (continue the run in OUT)")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: give one of them")
    from .store import clear, entries, lock_folder
    path = Path(args.resume or args.out)
    if args.resume and not _is_run_folder(path, args.command) and entries(path):
        raise ValueError(f"--resume {str(path)!r}: no svdd {args.command} run there, and the folder is not empty")
    if not args.resume and entries(path):
        if not args.overwrite:
            raise ValueError(f"--out {str(path)!r} is not empty: pass --resume {path} to continue the run in it, or "
                             "--overwrite to replace it")
        if not _is_run_folder(path, args.command):
            raise ValueError(f"--out {str(path)!r} is not empty and holds no svdd {args.command} run: --overwrite only "
                             "replaces svdd's own output; pick another --out")
    _check_out(str(path))
    lock_folder(path)  # one writer at a time (held until the command ends)
    if not args.resume and args.overwrite and args.command != "sample":  # sample's folder is replaced by RunFolder.open
        clear(path)
    return path


def _spec_task(args, task):
    """What a spec names as its task: the registered name, or the folder task's folders (absolute paths)."""
    if not getattr(args, "prior", None):
        return task.name
    return {k: str(Path(getattr(args, k)).resolve()) for k in ("prior", "oracle", "eval_oracle", "value")
            if getattr(args, k, None)}


def _settings(args):
    from .spec import RunSettings
    return RunSettings(max_batch=args.max_batch, reward_budget=args.reward_budget, precision=args.precision,
                       auto_batch=args.auto_batch, dedupe=args.dedupe, budget=args.budget)


def _backend(args):
    from .distributed import Backend
    if args.engine is not None:
        print("svdd: warning: --engine is now --backend (the old flag goes in the next release)", file=sys.stderr)
    kind = args.backend or args.engine or "local"
    return Backend(kind, workers=args.workers, address=args.address, gpus_per_worker=args.gpus_per_worker,
                   reward_workers=args.reward_workers, cpus_per_reward_worker=args.cpus_per_reward_worker,
                   write_on=args.write_on)


def _leader_dir(args) -> Path:
    """The output folder, checked and locked by the process that owns it (not by torchrun ranks other than 0)."""
    from .distributed import torchrun_world
    world = torchrun_world()
    return _run_dir(args) if world is None or world[0] == 0 else Path(args.resume or args.out)


def cmd_sample(args) -> int:
    from .runs import sample_run
    from .spec import RunSpec
    task = _get_task(args)
    options = _overrides(args)
    if args.init_samples:  # a warm start: the user's sequences / molecules, refined (method refine)
        options["init_samples"] = str(Path(args.init_samples).resolve())
    RunSpec(_spec_task(args, task), args.method, options, 1)  # method and options checked before the folder is made
    task_options = _task_options(args, task)
    backend, settings = _backend(args), _settings(args)
    path = _leader_dir(args)

    def opened(run) -> None:
        args._run = run

    res = sample_run(path, _spec_task(args, task), args.method, num_samples=args.num_samples, seed=args.seed,
                     chunk_size=args.chunk_size or 256, task_options=task_options, options=options, backend=backend,
                     resume=bool(args.resume), overwrite=args.overwrite, progress=_progress(args),
                     command=_resume_command(args, path), on_open=opened,
                     **{k: v for k, v in settings.to_dict().items() if k != "batch_sizes"})
    if res is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    summary, run = res.summary(), res.config["run"]
    c = summary["cost_per_sample"]
    earlier = run["chunks"] - run["chunks_run_now"]
    resumed = f" ({earlier} of {run['chunks']} chunks from the earlier run)" if earlier else ""
    print(f"{args.method} on {task.name}: {summary['num_samples']} samples{resumed}, reward median "
          f"{summary['reward_median']:.4f}, p90 {summary['reward_p90']:.4f}; per sample: {c['network_evals']:.1f} network "
          f"evals, {c['reward_evals']:.1f} reward evals ({c['reward_calls']:.1f} reward calls, of which "
          f"{c['stored_hits']:.1f} were answered by earlier runs; {c['cache_hits']:.1f} repeats answered by the cache; "
          f"{c['reward_seconds']:.3g} s in the reward); written to {path}")
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
    from .compare import comparison
    from .methods import METHODS
    from .methods.base import ALIASES
    task = _get_task(args)
    methods = dict(task.methods)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in wanted if m not in methods and m not in METHODS and m not in ALIASES]
        if bad or not wanted:
            raise ValueError(f"unknown method(s) {bad or args.methods!r}; task methods: {list(methods)}; "
                             f"all: {sorted(METHODS)}")
        methods = {m: methods.get(m, {"method": m}) for m in wanted}
    overrides = _overrides(args)
    methods = _apply_overrides(methods, overrides)
    if args.budget:  # every method that takes a budget runs under it (`svdd.compare` leaves it off the others)
        methods = {k: {**v, "budget": args.budget} for k, v in methods.items()}
    seeds = args.seeds if args.seeds else list(task.quick.get("seeds", [0, 1, 2]) if args.quick else [0, 1, 2])
    task_options = _task_options(args, task)
    n = args.num_samples if args.num_samples is not None else \
        (task.quick.get("num_samples", task.num_samples) if args.quick else task.num_samples)
    settings = {"task": task.name, "num_samples": n, "seeds": seeds, "max_batch": args.max_batch,
                "task_options": task_options, "method_overrides": overrides, "reward_budget": args.reward_budget}
    study = comparison(_spec_task(args, task), methods, seeds=seeds, num_samples=n, settings=_settings(args),
                       task_options=task_options, chunk_size=args.chunk_size, info={"settings": settings})
    return _run_study(args, study)


def _run_study(args, study) -> int:
    """Run a comparison's or frontier's specs on the chosen backend into the output folder, then its report."""
    from .compare import run_study
    from .job import ChunkJob
    backend = _backend(args)
    tasks: dict = {}
    for e in study.entries:  # every spec's method and options against the task, before any run or folder
        try:
            ChunkJob(e["spec"], tasks=tasks).method()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"method {e['label']!r}: {exc}") from None
    out = _leader_dir(args)

    def opened(run) -> None:
        args._run = run

    got = run_study(out, study, backend=backend, progress=_progress(args), command=_resume_command(args, out),
                    on_open=opened, tasks=tasks)
    if got is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    table, written = got
    print(table)
    print(f"\nwritten: {out}/{', '.join(written)}")
    return 0


def cmd_report(args) -> int:
    """`svdd report OUT`: every table and figure of a comparison or frontier again, from its store alone."""
    from .report import Hooks, read_study, report
    out = Path(args.folder)
    study = read_study(out)
    hooks = Hooks()
    if not args.tables_only:  # the task draws its sample files and figure (it is built; nothing is sampled)
        from .job import ChunkJob
        from .spec import RunSpec
        try:
            first = next(e for e in study["runs"] if "spec" in e)
            task = ChunkJob(RunSpec.from_dict(first["spec"])).task
            hooks = Hooks(task.write_samples, task.figure)
        except Exception as exc:  # tables need no task: say why the figures are missing and go on
            print(f"svdd: warning: the task could not be built ({type(exc).__name__}: {exc}); tables only",
                  file=sys.stderr)
    table, written = report(out, hooks)
    print(table)
    print(f"\nwritten: {out}/{', '.join(written)}")
    return 0


def cmd_rerun(args) -> int:
    """`svdd rerun RUN --out NEW`: the run in RUN again from its spec alone; says whether the samples are equal."""
    from .runs import rerun
    if not args.out:
        raise ValueError("rerun writes a new run: give --out NEW (and --overwrite to replace a run there)")
    out = _run_dir(args)
    res = rerun(args.folder, out, progress=_progress(args), overwrite=args.overwrite, backend=_backend(args))
    same = res.config["rerun"]["same_samples"]
    word = {True: "the same samples as", False: "OTHER samples than", None: "samples; there are none to compare in"}
    print(f"rerun of {args.folder}: {len(res.samples)} {word[same]} the stored run; written to {out}")
    return 0 if same is not False else 1


def cmd_train(args) -> int:
    """`svdd train prior|oracle|value`: the folders of a folder task, from a user's FASTA / CSV."""
    from .tasks.folder import train
    command = _resume_command(args, Path(args.out)).replace(" --resume ", " --out ")
    common = {"overwrite": args.overwrite, "progress": _progress(args), "command": command}
    if args.what == "prior":
        rec = train.train_prior(args.fasta, args.alphabet, args.out, length=args.length, heldout=args.heldout,
                                seed=args.seed, minutes=args.minutes, batch=args.batch, num_steps=args.num_steps,
                                resume=args.resume, **common)
        print(f"prior: {rec['steps']} steps in {rec['wall_minutes']} min; held-out NELBO "
              f"{rec['val_nelbo_nats_per_seq']} nats/seq (uniform: {rec['val_nelbo_uniform_nats_per_seq']}); "
              f"sampled vs held-out k-mers: {rec['sample_kmers']}; written to {args.out}")
    elif args.what == "oracle":
        alphabet = args.alphabet
        if alphabet is None and args.prior:
            from .tasks.folder.train import read_info
            alphabet = read_info(args.prior, "prior")["alphabet"]["letters"]
        if alphabet is None:
            raise ValueError("train oracle needs --alphabet LETTERS (in the prior's order) or --prior DIR")
        rec = train.train_oracle(args.csv, args.sequence_column, args.target, args.out, alphabet=alphabet,
                                 kind=args.task, split_column=args.split_column, heldout=args.heldout,
                                 seed=args.seed, epochs=args.epochs, **common)
        print(f"oracle for {args.target!r}: held-out {rec['heldout']} ({rec['data']}); written to {args.out}")
    else:
        rec = train.train_value(args.prior, args.oracle, args.out, rollouts=args.rollouts, epochs=args.epochs,
                                seed=args.seed, num_steps=args.num_steps, **common)
        print(f"value net: validation correlation with the final reward by time {rec['val_corr_by_time']}; "
              f"written to {args.out}")
    return 0


def cmd_frontier(args) -> int:
    from .compare import budget_families, budget_frontier, frontier
    from .methods.base import check_alpha
    task = _get_task(args)
    bad = sorted(set(_overrides(args)) - {"alpha"})
    if args.budgets and (bad or args.budget or args.reward_budget is not None):
        raise ValueError("frontier --budgets sets each method's options and budget itself; it takes --alpha "
                         f"but not {bad or '--budget / --reward-budget'}")
    if bad:
        raise ValueError(f"frontier sweeps M over --Ms and takes no other method option; got {bad}")
    if args.budget:
        raise ValueError("frontier sweeps M over --Ms and takes no --budget; use --budgets (every method at each "
                         "budget) or --reward-budget")
    if args.alpha is not None:
        check_alpha(args.alpha, positive=True)  # SMC, which every frontier has, needs alpha > 0
    task_options = _task_options(args, task)
    built = task.make(**task_options)  # its step count and value net decide the plan
    smc_alpha = task.methods.get("smc", {}).get("alpha", 1.0)
    common = {"settings": _settings(args), "task_options": task_options, "chunk_size": args.chunk_size,
              "smc_alpha": smc_alpha, "value_net": built.value_net is not None,
              "overrides": {} if args.alpha is None else {"alpha": args.alpha}}
    if args.budgets:  # every method at the same budgets
        families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else list(budget_families())
        study = budget_frontier(_spec_task(args, task), args.budgets, families, seeds=args.seeds or [0, 1, 2],
                                num_samples=args.num_samples or 32, num_steps=built.model.num_steps,
                                kind=args.budget_kind, **common)
    else:
        study = frontier(_spec_task(args, task), args.Ms, seed=args.seed, num_samples=args.num_samples or 64,
                         **common)
    return _run_study(args, study)


def build_parser() -> argparse.ArgumentParser:
    from .compare import budget_families
    from .methods import METHODS
    from .methods.base import ALIASES
    p = argparse.ArgumentParser(prog="svdd", description="Reward-guided sampling from pre-trained diffusion models.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list registered tasks").set_defaults(func=cmd_tasks)

    def common(sp, out_required=True):
        sp.add_argument("--task", default=None, help="task name (see `svdd tasks`); or a folder task: --prior/--oracle")
        sp.add_argument("--prior", default=None, help="a folder task's prior (from `svdd train prior`)")
        sp.add_argument("--oracle", default=None, help="a folder task's guidance oracle (from `svdd train oracle`)")
        sp.add_argument("--eval-oracle", default=None, help="a folder task's held-out evaluation oracle")
        sp.add_argument("--value", default=None, help="a folder task's value net (from `svdd train value`; SVDD-MC)")
        sp.add_argument("--num-samples", type=_positive, default=None, help="samples per method (default: the task's)")
        sp.add_argument("--max-batch", type=_positive, default=None,
                        help="most rows per network/value/reward call (default: 1024 on CPU, 8192 on a GPU; more for "
                             "small rows, e.g. 32768 for toy-gmm)")
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
        sp.add_argument("--budget", type=_compute_budget, default=None, metavar="KIND=N[,KIND=N]",
                        help="most compute per sample the whole run spends, final scores included: reward_calls, "
                             "network_calls (denoiser + value net rows) and/or seconds, e.g. reward_calls=40")
        sp.add_argument("--out", required=out_required, help="output folder")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        execution(sp)

    def execution(sp, chunk_help="samples per chunk of each run (default: one chunk per run)"):
        """How runs execute: the same flags on sample, compare, frontier and rerun."""
        sp.add_argument("--chunk-size", type=_positive, default=None,
                        help=chunk_help + "; each finished chunk is written at once, so an interrupted run resumes "
                        "from it; chunk k > 0 draws from a seed derived from (seed, k)")
        sp.add_argument("--backend", choices=("local", "ray"), default=None,
                        help="where chunks run: this process (default; under torchrun, this rank's share) or Ray "
                             "actors; a comparison's runs share them")
        sp.add_argument("--engine", choices=("local", "ray"), default=None, help=argparse.SUPPRESS)  # old name
        sp.add_argument("--workers", type=_positive, default=2, help="Ray actors (--backend ray)")
        sp.add_argument("--address", default=None, help="Ray cluster address, e.g. auto (--backend ray; default: local)")
        sp.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (--backend ray)")
        sp.add_argument("--reward-workers", type=_int_at_least(0), default=0,
                        help="evaluate the reward in this many separate Ray actors shared by the model workers "
                             "(--backend ray; for a slow reward such as docking); 0: each model worker calls its own")
        sp.add_argument("--cpus-per-reward-worker", type=float, default=1.0, help="CPUs per reward actor (--backend ray)")
        sp.add_argument("--write-on", choices=("workers", "driver"), default="workers",
                        help="who writes the chunk files (--backend ray): the workers (default; OUT on a file system "
                             "they all see) or this driver (workers on machines without OUT)")
        if sp.prog.split()[-1] == "rerun":
            return
        sp.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: network and value nets under bf16 autocast (rewards stay as they are)")
        sp.add_argument("--no-auto-batch", dest="auto_batch", action="store_false",
                        help="chunks of exactly --max-batch rows instead of the fastest measured size")
        sp.add_argument("--no-dedupe", dest="dedupe", action="store_false",
                        help="evaluate every candidate row, also identical ones (token models)")

    s = sub.add_parser("sample", help="run one method on one task", description="Run one method on one task. "
                       "Method options rule: --M, --alpha and --set are options of --method; one it does not have "
                       "is an error naming it.")
    common(s, out_required=False)
    s.add_argument("--method", default="svdd", help="one of: " + ", ".join(METHODS) + "; or an alias: "
                   + ", ".join(f"{a} (= {n}" + "".join(f", {k}={v!r}" for k, v in o.items()) + ")"
                               for a, (n, o) in ALIASES.items()))
    s.add_argument("--init-samples", default=None, metavar="FILE",
                   help="--method refine: start from these samples instead of noise (the task's format: FASTA for "
                        "sequence tasks, one SMILES per line for molecules); one refined sample per given one")
    s.add_argument("--resume", metavar="OUT", default=None,
                   help="continue the run in OUT (same options): finished chunks are checked and kept, the rest run; "
                        "starts the run when OUT holds none yet")
    s.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(func=cmd_sample)  # --chunk-size: 256 samples per chunk when not given
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
                       "options rule: as on compare, --alpha sets alpha in every method of the frontier that has it "
                       "(SVDD's selection temperature, SMC's; default: each method's own, SMC the task's); --M and "
                       "--set are errors (the frontier sets them).")
    common(f, out_required=False)
    f.add_argument("--resume", metavar="OUT", default=None,
                   help="continue the frontier in OUT: its finished runs are reused, M may be added, other settings "
                        "are an error; starts it when OUT holds none yet")
    f.add_argument("--overwrite", action="store_true", help="replace the frontier already in --out")
    f.add_argument("--Ms", type=_int_list("candidate counts", 1), default="1,2,5,10,20,40",
                   help="comma-separated candidate counts")
    f.add_argument("--seed", type=_seed, default=0)
    f.add_argument("--budgets", type=_number_list("budgets"), default=None,
                   help="instead of --Ms: every method of --families at each of these budgets per sample (of "
                        "--budget-kind), over --seeds")
    f.add_argument("--budget-kind", choices=("reward_calls", "network_calls"), default="reward_calls",
                   help="what --budgets count: reward calls (final scores included) or network rows")
    f.add_argument("--families", default=None,
                   help="methods at equal budgets, comma-separated (default: all of " + ", ".join(budget_families())
                        + ")")
    f.add_argument("--seeds", type=_int_list("seeds", 0, 2 ** 62), default=None,
                   help="comma-separated seeds of --budgets (default 0,1,2)")
    f.set_defaults(func=cmd_frontier)
    r = sub.add_parser("report", help="write the tables and figures of a comparison or frontier again, from its runs",
                       description="Every table and figure of `svdd compare` / `svdd frontier` output, from its run "
                       "folders alone (nothing is sampled).")
    r.add_argument("folder", help="the output folder of svdd compare or svdd frontier")
    r.add_argument("--tables-only", action="store_true",
                   help="tables, CSVs and plots only (no sample files or sample figure: the task is not built)")
    r.set_defaults(func=cmd_report, resume=None, out=None)
    rr = sub.add_parser("rerun", help="run a stored run again from its run.json alone (same samples on CPU)",
                        description="Rebuild the run in FOLDER from its spec (run.json or manifest.json) -- task, "
                        "method and options, settings, seed, sizes, the chunk sizes it used -- run it into --out and "
                        "say whether the samples equal the stored ones (exit status 1 when they differ).")
    rr.add_argument("folder", help="a run folder of svdd sample (or one run of a comparison: OUT/runs/<run>)")
    rr.add_argument("--out", required=True, help="the new run folder")
    rr.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    rr.add_argument("--quiet", action="store_true", help="no progress bars")
    execution(rr)
    rr.set_defaults(func=cmd_rerun, resume=None)
    t = sub.add_parser("train", help="train a prior, an oracle or a value net from your own sequences",
                       description="Train the folders of a folder task from your own FASTA / CSV files; then "
                       "`svdd sample|compare|frontier --prior DIR --oracle DIR [--eval-oracle DIR] [--value DIR]`.")
    ts = t.add_subparsers(dest="what", required=True)

    def train_common(sp, what):
        sp.add_argument("--out", required=True, help=f"folder for the {what} (weights, svdd.json, record)")
        sp.add_argument("--seed", type=_seed, default=0)
        sp.add_argument("--overwrite", action="store_true", help=f"replace the {what} already in --out")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.set_defaults(func=cmd_train, resume=False)

    tp = ts.add_parser("prior", help="masked diffusion prior from a FASTA file")
    tp.add_argument("--fasta", required=True, help="training sequences (any alphabet; fixed or variable length)")
    tp.add_argument("--alphabet", required=True, help="the letters, in token order (e.g. ACGU)")
    tp.add_argument("--length", type=_positive, default=None, help="pad to this length (default: the longest record)")
    tp.add_argument("--heldout", type=float, default=0.05, help="held-out fraction for the validation NELBO")
    tp.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    tp.add_argument("--batch", type=_positive, default=128)
    tp.add_argument("--num-steps", type=_positive, default=50, help="denoising steps of the sampler (default 50)")
    tp.add_argument("--resume", action="store_true", help="continue an interrupted training in --out")
    train_common(tp, "prior")
    to = ts.add_parser("oracle", help="reward oracle (CNN) from a CSV of sequences and measurements")
    to.add_argument("--csv", required=True)
    to.add_argument("--sequence-column", required=True)
    to.add_argument("--target", required=True, help="the measurement column")
    to.add_argument("--task", choices=("regression", "classification"), default="regression")
    to.add_argument("--alphabet", default=None, help="the letters in the prior's order (or give --prior)")
    to.add_argument("--prior", default=None, help="take the alphabet from this prior folder")
    to.add_argument("--split-column", default=None,
                    help="rows whose value here is test/heldout/valid are held out (default: a random --heldout)")
    to.add_argument("--heldout", type=float, default=0.1, help="random held-out fraction (no --split-column)")
    to.add_argument("--epochs", type=_positive, default=30)
    train_common(to, "oracle")
    tv = ts.add_parser("value", help="SVDD-MC value net from rollouts of a prior scored by an oracle")
    tv.add_argument("--prior", required=True)
    tv.add_argument("--oracle", required=True)
    tv.add_argument("--rollouts", type=_positive, default=1024)
    tv.add_argument("--epochs", type=_positive, default=20)
    tv.add_argument("--num-steps", type=_positive, default=None, help="denoising steps (default: the prior's)")
    train_common(tv, "value net")
    return p


def _interrupted(args) -> str:
    """One line on what an interrupted command kept and how to go on."""
    run = getattr(args, "_run", None)
    if args.command == "sample" and run is not None:
        done = len(run.finished())
        return (f"interrupted: {done} of {len(run.chunks)} chunk(s) finished and kept in {run.path}; resume with: "
                f"{run.manifest.get('command') or 'the same command with --resume ' + str(run.path)}")
    if args.command in ("compare", "frontier"):
        out = Path(args.resume or args.out)
        done = list(out.glob("runs/*/chunks/*.sha256"))
        return (f"interrupted: {len(done)} finished chunk(s) of its runs are kept in {out / 'runs'}; resume with: "
                f"{_resume_command(args, out)}")
    if args.command == "train" and args.what == "prior":
        return (f"interrupted: the last checkpoint is kept in {args.out}; continue with the same command and "
                "--resume")
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
    from .runs import unlock_folder
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
    finally:
        unlock_folder()


if __name__ == "__main__":
    sys.exit(main())
