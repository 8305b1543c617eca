"""Run several methods on one task over seeds and write a table (Markdown + CSV) and a reward histogram (PNG)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api import sample
from .tasks import Task, TaskSpec

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def interval(per_seed: list[float], pooled: np.ndarray, q: float, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): mean over seeds with a t 95% interval; one seed: percentile bootstrap over samples."""
    x = np.asarray(per_seed, dtype=float)
    if x.size >= 2:
        m, h = x.mean(), T95.get(x.size - 1, 1.96) * x.std(ddof=1) / math.sqrt(x.size)
        return float(m), float(m - h), float(m + h)
    rng = np.random.default_rng(seed)
    boots = np.quantile(rng.choice(pooled, size=(1000, pooled.size)), q, axis=1)
    return float(x[0]), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def diversity(x: torch.Tensor, max_pairs_of: int = 512) -> float:
    """Discrete: 1 − mean pairwise identity. Continuous: mean pairwise Euclidean distance."""
    x = x[:max_pairs_of]
    n = x.shape[0]
    if n < 2:
        return float("nan")
    if not x.is_floating_point():
        same = (x.unsqueeze(0) == x.unsqueeze(1)).float().mean(-1)
        return float(1 - (same.sum() - n) / (n * (n - 1)))
    d = torch.cdist(x.reshape(n, -1).double(), x.reshape(n, -1).double())
    return float(d.sum() / (n * (n - 1)))


@dataclass
class MethodRow:
    label: str
    options: dict[str, Any]
    rewards: list[np.ndarray] = field(default_factory=list)
    eval_rewards: list[np.ndarray] = field(default_factory=list)
    naturalness: list[np.ndarray] = field(default_factory=list)
    diversity: list[float] = field(default_factory=list)
    cost: list[dict[str, float]] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    first_samples: Any = None  # samples of the first seed (written out by `write_outputs`)
    first_eval: Any = None
    samples: list[Any] = field(default_factory=list)  # samples per seed, aligned with the seeds (None if not kept)


def _q(a: np.ndarray, q: float) -> float:
    a = a[~np.isnan(a)]
    return float(np.quantile(a, q)) if a.size else float("nan")


def check_methods(methods: dict[str, dict[str, Any]], spec: TaskSpec) -> None:
    """Build every compared method's config and check it against the model and reward before the first run, so that
    a bad option fails before any work, not after the methods before it ran (``budget`` is a run setting, not an
    option)."""
    from .methods import get_method
    for label, entry in methods.items():
        opts = {k: v for k, v in entry.items() if k not in ("method", "budget")}
        try:
            get_method(entry["method"], **spec.resolve(opts)).check(spec.model, spec.reward)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"method {label!r}: {exc}") from None


def run_comparison(task: Task, spec: TaskSpec, methods: dict[str, dict[str, Any]], *, seeds=(0,), num_samples: int = 64,
                   max_batch: int | None = None, progress: bool = False, cache: Path | None = None,
                   reward_budget: float | None = None) -> list[MethodRow]:
    """Run every method at every seed. With ``cache``, each finished (method, seed) run is stored there and reused
    by a later call with the same options, so an interrupted comparison resumes where it stopped."""
    from tqdm.auto import tqdm
    rows = []
    bar = tqdm(total=len(methods) * len(seeds), desc=f"compare {task.name}", disable=not progress)
    for label, opts in methods.items():
        opts = dict(opts)
        name = opts.pop("method")
        row = MethodRow(label, {"method": name, **_plain(opts)})
        for seed in seeds:
            path = cache / f"{label}-seed{seed}.pt" if cache is not None else None
            rec = _stored_run(spec, name, opts, seed, num_samples, max_batch, progress, reward_budget, path)
            row.rewards.append(rec["rewards"])
            if rec["eval_rewards"] is not None:
                row.eval_rewards.append(rec["eval_rewards"])
            if rec["naturalness"] is not None:
                row.naturalness.append(rec["naturalness"])
            row.diversity.append(rec["diversity"])
            row.cost.append(rec["cost"])
            row.metrics.append(rec["metrics"])
            if row.first_samples is None:
                row.first_samples, row.first_eval = rec.get("samples"), rec["eval_rewards"]
            row.samples.append(rec.get("samples"))
            bar.update()
        rows.append(row)
    bar.close()
    if spec.reference is not None:
        rows.append(_reference_row(spec, seeds, num_samples))
    return rows


