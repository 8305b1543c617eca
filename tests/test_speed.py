"""Speed paths must not change results: chunk-size calibration, streaming SVDD over sample slices, inference mode;
bf16 agrees with fp32 within a stated tolerance on the shipped DNA networks; measured sizes persist."""

import json
import time
import warnings

import pytest
import torch

import svdd
from conftest import token_reward
import svdd.engine
from svdd.engine import BatchTuner, Engine


def _run(tuner, fn, x):
    return torch.cat(tuner.chunks(fn, x))


def test_tuner_measures_on_copies_then_chunks_every_call_alike():
    tuner, x = BatchTuner(upper=100), torch.arange(1000.0)[:, None]
    seen = []

    def fn(c):
        seen.append(c.shape[0])
        return 2 * c

    assert torch.equal(_run(tuner, fn, x), 2 * x)  # the timing runs' outputs are dropped
    assert sorted(tuner.best) == [16, 32, 64, 100] and tuner.choice in tuner.best
    assert seen[:12] == [16, 32, 64, 100] * 3  # a warm-up round and two timed rounds, the sizes alternating
    seen.clear()
    assert torch.equal(_run(tuner, fn, x), 2 * x)  # no more timing: every chunk has the chosen size
    assert set(seen[:-1]) == {tuner.choice} and sum(seen) == 1000
    seen.clear()
    tuner.choice = 32
    _run(tuner, fn, torch.zeros(65, 1))  # never a chunk of one row (CPU kernels round it differently)
    assert seen == [32, 33]


@pytest.mark.parametrize("per_call,per_row_squared,upper,expected", [(4e-3, 0.0, 256, 256), (0.0, 1e-5, 128, 16)])
def test_tuner_picks_the_fastest_size(per_call, per_row_squared, upper, expected):
    """A fixed cost per call favours the largest chunk; a cost growing faster than the rows favours the smallest
    (margins of 2x per row and more, so that a loaded machine's sleep overshoot cannot flip the choice)."""
    tuner, x = BatchTuner(upper=upper), torch.zeros(2000, 1)

    def fn(c):
        time.sleep(per_call + per_row_squared * c.shape[0] ** 2)
        return c

    _run(tuner, fn, x)
    assert tuner.choice == expected


def test_tuner_keeps_the_smallest_of_the_sizes_within_five_percent():
    """Sizes within 5% of the least time per row are equally fast (larger chunks cost memory): the smallest wins."""
    pick = BatchTuner.smallest_fast
    assert pick({16: 1.00, 32: 0.97, 64: 0.96, 483: 0.95}) == 32  # 0.97 <= 1.05 * 0.95 < 1.00
    assert pick({16: 1.10, 32: 1.00, 64: 0.96}) == 32
    assert pick({16: 1.10, 32: 1.00, 64: 0.94}) == 64  # 1.00 > 1.05 * 0.94 = 0.987
    assert pick({16: 2.0, 256: 1.0}) == 256 and pick({128: 3.0}) == 128


def _fixed_cost(n):  # 4 ms a call at any size: the cost per row halves at twice the rows
    return 4e-3


def _knee_64(n):  # a call of more than 64 rows costs 4x per row
    return 4e-3 * (1 if n <= 64 else 4 * n / 64)


def _per_row_to_40(n):  # as much per row at 16, 32 and 40 rows, then a fixed cost per call
    return 4e-3 * min(n, 40) / 40


def _step_past_128(n):  # fixed up to 40 rows, then as much per row as at 40 up to 128 rows, then fixed again
    return 4e-3 * max(1.0, min(n, 128) / 40)


@pytest.mark.parametrize("cost,upper,expected,measured", [(_fixed_cost, 256, 256, [16, 32, 40, 128, 256]),
                                                          (_knee_64, 512, 40, [16, 32, 40, 128, 256]),
                                                          (_step_past_128, 256, 256, [16, 32, 40, 128, 256]),
                                                          (_per_row_to_40, 256, 256, [16, 32, 40, 128, 256])])
