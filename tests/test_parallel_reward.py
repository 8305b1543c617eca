"""ParallelReward: per-item evaluation in worker processes, in input order; a timeout, a crashed worker or an exception
costs one NaN and the pool goes on; init runs once per worker; it composes with CachedReward and with svdd.sample."""

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import svdd
from svdd.rewards import CachedReward, ParallelReward, RewardStats

import _reward_items as items

OFFSET = 100.0


def items_of(*pairs):
    return torch.tensor(pairs, dtype=torch.float64)


def running(pid):
    """A process that exists and is not a zombie (a zombie left to a container's PID 1 is not ours to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def shared_pool():
    r = ParallelReward(items.item_value, workers=2, timeout=1.5, init=items.init_worker, init_args=(OFFSET,))
    yield r.start()
    pids = r.pids
    r.close()
    assert len(pids) == 2 and not any(running(p) for p in pids)  # close() stops and reaps every worker


@pytest.fixture
def pool(shared_pool):
    shared_pool.stats = RewardStats()
    return shared_pool


def test_results_equal_serial_evaluation_in_order(pool):
    x = items_of(*[(0, v) for v in range(10)])
    serial = ParallelReward(items.item_value, workers=0, init=items.init_worker, init_args=(OFFSET,))(x)
    out = pool(x)
    assert out.dtype == torch.float64 and out.shape == (10,)
    assert torch.equal(out, serial) and out.tolist() == [OFFSET + v for v in range(10)]
    assert (pool.stats.calls, pool.stats.failures, pool.stats.first_error) == (10, 0, None) and pool.stats.seconds > 0


def test_timeout_gives_nan_and_the_pool_goes_on(pool):
    t0 = time.perf_counter()
    out = pool(items_of((0, 1), (1, 0), (0, 2), (0, 3)))
    assert time.perf_counter() - t0 < 10  # the hanging item (30 s) was cut at 1.5 s
    grandchild = Path(items.grandchild_file(os.getpid()))
    assert not running(int(grandchild.read_text()))  # the program it started was killed with it
    grandchild.unlink()
    assert torch.isnan(out[1]) and out[[0, 2, 3]].tolist() == [101.0, 102.0, 103.0]
    assert (pool.stats.timeouts, pool.stats.failures) == (1, 1) and "timed out after 1.5 s" in pool.stats.first_error
    assert pool(items_of((0, 5), (0, 6), (0, 7))).tolist() == [105.0, 106.0, 107.0]  # restarted worker ran init


def test_crashed_worker_gives_nan_and_the_pool_goes_on(pool):
    out = pool(items_of((0, 1), (2, 0), (0, 3)))
    assert torch.isnan(out[1]) and out[[0, 2]].tolist() == [101.0, 103.0]
    assert pool.stats.crashes == 1 and "exit code 3" in pool.stats.first_error
    assert pool(items_of((0, 4), (0, 5))).tolist() == [104.0, 105.0]


def test_exception_gives_nan_with_its_message(pool):
    out = pool(items_of((3, 7), (0, 1)))
    assert torch.isnan(out[0]) and out[1] == 101.0
    assert (pool.stats.errors, pool.stats.failures) == (1, 1)
    assert pool.stats.first_error == "item 0: ValueError: bad item 7.0"


def test_init_runs_once_per_worker(pool):
    pids = pool(items_of(*[(5, 0)] * 8)).long().tolist()
    assert set(pids) <= set(pool.pids) and len(pool.pids) == 2
    assert pool(items_of(*[(6, 0)] * 8)).tolist() == [1.0] * 8


def test_pickled_copy_starts_its_own_workers(pool):
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.pids == [] and copy.workers == 2 and copy.timeout == 1.5 and pool.pids
    assert copy.config() == {"type": "parallel", "item_fn": "_reward_items.item_value", "workers": 2, "timeout": 1.5}


def test_two_workers_run_in_parallel(pool):
    pool.start()  # both workers ready: time the items only
    t0 = time.perf_counter()
    out = pool(items_of(*[(4, v) for v in range(8)]))
    assert time.perf_counter() - t0 < 0.75 * 8 * 0.3
    assert out.tolist() == [OFFSET + v for v in range(8)]


def test_cache_passes_only_missing_rows_to_the_pool(pool):
    r = CachedReward(pool)
    x = items_of(*[(0, v) for v in range(6)])
    assert r(x).tolist() == [OFFSET + v for v in range(6)]
    before = pool.stats_snapshot()
    y = torch.cat([x[:3], items_of((0, 10), (0, 11), (0, 10))])
    assert r(y).tolist() == [100.0, 101.0, 102.0, 110.0, 111.0, 110.0]
    assert (pool.stats - before).calls == 2 and (r.stats.calls, r.stats.hits) == (8, 4)


def test_sampling_with_failing_items_finishes_and_counts_them(masked_model):
    with ParallelReward(items.token_item, workers=2, context="forkserver") as r:
        with pytest.warns(RuntimeWarning, match=r"failed \(raised or NaN\)"):
            res = svdd.sample(masked_model, r, "svdd", num_samples=8, M=2, seed=0)
        assert r.stats.errors == r.stats.failures > 0 and r.stats.calls == res.cost.reward_evals
        assert "cannot score a sequence with a 3 in front" in r.stats.first_error
        pids = r.pids
    assert sum(res.diagnostics.failed_candidates) > 0  # per candidate (a failing row repeated M times counts M times)
    assert torch.equal(torch.isnan(res.rewards), (res.samples[:, :5] == 3).any(dim=1))
    assert not any(running(p) for p in pids)


def test_bad_arguments_are_named():
    for kw, err, match in [({"workers": -1}, ValueError, "workers must be an int >= 0.*got -1"),
                           ({"workers": 1.5}, ValueError, "got 1.5"),
                           ({"timeout": 0}, ValueError, "timeout must be .* > 0 or None, got 0"),
                           ({"timeout": -2.5}, ValueError, "got -2.5"),
                           ({"context": "fork"}, ValueError, "got 'fork'")]:
        with pytest.raises(err, match=match):
            ParallelReward(items.item_value, **kw)
    with pytest.raises(TypeError, match="item_fn must be picklable"):
        ParallelReward(lambda item: 0.0)
    ParallelReward(lambda item: 0.0, workers=0)  # in-process: no pickling needed


def test_failing_init_is_raised_on_every_call():
    r = ParallelReward(items.item_value, workers=1, init=items.init_worker, init_args=("not a number",),
                       context="forkserver")
    with pytest.raises(RuntimeError, match="init of reward 'item_value' raised in a worker: ValueError"):
        r(items_of((0, 1)))
    with pytest.raises(RuntimeError, match="init of reward"):
        r(items_of((0, 1)))
    assert r.pids == []


def test_workers_stop_at_interpreter_exit():
    code = ("import torch, _reward_items as it\nfrom svdd.rewards import ParallelReward\n"
            "r = ParallelReward(it.item_value, workers=1).start()\nprint(*r.pids)\n"
            "assert r(torch.tensor([[0., 1.], [0., 2.]])).tolist() == [1., 2.]\n")  # exits without close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - t0 < 30
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 1 and not running(pids[0])
