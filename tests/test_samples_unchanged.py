"""The run-model change moved how runs are described, stored and executed, not how they sample: every shipped task
(docking aside: seconds per call) and every method give the samples and rewards they gave before it (commit 9018ddc,
hashes in tests/fixtures/sample_hashes.json, made by tests/fixtures/make_sample_hashes.py). A case whose samples are
meant to change must say so here, with the reason."""

import json
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_sample_hashes import run  # noqa: E402

EXPECTED = json.loads((FIXTURES / "sample_hashes.json").read_text())


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_samples_of_every_task_and_method_are_those_of_before(case):
    task, method = case.split("/")
    assert run(task, method) == EXPECTED[case], f"{case}: other samples or rewards than at commit 9018ddc"
