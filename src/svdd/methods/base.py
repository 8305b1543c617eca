"""Methods as step kernels on one driver (the blackjax ``init`` / ``step`` shape).

A method is a small dataclass of options with three functions:

* ``init(engine, n) -> State`` -- the first population at level 0 (and whatever the method carries with it);
* ``step(engine, state, i) -> (State, StepInfo)`` -- one move from level ``i`` to ``i + 1``;
* ``finish(engine, state) -> Final`` -- the samples and rewards to return (Best-of-N keeps its top N here).

`drive` owns everything else: the loop, the progress bar, the diagnostics, the optional x̂0 history and a per-step
``callback(i, state, info)`` that may return True to stop early (the samples are then the x̂0 of the current states).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import torch

from ..resampling import normalize
from ..result import Diagnostics
from ..values import ValueEstimator, value_from_config

Tensor = torch.Tensor
METHODS: dict[str, type["Method"]] = {}


@dataclass(frozen=True)
class State:
    """What a method carries from one level to the next."""

    x: Tensor  # states at ``level`` (one row per sample / particle)
    pred: Tensor | None  # their network output (None at the clean level, or when the method needs none)
    level: int = 0
    values: Tensor | None = None  # value estimates of ``x`` at the last weighting point (float64)
    rewards: Tensor | None = None  # rewards of ``x`` when already computed (clean level only)
    log_weights: Tensor | None = None  # particle methods: log-weights since the last resampling
    log_z: float = 0.0  # particle methods: running log normalising-constant estimate
    path: Tensor | None = None  # particle methods: sum of the log-potentials along each particle's ancestry
    stat: Tensor | None = None  # particle methods: the potential's running statistic (max / sum of values)


@dataclass(frozen=True)
class StepInfo:
    """Diagnostics of one step; nothing here is needed to continue."""

    kept_values: Tensor | None = None  # values of the states kept at a selection / weighting step
    ess: float = float("nan")
    resampled: bool = False
    failed: int | Tensor = 0  # candidates whose value failed (NaN / −inf); a 0-d tensor where counted on a GPU
    all_failed: int | Tensor = 0  # samples all of whose candidates failed (or particles, when a whole step failed)


class Final(NamedTuple):
    samples: Tensor
    rewards: Tensor
    index: Tensor | None = None  # which rows of the driven population were returned (Best-of-N); None = all


def register(cls):
    METHODS[cls.name] = cls
    return cls


@dataclass
class Method:
    name: ClassVar[str] = "method"
    keeps_history: ClassVar[bool] = True  # whether ``return_x0`` can follow the population (search methods: no)
    honours_budget: ClassVar[bool] = True  # whether the method respects a reward-call budget (`svdd.sample`)
    # small non-default options making a valid quick run (a few candidates, a short search): the every-method tests
    # run each registered method with them (`svdd.testing.METHOD_CASES`); a method without them fails a test
    test_options: ClassVar[dict[str, Any] | None] = None

    def init(self, engine, n: int) -> State:
        raise NotImplementedError(f"method {self.name!r} does not implement init(engine, n)")

    def step(self, engine, state: State, i: int) -> tuple[State, StepInfo]:
        raise NotImplementedError(f"method {self.name!r} does not implement step(engine, state, i)")

    def finish(self, engine, state: State) -> Final:
        """Default: the states themselves, scored by the reward unless a step already did."""
        rewards = state.rewards if state.rewards is not None else engine.rewards(state.x)
        return Final(state.x, rewards)

    def check(self, model, reward) -> None:
        """Raise a clear error when this method cannot run with this model/reward."""

    def check_run(self, num_samples: int) -> None:
        """Warn (or raise) when this method's options make no sense for a run of ``num_samples`` samples."""

    def wrap_model(self, model, reward):
        """The model this method samples from (gradient guidance wraps it); default: the model itself."""
        return model

    def log_normalizer(self, state: State) -> float | None:
        """An estimate of log Z = log E_pre[exp(r/alpha)] (particle methods with potentials); None otherwise."""
        return None

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = v.config() if isinstance(v, ValueEstimator) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **objects: Any) -> "Method":
        """The inverse of `to_dict` for a config written as plain JSON:
        ``Method.from_dict(json.loads(json.dumps(m.to_dict()))) == m``. A config only names a value net, a value
        function or ``init_samples``; pass such objects as keywords (``value=net``): they replace the config's
        entries as they are. ``Method.from_dict`` takes any method's config, ``SVDD.from_dict`` only its own."""
        if not isinstance(d, dict):
            raise TypeError(f"a method config must be a dict, got {type(d).__name__}")
        d = dict(d)
        name = d.pop("name", None if cls is Method else cls.name)
        if name is None:
            raise ValueError(f"method config {d!r} has no 'name'; expected one of {sorted(METHODS)}")
        target = method_class(name)
        if cls is not Method and target is not cls:
            raise ValueError(f"{cls.__name__}.from_dict got a config of method {name!r}; use Method.from_dict")
        fields = {f.name: f for f in dataclasses.fields(target)}
        options = {k: target._option_from_json(fields[k], v) if k in fields and k not in objects else v
                   for k, v in d.items()}
        return get_method(name, **{**options, **objects})

    @classmethod
    def _option_from_json(cls, field: dataclasses.Field, v: Any) -> Any:
        """One option of a JSON config as the dataclass holds it: a value estimator from its config, a tuple from a
        list."""
        if isinstance(v, dict) and "type" in v:
            try:
                return value_from_config(v)
            except ValueError as exc:
                task = " (or value='task' for a task's value net)" if field.name == "value" else ""
                raise ValueError(f"method {cls.name!r} option {field.name!r}: {exc}; pass the object itself: "
                                 f"Method.from_dict(config, {field.name}=...){task}") from None
        if isinstance(v, list) and _tuple_typed(cls, field.name):
            return tuple(v)
        return v


