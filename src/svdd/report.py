"""Reports: tables, CSVs and figures of a comparison or frontier, computed from its run store alone.

`svdd compare` and `svdd frontier` write their runs into ``OUT/runs/<run>/`` (one run folder each, `svdd.store`) and
a manifest naming them; `report` reads those folders -- rewards, held-out rewards, naturalness, costs, samples --
and writes every table and figure. ``svdd report OUT`` does it again at any time, without sampling. Statistics:
median and 90th percentile as the mean over seeds with a t 95% interval (one seed: a bootstrap over samples).
This module imports nothing that samples.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .io import atomic_write
from .store import MANIFEST, RunFolder, read_manifest

STUDY_FORMAT = 2  # 2: runs in run folders under OUT/runs; 1 (older): tensor .pt files there

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
    samples: list[Any] = field(default_factory=list)  # samples per seed, aligned with the seeds
    seeds: list[int] = field(default_factory=list)


def _q(a: np.ndarray, q: float) -> float:
    a = a[~np.isnan(a)]
    return float(np.quantile(a, q)) if a.size else float("nan")


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


def budget_table(summary: list[dict[str, Any]], naturalness_name: str, families: list[str]) -> str:
    has_eval = any("eval_reward_median" in d for d in summary)
    has_nat = any("naturalness_median" in d for d in summary)
    head = ["method", "budget", "reward median [95% CI]", "reward p90 [95% CI]"]
    head += ["eval median [95% CI]"] if has_eval else []
    head += [f"{naturalness_name} (median)"] if has_nat else []
    extra = [k for k in summary[0] if k.startswith("metric_")]
    head += ["diversity", *(k[len("metric_"):] for k in extra), "reward calls / sample", "network rows / sample",
             "wall s / sample", "options"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(summary, key=lambda d: (d["budget"] is not None, d["budget"] or 0, families.index(d["family"])))
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


def plot_budget_frontier(summary: list[dict[str, Any]], path: Path, title: str, kind: str, families: list[str]) -> None:
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
        for j, fam in enumerate(f for f in families if any(d["family"] == f for d in summary)):
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


# Reading the store -----------------------------------------------------------------------------------------------------

def read_study(out: str | Path) -> dict[str, Any]:
    """The manifest of a comparison or frontier folder (an error naming the folder when it holds none, or one of
    an older format)."""
    doc = read_manifest(out, STUDY_FORMAT, older="its runs are .pt files, ", kinds=("compare", "frontier"))
    if doc is None:
        raise ValueError(f"{out} holds no svdd compare / frontier output (no {MANIFEST})")
    return doc


def load_run(path: Path) -> dict[str, Any]:
    """One finished run of a study: its rewards, held-out rewards, naturalness (numpy), samples, cost per sample and
    set metrics, from its run folder."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        summary = json.loads((path / "run.json").read_text()).get("summary", {})
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a finished run ({exc}); resume the command that made it") from None
    m = RunFolder(path, manifest).merged()

    def arr(t):
        return None if t is None else t.double().numpy()

    return {"rewards": arr(m["rewards"]), "eval_rewards": arr(m["eval_rewards"]),
            "naturalness": arr(m["naturalness"]), "samples": m["samples"],
            "cost": summary.get("cost_per_sample", {}), "metrics": summary.get("metrics", {})}


def method_rows(out: Path, study: dict[str, Any]) -> list[MethodRow]:
    """The study's runs grouped by label (over seeds, in the manifest's order)."""
    rows: dict[str, MethodRow] = {}
    for entry in study["runs"]:
        row = rows.setdefault(entry["label"], MethodRow(entry["label"], entry.get("options", {})))
        rec = load_run(out / entry["path"])
        row.rewards.append(rec["rewards"])
        if rec["eval_rewards"] is not None:
            row.eval_rewards.append(rec["eval_rewards"])
        if rec["naturalness"] is not None:
            row.naturalness.append(rec["naturalness"])
        row.diversity.append(diversity(rec["samples"]))
        row.cost.append(rec["cost"])
        row.metrics.append(rec["metrics"])
        row.seeds.append(entry["seed"])
        if row.first_samples is None:
            row.first_samples, row.first_eval = rec["samples"], rec["eval_rewards"]
        row.samples.append(rec["samples"])
    return list(rows.values())


