"""Notifications, pure: which events a cycle gives, one message per (kind, environment) per period, the
unobserved count across cycles, redaction, and the two message formats."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from reconciler.core import notify
from reconciler.core.notify import AppliedStep, CycleFacts, Event, EventKind, NotifyMemory
from reconciler.core.plan import Action, Notice, NoticeKind, Plan, Step
from reconciler.core.verdict import Gap, GapKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "hunter2-very-secret"


def step(env: str, server: str, action: Action = Action.CREATE) -> Step:
    return Step(f"id-{env}", env, server, action, "declared")


def notice(env: str, server: str | None, kind: str, message: str) -> Notice:
    return Notice(f"id-{env}", env, server, kind, message)  # type: ignore[arg-type]  # issue-15 kinds are plain


def unobserved_gap(env: str) -> Gap:
    return Gap(env, "127.0.0.9", GapKind.NOT_OBSERVED, f"{env} skipped: DTMA listing failed: connection refused")


def kinds(events: tuple[Event, ...]) -> list[tuple[str, str, str | None]]:
    return [(e.kind, e.environment, e.server) for e in events]


def test_each_event_kind_comes_from_its_part_of_the_cycle() -> None:
    the_plan = Plan(
        steps=(),
        notices=(
            notice("tb2", None, NoticeKind.REFUSED, "empty desired set refused (allowEmpty is false)"),
            notice("tb0", "crashy", NoticeKind.STALLED, "restart needed again after applying it twice"),
            notice("tb4", "fetch", "unhealthy", "MCP handshake failed 3 cycles in a row"),
            notice("tb4", None, "rollout-halted", "wave 1 failed readiness: 9 toolboxes keep 1.0"),
            notice("tb0", "x", NoticeKind.ORPHAN, "kept: prune is off"),  # left alone on purpose: not told
        ),
    )
    facts = CycleFacts(
        plan=the_plan,
        applied=(
            AppliedStep(step("tb1", "sb"), "failed", f"deploy answered 500 {SECRET}"),
            AppliedStep(step("tb0", "calm", Action.RESTART), "ok"),
            AppliedStep(step("tb5", "web", Action.REPLACE), "ok", "not ready after 30s", notice="unhealthy"),
        ),
        gaps=(unobserved_gap("tb3"),),
        acted_on=("tb0", "tb1", "tb2", "tb3", "tb4", "tb5"),
        run_id=42,
    )
    events, memory = notify.decide(NotifyMemory(), facts, NOW, unobserved_cycles=0, secrets=[SECRET])
    assert sorted(kinds(events)) == sorted([
        ("step-failed", "tb1", "sb"),
        ("unhealthy", "tb5", "web"),
        ("plan-refused", "tb2", None),
        ("server-stalled", "tb0", "crashy"),
        ("unhealthy", "tb4", "fetch"),
        ("rollout-halted", "tb4", None),
        ("toolbox-unobserved", "tb3", None),
        ("drift-fixed", "tb0", "calm"),
    ])  # fmt: skip
    assert {e.run_id for e in events} == {42}
    failed = next(e for e in events if e.kind == EventKind.STEP_FAILED)
    assert SECRET not in failed.reason and "[redacted]" in failed.reason
    assert memory.unobserved == {"tb3": 1}


def test_one_message_per_kind_and_environment_per_period() -> None:
    facts = CycleFacts(
        plan=None,
        applied=(
            AppliedStep(step("tb1", "a"), "failed", "boom"),
            AppliedStep(step("tb1", "b"), "failed", "boom"),
            AppliedStep(step("tb2", "c"), "failed", "boom"),
        ),
        run_id=1,
    )
    first, memory = notify.decide(NotifyMemory(), facts, NOW)
    assert kinds(first) == [("step-failed", "tb1", "a"), ("step-failed", "tb2", "c")]
    assert first[0].more == 1  # b is folded into a's message
    again, memory = notify.decide(memory, facts, NOW + timedelta(minutes=14))
    assert again == ()
    later, _ = notify.decide(memory, facts, NOW + timedelta(minutes=15))
    assert kinds(later) == kinds(first)


def test_the_memory_forgets_what_the_period_no_longer_covers() -> None:
    sent = {("step-failed", "tb1"): NOW - timedelta(hours=2), ("drift-fixed", "tb1"): NOW - timedelta(minutes=1)}
    _, memory = notify.throttle(sent, (), NOW, notify.DEFAULT_PERIOD)
    assert memory == {("drift-fixed", "tb1"): NOW - timedelta(minutes=1)}


def test_a_toolbox_is_told_only_after_more_than_n_unobserved_cycles_and_counts_through_its_backoff() -> None:
    memory = NotifyMemory()
    seen = []
    cycles = [
        CycleFacts(plan=None, gaps=(unobserved_gap("tb3"),), acted_on=("tb3",)),
        CycleFacts(plan=None, backing_off=("tb3",)),  # left alone while it backs off: still unobserved
        CycleFacts(plan=None, gaps=(unobserved_gap("tb3"),), acted_on=("tb3",)),
        CycleFacts(plan=None, gaps=(unobserved_gap("tb3"),), acted_on=("tb3",)),
    ]
    for i, facts in enumerate(cycles):
        events, memory = notify.decide(memory, facts, NOW + timedelta(minutes=20 * i), unobserved_cycles=3)
        seen.append(kinds(events))
    assert seen == [[], [], [], [("toolbox-unobserved", "tb3", None)]]
    assert memory.unobserved == {"tb3": 4}
    # Told during a cycle spent backing off, the message still says why the toolbox could not be observed.
    memory = replace(memory, sent={})
    events, memory = notify.decide(memory, CycleFacts(plan=None, backing_off=("tb3",)), NOW, unobserved_cycles=3)
    [told] = events
    assert told.reason == (
        "not observed for 5 cycles in a row: tb3 skipped: DTMA listing failed: connection refused (backing off)"
    )
    observed, memory = notify.decide(memory, CycleFacts(plan=None, acted_on=("tb3",)), NOW, unobserved_cycles=3)
    assert observed == () and memory.unobserved == {}


def test_another_replicas_environment_keeps_its_count() -> None:
    counts = notify.unobserved_counts({"tb3": 2}, CycleFacts(plan=None, acted_on=("tb0",)))
    assert counts == {"tb3": 2}


def test_drift_fixed_names_the_steps_and_skips_unsettled_ones() -> None:
    applied = tuple(AppliedStep(step("tb0", f"s{i}"), "ok") for i in range(7))
    pending = AppliedStep(step("tb0", "slow"), "ok", "deploy pending", notice="pending")
    events = notify.events_of(CycleFacts(plan=None, applied=(*applied, pending)), {}, 3)
    assert kinds(events) == [("drift-fixed", "tb0", "s0")]
    assert (
        events[0].reason
        == "drift found and fixed: create s0, create s1, create s2, create s3, create s4 and 2 more"
    )
    assert events[0].more == 6


def test_formats_carry_environment_server_reason_kind_and_run() -> None:
    event = Event("step-failed", "research-toolbox", "fetch", "create failed: 500", run_id=7, more=2)
    body = notify.message(event, "json", NOW)
    assert body == {"source": "mcp-reconciler", "event": "step-failed", "environment": "research-toolbox",
                    "server": "fetch", "reason": "create failed: 500", "run_id": 7, "more": 2,
                    "time": "2026-03-01T12:00:00+00:00"}  # fmt: skip
    slack = notify.message(event, "slack", NOW)
    assert set(slack) == {"text"}
    text = str(slack["text"])
    for part in ("step-failed", "research-toolbox/fetch", "(and 2 more)", "create failed: 500", "journal run 7"):
        assert part in text


def test_notifiable_kinds_are_the_ones_issue_fifteen_emits() -> None:
    assert frozenset({"unhealthy", "rollout-halted"}) == notify.NOTIFIABLE_NOTICE_KINDS