def test_tuner_goes_past_a_small_first_call_while_larger_chunks_are_cheaper(cost, upper, expected, measured,
                                                                          monkeypatch):
    """The first call has 40 rows and wins: sizes from 80 on (128, 256, ..., the bound) are timed on copies of its
    rows, each at least 10% cheaper per row than the best so far becoming the choice, until two sizes in a row are
    not. A fixed cost per call takes the bound; past a knee nothing is cheaper (128 and 256 timed, 512 not: the first
    call's size is kept); a step in the cost (128 rows cost as much per row as 40, 256 half as much) does not stop
    the timing at its flat part; the first call's size need only be within 5% of the fastest (16, 32 and 40 rows
    cost the same per row: the smallest is the choice, and larger sizes are still timed). The tuner's clock reads
    the cost function (exact times: the 5% band is no place for sleeps on a loaded machine)."""
    tuner, calls = BatchTuner(upper=upper), []
    monkeypatch.setattr(BatchTuner, "_time", staticmethod(lambda fn, rows: (fn(rows), cost(rows.shape[0]))[1]))

    def fn(c):
        calls.append(c.shape[0])
        return c

    _run(tuner, fn, torch.zeros(40, 1))
    assert calls[-1] == 40  # the real call, after the timing runs
    assert tuner.choice == expected and sorted(tuner.best) == measured


def test_measured_sizes_are_kept_across_processes(tmp_path, masked_model):
    """A second process (a fresh tuner) reads the size the first measured: the same chunks, the same samples."""
    from svdd.engine import BatchSizeStore
    store = BatchSizeStore(tmp_path / "sizes.json")
    first = BatchTuner(upper=512, store=store, key="k")
    first.chunks(lambda c: c, torch.zeros(300, 1))
    second = BatchTuner(upper=512, store=BatchSizeStore(tmp_path / "sizes.json"), key="k")
    assert second.choice == first.choice is not None and second.best == {}  # nothing measured again
    assert BatchTuner(upper=512, store=store, key="other").choice is None
    (tmp_path / "sizes.json").write_text("not json")  # a damaged file: measure again, do not fail
    assert BatchTuner(upper=512, store=BatchSizeStore(tmp_path / "sizes.json"), key="k").choice is None


class NetReward(svdd.Reward):
    """A reward around a network, as the shipped oracles are; counts the rows it is asked for."""

    tune_batch = True

    def __init__(self, net):
        super().__init__(None, name="net-reward")
        self.net, self.rows = net, 0

    def __call__(self, x):
        self.rows += x.shape[0]
        return self.net(x.float()).squeeze(-1)


def test_a_tuned_network_reward_keeps_its_size_across_processes(tmp_path, monkeypatch, masked_model):
    """A tuned reward that wraps a network is named by its weights: a new reward object over the same weights (as in
    another process) reads the size measured before and times nothing; other weights are measured anew."""
    monkeypatch.setenv("SVDD_CACHE", str(tmp_path))
    net = torch.nn.Linear(10, 1)
    runs = []
    for reward in (NetReward(net), NetReward(net)):
        res = svdd.sample(masked_model, reward, "svdd", num_samples=40, M=4, seed=1)
        runs.append((res, reward.rows))
    (first, timed_rows), (second, plain_rows) = runs
    assert first.config["batch_sizes"]["reward"] is not None
    assert second.config["batch_sizes"]["reward"] == first.config["batch_sizes"]["reward"]
    assert plain_rows == second.cost.reward_evals < timed_rows  # the second run evaluated only its own rows
    assert torch.equal(second.samples, first.samples)
    keys = [k for k in json.loads((tmp_path / "batch_sizes.json").read_text()) if k.startswith("reward|")]
    assert len(keys) == 1 and "net=" in keys[0]
    other = NetReward(torch.nn.Linear(10, 1))
    res = svdd.sample(masked_model, other, "svdd", num_samples=40, M=4, seed=1)
    assert other.rows > res.cost.reward_evals and len([k for k in json.loads((tmp_path / "batch_sizes.json").read_text())
                                   if k.startswith("reward|")]) == 2