def _reference_row(spec: TaskSpec, seeds, num_samples: int) -> MethodRow:
    """The same statistics for real data (e.g. random test images): where the data itself sits, at zero cost."""
    row = MethodRow("test-data", {"method": "real test images"})
    for seed in seeds:
        x = spec.reference(num_samples, seed).to(getattr(spec.model, "device", "cpu"))  # where the rewards live
        with torch.no_grad():
            row.rewards.append(torch.as_tensor(spec.reward(x)).double().cpu().numpy())
            if spec.eval_reward is not None:
                row.eval_rewards.append(torch.as_tensor(spec.eval_reward(x)).double().cpu().numpy())
        row.diversity.append(diversity(x))
        row.cost.append({"network_evals": 0.0, "reward_evals": 0.0, "value_evals": 0.0, "wall_seconds": 0.0})
        row.metrics.append({k: f(x) for k, f in spec.set_metrics.items()})
        if row.first_samples is None:
            row.first_samples, row.first_eval = x.cpu(), (row.eval_rewards[0] if row.eval_rewards else None)
    return row


def _plain(opts: dict[str, Any]) -> dict[str, Any]:
    """Options as JSON-able values (objects such as value nets by their type name)."""
    plain = (int, float, str, bool, type(None), list, tuple)
    return {k: (v if isinstance(v, plain) else type(v).__name__) for k, v in opts.items()}


_ARRAYS = ("rewards", "eval_rewards", "naturalness")  # numpy arrays of a run record, stored as tensors


def _save_run(rec: dict, path: Path) -> None:
    """A finished run, written atomically with tensors in place of arrays (loadable with ``weights_only=True``)."""
    import io

    from .runs import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: torch.from_numpy(v) if k in _ARRAYS and v is not None else v for k, v in rec.items()}, buf)
    atomic_write(path, buf.getvalue())


def _load_run(path: Path) -> dict | None:
    """A stored run (never unpickled: ``weights_only=True``), or None when it cannot be read."""
    try:
        rec = torch.load(path, weights_only=True)
    except Exception:  # an unreadable or old-format file: run again
        return None
    return {k: v.numpy() if k in _ARRAYS and v is not None else v for k, v in rec.items()}


def _stored_run(spec: TaskSpec, name: str, opts: dict, seed: int, num_samples: int, max_batch: int | None,
                progress: bool, reward_budget: float | None, path: Path | None, full: bool = True) -> dict:
    """`_one_run`, reused from ``path`` when a run with the same key (method options, seed, sizes, budget, the task's
    config with its weight hashes) finished there before; a new run is stored there as soon as it ends."""
    key = json.dumps({"options": {"method": name, **_plain(opts)}, "seed": seed, "num_samples": num_samples,
                      "reward": getattr(spec.reward, "name", None), "steps": getattr(spec.model, "num_steps", None),
                      "reward_budget": reward_budget,
                      "task": spec.config},  # the task's weights hashes: new networks never reuse old runs
                     sort_keys=True, default=str)
    rec = _load_run(path) if path is not None and path.exists() else None
    if rec is None or rec.get("key") != key:
        rec = _one_run(spec, name, opts, seed, num_samples, max_batch, progress, full=full, reward_budget=reward_budget)
        rec["key"] = key
        if path is not None:
            _save_run(rec, path)
    elif full and rec.get("samples") is not None:  # a stored run: metrics are cheap functions of its samples
        rec["metrics"] = {k: f(rec["samples"]) for k, f in spec.set_metrics.items()}
    return rec


def _one_run(spec: TaskSpec, name: str, opts: dict, seed: int, num_samples: int, max_batch: int, progress: bool,
             full: bool = True, reward_budget: float | None = None) -> dict:
    """One run scored by both oracles; ``full`` adds naturalness, diversity and the task's set metrics."""
    from .methods import METHODS
    if not METHODS[name].honours_budget:  # e.g. DPS: runs unbudgeted (its calls are reported as they are)
        reward_budget = None
        opts = {k: v for k, v in opts.items() if k != "budget"}
    res = sample(spec.model, spec.reward, name, num_samples=num_samples, seed=seed, max_batch=max_batch,
                 progress=progress, reward_budget=reward_budget, **spec.resolve(opts))
    with torch.no_grad():
        ev = spec.eval_reward(res.samples) if spec.eval_reward is not None else None
        nat = spec.naturalness(res.samples) if full and spec.naturalness is not None else None
    rec = {"rewards": res.rewards.cpu().numpy(), "quantiles": res.reward_quantiles(),
           "eval_rewards": torch.as_tensor(ev).double().cpu().numpy() if ev is not None else None,
           "naturalness": nat.double().cpu().numpy() if nat is not None else None,
           "cost": res.cost.per_sample(), "samples": res.samples.cpu()}
    if full:
        rec["diversity"] = diversity(res.samples)
        rec["metrics"] = {k: f(res.samples) for k, f in spec.set_metrics.items()}
    return rec


