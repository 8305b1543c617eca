"""Every example in the README runs: the command-line block through the real `svdd` command (with a few steps and
samples appended, so the suite stays fast), the Python blocks as written, with their placeholders (your network,
your model folder, your docking function) filled in by the smallest real stand-ins."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).parent.parent / "README.md"
SVDD = shutil.which("svdd") or str(Path(sys.executable).parent / "svdd")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def block(lang: str, containing: str) -> str:
    found = [b for b in blocks(lang) if containing in b]
    assert len(found) == 1, f"expected one {lang} block with {containing!r} in the README, found {len(found)}"
    return found[0]


def substitute(code: str, pairs: dict[str, str]) -> str:
    for old, new in pairs.items():
        assert old in code, f"the README example no longer contains {old!r}: update this test"
        code = code.replace(old, new)
    return code


def cli_commands() -> list[str]:
    text = block("bash", "svdd tasks").replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.strip().startswith("svdd ")]


# appended to a README command: fewer steps / samples / seeds (later flags win); the outputs it promises are checked
SMALL = {"toy-motif": "--num-samples 16", "fashion-class": "--num-samples 2 --task-option num_steps=3",
         "fashion-compress": "--num-samples 2 --task-option num_steps=3",
         "molecule-qed": "--num-samples 4 --task-option num_steps=4",
         "molecule-docking-parp1": "--num-samples 2 --task-option num_steps=4"}
PROMISED = {"sample": ["run.json", "rewards.csv"], "compare": ["table.md", "table.csv", "reward_hist.png"],
            "frontier": ["budget_frontier.md", "budget_frontier.csv", "budget_frontier.png"], "rerun": ["run.json"]}
SLOW = {"molecule-docking-parp1"}


def _params():
    out = []
    for cmd in cli_commands():
        task = re.search(r"--task (\S+)", cmd)
        marks = [pytest.mark.slow] if task and task.group(1) in SLOW else []
        out.append(pytest.param(cmd, marks=marks, id=cmd[:60]))
    return out


def test_the_cli_block_lists_every_command_kind():
    kinds = {c.split()[1] for c in cli_commands()}
    assert {"tasks", "sample", "compare", "frontier", "report", "rerun"} <= kinds and len(cli_commands()) >= 8


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for the whole block, run in order: a later line may use an earlier one's output (--resume)."""
    return tmp_path_factory.mktemp("readme-cli")