def test_identity_of_rewards_that_hold_networks():
    """Named by the weights they hold (an activation module by its type); unreadable weights or none: no name, so
    the size is measured in each process rather than a run failing."""
    from svdd.engine import _identity
    net = torch.nn.Linear(3, 1)
    a, b = NetReward(net), NetReward(net)
    b.act = torch.nn.Sigmoid()
    assert _identity(a) and "net=" in _identity(a) and _identity(a) == _identity(NetReward(net))
    assert "act=Sigmoid" in _identity(b) and _identity(b) != _identity(a)
    assert _identity(NetReward(torch.nn.Linear(3, 1, device="meta"))) is None
    assert _identity(NetReward(torch.nn.Sigmoid())) is None
    assert _identity(svdd.Reward(lambda x: x)) is None


def test_sizes_measured_in_bf16_are_kept_apart_from_fp32(tmp_path, monkeypatch, masked_model):
    monkeypatch.setenv("SVDD_CACHE", str(tmp_path))
    monkeypatch.setattr(svdd.engine, "cpu_has_bf16", lambda: True)
    for precision in ("fp32", "bf16"):
        svdd.sample(masked_model, token_reward, "svdd", num_samples=40, M=4, seed=1, precision=precision)
    keys = [k for k in json.loads((tmp_path / "batch_sizes.json").read_text()) if k.startswith("network|")]
    assert len(keys) == 2 and sum("precision=bf16" in k for k in keys) == 1


def test_gather_writes_slices_in_any_order_and_refuses_mismatches():
    from svdd.methods.svdd import gather
    x, v = torch.arange(40).view(20, 2), torch.rand(20, dtype=torch.float64)
    cuts = [slice(16, 20), slice(0, 16)]
    out = gather(20, ((sl, (x[sl], None, v[sl])) for sl in cuts))
    assert torch.equal(out[0], x) and out[1] is None and torch.equal(out[2], v)
    assert gather(20, [(slice(0, 20), (x, None, v))])[0] is x  # one slice: as it is
    with pytest.raises(RuntimeError, match="does not match"):
        gather(20, [(slice(0, 16), (x[:16], None, v[:16])), (slice(16, 20), (x[16:].float(), None, v[16:]))])
    with pytest.raises(RuntimeError, match="cover 16 of 20"):
        gather(20, [(slice(0, 16), (x[:16], None, v[:16]))])


STREAM_CASES = [(kind, opts) for kind in ("gauss", "masked") for opts in ({"M": 5}, {"M": 4, "alpha": 0.4})]
STREAM_CASES.append(("masked", {"M": 3, "value": svdd.PosteriorMean(3)}))  # sampled completions: token models


@pytest.mark.parametrize("kind,opts", STREAM_CASES)
def test_calibration_and_streaming_never_change_samples(kind, opts, gmm, masked_model):
    """Networks whose rows do not depend on their batch: the same samples with tuned chunks, fixed chunks, and
    candidates built for all N·M rows at once or streamed over slices of 16 samples (CPU random draws)."""
    model, reward = (gmm[0], gmm[1]) if kind == "gauss" else (masked_model, token_reward)
    ref = svdd.sample(model, reward, "svdd", num_samples=40, seed=2, max_batch=100000, auto_batch=False, **opts)
    for mb, auto in [(100000, True), (64, True), (64, False), (1, True)]:
        run = svdd.sample(model, reward, "svdd", num_samples=40, seed=2, max_batch=mb, auto_batch=auto, **opts)
        assert torch.equal(run.samples, ref.samples), (mb, auto)
        assert torch.equal(run.rewards, ref.rewards)
        assert run.config["auto_batch"] is auto
        sizes = run.config["batch_sizes"]
        assert (sizes == {}) if not auto else all(s is None or 1 <= s <= mb for s in sizes.values())


