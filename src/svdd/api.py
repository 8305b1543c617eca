"""`svdd.sample`: one call to run any method with any model and reward."""

from __future__ import annotations

import numbers
import warnings
from typing import Any


from .budget import as_budget
from .engine import Engine
from .methods import METHODS, Method, drive, get_method
from .methods.base import ALIASES
from .models.base import check_model
from .result import SampleResult
from .rewards import as_reward


def sample(model: Any, reward: Any, method: str | Method = "svdd", *, num_samples: int = 16, seed: int = 0,
           max_batch: int | None = None, return_x0: bool = False, progress: bool | None = None, callback=None,
           reward_budget: float | None = None, auto_batch: bool = True, precision: str = "fp32",
           dedupe: bool = True, max_reward_failures: int = 32, budget=None, batch_sizes: dict | None = None,
           **method_options) -> SampleResult:
    """Draw ``num_samples`` reward-guided samples.

    Args:
        model: a `svdd.DiffusionModel` (e.g. `GaussianDiffusion`, `MaskedDiffusion`, or your own).
        reward: callable from a batch of clean samples to a 1-D float tensor (black box allowed).
        method: a registered name ({methods}) or a method config object; ``method_options`` (M, alpha, value, ...)
            build the config when a name is given.
        seed: the run is reproducible from (config, seed), whatever ``max_batch`` (on CPU, for networks whose rows do
            not depend on the rest of their batch; on CUDA random draws split over sample chunks differ, so a seed
            reproduces with the same ``max_batch``).
        max_batch: most rows per network / value / reward call, and about the most candidates built at once; bounds
            peak memory. Default: 1024 on CPU, 8192 on a GPU, or for small rows the most rows within 256 KiB of
            them when that is more (`svdd.engine.default_max_batch`; the value used is ``result.config["max_batch"]``).
            A size that runs out of GPU memory while chunk sizes are measured is dropped, with every larger one.
        auto_batch: within ``max_batch``, use the chunk size that ran fastest for each call site (timed on copies
            of its first call's rows before that call runs, remembered per machine in
            ``$SVDD_CACHE/batch_sizes.json``; reported in ``result.config["batch_sizes"]``). False: chunks of exactly
            ``max_batch``.
        batch_sizes: the chunk size of given call sites (``{"network": 128, "reward": 64}``, as
            ``result.config["batch_sizes"]`` reports them): no timing there. `svdd.rerun` replays a run's sizes this way.
        precision: 'fp32', or 'bf16' to run the network and value nets under bf16 autocast (faster on CPUs with
            AVX-512 BF16 / AMX and on GPUs; samples then differ from fp32 ones within the tolerance the tests state;
            a CPU without native bf16 gets a warning). Rewards always run as given.
        dedupe: evaluate identical rows of a discrete model once (network, value net and reward calls). On a GPU
            two call sites skip the row sort, where its host-device sync costs more than the rows it saves: SVDD's
            candidates that changed from their parent (unchanged ones reuse the parent's output), and a reward that
            declares itself a cheap network (``tune_batch``). False: every row is evaluated. The samples are the same
            either way.
        max_reward_failures: after this many reward calls in a row failed on every row they were given (raised, NaN
            or −inf; a batch that raised is retried row by row, and each row counts as a call), the reward is probed
            with a row it scored before: if that fails too, the reward is gone (a service that went away) and the run
            stops with `svdd.errors.RewardUnavailable` instead of retrying row by row to the end; if it answers, the
            run goes on (the failures belong to those inputs).
        return_x0: keep the x̂0 estimates of the kept states at every level (``result.x0_estimates``).
        progress: show a progress bar (default: when stderr is a terminal).
        callback: ``callback(i, state, info)`` after every step (a `svdd.methods.State` and `StepInfo`); return True
            to stop there (the samples are then the model's x̂0 of the current states).
        reward_budget: the most real reward calls per sample that guidance may spend (an expensive reward such as
            docking). A method skips a selection / weighting step whose worst case (every candidate a new call; with a
            reward cache, repeats within the run are free) would exceed the run's budget, ``reward_budget * num_samples``,
            and goes on with the pre-trained transition; Best-of-N draws at most that many samples. The rewards of the
            returned samples are always computed, so a run may end slightly above the budget; ``result.cost`` reports
            reward calls, cache hits and reward seconds. `dps` takes no budget (an error).
        budget: a `svdd.Budget` (or ``"reward_calls=40"``, or a dict): the most reward calls, network rows (denoiser
            and value net) or wall seconds per sample the whole run spends, final scores included; every method falls
            back to the pre-trained transition when an expense would not fit (see `svdd.budget`).
    """
    check_model(model)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2 ** 62:
        raise ValueError(f"seed must be an int in [0, 2**62), got {seed!r}")
    seed = int(seed)
    if reward_budget is not None and (isinstance(reward_budget, bool) or not isinstance(reward_budget, (int, float))
                                      or not reward_budget >= 0):
        raise ValueError(f"reward_budget must be a number >= 0 (real reward calls per sample) or None, got {reward_budget!r}")
    budget = as_budget(budget)
    if budget is not None:
        budget.check_minimum(model.num_steps)
    if isinstance(method, str):
        method = get_method(method, **method_options)
    elif method_options:
        raise TypeError(f"options {sorted(method_options)} given with a method object; set them on the object instead")
    if not isinstance(method, Method):
        raise TypeError(f"method must be a name or a svdd method config, got {type(method).__name__}")
    if (reward_budget is not None or budget is not None) and not method.honours_budget:
        raise ValueError(f"method {method.name!r} does not take a budget (its every step calls the reward or value net "
                         f"for a gradient); got reward_budget={reward_budget!r}, budget={budget!r}")
    reward = as_reward(reward)
    method.check(model, reward)
    method.check_run(num_samples)
    model = method.wrap_model(model, reward)
    if progress is None:
        import sys
        progress = sys.stderr.isatty()
    engine = Engine(model, reward, max_batch=max_batch, seed=seed, progress=progress, return_x0=return_x0,
                    reward_budget=None if reward_budget is None else reward_budget * num_samples,
                    auto_batch=auto_batch, precision=precision, dedupe=dedupe, max_reward_failures=max_reward_failures, budget=budget,
                    batch_sizes=batch_sizes)
    samples, rewards, diag, x0s, state = drive(method, engine, num_samples, callback)
    cost = engine.finish(num_samples)
    f = engine.failures
    if f.failed_rewards:
        msg = f"reward {reward.name!r} failed (raised or NaN) for {f.failed_rewards} evaluated samples; their value was −inf"
        if sum(diag.all_failed):
            msg += f"; at {sum(diag.all_failed)} (step, sample) pairs EVERY candidate failed and the first one was kept"
        if f.first_error:
            msg += f" (first error: {f.first_error})"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    # a run stopped early (callback) would estimate E[exp(v_level/alpha)], not Z: no estimate then
    log_z = method.log_normalizer(state) if state.level >= model.num_steps else None
    model_config = model.config() if callable(getattr(model, "config", None)) else {"class": type(model).__name__}
    config = {"method": method.to_dict(), "model": model_config, "num_steps": model.num_steps,
              "reward": reward.name, "num_samples": num_samples, "seed": seed, "max_batch": engine.max_batch,
              "reward_budget": reward_budget, "budget": None if budget is None else budget.to_dict(), "auto_batch": auto_batch, "precision": precision,
              "dedupe": dedupe,
              "batch_sizes": engine.batch_sizes(), "cpu_heap": engine.cpu_heap}
    return SampleResult(samples=_plain(samples), rewards=_plain(rewards.double()), diagnostics=diag, cost=cost,
                        config=config, x0_estimates=None if x0s is None else _plain(x0s), log_z=log_z)


sample.__doc__ = sample.__doc__.replace("{methods}", ", ".join(repr(m) for m in METHODS)  # the registry's names
                                        + "; aliases " + ", ".join(repr(a) for a in ALIASES))


def _plain(t):
    """An ordinary tensor (a copy of an inference-mode one, which could not be modified in place later)."""
    return t.clone() if t.is_inference() else t
