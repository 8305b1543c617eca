"""One run folder, many processes: torchrun ranks and Ray actors give the single-process output."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SVDD = shutil.which("svdd") or str(Path(sys.executable).parent / "svdd")
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
ARGS = ["sample", "--task", "toy-motif", "--num-samples", "600", "--chunk-size", "100", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("one-process") / "run"
    p = subprocess.run([SVDD, *ARGS, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return (out / "samples.txt").read_text()


def test_torchrun_two_ranks_and_resume(tmp_path, reference):
    out = tmp_path / "run"
    cmd = [TORCHRUN, "--nproc-per-node", "2", "-m", "svdd", *ARGS]
    p = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("svdd on toy-motif: 600 samples") == 1  # rank 0 reports
    assert (out / "samples.txt").read_text() == reference
    # a lost chunk is redone by whichever rank owns it
    (out / "chunks" / "chunk-00003.parquet").unlink()
    (out / "samples.txt").unlink()
    p = subprocess.run([*cmd, "--resume", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (out / "samples.txt").read_text() == reference


def test_torchrun_reports_a_bad_folder_once(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    p = subprocess.run([TORCHRUN, "--nproc-per-node", "2", "-m", "svdd", *ARGS, "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "is not empty" in p.stderr


def test_ray_two_workers(tmp_path, reference):
    pytest.importorskip("ray", reason="--backend ray needs Ray (pip install 'svdd[ray]')")
    out = tmp_path / "run"
    p = subprocess.run([SVDD, *ARGS, "--backend", "ray", "--workers", "2", "--out", str(out)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (out / "samples.txt").read_text() == reference
    assert len(list((out / "chunks").glob("*.parquet"))) == 6


POOL_SCRIPT = '''
import json, os, sys
import ray
import svdd
from svdd.tasks import Task, get_task

LOG = sys.argv[2]

def build():
    spec = get_task("toy-motif").make()
    inner = spec.reward
    def logged(x):
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return inner(x)
    spec.reward = svdd.Reward(logged, name=inner.name)
    return spec

task = Task("logged-motif", "toy-motif, writing down which process evaluates its reward", build, num_samples=600)
ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
pids = {}
for k, opts in enumerate([{"reward_workers": 0}, {"reward_workers": 1}, {"reward_workers": 1, "write_on": "driver"}]):
    open(LOG, "w").close()
    svdd.sample_run(os.path.join(sys.argv[1], f"pool{k}"), task, chunk_size=100, backend="ray", workers=2,
                    progress=False, **opts)
    pids[k] = sorted(set(open(LOG).read().split()))
print(json.dumps(pids))
'''


def test_ray_reward_pool_serves_every_model_worker(tmp_path, reference):
    """--reward-workers: the reward runs in its own actor, shared by both model workers; the samples are the same,
    also when the driver writes the chunk files (--write-on driver)."""
    pytest.importorskip("ray", reason="--backend ray needs Ray (pip install 'svdd[ray]')")
    import json
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    p = subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path / "pids.log")], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    pids = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(pids["0"]) == 2  # each model worker called its own reward
    assert len(pids["1"]) == 1 and not set(pids["1"]) & set(pids["0"])  # one reward actor served both
    assert len(pids["2"]) == 1  # the same, with the chunk files written by the driver
    for k in (0, 1, 2):
        assert (tmp_path / f"pool{k}" / "samples.txt").read_text() == reference


# compare and frontier run on the same backends: a comparison's runs share one pool of workers
STUDIES = {"compare": ["compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--num-samples", "16",
                       "--seeds", "0,1", "--chunk-size", "8", "--quiet"],
           "frontier": ["frontier", "--task", "toy-motif", "--num-samples", "16", "--Ms", "1,2", "--chunk-size", "8",
                        "--quiet"]}


def tables(out: Path, kind: str) -> dict:
    """What a study wrote, wall-clock columns left out (the only ones that differ from run to run)."""
    from study_tables import without_wall
    return without_wall(out, kind)


@pytest.fixture(scope="module")
def study_reference(tmp_path_factory):
    refs = {}
    for kind, args in STUDIES.items():
        out = tmp_path_factory.mktemp(f"one-process-{kind}") / "out"
        p = subprocess.run([SVDD, *args, "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        refs[kind] = tables(out, kind)
    return refs


@pytest.mark.parametrize("kind", sorted(STUDIES))
def test_compare_and_frontier_on_torchrun_give_the_local_tables(tmp_path, study_reference, kind):
    out = tmp_path / "out"
    p = subprocess.run([TORCHRUN, "--nproc-per-node", "2", "-m", "svdd", *STUDIES[kind], "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("written: ") == 1  # rank 0 reports
    assert tables(out, kind) == study_reference[kind]


@pytest.mark.parametrize("kind", sorted(STUDIES))
def test_compare_and_frontier_on_ray_give_the_local_tables(tmp_path, study_reference, kind):
    pytest.importorskip("ray", reason="--backend ray needs Ray (pip install 'svdd[ray]')")
    out = tmp_path / "out"
    p = subprocess.run([SVDD, *STUDIES[kind], "--backend", "ray", "--workers", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert tables(out, kind) == study_reference[kind]