def test_sample_chunks_bound_the_candidates_built_at_once():
    engine = Engine(object(), svdd.Reward(lambda x: x), max_batch=640)
    assert engine.sample_chunks(64, 10) == [slice(0, 64)]  # all N·M rows fit: one slice, as before
    assert engine.sample_chunks(200, 10) == [slice(0, 64), slice(64, 128), slice(128, 192), slice(192, 200)]
    assert engine.sample_chunks(40, 100) == [slice(0, 16), slice(16, 32), slice(32, 40)]  # at least 16 samples


@pytest.mark.parametrize("device,row_bytes,expected", [
    ("cpu", None, 1024), ("cpu", 8, 32768), ("cpu", 24, 8192), ("cpu", 128, 2048), ("cpu", 129, 1024),
    ("cpu", 1600, 1024), ("cpu", 1, 262144), ("cpu", 10**9, 1024),
    ("cuda", None, 8192), ("cuda", 8, 32768), ("cuda", 16, 16384), ("cuda", 17, 8192), ("cuda", 4096, 8192)])
def test_default_max_batch_grows_only_for_small_rows(device, row_bytes, expected):
    """1024 rows on CPU and 8192 on a GPU, or the largest power of two of rows within 256 KiB when that is more."""
    assert svdd.engine.default_max_batch(device, row_bytes) == expected


def test_the_default_max_batch_is_set_by_the_first_rows_evaluated(gmm, masked_model):
    """2-D fp32 points (8 bytes a row) get 32,768 rows, a 10-token int64 string (80 bytes) 2048; the samples are
    those of the old default (1024); a max_batch the user gives is kept whatever the rows."""
    for (model, reward), expected in [(gmm[:2], 32768), ((masked_model, token_reward), 2048)]:
        runs = [svdd.sample(model, reward, "svdd", M=4, num_samples=24, seed=1, max_batch=mb) for mb in (None, 1024)]
        assert [r.config["max_batch"] for r in runs] == [expected, 1024]
        assert torch.equal(runs[0].samples, runs[1].samples)
    assert Engine(object(), svdd.Reward(lambda x: x)).max_batch == 1024  # before any rows: the default of large rows


def test_results_are_ordinary_tensors(masked_model):
    res = svdd.sample(masked_model, token_reward, "svdd", num_samples=4, M=3, return_x0=True)
    for t in (res.samples, res.rewards, res.x0_estimates):
        assert not t.is_inference()
    res.rewards += 1  # an inference-mode tensor would refuse this
    res.samples[0, 0] = 0


