"""Bad input and faults, case by case: each either fails before any work with a message naming the bad value, or is
handled as documented. CLI cases run the real `svdd` command in a subprocess."""

import gzip
import math
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import svdd
from conftest import TinyDenoiser, TinyMLP, gauss_reward, token_reward, wait_until
from svdd.errors import RewardUnavailable, RunError

SVDD = shutil.which("svdd") or str(Path(sys.executable).parent / "svdd")


def cli(*args, cwd=None, timeout=300):
    """Run `svdd ARGS --quiet`; returns (exit status, stdout, stderr)."""
    p = subprocess.run([SVDD, *map(str, args), "--quiet"], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def refused(args, message, status=2):
    rc, out, err = cli(*args)
    assert rc == status, (rc, out, err)
    assert message in err, err
    assert "Traceback" not in err, err
    return err


def gauss(**kw):
    return svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=kw.pop("num_steps", 6), **kw)


def masked(net=None, **kw):
    return svdd.MaskedDiffusion(net or TinyDenoiser(), seq_len=10, vocab_size=4, num_steps=6, **kw)


# 1. a zero or negative count is an error, never "the task default" ----------------------------------------------
@pytest.mark.parametrize("command", ["sample", "compare", "frontier"])
def test_num_samples_zero_is_refused(tmp_path, command):
    refused([command, "--task", "toy-motif", "--num-samples", "0", "--out", tmp_path / "o"],
            "argument --num-samples: must be an integer >= 1, got '0'")
    assert not (tmp_path / "o").exists()


# 2. one rule for method options -----------------------------------------------------------------------------------
def test_set_on_compare_goes_to_the_methods_that_have_it(tmp_path):
    rc, out, err = cli("compare", "--task", "toy-motif", "--methods", "pretrained,svdd-pm", "--set", "select_every=2",
                       "--num-samples", "8", "--seeds", "0", "--out", tmp_path)
    assert rc == 0, err
    import json
    methods = json.loads((tmp_path / "summary.json").read_text())["methods"]
    assert methods["svdd-pm"]["select_every"] == 2 and "select_every" not in methods["pretrained"]


@pytest.mark.parametrize("method,flag,value", [("pretrained", "--M", "3"), ("best-of-n", "--alpha", "1")])
def test_an_option_the_sampled_method_lacks_is_an_error(tmp_path, method, flag, value):
    option = flag.lstrip("-")
    refused(["sample", "--task", "toy-motif", "--method", method, flag, value, "--out", tmp_path],
            f"method {method!r} has no option(s) [{option!r}]")


# 3. seeds ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seeds,message", [("0,0", "seeds must differ, got [0] more than once in '0,0'"),
                                           (",", "expected comma-separated seeds, got ','"),
                                           ("0,x", "expected an integer, got 'x'")])
def test_bad_seed_lists(tmp_path, seeds, message):
    refused(["compare", "--task", "toy-motif", "--seeds", seeds, "--out", tmp_path], f"argument --seeds: {message}")


# 4. options that were ignored or coerced ----------------------------------------------------------------------------
def test_class_on_a_task_without_classes(tmp_path):
    refused(["sample", "--task", "fashion-compress", "--class", "sneaker", "--out", tmp_path],
            "--class 'sneaker': task 'fashion-compress' has no target class")


def test_alpha_inf_on_the_command_line(tmp_path):
    refused(["sample", "--task", "toy-motif", "--alpha", "inf", "--out", tmp_path], "alpha must be finite, got inf")


@pytest.mark.parametrize("opts,message", [({"alpha": True}, "alpha must be a number >= 0, got True"),
                                          ({"alpha": math.inf}, "alpha must be finite, got inf"),
                                          ({"alpha": math.nan}, "alpha must be a number >= 0, got nan"),
                                          ({"seed": 1.7}, r"seed must be an int in \[0, 2\*\*62\), got 1.7"),
                                          ({"seed": -1}, "seed must be an int"),
                                          ({"seed": 10 ** 20}, "seed must be an int")])
def test_coerced_api_values_are_refused(opts, message):
    with pytest.raises(ValueError, match=message):
        svdd.sample(gauss(), gauss_reward, "svdd", num_samples=2, M=2, **opts)


