"""Search methods (beam, branch-and-select, tree search, iterative refinement), Feynman–Kac potentials and tempering,
and compute budgets, checked against exact answers on problems small enough to enumerate."""

import math

import numpy as np
import pytest
import torch

import svdd
from enumerated import CLEAN, Problem, empirical, sampling_tolerance, state_index, tv
from svdd.methods import METHODS
from svdd.tasks.toy import build_toy_gmm
from svdd.testing import METHOD_CASES


@pytest.fixture(scope="module")
def flat():
    """The enumerable masked problem with a nearly uniform data law: every clean state is likely enough to be drawn."""
    return Problem(seed=5, num_steps=4, concentration=50.0)


@pytest.fixture(scope="module")
def gmm():
    model, reward, _ = build_toy_gmm(num_steps=10)
    return model, reward


# beam search -----------------------------------------------------------------------------------------------------------

def test_beam_as_wide_as_the_state_space_is_exhaustive(flat):
    """Width 125 (every state at every level) keeps every reachable state, so the returned samples are exactly the
    true top 8 of the 64 clean sequences by reward."""
    res = svdd.sample(flat.model(), flat.reward, "beam", M=400, width=125, num_samples=8, seed=0)
    got = sorted(res.rewards.tolist(), reverse=True)
    assert got == pytest.approx(sorted(flat.r, reverse=True)[:8], abs=1e-12)
    assert len(set(state_index(res.samples).tolist())) == 8  # distinct: repeats were merged


def test_beam_returns_distinct_samples_when_it_can(flat):
    res = svdd.sample(flat.model(), flat.reward, "beam", M=10, num_samples=16, seed=1)
    assert len(set(state_index(res.samples).tolist())) == 16


def test_branch_select_of_width_one_is_svdd_at_alpha_zero(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "branch-select", M=4, width=1, num_samples=8, seed=3)
    b = svdd.sample(model, reward, "svdd", M=4, num_samples=8, seed=3)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.rewards, b.rewards)
    assert a.cost.network_evals == b.cost.network_evals and a.cost.reward_calls == b.cost.reward_calls


@pytest.mark.parametrize("schedule,widths", [("constant", [8] * 11), ("grow", [2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 8]),
                                             ("shrink", [32, 29, 27, 24, 21, 19, 16, 13, 11, 8, 8])])
def test_beam_width_follows_its_schedule(gmm, schedule, widths):
    """Linear in the level from width / 4 (grow) or width · 4 (shrink) to the width at level T − 1."""
    model, reward = gmm
    seen = []
    res = svdd.sample(model, reward, "beam", M=4, num_samples=8, seed=0, schedule=schedule,
                      callback=lambda i, state, info: seen.append(state.x.shape[0]))
    assert seen == widths[1:]
    assert res.samples.shape[0] == 8 and bool((res.rewards[:-1] >= res.rewards[1:]).all())  # best first


def test_beam_refuses_a_width_below_num_samples(gmm):
    model, reward = gmm
    with pytest.raises(ValueError, match="beam width 4 is below num_samples = 8"):
        svdd.sample(model, reward, "beam", width=4, num_samples=8)


# tree search -----------------------------------------------------------------------------------------------------------

def test_tree_search_with_a_large_budget_finds_the_argmax(flat):
    res = svdd.sample(flat.model(), flat.reward, "tree", M=64, iterations=3000, num_samples=3, seed=0)
    assert res.rewards.tolist() == pytest.approx([flat.r.max()] * 3, abs=1e-12)


def test_tree_search_is_anytime_and_stops_at_its_budget(gmm):
    model, reward = gmm
    for b in (12, 40):
        res = svdd.sample(model, reward, "tree", M=4, num_samples=8, seed=0, budget=f"reward_calls={b}")
        assert res.cost.reward_calls <= b * 8
    with pytest.raises(ValueError, match="anytime"):
        svdd.sample(model, reward, "tree", num_samples=2)


# refinement ------------------------------------------------------------------------------------------------------------

def test_refine_with_no_renoising_changes_nothing(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "refine", renoise=0.0, rounds=3, M=4, num_samples=8, seed=3)
    b = svdd.sample(model, reward, "svdd", M=4, num_samples=8, seed=3)
    assert torch.equal(a.samples, b.samples) and a.cost.reward_calls == b.cost.reward_calls


def test_refine_keeps_the_better_of_old_and_new(gmm, flat):
    model, reward = gmm
    start = svdd.sample(model, reward, "pretrained", num_samples=8, seed=2)
    res = svdd.sample(model, reward, "refine", renoise=0.5, rounds=2, M=4, num_samples=8, seed=2,
                      init_samples=start.samples)
    assert bool((res.rewards >= start.rewards).all()) and bool((res.rewards > start.rewards).any())
    # a warm start takes no step from noise: its first cost is the scores of the given samples
    assert res.cost.reward_calls == 8 * (1 + 2 * (4 * 4 + 1))  # 2 rounds: 4 selections (the last step is
    # deterministic) of 4 candidates + the new samples' scores
    m = flat.model()
    x0 = torch.tensor([[0, 1, 2], [3, 3, 3]])
    same = svdd.sample(m, flat.reward, "refine", renoise=0.0, num_samples=2, init_samples=x0)
    assert torch.equal(same.samples, x0)


