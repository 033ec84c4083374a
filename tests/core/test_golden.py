"""Golden cases: desired.yaml + observed.json -> expected-plan.json (never rewritten unless asked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.core.planner import plan
from reconciler.presentation.plan_json import plan_to_dict
from tests.core.golden_io import load_case

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_goldens: bool) -> None:
    desired, observed, policy, now, fps = load_case(GOLDEN / case)
    got = plan_to_dict(plan(desired, observed, policy, now, fps))
    expected_path = GOLDEN / case / "expected-plan.json"
    if update_goldens:
        expected_path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert expected_path.exists(), f"{case}: no expected-plan.json (run with --update-goldens to create it)"
    expected = json.loads(expected_path.read_text())
    assert got == expected
