"""One run model: a run is a `RunSpec` (JSON round trip, hash = run key), stored in one kind of folder, rebuilt from
it by `svdd rerun`; compare and frontier folders are lists of such runs with reports computed from the store; the
package's modules import each other without cycles and without private names."""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from svdd.cli import main
from svdd.spec import RunSettings, RunSpec
from svdd.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "svdd"


def test_spec_round_trips_through_json_and_its_key_is_its_content():
    spec = RunSpec("toy-motif", "svdd", {"M": 3, "select_window": (1, 4), "value": "task"}, 40, 7, 16,
                   {"num_steps": 8}, RunSettings(max_batch=64, budget="reward_calls=40", batch_sizes={"network": 32}))
    again = RunSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec and again.key == spec.key and hash(again) == hash(spec)
    assert again.options["select_window"] == (1, 4)  # JSON lists come back as the tuples methods hold
    assert again.settings.budget == spec.settings.budget and again.settings.batch_sizes == {"network": 32}
    other = dataclasses.replace(spec, seed=8)
    assert other != spec and other.key != spec.key
    assert len({spec, again, other}) == 2  # hashable: usable as a set member / dict key
    with pytest.raises(TypeError, match="frozen"):
        spec.options["M"] = 4
    import pickle
    assert pickle.loads(pickle.dumps(spec)) == spec  # how a spec travels to Ray workers
    folder = RunSpec({"prior": "/p", "oracle": "/o"}, "pretrained", {}, 4)
    assert RunSpec.from_dict(json.loads(folder.to_json())) == folder


@pytest.mark.parametrize("bad, message", [
    (dict(method="svdd-xl"), r"unknown method 'svdd-xl'; expected one of \["),
    (dict(options={"N": 3}), r"method 'svdd' has no option\(s\) \['N'\]"),
    (dict(num_samples=0), r"num_samples must be an int >= 1, got 0"),
    (dict(seed=-1), r"seed must be an int >= 0"),
    (dict(chunk_size=True), r"chunk_size must be an int >= 1, got True"),
    (dict(task={"prior": "/p"}), r"a folder task is \{'prior': DIR, 'oracle': DIR"),
    (dict(task=3), r"task must be a registered name, a folder task dict or a svdd.tasks.Task, got int"),
])
def test_spec_refuses_bad_fields_naming_them(bad, message):
    with pytest.raises(ValueError, match=message):
        RunSpec(**{"task": "toy-motif", **bad})


def test_settings_refuse_bad_values_and_from_dict_unknown_fields():
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        RunSettings(precision="fp16")
    with pytest.raises(ValueError, match=r"batch_sizes\['network'\] must be an int >= 1, got 0"):
        RunSettings(batch_sizes={"network": 0})
    with pytest.raises(ValueError, match=r"run settings has unknown field\(s\) \['speed'\]"):
        RunSettings.from_dict({"speed": 2})
    with pytest.raises(ValueError, match=r"run spec has unknown field\(s\) \['engine'\]"):
        RunSpec.from_dict({"task": "toy-motif", "engine": "ray"})
    with pytest.raises(ValueError, match="run spec format 9 is not one this svdd reads"):
        RunSpec.from_dict({"format": 9, "task": "toy-motif"})


def test_objects_without_a_json_form_are_named():
    value = torch.nn.Linear(2, 1)
    spec = RunSpec("toy-motif", "svdd", {"value": value}, 4)
    with pytest.raises(ValueError, match="options.value = Linear object has no JSON form"):
        spec.to_dict()
    loose = spec.to_dict(strict=False)
    assert loose["options"]["value"] == {"object": "Linear"}
    with pytest.raises(ValueError, match="option 'value' of the run was a Linear object"):
        RunSpec.from_dict(loose)


# every shipped task, a few steps: (task options, samples, method, method options)
RERUN = {
    "toy-motif": ({}, 12, "svdd", {"M": 3}),
    "toy-gmm": ({"num_steps": 20}, 12, "svdd", {"M": 3}),
    "dna-enhancer": ({"num_steps": 4}, 4, "svdd", {"M": 2}),
    "rna-utr-mrl": ({"num_steps": 4}, 4, "svdd", {"M": 2}),
    "fashion-compress": ({"num_steps": 2}, 2, "svdd", {"M": 2}),
    "fashion-class": ({"num_steps": 2}, 2, "svdd", {"M": 2}),
    "molecule-qed": ({"num_steps": 4}, 4, "svdd", {"M": 2}),
    "molecule-sa": ({"num_steps": 4}, 4, "svdd", {"M": 2}),
    "molecule-docking-parp1": ({"num_steps": 2}, 2, "pretrained", {}),  # seconds per docking call
}
SLOW = {"molecule-docking-parp1"}  # 8 docking calls: about 90 s on 2 cores (make test-slow)


def test_every_shipped_task_has_a_rerun_case():
    assert set(RERUN) == set(TASKS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(RERUN)])