def test_refine_errors_name_the_problem(gmm):
    model, reward = gmm
    with pytest.raises(ValueError, match="init_samples holds 3 samples but num_samples = 8"):
        svdd.sample(model, reward, "refine", num_samples=8, init_samples=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="renoise must be"):
        svdd.sample(model, reward, "refine", renoise=1.5)


def test_masked_renoise_masks_at_the_level_rate(flat):
    m = flat.model()
    x0 = torch.zeros(20000, 3, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    for i in (0, 2):
        frac = float((m.renoise(x0, i, g) == m.mask_index).double().mean())
        assert frac == pytest.approx(float(m.move_chance(m.times[i])), abs=0.01)
    assert torch.equal(m.renoise(x0, m.num_steps, g), x0)


# Feynman–Kac potentials and tempering ----------------------------------------------------------------------------------

ALPHA = 0.5


def _exact(problem):
    return svdd.FunctionValue(problem.table_value(problem.soft_values(ALPHA)), name="exact-soft-value")


@pytest.mark.parametrize("potential,tempering", [("max", "constant"), ("sum", "linear"), ("difference", "exponential")])
def test_every_potential_and_tempering_targets_the_tilted_law(potential, tempering):
    """The final correction makes each particle's potentials multiply to exp(r/alpha): any potential and tempering
    samples p_pre exp(r/alpha)."""
    problem = Problem(seed=3, num_steps=4)
    n = 20000
    target = problem.tilted(ALPHA)
    w = target / problem.pretrained_dist()
    chi2 = float((problem.pretrained_dist() * (w - 1) ** 2).sum())
    tol = (w.max() - 1) / (n + w.max() - 1) + sampling_tolerance(target, n, inflation=2 + chi2)
    res = svdd.sample(problem.model(), problem.reward, "smc", num_samples=n, seed=1, alpha=ALPHA,
                      value=_exact(problem), potential=potential, tempering=tempering)
    assert tv(empirical(res.samples), target) < tol


@pytest.mark.parametrize("potential,tempering", [("max", "linear"), ("difference", "exponential")])
def test_normalising_constant_stays_unbiased_under_potentials_and_tempering(potential, tempering):
    problem = Problem(seed=3, num_steps=4)
    z = problem.normalizer(ALPHA)
    est = [math.exp(svdd.sample(problem.model(), problem.reward, "smc", num_samples=16, seed=s, alpha=ALPHA,
                                value=svdd.PosteriorMean(), potential=potential, tempering=tempering).log_z)
           for s in range(400)]
    se = np.std(est) / math.sqrt(len(est))
    assert abs(np.mean(est) - z) < 4 * se, (np.mean(est), z, se)


def test_tempering_with_every_factor_one_is_plain_smc(gmm):
    model, reward = gmm
    a = svdd.sample(model, reward, "smc", num_samples=16, seed=2, alpha=1.0, tempering="exponential", tempering_rate=0)
    b = svdd.sample(model, reward, "smc", num_samples=16, seed=2, alpha=1.0)
    assert torch.equal(a.samples, b.samples) and a.log_z == b.log_z


def test_soft_value_of_k_completions_is_their_log_mean_exp(flat):
    """PosteriorMean(K, alpha) = alpha · log mean_k exp(r(x0_k)/alpha) over the model's own K completions."""
    from svdd.engine import Engine
    m = flat.model()
    x = torch.tensor([[4, 4, 4], [0, 4, 4], [1, 2, 4]])
    eng = Engine(m, svdd.rewards.as_reward(flat.reward), seed=0)
    pred = eng.predict(x, 1)
    got = svdd.PosteriorMean(num_completions=5, alpha=0.3)(eng, x, pred, 1)
    g = torch.Generator().manual_seed(0 + 0x7A1E)
    r = flat.reward(m.sample_denoise(x, pred, 1, g, 5)).view(3, 5)
    assert got.tolist() == pytest.approx((0.3 * (torch.logsumexp(r / 0.3, 1) - math.log(5))).tolist(), abs=1e-12)


# budgets ---------------------------------------------------------------------------------------------------------------

# every registered method that honours a budget (not dps: each step calls the reward for its gradient), with its
# `svdd.testing.METHOD_CASES` options; tree search without an iteration count (anytime: the budget alone stops it);
# and a beam whose width grows (a step must reserve the later, wider levels)
CASES = {name: (name, {**METHOD_CASES[name], **({"iterations": None} if name == "tree" else {})})
         for name in sorted(METHODS) if METHODS[name].honours_budget} | {
    "beam-grow": ("beam", {"M": 3, "schedule": "grow", "width_ratio": 3.0})}


@pytest.mark.parametrize("name,opts", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("which", ["gmm", "flat"])
def test_budgets_are_never_exceeded(name, opts, which, gmm, flat):
    model, reward = gmm if which == "gmm" else (flat.model(), flat.reward)
    t, n = model.num_steps, 8
    for kind, b in (("reward_calls", 3), ("reward_calls", 17), ("network_calls", t), ("network_calls", 3 * t + 2)):
        w = opts.get("width") or 4
        if name == "branch-select" and kind == "network_calls" and b < w * t:  # w states per sample
            with pytest.raises(ValueError, match=f"needs at least {w * t} network_calls per sample"):
                svdd.sample(model, reward, name, num_samples=n, seed=1, budget={kind: b}, **opts)
            continue
        res = svdd.sample(model, reward, name, num_samples=n, seed=1, budget={kind: b}, **opts)
        spent = res.cost.reward_calls if kind == "reward_calls" else res.cost.network_evals + res.cost.value_evals
        assert spent <= b * n, (kind, b, spent)
        assert res.config["budget"] == {kind: b}


def test_svdd_budget_equals_a_shorter_selection_window(gmm):
    model, reward = gmm  # continuous states: every candidate is a real call; three selections + the final scores fit
    a = svdd.sample(model, reward, "svdd", M=4, num_samples=8, seed=3, budget=svdd.Budget(reward_calls=3 * 4 + 1))
    b = svdd.sample(model, reward, "svdd", M=4, num_samples=8, seed=3, select_window=(0, 3))
    assert torch.equal(a.samples, b.samples) and a.cost.reward_calls == b.cost.reward_calls == 13 * 8


@pytest.mark.parametrize("bad,match", [("reward_calls=abc", "'abc' is not a number"), ("steps=3", "unknown kind"),
                                       ({"seconds": -1}, "seconds must be a finite number > 0"),
                                       ("network_calls=5", "below the 10 network calls"),
                                       ("reward_calls=0.5", "below the one reward call")])
def test_bad_budgets_are_named(gmm, bad, match):
    model, reward = gmm
    with pytest.raises(ValueError, match=match):
        svdd.sample(model, reward, "svdd", num_samples=2, budget=bad)


def test_seconds_budget_stops_selection(gmm):
    model, reward = gmm
    res = svdd.sample(model, reward, "svdd", M=4, num_samples=8, seed=0, budget="seconds=1e-9")
    plain = svdd.sample(model, reward, "pretrained", num_samples=8, seed=0)
    assert torch.equal(res.samples, plain.samples)  # no selection fits a nanosecond


# the command line ------------------------------------------------------------------------------------------------------

def test_cli_budget_and_budget_frontier(tmp_path, capsys):
    import json

    from svdd.cli import main
    out = tmp_path / "beam"
    assert main(["sample", "--task", "toy-motif", "--method", "beam", "--set", "M=6", "--budget", "reward_calls=25",
                 "--num-samples", "8", "--quiet", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["cost_per_sample"]["reward_calls"] <= 25 and run["config"]["budget"] == {"reward_calls": 25.0}
    with pytest.raises(SystemExit) as e:
        main(["sample", "--task", "toy-motif", "--budget", "reward_calls=lots", "--out", str(tmp_path / "bad")])
    assert e.value.code == 2 and "'lots' is not a number" in capsys.readouterr().err
    cmp = tmp_path / "cmp"  # compare runs every method that takes a budget under it
    assert main(["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm,beam", "--budget", "reward_calls=20",
                 "--seeds", "0", "--num-samples", "8", "--quiet", "--out", str(cmp)]) == 0
    summary = json.loads((cmp / "summary.json").read_text())["summary"]
    assert all(d["reward_calls_per_sample"] <= 20 for d in summary)
    capsys.readouterr()
    assert main(["frontier", "--task", "toy-motif", "--budget", "reward_calls=20", "--out", str(tmp_path / "fb")]) == 2
    assert "takes no --budget" in capsys.readouterr().err
    assert not (tmp_path / "fb").exists()
    front = tmp_path / "front"
    args = ["frontier", "--task", "toy-motif", "--budgets", "10,30", "--families", "pretrained,svdd-pm,beam,refine",
            "--seeds", "0,1", "--num-samples", "8", "--quiet"]
    assert main(args + ["--out", str(front)]) == 0
    table = (front / "budget_frontier.md").read_text()
    assert all(f"| {fam} | {b} |" in table for fam in ("svdd-pm", "beam", "refine") for b in (10, 30))
    rows = list(__import__("csv").DictReader(open(front / "budget_frontier.csv")))
    assert all(float(r["reward_calls_per_sample"]) <= float(r["budget"] or 1) for r in rows)
    stamp = {p: p.stat().st_mtime_ns for p in front.glob("runs/*/chunks/*.parquet")}
    runs = len(list((front / "runs").iterdir()))
    assert main(args + ["--budgets", "10,30,60", "--resume", str(front)]) == 0  # a budget added: the rest reused
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items()) and stamp
    assert len(list((front / "runs").iterdir())) == runs + 2 * 3