Callback = Callable[[int, State, StepInfo], Any]


def drive(method: Method, engine, num_samples: int, callback: Callback | None = None
          ) -> tuple[Tensor, Tensor, Diagnostics, Tensor | None, State]:
    """Run a method kernel from level 0 to the clean level T. Returns (samples, rewards, diagnostics, x̂0 history or
    None, last state). ``callback(i, state, info)`` is called after every step; returning True stops the run there."""
    model = engine.model
    engine.num_samples = num_samples
    if engine.return_x0 and not method.keeps_history:
        raise ValueError(f"method {method.name!r} does not keep an x̂0 history (its population changes size and order "
                         "from step to step); use return_x0=False")
    diag, hist = Diagnostics(), History(engine)
    state = method.init(engine, num_samples)
    engine.settle()  # the checks of the step's calls (a GPU queues them: one host-device sync per step)
    hist.add(state)
    for i in engine.trange(model.num_steps, method.name, start=state.level):  # a warm start may begin later
        state, info = method.step(engine, state, i)
        engine.settle()
        diag.add(info)
        hist.add(state)
        if callback is not None and callback(i, state, info):
            if state.level < model.num_steps:  # stopped early: return the model's estimate of the clean samples
                state = dataclasses.replace(state, x=model.denoise(state.x, state.pred, state.level), pred=None,
                                            rewards=None)
            break
    out = method.finish(engine, state)
    engine.settle()
    if diag.final_weights is None and state.log_weights is not None and not bool((state.log_weights == 0).all()):
        diag.final_weights = normalize(state.log_weights)
    x0s = hist.tensor()
    if x0s is not None and out.index is not None:
        x0s = x0s[:, out.index]
    return out.samples, out.rewards, diag.settle(), x0s, state


class History:
    """Optional x̂0 history of the states after every step (levels 0..T)."""

    def __init__(self, engine):
        self.engine, self.enabled, self.items = engine, engine.return_x0, []

    def add(self, state: State) -> None:
        if not self.enabled:
            return
        model, x = self.engine.model, state.x
        clean = state.pred is None or state.level >= model.num_steps
        self.items.append(x.clone() if clean else model.denoise(x, state.pred, state.level))

    def tensor(self) -> Tensor | None:
        return torch.stack(self.items) if self.enabled and self.items else None


def _tuple_typed(cls, name: str) -> bool:
    """Whether the dataclass field ``name`` of ``cls`` holds a tuple (or None)."""
    t = typing.get_type_hints(cls).get(name)
    args = typing.get_args(t) if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union else (t,)
    return any(a is tuple or typing.get_origin(a) is tuple for a in args)


ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}  # alias -> (registered method, the options it fixes)


def register_alias(alias: str, name: str, options: dict[str, Any]) -> None:
    """A name for a method with some options fixed (``svdd-mc``: ``svdd`` with ``value="task"``), usable wherever a
    method name is: the labels of the tables are names the registry knows."""
    ALIASES[alias] = (name, dict(options))


def resolve_alias(name: str, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(registered method, options) of a method name or alias; given options win over the alias's."""
    base, fixed = ALIASES.get(name, (name, {})) if isinstance(name, str) else (name, {})
    return base, {**fixed, **(options or {})}


def method_class(name: str) -> type[Method]:
    """The registered method class called ``name`` (or the class an alias names)."""
    try:
        return METHODS[resolve_alias(name)[0]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)} or an alias "
                         f"{sorted(ALIASES)}") from None


def option_names(cls: type[Method]) -> set[str]:
    """The options a method takes: its dataclass fields, and old names still accepted for one release."""
    return {f.name for f in dataclasses.fields(cls)} | set(getattr(cls, "renamed", {}))


