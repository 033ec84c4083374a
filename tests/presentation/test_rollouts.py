"""The plan's rollouts in every format: the waves and their toolboxes; JSON round-trips for `show`."""

from __future__ import annotations

import json

import jsonschema

from reconciler.core.plan import Action, Plan, Step
from reconciler.core.rollout import RolloutSettings, plan_rollouts
from reconciler.model.spec import ServerSpec
from reconciler.presentation.markdown import render_markdown
from reconciler.presentation.plan_json import plan_from_dict, plan_to_dict
from reconciler.presentation.text import render_text
from reconciler.resources import schema_path


def bump(n: int) -> Plan:
    spec = ServerSpec(name="time", image="acme/time:2", transport="sse", port=8080)
    steps = tuple(
        Step(
            f"id-{i}",
            f"tb{i:02d}",
            "time",
            Action.REPLACE,
            "image",
            desired=spec,
            spec_hash="sha256:" + "abc123" * 4,
        )  # as spec_hash() makes it
        for i in range(n)
    )
    return Plan(steps=steps, rollouts=plan_rollouts(steps, RolloutSettings(first_wave=2, max_in_flight=5)))


def test_text_and_markdown_show_the_waves_and_cut_long_lists() -> None:
    plan = bump(20)
    text = render_text(plan)
    assert "time -> acme/time:2 on 20 toolboxes (abc123abc123)" in text
    assert "wave 1 (first wave): tb00, tb01" in text
    assert "wave 2 (then, at most 5 at a time): tb02, tb03," in text and "tb13 and 6 more" in text
    markdown = render_markdown(plan)
    assert "- time -&gt; acme/time:2 on 20 toolboxes" in markdown
    assert "  - wave 1 (first wave): tb00, tb01" in markdown
    assert "Rollouts" not in render_text(Plan(steps=plan.steps))


def test_json_carries_the_rollouts_valid_and_back() -> None:
    plan = bump(3)
    data = plan_to_dict(plan)
    jsonschema.validate(data, json.loads(schema_path("plan.v1.schema.json").read_text()))
    [rollout] = data["rollouts"]
    assert [w["max_in_flight"] for w in rollout["waves"]] == [2, 5]
    assert rollout["waves"][1]["environments"] == [{"id": "id-2", "name": "tb02"}]
    assert plan_from_dict(json.loads(json.dumps(data))).rollouts == plan.rollouts
    assert "rollouts" not in plan_to_dict(Plan(steps=plan.steps))