@dataclass
class Hooks:
    """What only the task can draw: its sample files and its figure of samples (optional: tables need neither)."""

    write_samples: Callable[..., None] | None = None  # (folder, samples, {reward name: values}) -> files
    figure: Callable[..., None] | None = None  # ({label: samples}, {label: rewards}, path, title) -> one figure


def report(out: str | Path, hooks: Hooks | None = None) -> tuple[str, list[str]]:
    """Write every table and figure of the comparison or frontier in ``out`` from its runs. Returns (the main
    table as Markdown, the files written)."""
    out = Path(out)
    study = read_study(out)
    mode = study["mode"]
    if mode == "compare":
        return write_comparison(out, study, hooks or Hooks())
    if mode == "frontier":
        return write_frontier(out, study)
    if mode == "budget-frontier":
        return write_budget_frontier(out, study)
    raise ValueError(f"{out / MANIFEST}: unknown study mode {mode!r}")


def _csv(path: Path, rows: list[dict[str, Any]], keys: list[str]) -> None:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def write_comparison(out: Path, study: dict[str, Any], hooks: Hooks) -> tuple[str, list[str]]:
    task, settings = study["task"], study["settings"]
    rows = method_rows(out, study)
    summary = summarize(rows)
    table = markdown_table(summary, task["naturalness_name"])
    header = (f"# {task['name']}: method comparison\n\n{task['description']}\n\n"
              f"Settings: {json.dumps(settings)}. Reward = guidance reward `{task['reward']}`. "
              "Median / 90th percentile: mean over seeds with a t 95% interval (one seed: bootstrap over samples).\n\n")
    atomic_write(out / "table.md", (header + table + "\n").encode())
    _csv(out / "table.csv", summary, sorted({k for d in summary for k in d}, key=lambda k: (k != "method", k)))
    import io
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", "reward"])
    w.writerows([r.label, seed, float(v)] for r in rows for seed, a in zip(r.seeds, r.rewards) for v in a)
    atomic_write(out / "rewards.csv", buf.getvalue().encode())
    histogram(rows, out / "reward_hist.png", f"{task['name']}: reward per method")
    written = ["table.md", "table.csv", "rewards.csv", "reward_hist.png", "summary.json"]
    if hooks.write_samples is not None:  # every method's samples with their rewards: first seed, then seed<k>/
        for r in rows:
            for k, (seed, x) in enumerate(zip(r.seeds, r.samples)):
                folder = out / "samples" / r.label / ("" if k == 0 else f"seed{seed}")
                folder.mkdir(parents=True, exist_ok=True)
                rewards = {task["reward"]: torch.as_tensor(r.rewards[k])}
                if len(r.eval_rewards) == len(r.rewards):  # every seed has one
                    rewards[task["eval_reward"] or "eval_reward"] = torch.as_tensor(r.eval_rewards[k])
                hooks.write_samples(folder, x, rewards)
        written.append("samples/")
    if hooks.figure is not None:  # one row of samples per method
        firsts = {r.label: r.first_samples for r in rows if r.first_samples is not None}
        hooks.figure(firsts, {r.label: r.rewards[0] for r in rows}, out / "grid.png",
                     title=f"{task['name']}: first samples of seed {rows[0].seeds[0]} (label: median reward)")
        written.append("grid.png")
    atomic_write(out / "summary.json", json.dumps({"settings": settings, "methods": {r.label: r.options for r in rows},
                                                   "task": task.get("config"), "model": task.get("model"),
                                                   "summary": summary}, indent=2, default=str).encode())
    return table, written