def take_renamed(method: Method, old: str, value: Any) -> None:
    """An option given by its old name: a `DeprecationWarning` naming the new one, and the value set there (both
    given is an error)."""
    import warnings
    new = method.renamed[old]
    default = next(f.default for f in dataclasses.fields(method) if f.name == new)
    if getattr(method, new) != default:
        raise ValueError(f"method {method.name!r}: {old!r} is the old name of {new!r}; give only {new!r}")
    warnings.warn(f"method {method.name!r}: option {old!r} is now {new!r} (candidates per state, one name for every "
                  f"method); {old!r} will be removed in the next release", DeprecationWarning, stacklevel=4)
    setattr(method, new, value)


def get_method(name: str, **kwargs) -> Method:
    """Build a method config by name or alias, e.g. ``get_method('svdd', M=10, alpha=0.0)``."""
    cls = method_class(name)
    name, kwargs = resolve_alias(name, kwargs)
    names = option_names(cls)
    bad = sorted(set(kwargs) - names)
    if bad:
        raise ValueError(f"method {name!r} has no option(s) {bad}; its options are {sorted(names)}")
    return cls(**kwargs)


def check_positive_int(name: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")


def check_alpha(alpha: float, positive: bool = False) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha != alpha or alpha < 0 \
            or (positive and alpha == 0):
        raise ValueError(f"alpha must be a number {'> 0' if positive else '>= 0'}, got {alpha!r}")
    if alpha == float("inf"):
        raise ValueError("alpha must be finite, got inf: at alpha = inf every candidate is equally likely, so the run "
                         "would pay for M candidates and keep a random one (that is method 'pretrained')")


def require_stochastic(model, method: str) -> None:
    if not getattr(model, "stochastic", True):
        raise ValueError(f"method {method!r} needs distinct candidates, but {type(model).__name__} has a deterministic "
                         f"transition (e.g. DDIM with eta = 0): use eta > 0 (the paper uses eta = 1)")


def deterministic(model, i: int) -> bool:
    f = getattr(model, "deterministic_step", None)
    return bool(f(i)) if f is not None else False


def selects(method, i: int) -> bool:
    """Selection schedule: select at every ``select_every``-th step, only within steps [start, stop) of ``select_window``."""
    window = getattr(method, "select_window", None)
    if window is not None and not window[0] <= i < window[1]:
        return False
    return i % getattr(method, "select_every", 1) == 0


def affordable(engine, score, rows: int, level: int, n: int, predicted: bool = False,
               sizes: list[int] | None = None) -> bool:
    """Whether scoring ``rows`` candidates at ``level`` with ``score`` fits the engine's budgets in the worst case
    (every candidate a real reward call), with the least the rest of the run needs: ``n`` states going on to the
    clean level by the pre-trained transition and ``n`` final scores. ``predicted``: the rows' network outputs are
    already paid for. ``sizes``: the population at every level ``level`` .. T where it changes size (a beam whose
    width grows); default ``n`` throughout. A method skips a selection / weighting step it cannot afford."""
    t = engine.model.num_steps
    clean = level >= t
    sizes = sizes if sizes is not None else [n] * (t - level + 1)
    net = 0 if clean or (predicted and score.needs_prediction) else score.network_calls(rows)
    paid = predicted or score.needs_prediction  # the kept states' outputs at ``level`` are paid (or counted in net)
    rest = 0 if clean else sum(sizes[(1 if paid else 0):t - level])  # the kept states' later outputs
    final = 0 if clean and score.reward_at_clean else sizes[-1]
    return engine.affordable(score.reward_calls(rows), network_calls=net, reserve_network=rest, reserve_reward=final)


def check_schedule(method) -> None:
    check_positive_int("select_every", method.select_every)
    w = method.select_window
    if w is not None and (not isinstance(w, (tuple, list)) or len(w) != 2
                          or not all(isinstance(a, int) and not isinstance(a, bool) for a in w) or not 0 <= w[0] < w[1]):
        raise ValueError(f"select_window must be (start, stop) with 0 <= start < stop, got {w!r}")


def failed(values: Tensor) -> Tensor:
    """Where a value estimate failed (NaN or −inf)."""
    return torch.isnan(values) | (values == -torch.inf)


def start(engine, n: int) -> State:
    """The common first state: n draws from the prior and their network output at level 0."""
    x = engine.model.prior(n, engine.gen["model"])
    return State(x=x, pred=engine.predict(x, 0))


def advance(engine, x: Tensor, i: int) -> State:
    """States that just reached level i + 1, with their network output (none at the clean level)."""
    last = i + 1 == engine.model.num_steps
    return State(x=x, pred=None if last else engine.predict(x, i + 1), level=i + 1)