def test_rerun_reproduces_every_shipped_task_bit_for_bit(name, tmp_path, capsys):
    import svdd
    opts, n, method, method_opts = RERUN[name]
    if name == "molecule-docking-parp1":
        opts = {**opts, "cache": str(tmp_path / "docking.sqlite")}
    first = svdd.sample_run(tmp_path / "run", name, method, num_samples=n, seed=3, chunk_size=max(1, n // 2),
                            task_options=opts, options=method_opts, progress=False)
    spec = json.loads((tmp_path / "run" / "run.json").read_text())["spec"]
    assert spec["task"] == name and spec["num_samples"] == n and spec["options"] == method_opts
    if name == "molecule-docking-parp1":  # docked again, not read from the first run's cache
        (tmp_path / "docking.sqlite").unlink()
    assert main(["rerun", str(tmp_path / "run"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert "the same samples as the stored run" in capsys.readouterr().out
    again = torch.load(tmp_path / "again" / "samples.pt", weights_only=True)
    assert torch.equal(again["samples"], first.samples)
    assert torch.equal(again["rewards"].nan_to_num(), first.rewards.nan_to_num())


def test_rerun_replays_the_chunk_sizes_the_run_used(tmp_path):
    import svdd
    svdd.sample_run(tmp_path / "run", "toy-motif", "svdd", num_samples=40, options={"M": 4}, progress=False)
    spec = svdd.runs.read_spec(tmp_path / "run")
    used = json.loads((tmp_path / "run" / "run.json").read_text())["config"]["batch_sizes"]
    assert spec.settings.batch_sizes == {k: v for k, v in used.items() if v is not None} and used
    res = svdd.rerun(tmp_path / "run", tmp_path / "again", progress=False)
    assert res.config["rerun"]["same_samples"] is True
    assert res.config["batch_sizes"] == spec.settings.batch_sizes  # given, not measured


def test_rerun_of_what_cannot_be_rerun_is_an_error_naming_it(tmp_path):
    import svdd
    from svdd.tasks import Task
    res = svdd.sample(TASKS["toy-motif"].make().model, TASKS["toy-motif"].make().reward, "pretrained", num_samples=2)
    res.save(tmp_path / "saved")
    assert main(["rerun", str(tmp_path / "saved"), "--out", str(tmp_path / "x")]) == 2
    with pytest.raises(ValueError, match="holds no run spec"):
        svdd.rerun(tmp_path / "saved", tmp_path / "y")
    own = Task("mine", "a task of one's own", TASKS["toy-motif"].build)
    svdd.sample_run(tmp_path / "own", own, "pretrained", num_samples=4, progress=False)
    with pytest.raises(ValueError, match=r"was a Task object \('mine'\) with no JSON form: pass it again"):
        svdd.rerun(tmp_path / "own", tmp_path / "z")
    assert svdd.rerun(tmp_path / "own", tmp_path / "z", task=own, progress=False).config["rerun"]["same_samples"]
    with pytest.raises(ValueError, match="into itself"):
        svdd.rerun(tmp_path / "own", tmp_path / "own", task=own)


def test_report_rebuilds_every_table_from_the_store_alone(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm,smc", "--num-samples", "8",
                 "--seeds", "0,1", "--quiet", "--out", str(out)]) == 0
    files = ["table.md", "table.csv", "rewards.csv", "summary.json"]
    before = {f: (out / f).read_bytes() for f in files}
    for f in files + ["reward_hist.png"]:
        (out / f).unlink()
    assert main(["report", str(out)]) == 0
    assert {f: (out / f).read_bytes() for f in files} == before and (out / "reward_hist.png").exists()
    assert "| svdd-pm |" in capsys.readouterr().out
    assert main(["report", str(out / "runs" / "svdd-pm-seed0")]) == 2  # a run, not a study


def test_a_study_folder_of_the_old_format_is_refused_saying_how_to_go_on(tmp_path, capsys):
    out = tmp_path / "old"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "svdd-pm-seed0.pt").write_bytes(b"")
    (out / "manifest.json").write_text(json.dumps({"format": 1, "kind": "compare", "config": {}}))
    rc = main(["compare", "--task", "toy-motif", "--methods", "pretrained", "--num-samples", "4", "--seeds", "0",
               "--quiet", "--resume", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "was written by an older svdd (its runs are .pt files, format 1; this one writes 2)" in err and "--overwrite" in err
    assert main(["report", str(out)]) == 2
    assert "was written by an older svdd" in capsys.readouterr().err


def _imports(path: Path, module: str, is_pkg: bool):
    """(imported module, names) of every import statement of a source file, relative ones resolved."""
    pkg = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                up = up[:len(up) - (node.level - 1)] if node.level > 1 else up
                base = ".".join(up + ([base] if base else []))
            yield base, [a.name for a in node.names]


def test_no_import_cycles_and_no_private_names_across_modules():
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = ["svdd", *p.relative_to(SRC).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph, private = {m: set() for m in mods}, []
    for m, (p, is_pkg) in mods.items():
        pkg = m if is_pkg else m.rpartition(".")[0]
        for base, names in _imports(p, m, is_pkg):
            targets = [f"{base}.{n}" for n in names if resolve(f"{base}.{n}") == f"{base}.{n}"] or [base]
            for t in targets:
                r = resolve(t)
                if r and r != m and not m.startswith(r + ".") and r != pkg:
                    graph[m].add(r)
            if base.startswith("svdd"):
                private += [f"{m} imports {base}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, private
    state, cycles = {}, []

    def visit(v, stack):
        state[v] = "open"
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                cycles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w, stack + [w])
        state[v] = "done"

    for v in sorted(graph):
        if v not in state:
            visit(v, [v])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    assert "svdd.runs" in graph["svdd.cli"] and "svdd.store" in graph["svdd.runs"]  # the walk sees the imports


def test_an_override_means_the_same_on_compare_and_frontier():
    """--alpha (any override) goes to every method of the study that has the option, on compare and frontier alike."""
    from svdd.compare import budget_frontier, comparison, frontier
    settings = RunSettings()
    studies = [frontier("toy-motif", [1, 2], seed=0, num_samples=4, settings=settings, smc_alpha=1.0, value_net=False,
                        overrides={"alpha": 0.5}),
               budget_frontier("toy-motif", [40], ["best-of-n", "svdd-pm", "smc", "tree"], seeds=[0], num_samples=4,
                               settings=settings, num_steps=24, smc_alpha=1.0, value_net=False,
                               overrides={"alpha": 0.5})]
    for study in studies:
        got = {e["spec"].method: e["spec"].options.get("alpha") for e in study.entries}
        assert got == {"svdd": 0.5, "smc": 0.5, "best-of-n": None, **({"tree": 0.5} if "tree" in got else {})}, got
    plain = frontier("toy-motif", [1], seed=0, num_samples=4, settings=settings, smc_alpha=0.7, value_net=False)
    assert {e["spec"].method: e["spec"].options.get("alpha") for e in plain.entries}["smc"] == 0.7
    cmp = comparison("toy-motif", {"a": {"method": "svdd", "M": 2, "budget": "reward_calls=20"},
                                   "b": {"method": "dps", "scale": 1.0, "budget": "reward_calls=20"}},
                     seeds=[0, 1], num_samples=4, settings=settings)
    budgets = {e["label"]: e["spec"].settings.budget for e in cmp.entries}
    assert str(budgets["a"]) != "None" and budgets["b"] is None  # DPS takes no budget: it runs without
    assert [e["path"] for e in cmp.entries] == ["runs/a-seed0", "runs/a-seed1", "runs/b-seed0", "runs/b-seed1"]


def test_an_old_study_folder_holding_only_its_tables_is_started_again(tmp_path):
    """Committed results keep the manifest and tables of the old format but none of its .pt runs: a resume into such
    a folder (`make results-*`) runs the study there; nothing of the old one could be reused."""
    out = tmp_path / "old"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": 1, "kind": "compare", "config": {}}))
    (out / "table.md").write_text("old table")
    assert main(["compare", "--task", "toy-motif", "--methods", "pretrained", "--num-samples", "4", "--seeds", "0",
                 "--quiet", "--resume", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["format"] == 2 and "| pretrained |" in (out / "table.md").read_text()


def test_the_table_labels_svdd_pm_and_svdd_mc_are_method_names(tmp_path):
    """The aliases the tables use run as methods: svdd-pm is svdd, svdd-mc is svdd with the task's value net."""
    import svdd
    from svdd.methods import get_method
    assert get_method("svdd-pm", M=4) == get_method("svdd", M=4)
    pm = svdd.sample_run(tmp_path / "pm", "toy-motif", "svdd-pm", num_samples=8, options={"M": 3}, progress=False)
    plain = svdd.sample_run(tmp_path / "svdd", "toy-motif", "svdd", num_samples=8, options={"M": 3}, progress=False)
    assert torch.equal(pm.samples, plain.samples)
    mc = svdd.sample_run(tmp_path / "mc", "dna-enhancer", "svdd-mc", num_samples=2, options={"M": 2},
                         task_options={"num_steps": 4}, progress=False)
    assert mc.config["method"]["value"]["type"] == "learned" and mc.cost.value_evals > 0
    assert RunSpec.from_dict(json.loads((tmp_path / "mc" / "run.json").read_text())["spec"]).method == "svdd-mc"
    spec = TASKS["toy-motif"].make()
    with pytest.raises(ValueError, match="value='task' \\(e.g. method 'svdd-mc'\\) names a task's value net"):
        svdd.sample(spec.model, spec.reward, "svdd-mc")
