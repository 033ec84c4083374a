"""What a cycle writes of its probes: a row once per change, or again after REWRITE_AFTER; never a row the
reconciler does not manage."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.core.health import ProbeResult
from reconciler.core.observed import RecordedInstance, ServerHealth
from reconciler.runtime.probing import REWRITE_AFTER, health_records

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEY = ("env-1", "time")


def row(managed: bool = True) -> RecordedInstance:
    return RecordedInstance("row-1", "env-1", "cat", "time", "running", "ghcr.io/x/time:1", managed)


def health(result: ProbeResult, failures: int = 0) -> dict[tuple[str, str], ServerHealth]:
    return {KEY: ServerHealth("mcp", result, NOW, failures=failures)}


def test_a_row_is_written_when_its_health_changes_or_after_a_while() -> None:
    ok = ProbeResult(True, duration=0.01, protocol_version="2025-06-18", capabilities=("tools",), tools=("now",))
    records, memory = health_records(health(ok), {KEY: row()}, {}, 100.0)
    [record] = records
    assert record.instance_id == "row-1" and record.capabilities == ["tools"]
    assert record.metadata["health"] == "healthy" and record.metadata["tools"] == ["now"]
    assert record.metadata["last_probe"]["ok"] is True and record.metadata["last_probe"]["at"] == NOW.isoformat()
    same = ProbeResult(True, duration=0.03, protocol_version="2025-06-18", capabilities=("tools",), tools=("now",))
    assert health_records(health(same), {KEY: row()}, memory, 200.0)[0] == []  # only its time differs
    assert len(health_records(health(same), {KEY: row()}, memory, 100.0 + REWRITE_AFTER)[0]) == 1
    failed = ProbeResult(False, "connection refused")
    [record], memory = health_records(health(failed, 1), {KEY: row()}, memory, 201.0)
    assert record.capabilities is None  # what a failed probe says about capabilities is nothing: kept as is
    assert (
        record.metadata["health"] == "unhealthy" and record.metadata["last_probe"]["error"] == "connection refused"
    )
    assert len(health_records(health(failed, 2), {KEY: row()}, memory, 202.0)[0]) == 1  # one more failure


def test_unmanaged_or_unrecorded_servers_are_not_written() -> None:
    ok = ProbeResult(True)
    assert health_records(health(ok), {KEY: row(managed=False)}, {}, 1.0)[0] == []
    assert health_records(health(ok), {}, {}, 1.0)[0] == []
