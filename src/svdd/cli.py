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


def cmd_sample(args) -> int:
    import json

    import torch

    from . import sample
    from .methods import METHODS
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
    _check_out(args.out)
    spec = task.make(**task_options)
    res = sample(spec.model, spec.reward, args.method,
                 num_samples=args.num_samples if args.num_samples is not None else task.num_samples,
                 seed=args.seed, max_batch=args.max_batch, progress=_progress(args), reward_budget=args.reward_budget,
                 precision=args.precision, auto_batch=args.auto_batch, dedupe=args.dedupe, **spec.resolve(opts))
    out = res.save(args.out)
    run = json.loads((out / "run.json").read_text())
    run["task"] = spec.config
    (out / "run.json").write_text(json.dumps(run, indent=2, default=str))
    if spec.write_samples is not None:
        rewards = {spec.reward.name: res.rewards}
        if spec.eval_reward is not None:
            with torch.no_grad():
                rewards[spec.eval_reward.name] = spec.eval_reward(res.samples)
        spec.write_samples(out, res.samples, rewards)
    if spec.decode is not None:
        with open(out / "samples.txt", "w") as f:
            for s, r in zip(spec.decode(res.samples), res.rewards.tolist()):
                f.write(f"{s}\t{r:.6g}\n")
    s = res.summary()
    c = s["cost_per_sample"]
    print(f"{args.method} on {task.name}: {s['num_samples']} samples, reward median {s['reward_median']:.4f}, "
          f"p90 {s['reward_p90']:.4f}; per sample: {c['network_evals']:.1f} network evals, "
          f"{c['reward_evals']:.1f} reward evals ({c['reward_calls']:.1f} reward calls, of which {c['stored_hits']:.1f} were "
          f"answered by earlier runs; {c['cache_hits']:.1f} repeats answered by the cache; {c['reward_seconds']:.3g} s "
          f"in the reward); written to {out}")
    return 0


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
    _check_out(args.out)
    spec = task.make(**task_options)
    n = args.num_samples if args.num_samples is not None else \
        (task.quick.get("num_samples", task.num_samples) if args.quick else task.num_samples)
    _check_methods(methods, spec)
    rows = run_comparison(task, spec, methods, seeds=seeds, num_samples=n, max_batch=args.max_batch,
                          progress=_progress(args), cache=Path(args.out) / "runs", reward_budget=args.reward_budget)
    summary = summarize(rows)
    settings = {"task": task.name, "num_samples": n, "seeds": seeds, "max_batch": args.max_batch,
                "task_options": task_options, "method_overrides": overrides, "reward_budget": args.reward_budget}
    table = write_outputs(rows, summary, Path(args.out), task, spec, settings)
    print(table)
    print(f"\nwritten: {args.out}/table.md, table.csv, rewards.csv, reward_hist.png, summary.json")
    return 0


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

    def common(sp):
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
        sp.add_argument("--out", required=True, help="output folder")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("sample", help="run one method on one task", description="Run one method on one task. "
                       "Method options rule: --M, --alpha and --set are options of --method; one it does not have "
                       "is an error naming it.")
    common(s)
    s.add_argument("--method", default="svdd", help="pretrained, best-of-n, svdd, smc, svdd-r, dps")
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
    common(c)
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
    if args.command == "compare":
        done = sorted((Path(args.out) / "runs").glob("*.pt")) if Path(args.out, "runs").is_dir() else []
        return (f"interrupted: {len(done)} finished (method, seed) run(s) are kept in {Path(args.out) / 'runs'}; "
                "rerun the same command to resume from them")
    return f"interrupted: nothing was written to {args.out}; rerun the command to start again"


def main(argv: list[str] | None = None) -> int:
    from .errors import RunError
    args = build_parser().parse_args(argv)
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
        return 130
    except BrokenPipeError:  # e.g. `svdd tasks | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