# 5. svdd-r that would replace nothing -----------------------------------------------------------------------------
def test_svdd_r_that_replaces_nothing_warns():
    with pytest.warns(RuntimeWarning, match=r"int\(0.05 \* 8\) = 0 samples per step: this run is plain svdd. "
                                            r"Use num_samples >= 20 or replace_fraction >= 0.125"):
        r = svdd.sample(gauss(), gauss_reward, "svdd-r", num_samples=8, M=2, seed=3)
    assert torch.equal(r.samples, svdd.sample(gauss(), gauss_reward, "svdd", num_samples=8, M=2, seed=3).samples)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 20 samples: one is replaced, no warning
        svdd.sample(gauss(), gauss_reward, "svdd-r", num_samples=20, M=2)


# 6. max_batch does not change the samples of the toy task on the command line (every task: test_invariance.py) -----
def test_max_batch_3_and_1024_give_the_same_toy_samples(tmp_path):
    texts = []
    for mb in (3, 1024):
        rc, _, err = cli("sample", "--task", "toy-motif", "--num-samples", "64", "--max-batch", mb,
                         "--out", tmp_path / f"mb{mb}")
        assert rc == 0, err
        texts.append((tmp_path / f"mb{mb}" / "samples.txt").read_text())
    assert texts[0] == texts[1]


def test_exact_ties_survive_last_bit_noise():
    from svdd.resampling import select
    v = torch.tensor([[1.0, 1.0 + 2e-16 * 3, 0.5], [2.0, 2.0 * (1 - 1e-7), 3.0], [-4.0, -4.0 * (1 + 1e-7), -5.0],
                      [-math.inf, -math.inf, -math.inf]], dtype=torch.float64)
    assert select(v, 0.0, None).tolist() == [0, 2, 0, 0]  # near-ties keep the first; a clear best wins
    assert select(torch.tensor([[1.0, 1.0 + 1e-5]]), 0.0, None).tolist() == [1]  # beyond the tolerance: the best
    # a failed candidate (NaN / −inf) never ties with a finite best, wherever it stands
    assert select(torch.tensor([[-math.inf, 1.0, 1.0], [math.nan, 0.0, -1.0]], dtype=torch.float64), 0.0,
                  None).tolist() == [1, 1]
    # a penalty value elsewhere in the row does not widen the tolerance for the others
    assert select(torch.tensor([[-1e4, 1.0, 1.0 + 1e-5, 0.5]], dtype=torch.float64), 0.0, None).tolist() == [2]


