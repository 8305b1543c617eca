"""Top-level helpers for the reward cache / parallel reward tests: spawned worker processes import them by name
(conftest puts tests/ on sys.path, and a spawned process inherits the parent's sys.path)."""

import os
import subprocess
import sys
import tempfile
import time

import torch

from svdd.rewards import CachedReward

STATE = {"inits": 0, "offset": 0.0}


def init_worker(offset):
    STATE["inits"] += 1
    STATE["offset"] = float(offset)


def item_value(item):
    """item = [code, value]: code 0 -> offset + value; 1 -> hang 30 s in a child program (its pid: `grandchild_file`);
    2 -> worker crash; 3 -> raise;
    4 -> sleep 0.3 s; 5 -> pid of the worker; 6 -> how many times init ran in this worker."""
    code, value = int(item[0]), item[1]
    if code == 1:
        child = subprocess.Popen(["sleep", "30"])
        with open(grandchild_file(os.getppid()), "w") as f:
            f.write(str(child.pid))
        child.wait()
    elif code == 2:
        sys.stdout.flush()
        os._exit(3)
    elif code == 3:
        raise ValueError(f"bad item {value}")
    elif code == 4:
        time.sleep(0.3)
    elif code == 5:
        return os.getpid()
    elif code == 6:
        return STATE["inits"]
    return STATE["offset"] + value


def grandchild_file(parent_pid):
    return os.path.join(tempfile.gettempdir(), f"svdd-test-grandchild-{parent_pid}")


def token_item(row):
    """A per-sequence reward that fails for sequences with a token 3 among its first five."""
    if 3 in row[:5]:
        raise ValueError("cannot score a sequence with a 3 in front")
    return sum(t == 2 for t in row) + 0.1 * sum(t == 1 for t in row)


def square_sum(x):
    return (x.double() ** 2).sum(dim=1)


def fill_cache(path, start, stop, barrier=None, chunk=3):
    """Evaluate rows start..stop-1 of `rows()` through a CachedReward on `path`, `chunk` rows per call."""
    r = CachedReward(square_sum, path=path)
    x = rows(stop)[start:]
    if barrier is not None:
        barrier.wait()
    for a in range(0, x.shape[0], chunk):
        out = r(x[a:a + chunk])
        assert torch.equal(out, square_sum(x[a:a + chunk])), "wrong cached values"
    r.close()


def rows(n):
    return torch.arange(2 * n, dtype=torch.float32).reshape(n, 2) / 7
