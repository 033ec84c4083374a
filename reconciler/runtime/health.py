"""The daemon's health, judged from its last cycle report: readiness, the journalled health condition and
the verdict per environment (what /readyz and the metrics show)."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.core.verdict import GapKind
from reconciler.runtime.cycle import CycleReport

READY_FACTOR = 3.0  # /readyz wants a cycle within this many intervals


def readiness(report: CycleReport | None, age: float | None, interval: float, jitter: float) -> tuple[bool, str]:
    """Ready when the last cycle reached the database and ended within READY_FACTOR intervals (``age``
    seconds ago). The reason's further lines give each environment's verdict."""
    if report is None or age is None:
        return False, "no cycle has finished yet"
    if not report.database_ok:
        why = next((e for e in report.errors if e.startswith("database")), "database unreachable: see the log")
        return False, why
    limit = READY_FACTOR * interval * (1 + jitter)
    if age > limit:
        return False, f"last cycle ended {age:.0f}s ago (limit {limit:.0f}s)"
    lines = [f"{name}: {verdict}" for name, verdict in environment_verdicts(report).items()]
    for gap in report.verdict.gaps:
        lines.append(f"  {gap}")
    return True, "\n".join(["ready", *lines])


def environment_verdicts(report: CycleReport) -> Mapping[str, str]:
    """complete, incomplete or refused for every environment the cycle covered or found a gap in."""
    names = set(report.acted_on) | set(report.verdict.environments())
    # The gaps grouped once: asking ``verdict.of`` per environment was quadratic in a fleet with many gaps.
    by_env: dict[str, list[GapKind]] = {}
    for gap in report.verdict.gaps:
        if gap.environment is not None:
            by_env.setdefault(gap.environment, []).append(gap.kind)
    out: dict[str, str] = {}
    for name in sorted(names):
        gaps = by_env.get(name, ())
        if not gaps:
            out[name] = "complete"
        elif all(kind is GapKind.REFUSED for kind in gaps):
            out[name] = "refused"
        else:
            out[name] = "incomplete"
    return out


def condition(report: CycleReport) -> str:
    """The daemon's health condition, journalled when it changes."""
    if not report.database_ok:
        return "database-unreachable"
    if not report.manifest_valid:
        return "manifest-invalid"
    if report.errors:
        return "git-pull-failed"
    return "healthy"