# 7. output folder and every method's options are checked before any work --------------------------------------------
def test_out_that_is_a_file_fails_before_the_run(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    refused(["sample", "--task", "toy-motif", "--out", f], f"--out {str(f)!r} is an existing file, not a folder")
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("command", ["sample", "compare", "frontier"])
def test_out_that_cannot_be_written(command):
    refused([command, "--task", "toy-motif", "--out", "/proc/svdd-out"], "--out '/proc/svdd-out' cannot be written")


def test_compare_checks_every_method_before_the_first_run(tmp_path):
    refused(["compare", "--task", "toy-motif", "--alpha", "0", "--out", tmp_path], "method 'smc': alpha must be a number > 0")
    assert not (tmp_path / "runs").exists()  # no method ran
    refused(["frontier", "--task", "toy-motif", "--alpha", "0", "--out", tmp_path], "alpha must be a number > 0, got 0.0")


# 8. rewards: NaN / −inf everywhere, +inf ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_a_reward_that_fails_everywhere_is_an_error(value, check_timing):
    with pytest.raises(RunError, match="returned NaN or −inf for every one of 8 samples of its first batch"):
        svdd.sample(gauss(), lambda x: torch.full((x.shape[0],), value), "svdd", num_samples=4, M=2)


def test_minus_inf_is_a_counted_failure(check_timing):
    def reward(x):
        r = gauss_reward(x)
        return torch.where(x[:, 0] < 0, torch.full_like(r, -math.inf), r)

    with pytest.warns(RuntimeWarning, match="failed"):
        res = svdd.sample(gauss(), reward, "svdd", num_samples=16, M=2)
    assert torch.equal(torch.isnan(res.rewards), res.samples[:, 0] < 0)  # −inf is reported as a failure (NaN)


def test_plus_inf_reward_is_an_error(check_timing):
    with pytest.raises(RunError, match=r"returned \+inf for 2 of 8 samples; rewards must be finite"):
        svdd.sample(gauss(), lambda x: torch.cat([torch.full((2,), math.inf), x[2:, 0]]), "svdd", num_samples=4, M=2)


@pytest.mark.parametrize("value", [1.5, 1e308])  # 1e308: finite rewards whose sum overflows
def test_reward_values_are_the_engines_own_and_huge_finite_rewards_count(value, check_timing):
    """Finite rewards are rewards, also where their sum overflows; the values the engine keeps are not the tensor
    the reward returned (a reward may reuse its output buffer)."""
    from svdd.engine import Engine
    returned = []

    def reward(x):
        returned.append(torch.full((x.shape[0],), value, dtype=torch.float64))
        return returned[-1]

    engine = Engine(gauss(), svdd.Reward(reward, name="buffer"))
    values = engine.rewards(torch.zeros(6, 1))
    with torch.inference_mode():  # the reward ran under it
        returned[-1].fill_(math.nan)
    engine.settle()
    assert values.tolist() == [value] * 6 and engine.failures.failed_rewards == 0 and engine.cost.reward_calls == 6


# 9. non-finite network and value-net outputs --------------------------------------------------------------------------
class NaNValue(torch.nn.Module):
    def forward(self, x, t):
        return torch.full((x.shape[0],), math.nan)


class NaNDenoiser(TinyDenoiser):
    def forward(self, x, t):
        return super().forward(x, t) * math.nan


def test_value_net_returning_nan_is_an_error(check_timing):
    with pytest.raises(RunError, match="value net NaNValue returned NaN at level 1 for 8 of 8 evaluated rows"):
        svdd.sample(gauss(), gauss_reward, "svdd", num_samples=4, M=2, value=NaNValue())


def test_masked_network_returning_nan_is_an_error(check_timing):
    with pytest.raises(RunError, match="network NaNDenoiser of MaskedDiffusion returned NaN at level 0"):
        svdd.sample(masked(NaNDenoiser()), token_reward, "svdd", num_samples=4, M=2)


def test_gaussian_network_returning_nan_is_blamed_on_the_network(check_timing):
    def nan_eps(x, t):
        return x * math.nan

    with pytest.raises(RunError, match="network nan_eps of GaussianDiffusion returned NaN at level 0 for 4 of 4"):
        svdd.sample(svdd.GaussianDiffusion(nan_eps, (3,), num_steps=4), gauss_reward, "svdd", num_samples=4, M=2)


# 10. a reward that dies mid-run ---------------------------------------------------------------------------------------
def test_a_reward_that_dies_stops_the_run_after_a_few_calls(check_timing):
    calls = []

    def dying(x):
        calls.append(x.shape[0])
        if len(calls) > 3:
            raise ConnectionError("service gone")
        return gauss_reward(x)

    with pytest.raises(RewardUnavailable, match=r"failed on every row of 4 calls in a row and on a row it had scored "
                                                r"before \(last: ConnectionError: service gone\)"):
        svdd.sample(gauss(), dying, "svdd", num_samples=8, M=2, max_reward_failures=4)
    assert len(calls) == 3 + 1 + 4 + 1  # 3 answered calls, the batch, 4 of its rows and the probe: not every row
    with pytest.raises(ValueError, match="max_reward_failures must be an int >= 1, got 0"):
        svdd.sample(gauss(), gauss_reward, "svdd", max_reward_failures=0)


def test_many_failing_inputs_in_a_row_do_not_stop_a_live_reward(check_timing):
    def picky(x):  # fails on every sample with a positive first coordinate, answers the others
        if (x[:, 0] > 0).any():
            raise RuntimeError("cannot score")
        return gauss_reward(x)

    with pytest.warns(RuntimeWarning, match="cannot score"):
        res = svdd.sample(gauss(), picky, "svdd", num_samples=32, M=4, max_reward_failures=2)
    assert res.samples.shape == (32, 3) and sum(res.diagnostics.failed_candidates) > 0


def test_a_reward_with_isolated_failures_is_not_stopped(check_timing):
    def flaky(x):  # raises for a batch holding a sample with a large first coordinate; rows retried one by one
        if (x[:, 0] > 250).any():
            raise RuntimeError("docking failed")
        return gauss_reward(x)

    with pytest.warns(RuntimeWarning, match="docking failed"):
        res = svdd.sample(gauss(), flaky, "svdd", num_samples=16, M=4)  # default max_reward_failures
    assert res.samples.shape == (16, 3) and sum(res.diagnostics.failed_candidates) > 0


# 11. a reward that edits its input ------------------------------------------------------------------------------------
def test_a_reward_that_edits_its_input_cannot_corrupt_the_samples():
    def vandal(x):
        r = gauss_reward(x)
        x.zero_()
        return r

    got = svdd.sample(gauss(), vandal, "svdd", num_samples=8, M=3, seed=1)
    want = svdd.sample(gauss(), gauss_reward, "svdd", num_samples=8, M=3, seed=1)
    assert torch.equal(got.samples, want.samples) and torch.equal(got.rewards, want.rewards)


# 12. messages that named the wrong thing or came from deep inside ----------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--set", "select_window=5"], "select_window must be (start, stop) with 0 <= start < stop, got 5"),
    (["--method", "dps", "--set", "scale=abc"], "scale must be a number >= 0, got 'abc'"),
    (["--set", "M=abc"], "M must be an int >= 1, got 'abc'"),
    (["--task-option", "foo"], "--task-option expects KEY=VALUE, got 'foo'"),
    (["--set", "=3"], "--set expects KEY=VALUE, got '=3'"),
    (["--seed", "99999999999999999999"], "argument --seed: must be an integer >= 0 and < 2**62"),
    (["--max-batch", "0"], "argument --max-batch: must be an integer >= 1, got '0'"),
    (["--reward-budget", "nan"], "argument --reward-budget: must be a finite number >= 0, got 'nan'")])
