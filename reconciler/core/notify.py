"""What a cycle tells the operators: the events derived from a cycle's outcome, and which of them to send now.

Pure: the caller hands in what the cycle found (the plan, the applied steps, the verdict's gaps) and the
time; it keeps the returned memory (``NotifyMemory``) between cycles. Delivery is an adapter's business.

One message per (event kind, environment) per period: a toolbox that stays broken for a day sends one
message per period, not one per cycle, and several servers failing together in one environment make one
message that names the first and counts the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.core.plan import NoticeKind, Plan, Step
from reconciler.core.redact import agent_text
from reconciler.core.verdict import Gap, GapKind

# Notice kinds (in a plan's notices or a step result's notice) that are worth waking someone for. Readiness
# and rollouts emit them; anything else a notice says is in the plan, the journal and the status page.
NOTIFIABLE_NOTICE_KINDS: frozenset[str] = frozenset({"unhealthy", "rollout-halted"})

DEFAULT_PERIOD = timedelta(minutes=15)
DEFAULT_UNOBSERVED_CYCLES = 3
MAX_REASON = 500  # characters of a reason kept in a message


class EventKind(StrEnum):
    STEP_FAILED = "step-failed"
    PLAN_REFUSED = "plan-refused"
    SERVER_STALLED = "server-stalled"
    TOOLBOX_UNOBSERVED = "toolbox-unobserved"
    DRIFT_FIXED = "drift-fixed"


@dataclass(frozen=True)
class Event:
    """One thing to tell. ``kind`` is an ``EventKind`` or a notifiable notice kind (``unhealthy``, ...)."""

    kind: str
    environment: str
    server: str | None
    reason: str
    run_id: int | None = None
    more: int = 0  # further servers of the same kind and environment folded into this message


@dataclass(frozen=True)
class AppliedStep:
    """What the notifier needs of one applied step (the runtime's step result, without the runtime)."""

    step: Step
    outcome: str
    message: str = ""
    notice: str | None = None


@dataclass(frozen=True)
class CycleFacts:
    """What one cycle found, as the notifier reads it."""

    plan: Plan | None
    applied: tuple[AppliedStep, ...] = ()
    gaps: tuple[Gap, ...] = ()
    acted_on: tuple[str, ...] = ()  # environment names observed this cycle
    backing_off: tuple[str, ...] = ()  # environment names skipped while they back off
    run_id: int | None = None


@dataclass(frozen=True)
class NotifyMemory:
    """What the notifier remembers between cycles."""

    unobserved: Mapping[str, int] = field(default_factory=dict)  # environment -> consecutive unobserved cycles
    sent: Mapping[tuple[str, str], datetime] = field(default_factory=dict)  # (kind, environment) -> last sent
    # environment -> why it was last found unobserved, for the cycles it then spends backing off
    why_unobserved: Mapping[str, str] = field(default_factory=dict)


def unobserved_counts(previous: Mapping[str, int], facts: CycleFacts) -> dict[str, int]:
    """Consecutive cycles each environment went unobserved. A toolbox left alone while it backs off stays
    unobserved (its count goes on); one another replica reconciled (neither observed nor backing off here)
    keeps its count; one observed this cycle starts again from zero."""
    missing = {
        g.environment
        for g in facts.gaps
        if g.kind == GapKind.NOT_OBSERVED and g.server is None and g.environment is not None
    }
    counts = dict(previous)
    for name in facts.acted_on:
        if name not in missing:
            counts.pop(name, None)
    for name in missing:
        counts[name] = counts.get(name, 0) + 1
    for name in facts.backing_off:
        if name in counts:
            counts[name] += 1
    return counts


def events_of(
    facts: CycleFacts,
    unobserved: Mapping[str, int],
    unobserved_cycles: int,
    why_unobserved: Mapping[str, str] | None = None,
) -> tuple[Event, ...]:
    """Every event the cycle gives, before deduplication, in a stable order. ``why_unobserved``: why each
    toolbox was last found unobserved, named when this cycle left it alone (backing off)."""
    run_id = facts.run_id
    found: list[Event] = []
    for applied in facts.applied:
        step = applied.step
        if applied.outcome == "failed":
            reason = f"{step.action} failed: {applied.message or 'no detail'}"
            found.append(Event(EventKind.STEP_FAILED, step.environment_name, step.server, reason, run_id))
        if applied.notice is not None and str(applied.notice) in NOTIFIABLE_NOTICE_KINDS:
            reason = applied.message or f"{step.action} ended {applied.notice}"
            found.append(Event(str(applied.notice), step.environment_name, step.server, reason, run_id))
    for notice in facts.plan.notices if facts.plan is not None else ():
        kind: str | None = None
        if notice.kind == NoticeKind.REFUSED:
            kind = EventKind.PLAN_REFUSED
        elif notice.kind == NoticeKind.STALLED:
            kind = EventKind.SERVER_STALLED
        elif str(notice.kind) in NOTIFIABLE_NOTICE_KINDS:
            kind = str(notice.kind)
        if kind is not None:
            found.append(Event(kind, notice.environment_name, notice.server, notice.message, run_id))
    reasons = {g.environment: g.reason for g in facts.gaps if g.kind == GapKind.NOT_OBSERVED and g.server is None}
    for name, count in sorted(unobserved.items()):
        if count > unobserved_cycles:
            last = (why_unobserved or {}).get(name)
            why = reasons.get(name) or (f"{last} (backing off)" if last else "backing off after failures")
            reason = f"not observed for {count} cycles in a row: {why}"
            found.append(Event(EventKind.TOOLBOX_UNOBSERVED, name, None, reason, run_id))
    fixed: dict[str, list[Step]] = {}
    for applied in facts.applied:
        if applied.outcome == "ok" and applied.notice is None:
            fixed.setdefault(applied.step.environment_name, []).append(applied.step)
    for name, steps in fixed.items():
        done = ", ".join(f"{s.action} {s.server}" for s in steps[:5])
        extra = f" and {len(steps) - 5} more" if len(steps) > 5 else ""
        reason = f"drift found and fixed: {done}{extra}"
        found.append(Event(EventKind.DRIFT_FIXED, name, steps[0].server, reason, run_id, more=len(steps) - 1))
    return tuple(found)


def fold(events: Iterable[Event]) -> tuple[Event, ...]:
    """One event per (kind, environment): the first, counting the servers of the others in ``more``."""
    folded: dict[tuple[str, str], Event] = {}
    for event in events:
        key = (event.kind, event.environment)
        first = folded.get(key)
        folded[key] = event if first is None else replace(first, more=first.more + 1 + event.more)
    return tuple(folded.values())


def throttle(
    sent: Mapping[tuple[str, str], datetime], events: Iterable[Event], now: datetime, period: timedelta
) -> tuple[tuple[Event, ...], dict[tuple[str, str], datetime]]:
    """The events to send now (at most one per (kind, environment) per ``period``) and the new memory of
    what was sent when. Entries older than the period are forgotten, so the memory stays bounded."""
    memory = {k: t for k, t in sent.items() if now - t < period}
    chosen: list[Event] = []
    for event in fold(events):
        key = (event.kind, event.environment)
        if key in memory:
            continue
        memory[key] = now
        chosen.append(event)
    return tuple(chosen), memory


def redacted(event: Event, secrets: Iterable[str]) -> Event:
    """The event with every secret value in scope replaced, its reason bounded."""
    values = tuple(secrets)
    return replace(
        event,
        reason=agent_text(event.reason, values, MAX_REASON),
        server=agent_text(event.server, values) if event.server is not None else None,
        environment=agent_text(event.environment, values),
    )


def decide(
    memory: NotifyMemory,
    facts: CycleFacts,
    now: datetime,
    *,
    period: timedelta = DEFAULT_PERIOD,
    unobserved_cycles: int = DEFAULT_UNOBSERVED_CYCLES,
    secrets: Iterable[str] = (),
) -> tuple[tuple[Event, ...], NotifyMemory]:
    """The messages to send after a cycle (redacted, deduplicated, rate-limited) and the next memory."""
    counts = unobserved_counts(memory.unobserved, facts)
    found = {g.environment: g.reason for g in facts.gaps if g.kind == GapKind.NOT_OBSERVED and g.server is None}
    why = {
        name: found.get(name) or memory.why_unobserved[name]
        for name in counts
        if name in found or name in memory.why_unobserved
    }
    events = events_of(facts, counts, unobserved_cycles, memory.why_unobserved)
    chosen, sent = throttle(memory.sent, events, now, period)
    values = tuple(secrets)
    return tuple(redacted(e, values) for e in chosen), NotifyMemory(
        unobserved=counts, sent=sent, why_unobserved=why
    )


FORMATS = ("json", "slack")
SOURCE = "mcp-reconciler"


def json_message(event: Event, now: datetime) -> dict[str, object]:
    """The generic webhook body: one flat JSON object a receiver can filter on."""
    return {
        "source": SOURCE,
        "event": event.kind,
        "environment": event.environment,
        "server": event.server,
        "reason": event.reason,
        "run_id": event.run_id,
        "more": event.more,
        "time": now.isoformat(),
    }


def slack_message(event: Event, now: datetime) -> dict[str, object]:
    """A Slack incoming-webhook body (``text`` is all Slack, Mattermost and Rocket.Chat need)."""
    where = event.environment if event.server is None else f"{event.environment}/{event.server}"
    more = f" (and {event.more} more)" if event.more else ""
    run = f" · journal run {event.run_id}" if event.run_id is not None else ""
    return {"text": f"*{SOURCE}: {event.kind}* {where}{more}: {event.reason}{run} · {now:%Y-%m-%d %H:%M:%SZ}"}


def message(event: Event, fmt: str, now: datetime) -> dict[str, object]:
    return slack_message(event, now) if fmt == "slack" else json_message(event, now)
