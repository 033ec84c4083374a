"""The listing route through the CLI: a rejected token leaves the toolbox unobserved with an auth reason (the
public /status is never read instead)."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.conftest import World, kinds_of, server, steps_of


def test_a_rejected_token_is_an_unobserved_toolbox_never_a_normal_plan(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(2, shapes={0: "b", 1: "b"})  # the newer agent: a public /status beside /tools/status
    w.write({"tb0": [server("srv-a")], "tb1": [server("srv-b")]})
    w.extra_env["BACKEND_TO_DTMA_API_KEY"] = "not-the-token"
    plan = w.plan_json(code=1)  # incomplete: neither toolbox was observed
    assert steps_of(plan) == []  # nothing planned from a listing the agent refused
    assert {(env, kind) for env, _, kind in kinds_of(plan)} >= {("tb0", "unreachable"), ("tb1", "unreachable")}
    text = w.cli("plan", str(w.manifests))
    assert "403" in text.stdout + text.stderr and "BACKEND_TO_DTMA_API_KEY" in text.stdout + text.stderr
    # the exit code of a plan that could not see every toolbox belongs to the verdict rules (not asserted here)
    for i in (0, 1):
        assert "GET /status" not in w.sim.counters(i)  # never the public listing instead
