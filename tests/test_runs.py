"""Run folders: chunks with derived seeds, atomic chunk files checked by hash, resume equal to an uninterrupted run."""

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import svdd
from conftest import wait_until
from svdd.store import RunFolder, chunk_seed, plan
from svdd.tasks.toy import build_toy_motif

SVDD = shutil.which("svdd") or str(Path(sys.executable).parent / "svdd")


def cli(*args, cwd=None):
    p = subprocess.run([SVDD, *map(str, args), "--quiet"], capture_output=True, text=True, cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


def sample_args(out, *extra, n=600):
    return ["sample", "--task", "toy-motif", "--num-samples", n, "--chunk-size", 256, *extra, "--out", out]


def test_chunk_seeds_and_plan():
    assert chunk_seed(7, 0) == 7 and chunk_seed(7, 1) != chunk_seed(7, 2) != chunk_seed(8, 2)
    assert all(0 <= chunk_seed(s, k) < 2 ** 62 for s in (0, 2 ** 62 - 1) for k in (1, 99))
    p = plan(600, 256, 3)
    assert [(c["start"], c["stop"]) for c in p] == [(0, 200), (200, 400), (400, 600)]  # nearly equal, none tiny
    assert [c["stop"] - c["start"] for c in plan(257, 256, 0)] == [128, 129]
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1, got 0"):
        plan(10, 0, 0)


def test_one_chunk_equals_svdd_sample(tmp_path):
    rc, _, err = cli("sample", "--task", "toy-motif", "--num-samples", 64, "--seed", 3, "--out", tmp_path / "r")
    assert rc == 0, err
    model, reward, _ = build_toy_motif()
    want = svdd.sample(model, reward, "svdd", num_samples=64, seed=3)
    got = torch.load(tmp_path / "r" / "samples.pt", weights_only=True)
    assert torch.equal(got["samples"], want.samples) and torch.equal(got["rewards"], want.rewards)


def test_resume_redoes_missing_and_damaged_chunks_only(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert cli(*sample_args(ref))[0] == 0
    assert cli(*sample_args(run))[0] == 0
    files = sorted((run / "chunks").glob("*.parquet"))
    assert len(files) == 3 and json.loads((run / "manifest.json").read_text())["chunks"][1]["seed"] == chunk_seed(0, 1)
    keep = files[0].stat().st_mtime_ns
    files[1].unlink()  # a chunk never written
    files[2].write_bytes(files[2].read_bytes()[:100])  # a torn chunk: its hash no longer matches
    for f in ("samples.txt", "samples.pt", "run.json"):
        (run / f).unlink()
    rc, out, err = cli("sample", "--task", "toy-motif", "--num-samples", 600, "--chunk-size", 256, "--resume", run)
    assert rc == 0, err
    assert "(1 of 3 chunks from the earlier run)" in out
    assert files[0].stat().st_mtime_ns == keep  # the good chunk was kept, not recomputed
    assert (run / "samples.txt").read_text() == (ref / "samples.txt").read_text()
    a, b = (torch.load(d / "samples.pt", weights_only=True) for d in (ref, run))
    assert torch.equal(a["samples"], b["samples"]) and torch.equal(a["rewards"], b["rewards"])
    cfg = json.loads((run / "run.json").read_text())
    assert cfg["summary"]["num_samples"] == 600 and cfg["chunks"] == 3


def test_a_bad_option_writes_nothing(tmp_path):
    rc, _, err = cli("sample", "--task", "toy-motif", "--M", 0, "--out", tmp_path / "run")
    assert rc == 2 and "M must be an int >= 1, got 0" in err
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_folder_rules(tmp_path):
    run = tmp_path / "run"
    assert cli(*sample_args(run, n=40))[0] == 0
    rc, _, err = cli(*sample_args(run, n=40))
    assert rc == 2 and f"--out '{run}' is not empty: pass --resume {run} to continue the run in it, or --overwrite" in err
    rc, _, err = cli("sample", "--task", "toy-motif", "--num-samples", 40, "--chunk-size", 256, "--seed", 5, "--M", 4,
                     "--resume", run)
    assert rc == 2 and "holds a run with another config: options.M, seed differ(s) (the run: options.M='<absent>', " \
                       "seed=0; now: options.M=4, seed=5)" in err, err
    rc, _, err = cli(*sample_args(run, "--overwrite", "--seed", 1, n=40))
    assert rc == 0, err
    assert json.loads((run / "manifest.json").read_text())["config"]["seed"] == 1
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    rc, _, err = cli(*sample_args(other, "--overwrite", n=40))
    assert rc == 2 and "is not empty and holds no svdd sample run: --overwrite only replaces svdd's own output" in err
    assert (other / "notes.txt").read_text() == "mine"
    rc, _, err = cli("sample", "--task", "toy-motif", "--num-samples", 8, "--resume", tmp_path / "new")
    assert rc == 0 and (tmp_path / "new" / "manifest.json").exists(), err  # nothing to resume yet: it starts
    rc, _, err = cli("sample", "--task", "toy-motif", "--resume", other)
    assert rc == 2 and "no svdd sample run there, and the folder is not empty" in err


KILL_ARGS = ["sample", "--task", "toy-motif", "--num-samples", "1200", "--chunk-size", "100"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    ref = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert cli(*KILL_ARGS, "--out", ref)[0] == 0
    return ref


def test_sigterm_then_the_printed_command_gives_the_uninterrupted_run(tmp_path, children, uninterrupted):
    ref, run, args = uninterrupted, tmp_path / "run", KILL_ARGS
    p = subprocess.Popen([SVDD, *args, "--out", str(run), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    children.append(p)
    wait_until(p, lambda: len(list((run / "chunks").glob("*.sha256"))) >= 2)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 143 and "Traceback" not in stderr, stderr
    command = re.search(r"resume with: (svdd .*)$", stderr.strip()).group(1)
    assert command.endswith(f"--resume {run}")
    rc, _, err = cli(*shlex.split(command)[1:])
    assert rc == 0, err
    assert (run / "samples.txt").read_text() == (ref / "samples.txt").read_text()


@pytest.mark.parametrize("after", [1, 5, 9])
def test_kill_9_then_resume_is_byte_identical(tmp_path, children, uninterrupted, after):
    """SIGKILL (no handler runs) after ``after`` chunks: the resume loses at most the chunk in flight, and the merged
    files equal the uninterrupted run's byte for byte."""
    ref, run, args = uninterrupted, tmp_path / "run", KILL_ARGS
    p = subprocess.Popen([SVDD, *args, "--out", str(run), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children.append(p)
    wait_until(p, lambda: len(list((run / "chunks").glob("*.sha256"))) >= after)
    p.kill()
    p.wait()
    kept = len(list((run / "chunks").glob("*.sha256")))
    assert kept >= after
    rc, out, err = cli(*args, "--resume", run)
    assert rc == 0, err
    if kept < 12:
        assert f"({kept} of 12 chunks from the earlier run)" in out, out
    for f in ("samples.pt", "samples.txt", "rewards.csv"):
        assert (run / f).read_bytes() == (ref / f).read_bytes(), f


KILL_STUDIES = {"compare": ["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--num-samples", 400,
                            "--seeds", "0,1", "--chunk-size", 100],
                "frontier": ["frontier", "--task", "toy-motif", "--num-samples", 400, "--Ms", "1,3", "--chunk-size", 100]}


@pytest.mark.parametrize("kind", sorted(KILL_STUDIES))
def test_kill_9_during_compare_and_frontier_then_resume_gives_the_uninterrupted_tables(tmp_path, children, kind):
    """compare and frontier run on the run store: a SIGKILL loses at most the chunks in flight, the resume reruns
    only what is missing, and every table equals the uninterrupted one (wall-clock columns aside)."""
    from study_tables import without_wall
    args, ref, out = KILL_STUDIES[kind], tmp_path / "ref", tmp_path / "out"
    assert cli(*args, "--out", ref)[0] == 0
    p = subprocess.Popen([SVDD, *map(str, args), "--out", str(out), "--quiet"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    children.append(p)
    wait_until(p, lambda: len(list(out.glob("runs/*/chunks/*.sha256"))) >= 3)
    assert p.poll() is None, p.communicate()
    p.kill()
    p.wait()
    kept = {f: f.stat().st_mtime_ns for f in out.glob("runs/*/chunks/*.parquet")}
    assert len(kept) >= 3 and not (out / "rewards.csv").exists() and not (out / "frontier.csv").exists()
    rc, _, err = cli(*args, "--resume", out)
    assert rc == 0, err
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items() if f.with_suffix(".sha256").exists())  # kept
    assert without_wall(out, kind) == without_wall(ref, kind)


def test_compare_folder_rules(tmp_path):
    out = tmp_path / "cmp"
    base = ["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--num-samples", 8]
    assert cli(*base, "--seeds", "0", "--out", out)[0] == 0
    rc, _, err = cli(*base, "--seeds", "0", "--out", out)
    assert rc == 2 and "is not empty: pass --resume" in err
    stored = out / "runs" / "svdd-pm-seed0" / "chunks" / "chunk-00000.parquet"
    first = stored.stat().st_mtime_ns
    rc, _, err = cli(*base, "--seeds", "0,1", "--resume", out)  # a seed added: the finished run is reused
    assert rc == 0, err
    assert stored.stat().st_mtime_ns == first and (out / "runs" / "svdd-pm-seed1" / "run.json").exists()
    rc, _, err = cli("compare", "--task", "toy-motif", "--methods", "pretrained", "--num-samples", 4, "--seeds", "0",
                     "--resume", out)
    assert rc == 2 and "holds a comparison with other settings: num_samples differ(s) (the run: num_samples=8; " \
                       "now: num_samples=4)" in err, err
    rc, _, err = cli(*base, "--seeds", "0", "--overwrite", "--out", out)
    assert rc == 0, err
    assert stored.stat().st_mtime_ns != first and not (out / "runs" / "svdd-pm-seed1" / "run.json").exists()


def test_one_writer_per_folder_and_a_killed_writer_leaves_no_lock(tmp_path, children):
    """Three commands on one folder used to tear each other's files: the second is refused, naming the first; a
    `kill -9` of the first leaves nothing stale (the lock goes with the process)."""
    run, cmp = tmp_path / "run", tmp_path / "cmp"
    slow = ["sample", "--task", "toy-motif", "--num-samples", "40000", "--chunk-size", "100", "--quiet"]
    p = subprocess.Popen([SVDD, *slow, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children.append(p)
    wait_until(p, lambda: len(list((run / "chunks").glob("*.sha256"))) >= 1)
    assert p.poll() is None, p.communicate()
    rc, _, err = cli(*slow[:-1], "--resume", run)
    assert rc == 2 and f"{run} is in use by another svdd run (pid {p.pid} on " in err, err
    rc, _, err = cli(*slow[:-1], "--overwrite", "--out", run)
    assert rc == 2 and "is in use by another svdd run" in err and (run / "manifest.json").exists(), err
    p.kill()
    p.wait()
    from svdd.store import lock_folder, unlock_folder
    assert lock_folder(run)  # nothing stale: the next run takes the folder
    unlock_folder(run)
    # compare and frontier folders are locked the same way
    base = ["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--num-samples", 600, "--seeds", "0"]
    p = subprocess.Popen([SVDD, *map(str, base), "--out", str(cmp), "--quiet"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    children.append(p)
    wait_until(p, lambda: (cmp / "manifest.json").exists())
    rc, _, err = cli(*base, "--resume", cmp)
    assert rc == 2 and f"is in use by another svdd run (pid {p.pid} on " in err, err
    p.wait(timeout=300)


def test_frontier_resumes_and_follows_the_folder_rules(tmp_path):
    out = tmp_path / "fr"
    base = ["frontier", "--task", "toy-motif", "--num-samples", 16, "--Ms", "1,2"]
    assert cli(*base, "--out", out)[0] == 0
    stored = out / "runs" / "svdd-pm-M2-seed0" / "chunks" / "chunk-00000.parquet"
    first, table = stored.stat().st_mtime_ns, (out / "frontier.md").read_text()
    rc, _, err = cli(*base, "--out", out)
    assert rc == 2 and "is not empty: pass --resume" in err
    rc, _, err = cli("frontier", "--task", "toy-motif", "--num-samples", 16, "--Ms", "1,2,4", "--resume", out)
    assert rc == 0, err  # an M added: the finished runs are reused
    assert stored.stat().st_mtime_ns == first and (out / "runs" / "svdd-pm-M4-seed0" / "run.json").exists()
    lines = (out / "frontier.md").read_text().splitlines()
    assert all(line in lines for line in table.splitlines() if "svdd-pm | 2 |" in line)
    rc, _, err = cli(*base, "--seed", 3, "--resume", out)
    assert rc == 2 and "holds a frontier with other settings: seed differ(s) (the run: seed=0; now: seed=3)" in err
    rc, _, err = cli("compare", "--task", "toy-motif", "--resume", out)
    assert rc == 2 and "holds the output of `svdd frontier`, not of `svdd compare`" in err


def test_sample_run_from_python_with_a_task_of_ones_own(tmp_path):
    """The Python entry point: a user's Task (their model and reward), resumed to the uninterrupted run."""
    from svdd.tasks import Task, TaskSpec

    def build(motif_weight: float = 1.0):
        model, inner, _ = build_toy_motif()
        return TaskSpec(model, svdd.Reward(lambda x: motif_weight * inner(x), name="scaled-motif"))

    task = Task("my-task", "a task of my own", build, options=("motif_weight",), num_samples=300)
    ref = svdd.sample_run(tmp_path / "ref", task, "svdd", options={"M": 3}, chunk_size=100, seed=4, progress=False)
    assert ref.config["run"] == {"path": str(tmp_path / "ref"), "chunks": 3, "chunks_run_now": 3}
    assert len(ref) == 300 and ref.config["chunk_seeds"][0] == 4
    run = tmp_path / "run"
    svdd.sample_run(run, task, "svdd", options={"M": 3}, chunk_size=100, seed=4, progress=False)
    (run / "chunks" / "chunk-00001.sha256").unlink()
    again = svdd.sample_run(run, task, "svdd", options={"M": 3}, chunk_size=100, seed=4, progress=False, resume=True)
    assert again.config["run"]["chunks_run_now"] == 1
    assert torch.equal(again.samples, ref.samples) and torch.equal(again.rewards, ref.rewards)
    with pytest.raises(ValueError, match="holds a run with another config: task.options.motif_weight differ"):
        svdd.sample_run(run, task, "svdd", options={"M": 3}, chunk_size=100, seed=4, progress=False, resume=True,
                        task_options={"motif_weight": 2.0})
    with pytest.raises(ValueError, match=r"method 'svdd' has no option\(s\) \['N'\]"):
        svdd.sample_run(tmp_path / "x", task, "svdd", options={"N": 3})
    with pytest.raises(TypeError, match=r"unexpected option\(s\) \['M'\]; method options go in options="):
        svdd.sample_run(tmp_path / "x", task, "svdd", M=3)
    assert not (tmp_path / "x").exists()