def summarize(rows: list[MethodRow], naturalness_name: str = "naturalness") -> list[dict[str, Any]]:
    out = []
    for row in rows:
        d: dict[str, Any] = {"method": row.label}
        series = [("reward", row.rewards)] + ([("eval_reward", row.eval_rewards)] if row.eval_rewards else [])
        for key, per in series:
            pooled = np.concatenate(per)
            pooled = pooled[~np.isnan(pooled)]
            for qname, q in (("median", 0.5), ("p90", 0.9)):
                est, lo, hi = interval([_q(a, q) for a in per], pooled, q)
                d[f"{key}_{qname}"], d[f"{key}_{qname}_lo"], d[f"{key}_{qname}_hi"] = est, lo, hi
        if row.naturalness:
            d["naturalness_median"] = float(np.mean([np.median(a) for a in row.naturalness]))
        d["diversity"] = float(np.mean(row.diversity))
        for k in (row.metrics[0] if row.metrics else {}):
            d[f"metric_{k}"] = float(np.mean([m[k] for m in row.metrics]))
        for k in ("network_evals", "reward_evals", "value_evals", "wall_seconds", "reward_calls", "cache_hits",
                  "reward_seconds"):  # runs cached before the reward-call counters: real calls = evals
            d[f"{k}_per_sample"] = float(np.mean([c.get(k, c["reward_evals"] if k == "reward_calls" else 0.0)
                                                  for c in row.cost]))
        d["seeds"] = len(row.rewards)
        d["failed_rewards"] = int(sum(np.isnan(a).sum() for a in row.rewards))
        out.append(d)
    return out