def test_precision_must_be_known(masked_model):
    with pytest.raises(ValueError, match="'fp16'"):
        svdd.sample(masked_model, token_reward, "svdd", num_samples=4, precision="fp16")


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch, masked_model):
    import svdd.engine
    monkeypatch.setattr(svdd.engine, "cpu_has_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="without native bf16"):
        svdd.sample(masked_model, token_reward, "svdd", num_samples=4, M=2, precision="bf16")
    monkeypatch.setattr(svdd.engine, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        svdd.sample(masked_model, token_reward, "svdd", num_samples=4, M=2, precision="bf16")


def test_bf16_agrees_with_fp32_on_the_shipped_dna_networks():
    """Tolerance: denoiser probabilities within 0.03 (absolute, max over 64 sequences x 200 positions x 4 bases);
    guidance oracle and value net within 0.1 (HepG2 log-odds span about 12)."""
    from svdd.tasks.dna import build_spec, load_networks
    spec, nets = build_spec(num_steps=16), load_networks()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 4, (64, 200), generator=g)
    xt = torch.where(torch.rand(x0.shape, generator=g) < 0.5, 4, x0)
    out = {}
    for precision in ("fp32", "bf16"):
        engine = Engine(spec.model, spec.reward, precision=precision, auto_batch=False)  # numbers, not timing
        out[precision] = (engine.predict(xt, 8).exp(),
                          engine.value_net(lambda c: nets["value"](c, torch.full((c.shape[0],), 0.5)), xt,
                                           owner=nets["value"]))
    assert (out["bf16"][0] - out["fp32"][0]).abs().max() < 0.03
    assert (out["bf16"][1] - out["fp32"][1]).abs().max() < 0.1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        oracle_bf16 = spec.reward(x0).float()
    with torch.no_grad():
        oracle_fp32 = spec.reward(x0).float()
    assert (oracle_bf16 - oracle_fp32).abs().max() < 0.1


def test_tuner_backs_off_from_sizes_that_run_out_of_memory():
    tuner, x = BatchTuner(upper=512), torch.arange(3000.0)[:, None]

    def fn(c):
        if c.shape[0] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return c + 1

    assert torch.equal(_run(tuner, fn, x), x + 1)
    assert sorted(tuner.best) == [16, 32, 64] and tuner.choice <= 64


@pytest.mark.parametrize("hashed", [None, False, True])
@pytest.mark.parametrize("collide", [False, True])
def test_unique_rows_exact_and_hashed(hashed, collide, monkeypatch):
    from svdd import engine
    if collide:  # every row hashes alike: the check against the rows must catch it and fall back to the sort
        monkeypatch.setattr(engine, "_hash_weights", lambda k, device: torch.zeros(k, dtype=torch.long))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (400, 2, 3), generator=g)
    uniq, inverse = engine.unique_rows(x, hashed=hashed)
    assert torch.equal(uniq[inverse], x)
    sorted_rows, sorted_inverse = torch.unique(x.reshape(400, -1), dim=0, return_inverse=True)
    assert uniq.shape[0] == sorted_rows.shape[0]  # each distinct row once
    if not hashed or collide:  # the sort's order (CPU default): exactly the sort's rows and inverse
        assert torch.equal(uniq.reshape(-1, 6), sorted_rows) and torch.equal(inverse, sorted_inverse)


class _NoTime(torch.nn.Module):
    """A masked denoiser without time input (it reads the noise level from the masks)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(5, 16)
        self.conv = torch.nn.Conv1d(16, 4, 3, padding=1)

    def forward(self, x, t):
        return self.conv(self.emb(x).transpose(1, 2)).transpose(1, 2)


def test_a_time_independent_model_reuses_the_output_of_unchanged_candidates():
    net = _NoTime()
    runs = [svdd.sample(svdd.MaskedDiffusion(net, seq_len=12, vocab_size=4, num_steps=48, time_independent=flag),
                        token_reward, "svdd", num_samples=32, M=6, seed=1) for flag in (False, True)]
    assert torch.equal(runs[0].samples, runs[1].samples) and torch.equal(runs[0].rewards, runs[1].rewards)
    assert runs[1].cost.network_evals < 0.9 * runs[0].cost.network_evals  # 12 tokens over 48 steps: many unchanged
    assert runs[1].config["model"]["time_independent"] is True


class SyncCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the calls that make a host wait for a GPU, on any device: reading a value (``item``, ``bool``, ``int``,
    ``tolist``) and ops whose output size depends on the data (``nonzero``, ``unique``, boolean-mask indexing)."""

    DATA_SIZED = {"aten.nonzero.default", "aten.unique_dim.default", "aten._unique2.default",
                  "aten.unique_consecutive.default", "aten.masked_select.default"}

    def __init__(self, monkeypatch):
        super().__init__()
        self.count = 0
        tolist = torch.Tensor.tolist

        def counted(t):  # tolist reads the data without dispatching an op
            self.count += 1
            return tolist(t)
        monkeypatch.setattr(torch.Tensor, "tolist", counted)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.count += (name == "aten._local_scalar_dense.default" or name in self.DATA_SIZED
                       or (name.startswith("aten.index") and any(getattr(a, "dtype", None) == torch.bool
                                                                 for a in (args[1] if len(args) > 1 else ()) or ())))
        return func(*args, **(kwargs or {}))


class _CheapReward(svdd.Reward):
    tune_batch = True  # a cheap network reward, as the shipped oracles declare themselves


