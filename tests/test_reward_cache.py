"""CachedReward: each distinct sample is scored once; hits and real calls are counted apart; an SQLite file is shared
by processes; failures are not cached by default; sampling with a cache gives the uncached run's results."""

import multiprocessing as mp
import pickle
import sqlite3

import pytest
import torch

import svdd
from svdd.rewards import CachedReward, RewardStats
from svdd.rewards.cache import row_digest

import _reward_items as items
from conftest import token_reward


class Counting:
    """A reward that records every row it is asked for; NaN where the first coordinate is negative; raises on 99."""

    def __init__(self, fn=items.square_sum):
        self.fn, self.rows, self.__name__ = fn, 0, "counting"

    def __call__(self, x):
        if (x[:, 0] == 99).any():
            raise RuntimeError("docking failed")
        self.rows += x.shape[0]
        out = self.fn(x)
        return torch.where(x[:, 0] < 0, torch.full_like(out, float("nan")), out)


def test_hits_and_calls_are_counted_apart():
    inner = Counting()
    r = CachedReward(inner)
    x = items.rows(4)
    assert torch.equal(r(x), items.square_sum(x))
    assert (r.stats.calls, r.stats.hits, inner.rows) == (4, 0, 4)
    before = r.stats_snapshot()
    assert torch.equal(r(x), items.square_sum(x))  # a repeat makes no real call
    assert (r.stats - before).calls == 0 and (r.stats - before).hits == 4 and inner.rows == 4
    y = torch.cat([x[:2], items.rows(6)[5:], items.rows(6)[5:]])  # 2 cached rows, one new row twice
    assert torch.equal(r(y), items.square_sum(y))
    assert (r.stats.calls, r.stats.hits, inner.rows) == (5, 4 + 3, 5)
    assert r.stats.seconds > 0 and r.stats.failures == 0
    assert isinstance(r.stats_snapshot(), RewardStats) and r.stats_snapshot() is not r.stats
    assert not r.differentiable and r.name == "counting"
    assert r.config() == {"type": "cached", "namespace": "counting", "path": None}


def test_key_function_merges_rows():
    inner = Counting(lambda x: x[:, 0].double() * 10 + x[:, 1].double())
    r = CachedReward(inner, key=lambda row: ",".join(map(str, sorted(row.tolist()))))  # order-free "molecule" key
    x = torch.tensor([[1.0, 2.0], [2.0, 1.0], [3.0, 4.0]])
    out = r(x)
    assert inner.rows == 2 and r.stats.calls == 2 and r.stats.hits == 1
    assert out.tolist() == [12.0, 12.0, 34.0]  # both rows of one key get the representative's value
    assert row_digest(torch.tensor([1, 2])) != row_digest(torch.tensor([1.0, 2.0]))
    assert row_digest(torch.tensor([1.0, 2.0])) == row_digest(torch.tensor([[1.0, 2.0]])[0])


def test_results_equal_uncached_and_keep_device_dtype():
    x = torch.randn(16, 3)
    x[5] = x[2]
    r = CachedReward(items.square_sum)
    for _ in range(2):
        out = r(x)
        assert out.dtype == torch.float64 and out.device == x.device
        assert torch.equal(out, items.square_sum(x))
    assert r.stats.calls == 15 and r.stats.hits == 1 + 16
    assert r(x[:0]).shape == (0,)


def test_nan_is_not_cached_unless_asked(tmp_path):
    x = torch.tensor([[-1.0, 0.0], [1.0, 2.0]])
    inner = Counting()
    r = CachedReward(inner, path=tmp_path / "c.db")
    first, second = r(x), r(x)
    assert torch.isnan(first[0]) and torch.isnan(second[0]) and first[1] == second[1] == 5.0
    assert inner.rows == 3 and r.stats.failures == 2  # the failed row was tried again
    keep = CachedReward(Counting(), path=tmp_path / "c.db", cache_failures=True)
    keep(x)
    keep(x)
    assert (keep.stats.calls, keep.stats.hits, keep.stats.failures) == (1, 3, 1)
    with sqlite3.connect(tmp_path / "c.db") as db:  # a cached failure is stored as NULL
        assert db.execute("SELECT count(*) FROM rewards WHERE value IS NULL").fetchone()[0] == 1
    other = CachedReward(Counting(), path=tmp_path / "c.db")  # ignores stored failures: tries the row again
    other(x)
    assert (other.stats.calls, other.stats.hits) == (1, 1)


def test_raise_is_reraised_and_nothing_is_lost(tmp_path):
    path = tmp_path / "sub" / "dir" / "c.db"  # parent folders are created
    CachedReward(Counting(), path=path)(items.rows(3))
    r = CachedReward(Counting(), path=path)
    x = torch.cat([items.rows(3), torch.tensor([[99.0, 0.0]])])
    with pytest.raises(RuntimeError, match="docking failed"):
        r(x)
    assert r.stats.calls == 1 and len(r.memory) == 3  # the rows found in the file stay in memory
    r.close()
    with CachedReward(Counting(), path=path) as r:
        assert torch.equal(r(items.rows(3)), items.square_sum(items.rows(3)))
        assert r.stats.calls == 0
        copy = pickle.loads(pickle.dumps(r))  # the connection is not pickled; the copy opens its own
    assert copy._conn is None and torch.equal(copy(items.rows(3)), items.square_sum(items.rows(3)))


def test_sqlite_file_is_shared_by_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=items.fill_cache, args=(path, a, b, barrier)) for a, b in ((0, 40), (20, 60))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0  # two processes wrote concurrently, overlapping keys included, without error
    r = CachedReward(items.square_sum, path=path)
    x = items.rows(60)
    assert torch.equal(r(x), items.square_sum(x))
    assert (r.stats.calls, r.stats.hits) == (0, 60)
    assert r.config() == {"type": "cached", "namespace": "square_sum", "path": path}
    other = CachedReward(items.square_sum, path=path, namespace="square_sum/v2")  # another namespace: no hits
    other(x[:5])
    assert (other.stats.calls, other.stats.hits) == (5, 0)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM rewards").fetchone()[0] == 65


def test_sampling_with_a_cache_equals_the_uncached_run(masked_model):
    kw = dict(num_samples=8, M=4, seed=3)
    plain = svdd.sample(masked_model, token_reward, "svdd", **kw)
    r = CachedReward(svdd.Reward(token_reward))
    cached = svdd.sample(masked_model, r, "svdd", **kw)
    assert torch.equal(cached.samples, plain.samples) and torch.equal(cached.rewards, plain.rewards)
    assert r.stats.hits > 0 and r.stats.calls == len(r.memory)
    assert r.stats.calls + r.stats.hits == plain.cost.reward_evals
    c = cached.cost  # the engine: repeats within the run are cache hits, the rest are the run's reward calls
    assert (c.reward_calls, c.cache_hits, c.stored_hits) == (r.stats.calls, r.stats.hits, 0)
    assert c.reward_calls + c.cache_hits == c.reward_evals == plain.cost.reward_calls
    before = r.stats_snapshot()
    again = svdd.sample(masked_model, r, "svdd", **kw)  # everything is cached now
    assert torch.equal(again.samples, plain.samples) and (r.stats - before).calls == 0
    # a rerun needs the same calls (a property of method and seed), all answered from the earlier run
    assert (again.cost.reward_calls, again.cost.cache_hits) == (c.reward_calls, c.cache_hits)
    assert again.cost.stored_hits == c.reward_calls