@pytest.mark.parametrize("cmd", _params())
def test_cli_example_runs(cmd, workdir):
    tmp_path = workdir
    args = shlex.split(cmd)[1:]
    task = re.search(r"--task (\S+)", cmd)
    extra = shlex.split(SMALL.get(task.group(1), "")) if task else []
    if args[0] == "compare":
        extra += ["--seeds", "0"]
    p = subprocess.run([SVDD, *args, *extra, *(["--quiet"] if task else [])], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr
    if "--out" in args:
        out = tmp_path / args[args.index("--out") + 1]
        for name in PROMISED[args[0]]:
            assert (out / name).exists(), f"{cmd}: {name} not written"
        for name in re.findall(r"\b([\w.]+\.(?:txt|csv|png|json|md))\b", cmd.split("#")[-1] if "#" in cmd else ""):
            assert (out / name).exists()


def test_python_api_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = substitute(block("python", "class MyDenoiser"),
                      {"def forward(self, x, t): ...": "def forward(self, x, t): return 0.1 * x"})
    ns = {}
    exec(compile(code, "README: Python API", "exec"), ns)
    res = ns["result"]
    assert res.samples.shape == (64, 3, 32, 32) and torch.isfinite(res.rewards).all()
    assert (tmp_path / "runs" / "brightness" / "run.json").exists()


def test_diffusers_example(tmp_path):
    pytest.importorskip("diffusers", reason="the diffusers example needs pip install 'svdd[images]'")
    from test_diffusers import tiny_unet
    import diffusers
    tiny_unet(channels=3, size=32).save_pretrained(tmp_path / "unet", safe_serialization=True)
    diffusers.DDIMScheduler(num_train_timesteps=100).save_pretrained(tmp_path / "scheduler")
    code = substitute(block("python", "UNet2DModel.from_pretrained"),
                      {'"path/to/ddpm"': repr(str(tmp_path)), "num_steps=50": "num_steps=4"})
    ns = {"svdd": __import__("svdd")}
    exec(compile(code, "README: diffusers", "exec"), ns)
    assert ns["result"].samples.shape == (16, 3, 32, 32) and torch.isfinite(ns["result"].rewards).all()


def test_stable_diffusion_example(tmp_path):
    pytest.importorskip("transformers", reason="the Stable Diffusion example needs pip install 'svdd[images]'")
    from test_diffusers import tiny_sd_pipeline
    tiny_sd_pipeline(tmp_path).save_pretrained(tmp_path / "sd", safe_serialization=True)
    code = substitute(block("python", "StableDiffusionModel.from_pretrained"),
                      {'"/models/stable-diffusion-v1-5"': repr(str(tmp_path / "sd")), "num_steps=50": "num_steps=3",
                       'device="cuda"': 'device="cpu"', "torch.float16": "torch.float32"})
    ns = {}
    exec(compile(code, "README: Stable Diffusion", "exec"), ns)
    assert ns["images"].shape[0] == 8 and ns["images"].shape[1] == 3 and torch.isfinite(ns["result"].rewards).all()


def test_expensive_reward_example(tmp_path):
    """Run as a script (its worker processes import it again): the toy motif model, a reward on decoded strings."""
    code = substitute(block("python", "ParallelReward(dock_one"), {
        "    ...                          # -> float; may raise, hang or crash":
            "    return float(smiles.count('TA'))",
        "import svdd\n": "import svdd\nfrom svdd.tasks.toy import build_toy_motif, decode\n"
                         "model = build_toy_motif(num_steps=8)[0]\n"
                         "my_decode = decode\n"
                         "def my_canonical_key(row):\n    return decode(row[None])[0]\n"})
    script = tmp_path / "dock_example.py"
    script.write_text(code)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "reward_calls" in p.stdout and (tmp_path / "docking.sqlite").exists()


def test_model_protocol_skeleton(tmp_path):
    """The skeleton's placeholders (mean, std, x0) completed by DDPM formulas, then the contract check it advertises."""
    from conftest import TinyMLP
    code = block("python", "class MyModel(svdd.DiffusionModel)")
    ns = {"svdd": __import__("svdd"), "torch": torch}
    exec(compile(code, "README: model protocol", "exec"), ns)

    class Completed(ns["MyModel"]):
        def __init__(self, net, num_steps=50):
            super().__init__(net, num_steps)
            abar = torch.cumprod(1 - torch.linspace(1e-3, 0.2, num_steps), 0).flip(0)
            self.abar = torch.cat([abar, torch.ones(1)])

        def x0(self, x, pred, i):
            return (x - (1 - self.abar[i]).sqrt() * pred) / self.abar[i].sqrt()

        def std(self, i):
            a_t, a_s = self.abar[i], self.abar[i + 1]
            return ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()

        def mean(self, x, pred, i):
            a_s = self.abar[i + 1]
            return a_s.sqrt() * self.x0(x, pred, i) + (1 - a_s - self.std(i) ** 2).clamp_min(0).sqrt() * pred

        def deterministic_step(self, i):
            return i == self.num_steps - 1

    from svdd.testing import check_model_contract
    check_model_contract(Completed(TinyMLP(dim=16), num_steps=10))


def test_three_ways_example(tmp_path):
    """The one-process / torchrun / Ray block, each line with a small DNA run appended; the three outputs agree."""
    pytest.importorskip("ray", reason="the Ray line of the example needs pip install 'svdd[ray]'")
    lines = [ln.split("#")[0].strip() for ln in block("bash", "--backend ray").splitlines() if ln.strip()]
    assert len(lines) == 3 and lines[1].startswith("torchrun")
    small = ["--num-samples", "8", "--chunk-size", "4", "--task-option", "num_steps=4", "--quiet"]
    outs = []
    for line in lines:
        args = shlex.split(line)
        for flag in ("--workers", "--nproc-per-node"):  # this machine has 2 cores: Ray refuses 4 one-CPU actors
            if flag in args:
                args[args.index(flag) + 1] = "2"
        exe = shutil.which(args[0]) or str(Path(sys.executable).parent / args[0])
        p = subprocess.run([exe, *args[1:], *small], capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert p.returncode == 0, p.stderr
        outs.append((tmp_path / args[args.index("--out") + 1] / "samples.txt").read_text())
    assert outs[0] == outs[1] == outs[2]


def test_sample_run_example(tmp_path, monkeypatch):
    """The Python entry point for run folders, with the toy motif model and reward as "your" model and reward."""
    monkeypatch.chdir(tmp_path)
    code = substitute(block("python", "svdd.sample_run("), {
        "model=my_model(), reward=my_reward": "model=build_toy_motif(num_steps=8)[0], reward=build_toy_motif()[1]",
        "num_samples=10_000": "num_samples=100", "chunk_size=500": "chunk_size=25",
        "from svdd.tasks import Task, TaskSpec\n": "from svdd.tasks import Task, TaskSpec\n"
                                                   "from svdd.tasks.toy import build_toy_motif\n"})
    ns = {}
    exec(compile(code, "README: sample_run", "exec"), ns)
    assert ns["res"].config["run"] == {"path": "runs/mine", "chunks": 4, "chunks_run_now": 0}
    assert len(ns["res"]) == 100 and (tmp_path / "runs" / "mine" / "samples.pt").exists()


def test_bring_your_own_sequences_example(tmp_path):
    """The three-command block on a small generated FASTA / CSV, each line with a short budget appended."""
    import random
    rng = random.Random(1)
    seqs = ["".join(rng.choice("ACGU") for _ in range(10)) for _ in range(200)]
    (tmp_path / "seqs.fa").write_text("".join(f">u{k}\n{s}\n" for k, s in enumerate(seqs)))
    (tmp_path / "data.csv").write_text("seq,mrl\n" + "".join(f"{s},{s.count('A') - s.count('U')}\n" for s in seqs))
    lines = [ln.split("#")[0].strip() for ln in block("bash", "svdd train prior").splitlines() if ln.strip()]
    assert [ln.split()[1:3] for ln in lines[:4]] == [["train", "prior"], ["train", "oracle"], ["train", "oracle"],
                                                     ["train", "value"]]
    small = {"prior": ["--minutes", "0.05", "--num-steps", "8"], "oracle": ["--epochs", "3"],
             "value": ["--rollouts", "32", "--epochs", "2"],
             "compare": ["--num-samples", "8", "--seeds", "0", "--methods", "pretrained,svdd-pm,svdd-mc"]}
    for line in lines:
        args = shlex.split(line)[1:]
        extra = small[args[1] if args[0] == "train" else args[0]]
        p = subprocess.run([SVDD, *args, *extra, "--quiet"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert p.returncode == 0, (line, p.stderr)
    assert "svdd-mc" in (tmp_path / "my-compare" / "table.md").read_text()


def test_search_and_budget_example(capsys):
    code = block("python", "svdd.Budget(reward_calls=40)")
    ns: dict = {}
    exec(compile(code, "README: search and budgets", "exec"), ns)
    out = capsys.readouterr().out
    for method in ("best-of-n", "svdd", "beam", "tree", "smc"):
        line = next(ln for ln in out.splitlines() if ln.startswith(method + " "))
        assert float(line.rsplit(" ", 1)[1]) <= 40  # reward calls per sample within the budget
    assert ns["better"].rewards.shape == (4,)
