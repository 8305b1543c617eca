"""The command line end to end on the built-in toy task."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from svdd.cli import main
from svdd.tasks.toy import build_toy_motif, decode


def test_tasks_lists_the_toy_task(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "toy-motif" in out and "toy-gmm" in out


def test_sample_writes_samples_and_rewards(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--task", "toy-motif", "--method", "svdd", "--M", "4", "--num-samples", "12",
                 "--quiet", "--out", str(out)]) == 0
    lines = (out / "samples.txt").read_text().splitlines()
    assert len(lines) == 12 and all(len(l.split("\t")[0]) == 24 and set(l.split("\t")[0]) <= set("ACGT") for l in lines)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["method"]["M"] == 4 and run["summary"]["num_samples"] == 12
    rows = list(csv.DictReader(open(out / "rewards.csv")))
    assert [int(r["index"]) for r in rows] == list(range(12))
    saved = torch.load(out / "samples.pt", weights_only=True)
    assert saved["samples"].shape == (12, 24) and [l.split("\t")[0] for l in lines] == decode(saved["samples"])
    # the written rewards are the task reward of the written samples, exactly (csv, samples.pt and samples.txt)
    _, reward, _ = build_toy_motif()
    expected = reward(saved["samples"]).double()
    assert torch.equal(torch.tensor([float(r["reward"]) for r in rows], dtype=torch.float64), expected)
    assert torch.equal(saved["rewards"], expected)
    assert [float(l.split("\t")[1]) for l in lines] == [float(f"{r:.6g}") for r in expected.tolist()]
    assert "reward median" in capsys.readouterr().out


def test_compare_writes_table_and_histogram(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm,smc", "--num-samples", "16",
                 "--seeds", "0,1", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    for label in ("pretrained", "svdd-pm", "smc"):
        assert f"| {label} |" in table and f"| {label} |" in printed
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["method"] for r in rows] == ["pretrained", "svdd-pm", "smc"]
    assert float(rows[1]["network_evals_per_sample"]) > float(rows[0]["network_evals_per_sample"])
    assert (out / "reward_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    assert main(["sample", "--task", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["sample", "--task", "toy-motif", "--M", "0", "--quiet", "--out", str(tmp_path)]) == 2
    assert "M must be an int >= 1, got 0" in capsys.readouterr().err
    assert main(["compare", "--task", "toy-motif", "--methods", "svdd-pm,magic", "--out", str(tmp_path)]) == 2
    assert "unknown method(s) ['magic']" in capsys.readouterr().err


def test_console_script_runs():
    exe = __import__("shutil").which("svdd") or str(__import__("pathlib").Path(sys.executable).parent / "svdd")
    out = subprocess.run([exe, "tasks"], capture_output=True, text=True, check=True).stdout
    assert "toy-motif" in out


def test_frontier_writes_table_and_figure(tmp_path, capsys):
    out = tmp_path / "fr"
    assert main(["frontier", "--task", "toy-motif", "--Ms", "1,4", "--num-samples", "8", "--quiet",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "frontier.csv")))
    assert [(r["family"], r["M"]) for r in rows] == [("svdd-pm", "1"), ("svdd-pm", "4"), ("best-of-n", "1"),
                                                     ("best-of-n", "4"), ("smc", "1")]
    bon = {r["M"]: float(r["reward_evals_per_sample"]) for r in rows if r["family"] == "best-of-n"}
    assert bon == {"1": 1.0, "4": 4.0}
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"


# method options: --M / --alpha / --set ------------------------------------------------------------------------------
@pytest.fixture
def cold_task(monkeypatch):
    """toy-motif with a task entry that differs from another only in alpha (like dna-enhancer's smc-cold)."""
    from svdd.tasks import TASKS, Task
    task = Task("toy-cold", "toy-motif with smc and smc-cold", TASKS["toy-motif"].build,
                methods={"pretrained": {"method": "pretrained"}, "smc": {"method": "smc", "alpha": 0.5},
                         "smc-cold": {"method": "smc", "alpha": 0.25}, "svdd-pm": {"method": "svdd", "M": 4}})
    monkeypatch.setitem(TASKS, task.name, task)
    return task


def _methods(out):
    return json.loads((out / "summary.json").read_text())["methods"]


def test_compare_refuses_an_override_that_merges_two_task_entries(tmp_path, capsys, cold_task):
    assert main(["compare", "--task", "toy-cold", "--alpha", "0.5", "--quiet", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "alpha=0.5 would make 'smc' and 'smc-cold' identical" in err and "alpha 0.5 and 0.25" in err
    assert "--methods" in err and not (tmp_path / "a").exists()
    # naming one of them applies the override; --M reaches every method that has M and only those
    out = tmp_path / "b"
    assert main(["compare", "--task", "toy-cold", "--methods", "pretrained,smc-cold,svdd-pm", "--alpha", "0.5",
                 "--M", "2", "--num-samples", "4", "--seeds", "0", "--quiet", "--out", str(out)]) == 0
    m = _methods(out)
    assert m["pretrained"] == {"method": "pretrained"}
    assert m["smc-cold"]["alpha"] == 0.5 and "M" not in m["smc-cold"]
    assert m["svdd-pm"]["M"] == 2 and m["svdd-pm"]["alpha"] == 0.5
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["method_overrides"] == {"alpha": 0.5, "M": 2}


def test_compare_set_skips_methods_without_the_option(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--set", "select_every=2",
                 "--num-samples", "4", "--seeds", "0", "--quiet", "--out", str(out)]) == 0
    m = _methods(out)
    assert m["pretrained"] == {"method": "pretrained"} and m["svdd-pm"]["select_every"] == 2
    assert main(["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--set", "selct_every=2",
                 "--quiet", "--out", str(tmp_path / "typo")]) == 2
    assert "no compared method has option(s) ['selct_every']" in capsys.readouterr().err


def test_sample_refuses_options_its_method_does_not_have(tmp_path, capsys):
    for extra in (["--M", "3"], ["--set", "select_every=2"]):
        assert main(["sample", "--task", "toy-motif", "--method", "pretrained", *extra, "--quiet",
                     "--out", str(tmp_path)]) == 2
        assert "method 'pretrained' has no option(s)" in capsys.readouterr().err
    assert main(["frontier", "--task", "toy-motif", "--M", "3", "--quiet", "--out", str(tmp_path)]) == 2
    assert "frontier sweeps M over --Ms" in capsys.readouterr().err


def test_sample_run_json_holds_the_task_config(tmp_path):
    out = tmp_path / "run"
    assert main(["sample", "--task", "toy-motif", "--method", "svdd", "--M", "2", "--num-samples", "4", "--quiet",
                 "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["task"] == "toy-motif" and run["task"]["reward"] == "tata-pwm"
    assert run["config"]["method"]["M"] == 2 and run["summary"]["num_samples"] == 4


def test_internal_type_errors_are_not_swallowed(tmp_path, monkeypatch):
    import svdd.tasks

    def broken(name):
        raise TypeError("an internal bug")

    monkeypatch.setattr(svdd.tasks, "get_task", broken)
    with pytest.raises(TypeError, match="an internal bug"):
        main(["sample", "--task", "toy-motif", "--quiet", "--out", str(tmp_path)])


def test_compare_runs_are_reused_only_with_the_same_networks(tmp_path):
    """A finished (method, seed) run is kept by a resumed comparison; after the networks change (the task config
    holds the weights hashes) the resume is an error naming what changed, never a silent mix."""
    import dataclasses

    import svdd.tasks as tasks
    from svdd.compare import comparison, run_study
    from svdd.spec import RunSettings
    task = tasks.get_task("toy-motif")
    study = lambda t: comparison(t, {"pretrained": {"method": "pretrained"}}, seeds=[0], num_samples=4,  # noqa: E731
                                 settings=RunSettings(), info={"settings": {}})
    run_study(tmp_path, study(task), progress=False)
    stored = tmp_path / "runs" / "pretrained-seed0" / "chunks" / "chunk-00000.parquet"
    first = stored.stat().st_mtime_ns
    run_study(tmp_path, study(task), progress=False)
    assert stored.stat().st_mtime_ns == first  # same task: reused
    build = task.build

    def retrained(**kw):
        spec = build(**kw)
        spec.config = {**spec.config, "weights": {"denoiser": "retrained"}}
        return spec

    other = dataclasses.replace(task, build=retrained)
    with pytest.raises(ValueError, match=r"other settings: task\.weights\.denoiser differ"):
        run_study(tmp_path, study(other), progress=False)
    assert stored.stat().st_mtime_ns == first