def markdown_table(summary: list[dict[str, Any]], naturalness_name: str) -> str:
    has_eval = any("eval_reward_median" in d for d in summary)
    has_nat = any("naturalness_median" in d for d in summary)
    head = ["method", "reward median [95% CI]", "reward p90 [95% CI]"]
    if has_eval:
        head += ["eval median [95% CI]", "eval p90 [95% CI]"]
    if has_nat:
        head += [f"naturalness: {naturalness_name} (median)"]
    extra = [k for k in summary[0] if k.startswith("metric_")]
    cached = any(d.get("cache_hits_per_sample", 0) > 0 for d in summary)  # a reward cache answered some rows
    head += ["diversity", *(k[len("metric_"):] for k in extra), "network evals / sample", "reward evals / sample",
             *(["reward calls / sample", "cache hits / sample"] if cached else []), "value evals / sample",
             "wall s / sample"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(v):  # three decimals, or three significant digits for values too small for them
        return f"{v:.3f}" if v == 0 or abs(v) >= 0.01 or v != v else f"{v:.2e}"

    def ci(d, k):
        return f"{num(d[k])} [{num(d[k + '_lo'])}, {num(d[k + '_hi'])}]"

    for d in summary:
        cells = [d["method"], ci(d, "reward_median"), ci(d, "reward_p90")]
        if has_eval:
            cells += [ci(d, "eval_reward_median"), ci(d, "eval_reward_p90")]
        if has_nat:
            cells += [f"{d.get('naturalness_median', float('nan')):.3f}"]
        cells += [f"{d['diversity']:.3f}", *(f"{d[k]:.3f}" for k in extra), f"{d['network_evals_per_sample']:.1f}",
                  f"{d['reward_evals_per_sample']:.1f}"]
        if cached:
            cells += [f"{d['reward_calls_per_sample']:.1f}", f"{d['cache_hits_per_sample']:.1f}"]
        cells += [f"{d['value_evals_per_sample']:.1f}", f"{d['wall_seconds_per_sample']:.2e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def histogram(rows: list[MethodRow], path: Path, title: str) -> None:
    """One reward histogram per method, stacked on a shared axis, with the median marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    allr = np.concatenate([np.concatenate(r.rewards) for r in rows])
    allr = allr[~np.isnan(allr)]
    bins = np.linspace(allr.min(), allr.max(), 40) if allr.size and allr.max() > allr.min() else 20
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 1.1 * len(rows) + 0.8), sharex=True, squeeze=False)
    for ax, r, color in zip(axes[:, 0], rows, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        a = np.concatenate(r.rewards)
        a = a[~np.isnan(a)]
        ax.hist(a, bins=bins, color=color, alpha=0.8)
        if a.size:
            ax.axvline(np.median(a), color="k", lw=1, ls="--")
        ax.set_ylabel(r.label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_yticks([])
    axes[0, 0].set_title(f"{title} (dashed: median)")
    axes[-1, 0].set_xlabel("reward")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(rows: list[MethodRow], summary: list[dict[str, Any]], out: Path, task: Task, spec: TaskSpec,
                  settings: dict[str, Any]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summary, spec.naturalness_name)
    header = (f"# {task.name}: method comparison\n\n{task.description}\n\n"
              f"Settings: {json.dumps(settings)}. Reward = guidance reward `{getattr(spec.reward, 'name', 'reward')}`. "
              "Median / 90th percentile: mean over seeds with a t 95% interval (one seed: bootstrap over samples).\n\n")
    (out / "table.md").write_text(header + table + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        keys = sorted({k for d in summary for k in d}, key=lambda k: (k != "method", k))
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(summary)
    with open(out / "rewards.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "reward"])
        for r in rows:
            for s, a in enumerate(r.rewards):
                w.writerows([r.label, settings["seeds"][s], float(v)] for v in a)
    histogram(rows, out / "reward_hist.png", f"{task.name}: reward per method")
    if spec.write_samples is not None:  # every method's samples with their rewards: first seed, then seed<k>/
        for r in rows:
            for s, x in enumerate(r.samples or [r.first_samples]):
                if x is None:
                    continue
                folder = out / "samples" / r.label / ("" if s == 0 else f"seed{settings['seeds'][s]}")
                folder.mkdir(parents=True, exist_ok=True)
                rewards = {getattr(spec.reward, "name", "reward"): torch.as_tensor(r.rewards[s])}
                if len(r.eval_rewards) == len(r.rewards):  # every seed has one
                    rewards[getattr(spec.eval_reward, "name", "eval_reward")] = torch.as_tensor(r.eval_rewards[s])
                spec.write_samples(folder, x, rewards)
    if spec.figure is not None:  # one row of samples per method
        firsts = {r.label: r.first_samples for r in rows if r.first_samples is not None}
        spec.figure(firsts, {r.label: r.rewards[0] for r in rows}, out / "grid.png",
                    title=f"{task.name}: first samples of seed {settings['seeds'][0]} (label: median reward)")
    model = spec.model.config() if callable(getattr(spec.model, "config", None)) else type(spec.model).__name__
    (out / "summary.json").write_text(json.dumps({"settings": settings, "methods": {r.label: r.options for r in rows},
                                                  "task": spec.config, "model": model, "summary": summary},
                                                 indent=2, default=str))
    return table


def run_frontier(task: Task, spec: TaskSpec, Ms: list[int], *, num_samples: int = 64, seed: int = 0,
                 max_batch: int | None = None, out: Path, progress: bool = False, smc_alpha: float | None = None,
                 reward_budget: float | None = None) -> str:
    """Median guidance reward against reward evaluations and wall seconds per sample, for SVDD-PM, SVDD-MC (when the
    task ships a value net) and Best-of-N at each M, and SMC; one seed; a table and a two-panel figure. Each finished
    run is stored in ``out/runs`` and reused by a later call (an interrupted frontier resumes; more M may be added)."""
    from tqdm.auto import tqdm
    smc_alpha = smc_alpha if smc_alpha is not None else task.methods.get("smc", {}).get("alpha", 1.0)
    runs = [("svdd-pm", M, "svdd", {"M": M}) for M in Ms] + [("best-of-n", M, "best-of-n", {"M": M}) for M in Ms]
    if spec.value_net is not None:
        runs += [("svdd-mc", M, "svdd", {"M": M, "value": "task"}) for M in Ms]
    runs.append(("smc", 1, "smc", {"alpha": smc_alpha}))
    rows = []
    for family, M, name, opts in tqdm(runs, desc=f"frontier {task.name}", disable=not progress):
        path = out / "runs" / f"{family}-M{M}-seed{seed}.pt"
        rec = _stored_run(spec, name, opts, seed, num_samples, max_batch, progress, reward_budget, path, full=False)
        c = rec["cost"]
        med, p90 = rec["quantiles"]
        row = {"family": family, "M": M, "reward_median": med, "reward_p90": p90,
               "reward_evals_per_sample": c["reward_evals"], "reward_calls_per_sample": c["reward_calls"],
               "cache_hits_per_sample": c["cache_hits"], "value_evals_per_sample": c["value_evals"],
               "network_evals_per_sample": c["network_evals"], "wall_seconds_per_sample": c["wall_seconds"]}
        if rec["eval_rewards"] is not None:
            row["eval_reward_median"] = float(torch.from_numpy(rec["eval_rewards"]).median())
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with open(out / "frontier.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |" for r in rows]
    table = "\n".join(lines)
    (out / "frontier.md").write_text(f"# {task.name}: reward versus cost\n\n{num_samples} samples, seed {seed}; "
                                     "SVDD-MC's candidate scores are value-net calls, not reward calls.\n\n" + table + "\n")
    plot_frontier(rows, out / "frontier.png", f"{task.name}: reward versus cost ({num_samples} samples)")
    return table


def plot_frontier(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Two panels: median guidance reward against reward evaluations and against wall seconds per sample."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for family, marker in (("svdd-pm", "o"), ("svdd-mc", "s"), ("best-of-n", "^"), ("smc", "*")):
        fr = [r for r in rows if r["family"] == family]
        if not fr:
            continue
        for ax, key in zip(axes, ("reward_evals_per_sample", "wall_seconds_per_sample")):
            xs = [max(r[key], 1e-9) for r in fr]
            ax.plot(xs, [r["reward_median"] for r in fr], marker=marker, label=family)
            if family != "smc":
                for r, x in zip(fr, xs):
                    ax.annotate(f"M={r['M']}", (x, r["reward_median"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    from matplotlib.ticker import NullFormatter
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_xlabel("reward evaluations per sample")
    axes[1].set_xlabel("wall seconds per sample")
    axes[0].set_ylabel("median guidance reward")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Every method at the same budgets -------------------------------------------------------------------------------------

FAMILIES = ("pretrained", "best-of-n", "svdd-pm", "svdd-r", "smc", "smc-fk", "beam", "branch-select", "tree", "refine",
            "svdd-mc")


KINDS = ("reward_calls", "network_calls")


def _every(steps: float, per_selection: float, room: float) -> int:
    """The selection interval k so that (steps / k) selections of ``per_selection`` calls fit ``room``, at least 1
    (no room: an interval longer than any run -- the first step only, if the engine's budget check lets it)."""
    return max(1, math.ceil(steps * per_selection / room)) if room > 0 else 10 ** 9


def budget_plan(family: str, budget: float, num_steps: int, kind: str = "reward_calls", *, M: int = 10,
                smc_alpha: float = 1.0) -> dict[str, Any]:
    """Method options of ``family`` at ``budget`` (reward calls or network rows per sample): each method spreads its
    spending over the run (a selection interval, a number of draws or candidates) and the engine's `svdd.Budget`
    caps what it spends. A family whose spending of that kind does not depend on the budget (see `budget_free`) gets
    its fixed options."""
    if kind not in KINDS:
        raise ValueError(f"unknown budget kind {kind!r}; expected one of {KINDS}")
    b, t, rew = float(budget), num_steps, kind == "reward_calls"
    if family == "pretrained":
        return {"method": "pretrained"}
    if family == "svdd-mc" and rew:
        return {"method": "svdd", "M": M, "value": "task"}
    if family == "smc" and not rew:  # SMC's network rows are the pre-trained chain's: it weighs at every step
        return {"method": "smc", "alpha": smc_alpha}
    if family == "smc-fk" and not rew:
        return {"method": "smc", "alpha": smc_alpha, "potential": "max", "tempering": "linear"}
    wide = max(M, int((b - 1) // t) if rew else int((b - t) // t) + 1)  # more candidates once every step can select
    if family == "best-of-n":
        plan: dict[str, Any] = {"method": "best-of-n", "M": max(1, int(b if rew else b // t))}
    elif family in ("svdd-pm", "svdd-r", "beam"):
        key = "K" if family == "beam" else "M"
        name = {"svdd-pm": "svdd", "svdd-r": "svdd-r", "beam": "beam"}[family]
        k = _every(t, wide, b - 1) if rew else _every(t, wide - 1, b - t)
        plan = {"method": name, key: wide, "select_every": k}
    elif family in ("smc", "smc-fk"):
        plan = {"method": "smc", "alpha": smc_alpha, "select_every": _every(t, 1, b - 2)}
        if family == "smc-fk":
            plan.update(potential="max", tempering="linear")
    elif family == "branch-select":
        width = 4 if rew else 2
        k = _every(t, M * width, b - 1) if rew else _every(t, width * (M - 1), b - width * t)
        plan = {"method": "branch-select", "K": M, "width": width, "select_every": k}
    elif family == "tree":
        plan = {"method": "tree", "K": M}
    elif family == "svdd-mc":  # network rows: the value net's M rows per selection
        plan = {"method": "svdd", "M": M, "value": "task", "select_every": _every(t, M, b - t)}
    elif family == "refine":  # two rounds over the last quarter of the steps
        rounds, renoise = 2, 0.25
        steps = t * (1 + rounds * renoise)
        k = _every(steps, M, b - 1 - rounds) if rew else _every(steps, M - 1, b - steps)
        plan = {"method": "refine", "M": M, "rounds": rounds, "renoise": renoise, "select_every": k}
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    return {**plan, "budget": f"{kind}={b:g}"}


def budget_free(family: str, kind: str) -> bool:
    """Families run once, not per budget: what they spend of ``kind`` does not depend on it."""
    return family == "pretrained" or (family == "svdd-mc" and kind == "reward_calls") or \
        (family in ("smc", "smc-fk") and kind == "network_calls")


def run_budget_frontier(task: Task, spec: TaskSpec, budgets: list[float], families: list[str], *, seeds=(0, 1, 2),
                        num_samples: int = 32, max_batch: int | None = None, out: Path, progress: bool = False,
                        smc_alpha: float | None = None, kind: str = "reward_calls") -> str:
    """Every family at every budget (``kind`` per sample: reward calls, final scores included, or network rows of
    the denoiser and value net) over seeds: median and p90 of
    the guidance reward with t intervals, the held-out reward, naturalness, diversity and the costs spent; a table,
    a CSV and a figure. Finished runs are stored in ``out/runs`` and reused (the frontier resumes)."""
    bad = sorted(set(families) - set(FAMILIES))
    if bad:
        raise ValueError(f"unknown families {bad}; expected some of {list(FAMILIES)}")
    if spec.value_net is None:
        families = [f for f in families if f != "svdd-mc"]
    smc_alpha = smc_alpha if smc_alpha is not None else task.methods.get("smc", {}).get("alpha", 1.0)
    t = spec.model.num_steps
    methods: dict[str, dict[str, Any]] = {}
    where: dict[str, tuple[str, float | None]] = {}
    for fam in families:
        for b in budgets if not budget_free(fam, kind) else [None]:
            opts = budget_plan(fam, b if b is not None else max(budgets), t, kind, smc_alpha=smc_alpha)
            label = fam if b is None else f"{fam}@{b:g}"
            methods[label], where[label] = opts, (fam, b)
    check_methods(methods, spec)  # e.g. refine on a model without renoise: before any run
    rows = run_comparison(task, spec, methods, seeds=seeds, num_samples=num_samples, max_batch=max_batch,
                          progress=progress, cache=out / "runs")
    rows = [r for r in rows if r.label in where]  # no reference row here
    summary = summarize(rows, spec.naturalness_name)
    for d in summary:
        d["family"], d["budget"] = where[d["method"]]
        d["options"] = json.dumps({k: v for k, v in methods[d["method"]].items() if k not in ("budget",)})
    out.mkdir(parents=True, exist_ok=True)
    keys = ["family", "budget", "reward_median", "reward_median_lo", "reward_median_hi", "reward_p90",
            "reward_p90_lo", "reward_p90_hi", "eval_reward_median", "eval_reward_median_lo", "eval_reward_median_hi",
            "naturalness_median", "diversity", "reward_calls_per_sample", "network_evals_per_sample",
            "value_evals_per_sample", "wall_seconds_per_sample", "options"]
    keys[-1:-1] = [k for k in summary[0] if k.startswith("metric_")]
    with open(out / "budget_frontier.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(summary)
    table = budget_table(summary, spec.naturalness_name)
    (out / "budget_frontier.md").write_text(
        f"# {task.name}: every method at equal budgets of {kind.replace('_', ' ')}\n\n{num_samples} samples x seeds "
        f"{list(seeds)}; budget = most {kind.replace('_', ' ')} per sample (`svdd.Budget`: reward calls include the "
        "final scores; network calls count denoiser and value-net rows), enforced by the engine. Methods marked `-` "
        "spend the same whatever the budget and ran once. Median / p90: mean over seeds with a t 95% interval. "
        "Options per budget: `svdd.compare.budget_plan`.\n\n" + table + "\n")
    plot_budget_frontier(summary, out / "budget_frontier.png", f"{task.name}: reward at equal budgets "
                         f"({num_samples} samples x {len(seeds)} seeds)", kind)
    return table


def budget_table(summary: list[dict[str, Any]], naturalness_name: str) -> str:
    has_eval = any("eval_reward_median" in d for d in summary)
    has_nat = any("naturalness_median" in d for d in summary)
    head = ["method", "budget", "reward median [95% CI]", "reward p90 [95% CI]"]
    head += ["eval median [95% CI]"] if has_eval else []
    head += [f"{naturalness_name} (median)"] if has_nat else []
    extra = [k for k in summary[0] if k.startswith("metric_")]
    head += ["diversity", *(k[len("metric_"):] for k in extra), "reward calls / sample", "network rows / sample",
             "wall s / sample", "options"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(summary, key=lambda d: (d["budget"] is not None, d["budget"] or 0, FAMILIES.index(d["family"])))
    for d in order:
        def ci(k):
            return f"{d[k]:.3f} [{d[k + '_lo']:.3f}, {d[k + '_hi']:.3f}]"
        cells = [d["family"], "-" if d["budget"] is None else f"{d['budget']:g}", ci("reward_median"), ci("reward_p90")]
        cells += [ci("eval_reward_median")] if has_eval else []
        cells += [f"{d.get('naturalness_median', float('nan')):.3f}"] if has_nat else []
        net = d["network_evals_per_sample"] + d["value_evals_per_sample"]
        cells += [f"{d['diversity']:.3f}", *(f"{d[k]:.3f}" for k in extra), f"{d['reward_calls_per_sample']:.1f}",
                  f"{net:.0f}",
                  f"{d['wall_seconds_per_sample']:.3f}", f"`{d['options']}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_budget_frontier(summary: list[dict[str, Any]], path: Path, title: str, kind: str = "reward_calls") -> None:
    """Median guidance reward (and held-out reward) against the budget, one line per method, 95% intervals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [("reward_median", "median guidance reward")]
    if any("eval_reward_median" in d for d in summary):
        keys.append(("eval_reward_median", "median held-out reward"))
    budgets = sorted({d["budget"] for d in summary if d["budget"] is not None})
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.5), squeeze=False)
    markers = "os^v<>DPX*h"
    for ax, (k, name) in zip(axes[0], keys):
        for j, fam in enumerate(f for f in FAMILIES if any(d["family"] == f for d in summary)):
            pts = sorted((d for d in summary if d["family"] == fam), key=lambda d: d["budget"] or 0)
            if pts[0]["budget"] is None:  # budget-free: a flat reference line
                d = pts[0]
                ax.axhline(d[k], ls=":", lw=1, color=f"C{j % 10}", label=f"{fam} (any budget)")
                continue
            xs = [d["budget"] for d in pts]
            ys = [d[k] for d in pts]
            err = [[d[k] - d[k + "_lo"] for d in pts], [d[k + "_hi"] - d[k] for d in pts]]
            ax.errorbar(xs, ys, yerr=err, marker=markers[j % len(markers)], capsize=2, color=f"C{j % 10}", label=fam)
        from matplotlib.ticker import NullFormatter
        ax.set_xscale("log")
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{b:g}" for b in budgets])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"budget: {kind.replace('_', ' ')} per sample")
        ax.set_ylabel(name)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
