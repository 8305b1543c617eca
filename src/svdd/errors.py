"""Errors a run can stop with, apart from bad input (``ValueError`` / ``TypeError``, raised before any work)."""

from __future__ import annotations


class RunError(RuntimeError):
    """A fault found while a run is under way -- a network or value net returning NaN, a reward that fails on every
    sample it is given. The message names the object and the step; the run stops."""


class RewardUnavailable(RunError):
    """A reward failed on every row of many consecutive calls (a service that went away): the run stops instead of
    retrying row by row to the end. Values a `svdd.rewards.CachedReward` computed are kept in its cache, and
    ``svdd compare`` keeps its finished runs, so a rerun resumes where this one stopped."""
