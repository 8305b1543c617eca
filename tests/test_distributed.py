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
    pytest.importorskip("ray", reason="--engine ray needs Ray (pip install 'svdd[ray]')")
    out = tmp_path / "run"
    p = subprocess.run([SVDD, *ARGS, "--engine", "ray", "--workers", "2", "--out", str(out)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (out / "samples.txt").read_text() == reference
    assert len(list((out / "chunks").glob("*.parquet"))) == 6
