"""An incomplete plan says so first, naming each toolbox and why, and never "match the manifests"."""

from __future__ import annotations

import pytest

from reconciler.core.planner import plan
from reconciler.core.verdict import verdict_of
from reconciler.presentation.render import render_plan
from tests.core.golden_io import load_case
from tests.presentation.test_render import GOLDEN, planned

INCOMPLETE = [
    "20-unreachable-listing-failed",
    "21-unreachable-not-active",
    "22-unknown-environment",
    "24-conflict-live-without-row",
    "27-unknown-state",
    "28-same-image-conflict",
    "30-empty-desired-refused",
    "32-mass-delete-fraction-refused",
]
FIRST = {
    "text": "Incomplete plan: ",
    "markdown": "> :x: **Incomplete plan: ",
    "github": "::error title=Incomplete plan::",
}


def head(out: str, fmt: str) -> str:
    lines = out.splitlines()
    return lines[2] if fmt == "markdown" else lines[0]  # markdown opens with its title and a blank line


@pytest.mark.parametrize("case", INCOMPLETE)
@pytest.mark.parametrize("fmt", ["text", "markdown", "github"])
def test_incomplete_is_said_first_naming_each_toolbox_and_why(case: str, fmt: str) -> None:
    the_plan = planned(case)
    verdict = verdict_of(the_plan)
    assert not verdict.complete
    out = render_plan(the_plan, fmt)
    first = head(out, fmt)
    assert first.startswith(FIRST[fmt])
    assert "match the manifests" not in out and "No changes." not in out
    for gap in verdict.gaps:
        if gap.environment is not None:
            assert gap.environment in first  # named in the headline
            assert gap.kind.value.replace("-", " ") in out  # and why
    last = out.rstrip("\n").splitlines()[-1]
    if fmt != "markdown":
        assert last.startswith("Incomplete")


@pytest.mark.parametrize("case", ["37-in-sync-no-changes", "35-ordering-mixed", "13-orphan-prune-off"])
@pytest.mark.parametrize("fmt", ["text", "markdown", "github"])
def test_a_complete_plan_says_nothing_of_the_kind(case: str, fmt: str) -> None:
    the_plan = planned(case)
    assert verdict_of(the_plan).complete
    out = render_plan(the_plan, fmt)
    assert "Incomplete" not in out and "incomplete" not in out
    if not the_plan.steps:
        assert "The toolboxes match the manifests." in out


def test_the_verdict_with_observations_names_the_address() -> None:
    desired, observed, policy, now, fps = load_case(GOLDEN / "20-unreachable-listing-failed")
    the_plan = plan(desired, observed, policy, now, fps)
    verdict = verdict_of(the_plan, observed)
    address = next(e.address for e in observed.recorded.environments if e.name == "research-toolbox")
    out = render_plan(the_plan, "text", verdict=verdict)
    assert f"  ! research-toolbox at {address}: not observed: " in out.splitlines()[1]