def write_frontier(out: Path, study: dict[str, Any]) -> tuple[str, list[str]]:
    """Median guidance reward against reward evaluations and wall seconds per sample, one point per run."""
    task, n = study["task"], study["num_samples"]
    rows = []
    for entry in study["runs"]:
        rec = load_run(out / entry["path"])
        c, r = rec["cost"], rec["rewards"]
        row = {"family": entry["family"], "M": entry["M"], "reward_median": _q(r, 0.5), "reward_p90": _q(r, 0.9),
               "reward_evals_per_sample": c["reward_evals"], "reward_calls_per_sample": c["reward_calls"],
               "cache_hits_per_sample": c["cache_hits"], "value_evals_per_sample": c["value_evals"],
               "network_evals_per_sample": c["network_evals"], "wall_seconds_per_sample": c["wall_seconds"]}
        if rec["eval_rewards"] is not None:
            row["eval_reward_median"] = float(torch.from_numpy(rec["eval_rewards"]).median())
        rows.append(row)
    keys = list(rows[0])
    _csv(out / "frontier.csv", rows, keys)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |"
              for r in rows]
    table = "\n".join(lines)
    atomic_write(out / "frontier.md", (f"# {task['name']}: reward versus cost\n\n{n} samples, seed "
                                       f"{study['seeds'][0]}; SVDD-MC's candidate scores are value-net calls, not "
                                       "reward calls.\n\n" + table + "\n").encode())
    plot_frontier(rows, out / "frontier.png", f"{task['name']}: reward versus cost ({n} samples)")
    return table, ["frontier.md", "frontier.csv", "frontier.png"]


def write_budget_frontier(out: Path, study: dict[str, Any]) -> tuple[str, list[str]]:
    """Every family at every budget over seeds: the table, a CSV and a figure."""
    task, n, seeds, kind = study["task"], study["num_samples"], study["seeds"], study["budget_kind"]
    where = {e["label"]: (e["family"], e["budget"]) for e in study["runs"]}
    options = {e["label"]: e.get("options", {}) for e in study["runs"]}
    summary = summarize(method_rows(out, study))
    for d in summary:
        d["family"], d["budget"] = where[d["method"]]
        d["options"] = json.dumps({k: v for k, v in options[d["method"]].items() if k not in ("budget",)})
    keys = ["family", "budget", "reward_median", "reward_median_lo", "reward_median_hi", "reward_p90",
            "reward_p90_lo", "reward_p90_hi", "eval_reward_median", "eval_reward_median_lo", "eval_reward_median_hi",
            "naturalness_median", "diversity", "reward_calls_per_sample", "network_evals_per_sample",
            "value_evals_per_sample", "wall_seconds_per_sample", "options"]
    keys[-1:-1] = [k for k in summary[0] if k.startswith("metric_")]
    _csv(out / "budget_frontier.csv", summary, keys)
    families = study["families"]
    table = budget_table(summary, task["naturalness_name"], families)
    words = kind.replace("_", " ")
    atomic_write(out / "budget_frontier.md", (
        f"# {task['name']}: every method at equal budgets of {words}\n\n{n} samples x seeds "
        f"{list(seeds)}; budget = most {words} per sample (`svdd.Budget`: reward calls include the "
        "final scores; network calls count denoiser and value-net rows), enforced by the engine. Methods marked `-` "
        "spend the same whatever the budget and ran once. Median / p90: mean over seeds with a t 95% interval. "
        "Options per budget: `svdd.compare.budget_plan`.\n\n" + table + "\n").encode())
    plot_budget_frontier(summary, out / "budget_frontier.png", f"{task['name']}: reward at equal budgets "
                         f"({n} samples x {len(seeds)} seeds)", kind, families)
    return table, ["budget_frontier.md", "budget_frontier.csv", "budget_frontier.png"]