def test_cryptic_messages_now_name_the_value(tmp_path, args, message):
    refused(["sample", "--task", "toy-motif", *args, "--out", tmp_path], message)


@pytest.mark.parametrize("device,message", [("banana", "--device 'banana' is not a torch device"),
                                            ("cuda", "--device 'cuda': this torch")])
def test_bad_device(tmp_path, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device, so --device cuda is valid here")
    refused(["sample", "--task", "fashion-class", "--device", device, "--out", tmp_path], message)


# 13. model and value-net shapes and settings ---------------------------------------------------------------------------
class WideValue(torch.nn.Module):
    def forward(self, x, t):
        return torch.zeros(x.shape[0], 2)


class NarrowDenoiser(TinyDenoiser):  # its embedding has the mask row, but it predicts 3 of 4 tokens
    def __init__(self):
        super().__init__(vocab=4)
        self.out = torch.nn.Linear(16, 3)


def test_value_net_with_the_wrong_output_shape():
    with pytest.raises(ValueError, match=r"value net WideValue returned shape \(8, 2\) for 8 states; expected \(8,\) "
                                         r"or \(8, 1\)"):
        svdd.sample(gauss(), gauss_reward, "svdd", num_samples=4, M=2, value=WideValue())


def test_masked_network_with_the_wrong_logit_width():
    with pytest.raises(ValueError, match=r"network NarrowDenoiser returned logits of shape \(1, 10, 3\) for 1 "
                                         r"sequences; expected \(1, 10, 4\) or \(1, 10, 5\)"):
        svdd.sample(masked(NarrowDenoiser()), token_reward, "svdd", num_samples=2, M=2)
    with pytest.raises(ValueError, match=r"does its embedding have vocab_size \+ 1 = 5 rows"):
        svdd.sample(masked(TinyDenoiser(vocab=3)), token_reward, "svdd", num_samples=2, M=2)


@pytest.mark.parametrize("kw,message", [({"seq_len": 0}, "seq_len must be an int >= 1, got 0"),
                                        ({"seq_len": -3}, "seq_len must be an int >= 1, got -3"),
                                        ({"vocab_size": 1}, "vocab_size must be an int >= 2, got 1"),
                                        ({"vocab_size": 0}, "vocab_size must be an int >= 2, got 0"),
                                        ({"num_steps": 0}, "num_steps must be an int >= 1, got 0")])
def test_bad_masked_settings(kw, message):
    args = {"seq_len": 10, "vocab_size": 4, "num_steps": 8, **kw}
    with pytest.raises(ValueError, match=f"MaskedDiffusion: {message}"):
        svdd.MaskedDiffusion(TinyDenoiser(), **args)


@pytest.mark.parametrize("eta", [math.nan, math.inf, -1.0])
def test_bad_eta(eta):
    with pytest.raises(ValueError, match=f"eta must be a finite number >= 0 .*got {eta}"):
        svdd.GaussianDiffusion(TinyMLP(), (3,), num_steps=4, eta=eta)


# 14. damaged files are named --------------------------------------------------------------------------------------------
def test_damaged_fashion_mnist_files_are_named(tmp_path, monkeypatch):
    from svdd.tasks.fashion import data
    good = gzip.compress(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + bytes(4))
    names = [f for pair in data.FILES.values() for f in pair]
    for name in names:
        (tmp_path / name).write_bytes(good)
    monkeypatch.setenv("SVDD_FASHION_MNIST", str(tmp_path))
    train = tmp_path / data.FILES["train"][0]
    train.write_bytes(good[: len(good) // 2])  # truncated gzip
    with pytest.raises(ValueError, match=f"{train} is not a readable gzip file"):
        data.load_split("train")
    train.write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match=f"{train} is not a readable gzip file"):
        data.load_split("train")
    train.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") * 3 + bytes(50)))
    with pytest.raises(ValueError, match=f"{train} holds 66 bytes, but its header \\[10, 10, 10\\] needs 1016"):
        data.load_split("train")


def test_binary_fasta_is_named(tmp_path):
    from svdd.tasks.dna.data import read_fasta
    f = tmp_path / "seqs.fa"
    f.write_bytes(b">a\nACGT\x00\x00\xff\xfe")
    with pytest.raises(ValueError, match=f"{f} is not a text FASTA file: byte 0xff at offset 9"):
        read_fasta(f, length=None)
    f.write_bytes(b">a\nAC\x00GT\n")
    with pytest.raises(ValueError, match=f"{f} is not a text FASTA file: it holds NUL bytes"):
        read_fasta(f, length=None)


class Shipped(torch.nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.config = {"width": width}
        self.lin = torch.nn.Linear(width, 2)


def test_corrupt_safetensors_is_named(tmp_path):
    from svdd.io import load_module, save_module
    from svdd.training import Rollouts
    save_module(Shipped(), tmp_path / "net")
    assert isinstance(load_module(Shipped, tmp_path / "net"), Shipped)
    w = tmp_path / "net.safetensors"
    w.write_bytes(w.read_bytes()[:20])
    with pytest.raises(ValueError, match=f"{w} is not a readable safetensors file"):
        load_module(Shipped, tmp_path / "net")
    r = tmp_path / "rollouts.safetensors"
    r.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=f"{r} is not a readable safetensors file"):
        Rollouts.load(r)


# 15. Ctrl-C ---------------------------------------------------------------------------------------------------------------
def _interruptible():
    """A child process with SIGINT at its default (a shell that starts a job in the background ignores it, and Python
    keeps an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, children):
    out = tmp_path / "cmp"
    p = subprocess.Popen([SVDD, "compare", "--task", "toy-motif", "--methods", "svdd-pm", "--num-samples", "256",
                          "--seeds", ",".join(map(str, range(40))), "--out", str(out), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    children.append(p)
    runs = out / "runs"
    wait_until(p, lambda: any(runs.glob("*/chunks/*.sha256")))
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    kept = len(list(runs.glob("*/chunks/*.sha256")))  # one chunk per (method, seed) run
    assert f"interrupted: {kept} finished chunk(s) of its runs are kept in {runs}; resume with: svdd compare" \
        in stderr and kept >= 1
    # rerunning resumes from them: the finished runs are reused, not recomputed
    before = {f: f.stat().st_mtime_ns for f in runs.glob("*/chunks/*.parquet")}
    command = stderr.strip().split("resume with: ")[1]
    assert command.endswith(f"--resume {out}")
    rc, _, err = cli("compare", "--task", "toy-motif", "--methods", "svdd-pm", "--num-samples", "256",
                     "--seeds", ",".join(map(str, range(kept))), "--resume", out)  # fewer seeds: a subset is fine
    assert rc == 0, err
    assert all(f.stat().st_mtime_ns == t for f, t in before.items())


def test_sample_interrupted_keeps_its_chunks(tmp_path, children):
    out = tmp_path / "run"
    p = subprocess.Popen([SVDD, "sample", "--task", "toy-motif", "--num-samples", "100000", "--chunk-size", "64",
                          "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_interruptible)
    children.append(p)
    chunks = out / "chunks"
    wait_until(p, lambda: chunks.exists() and any(chunks.glob("*.sha256")))
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    kept = len(list(chunks.glob("*.sha256")))
    assert f"svdd: interrupted: {kept} of 1563 chunk(s) finished and kept in {out}; resume with: svdd sample " \
           f"--task toy-motif --num-samples 100000 --chunk-size 64 --quiet --resume {out}" == stderr.strip()
