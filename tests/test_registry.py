"""The method registry: every method has a test case in `svdd.testing.METHOD_CASES`, and every method config
round-trips through JSON (`Method.to_dict` / `Method.from_dict`)."""

import json

import pytest
import torch

import svdd
from svdd.methods import METHODS, Method, get_method
from svdd.testing import METHOD_CASES
from svdd.values import PosteriorMean, value_from_config


def test_every_registered_method_has_a_test_case():
    missing = sorted(set(METHODS) - set(METHOD_CASES))
    assert not missing, f"method(s) {missing} have no test case: give its class test_options (svdd.testing.METHOD_CASES collects them)"
    unknown = sorted(set(METHOD_CASES) - set(METHODS))
    assert not unknown, f"svdd.testing.METHOD_CASES names unregistered method(s) {unknown}"
    for name, opts in METHOD_CASES.items():
        assert opts == {} or get_method(name, **opts) != get_method(name), f"{name}: the case is the default config"


def _via_json(m: Method) -> Method:
    return Method.from_dict(json.loads(json.dumps(m.to_dict())))


@pytest.mark.parametrize("case", ["default", "case"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_configs_round_trip_through_json(name, case):
    m = get_method(name, **(METHOD_CASES[name] if case == "case" else {}))
    back = _via_json(m)
    assert type(back) is type(m) and back == m
    assert back.to_dict() == m.to_dict()
    assert METHODS[name].from_dict(m.to_dict()) == m  # a method's own class takes its config without a name too
    d = m.to_dict()
    del d["name"]
    assert METHODS[name].from_dict(d) == m


def test_tuples_and_value_estimators_are_rebuilt():
    m = svdd.SVDD(M=3, select_window=(2, 9), value=PosteriorMean(num_completions=4, alpha=0.5))
    back = _via_json(m)
    assert back.select_window == (2, 9) and isinstance(back.select_window, tuple)
    assert isinstance(back.value, PosteriorMean) and back.value.k == 4 and back.value.alpha == 0.5
    assert back == m and back != svdd.SVDD(M=3, select_window=(2, 9))
    assert value_from_config(PosteriorMean().config()) == PosteriorMean() != PosteriorMean(num_completions=2)
    assert len({PosteriorMean(), PosteriorMean(num_completions=1)}) == 1


def test_objects_a_config_only_names_are_passed_in():
    net = svdd.LearnedValue(lambda x, t: x.sum(1), name="quad")
    m = svdd.SVDD(M=3, value=net)
    back = Method.from_dict(json.loads(json.dumps(m.to_dict())), value=net)
    assert back == m and back.value is net
    x = torch.zeros(4, 3)
    r = Method.from_dict(svdd.Refine(init_samples=x).to_dict(), init_samples=x)
    assert r.init_samples is x and r.to_dict() == svdd.Refine(init_samples=x).to_dict()


def test_from_dict_names_what_it_cannot_rebuild():
    with pytest.raises(ValueError, match=r"unknown method 'nope'; expected one of \[.*'svdd'"):
        Method.from_dict({"name": "nope", "M": 3})
    with pytest.raises(ValueError, match=r"method 'svdd' has no option\(s\) \['beam_width'\]"):
        Method.from_dict({"name": "svdd", "M": 3, "beam_width": 2})
    with pytest.raises(ValueError, match="has no 'name'"):
        Method.from_dict({"M": 3})
    with pytest.raises(ValueError, match=r"SVDD.from_dict got a config of method 'smc'"):
        svdd.SVDD.from_dict({"name": "smc"})
    learned = svdd.SVDD(M=3, value=svdd.LearnedValue(lambda x, t: x.sum(1), name="quad")).to_dict()
    with pytest.raises(ValueError, match=r"method 'svdd' option 'value': a learned value \('quad'\) cannot be rebuilt"
                                         r".*pass the object itself.*value='task'"):
        Method.from_dict(json.loads(json.dumps(learned)))
    fn = svdd.BeamSearch(value=svdd.FunctionValue(lambda x, i: x.sum(1), name="exact")).to_dict()
    with pytest.raises(ValueError, match=r"method 'beam' option 'value': a function value \('exact'\)"):
        Method.from_dict(fn)
    dps = svdd.DPS(target="value", value=lambda x, t: x.sum(1)).to_dict()
    with pytest.raises(ValueError, match=r"method 'dps' option 'value': a learned value"):
        Method.from_dict(dps)
    with pytest.raises(ValueError, match=r"unknown value type 'oracle'"):
        Method.from_dict({"name": "smc", "value": {"type": "oracle"}})
    with pytest.raises(ValueError, match=r"method 'refine' option 'init_samples'.*init_samples=x"):
        Method.from_dict(svdd.Refine(init_samples=torch.zeros(4, 3)).to_dict())


@pytest.mark.parametrize("name", ["beam", "branch-select", "tree"])
def test_candidates_are_M_in_every_method_and_the_old_K_still_works_for_a_release(name):
    with pytest.warns(DeprecationWarning, match=f"method '{name}': option 'K' is now 'M'"):
        old = get_method(name, K=3)
    assert old == get_method(name, M=3) and "K" not in old.to_dict()
    with pytest.warns(DeprecationWarning):  # a config written before the rename (an old run.json) still loads
        assert Method.from_dict({"name": name, "K": 3}) == old
    with pytest.raises(ValueError, match="'K' is the old name of 'M'; give only 'M'"):
        get_method(name, M=4, K=3)


def test_the_old_backend_argument_still_works_for_a_release(tmp_path):
    with pytest.warns(DeprecationWarning, match=r"sample_run\(engine=...\) is now backend=..."):
        res = svdd.sample_run(tmp_path / "run", "toy-motif", "pretrained", num_samples=4, engine="local",
                              progress=False)
    assert len(res.samples) == 4


def test_the_registry_writes_the_method_lists_users_read():
    from svdd.cli import build_parser
    help_text = build_parser()._subparsers._group_actions[0].choices["sample"].format_help()
    for name in METHODS:
        assert f"'{name}'" in svdd.sample.__doc__, f"svdd.sample's docstring does not list {name!r}"
        assert name in help_text, f"`svdd sample --help` does not list {name!r}"


def test_every_method_that_takes_a_budget_has_a_family_in_the_budget_frontier():
    from svdd.compare import budget_families, budget_plan
    planned = {budget_plan(f, 400, 20, kind)["method"] for f in budget_families() for kind in ("reward_calls", "network_calls")}
    missing = sorted(m for m, cls in METHODS.items() if cls.honours_budget and m not in planned)
    assert not missing, f"method(s) {missing} have no family in svdd.compare.FAMILIES / budget_plan"


def test_the_readme_names_every_registered_method_and_alias():
    from pathlib import Path

    from svdd.methods.base import ALIASES
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [m for m in [*METHODS, *ALIASES] if f"`{m}`" not in text]
    assert not missing, f"the README does not name {missing}"