@pytest.mark.parametrize("few_syncs", [False, True])
def test_an_svdd_step_waits_for_a_gpu_twice(few_syncs, monkeypatch):
    """On a GPU (``few_syncs``, forced here on CPU) a selection step of SVDD-PM with a time-independent masked model
    and a cheap network reward waits for the device twice: for the candidates that changed (the rows to evaluate)
    and for the step's queued output checks. With checks at every call it waits more often. Same samples."""
    monkeypatch.setattr(Engine, "FEW_SYNCS_DEVICES", ("cuda", "cpu") if few_syncs else ("cuda",))
    model = svdd.MaskedDiffusion(_NoTime(), seq_len=12, vocab_size=4, num_steps=10, time_independent=True)
    reward = _CheapReward(token_reward)
    ref = svdd.sample(model, reward, "svdd", num_samples=32, M=4, seed=3)  # also measures the chunk sizes
    counter, marks = SyncCounter(monkeypatch), []
    with counter:
        run = svdd.sample(model, reward, "svdd", num_samples=32, M=4, seed=3,
                          callback=lambda i, state, info: marks.append(counter.count))
    per_step = [b - a for a, b in zip(marks, marks[1:])]  # steps 1 .. T - 1
    if few_syncs:
        assert per_step[:-1] == [2] * 8 and per_step[-1] == 1  # the last step's candidates are clean: no network
    else:
        assert min(per_step[:-1]) >= 4
    assert torch.equal(run.samples, ref.samples) and torch.equal(run.rewards, ref.rewards)


HEAP_CYCLES = """
import ctypes, resource, torch
from svdd.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, tune_heap
def cycle():  # two 6 MiB tensors written and freed, as a network call's activations are
    a = torch.empty(6 << 20, dtype=torch.uint8).fill_(1)
    b = torch.empty(6 << 20, dtype=torch.uint8).fill_(1)
    del a, b
def faults():  # minor page faults per cycle, after six warm-up cycles (the heap takes up to four to settle)
    for _ in range(6):
        cycle()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        cycle()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10
libc = ctypes.CDLL("libc.so.6")  # glibc's starting thresholds, pinned (its adaptive state depends on the history)
assert libc.mallopt(M_MMAP_THRESHOLD, 128 << 10) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 128 << 10) == 1
before = faults()
print(tune_heap())
print(before, faults())
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="the heap settings are glibc's")
def test_cpu_runs_keep_freed_tensor_memory_in_the_heap(masked_model):
    """With glibc's starting thresholds a 12 MiB cycle of tensors written and freed faults on all its pages (3,072:
    each a page the kernel zeroes again) every time; after `tune_heap` the next cycles reuse the freed memory. A CPU
    run applies the settings and says so in its config."""
    import os
    import subprocess
    import sys
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "PYTHONPATH", "SVDD_CACHE") if k in os.environ}
    out = subprocess.run([sys.executable, "-c", HEAP_CYCLES], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    state, (before, after) = out[0], map(float, out[1].split())
    assert state.startswith("glibc mallopt: mmap threshold 32 MiB")
    assert before > 1000 and after < before / 10, (before, after)
    run = svdd.sample(masked_model, token_reward, "svdd", num_samples=4, M=2, seed=0)
    assert run.config["cpu_heap"] == svdd.allocator.tune_heap()


@pytest.mark.parametrize("env,says", [({"SVDD_MALLOC_TUNING": "0"}, "SVDD_MALLOC_TUNING=0"),
                                      ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, "MALLOC_TRIM_THRESHOLD_"),
                                      ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "GLIBC_TUNABLES")])
def test_heap_settings_are_left_alone_where_the_user_chose(monkeypatch, env, says):
    from svdd import allocator
    for k in ("SVDD_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
              "GLIBC_TUNABLES"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    called = []
    monkeypatch.setattr("ctypes.CDLL", lambda *a: called.append(a))  # no mallopt may be reached
    state = allocator._apply()
    assert state.startswith("left as it was") and says in state and not called
