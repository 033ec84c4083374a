"""``reconciler suspend`` and ``resume``: an environment's suspension, stored in the database (so that every
replica on it sees it at its next cycle) and journalled with who and why (intent before the write, outcome
after, as every step is)."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.app.stores import open_store
from reconciler.app.wiring import SystemClock, open_journal
from reconciler.core.observed import RecordedEnvironment
from reconciler.core.suspension import Suspension
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.model.loader import environment_key
from reconciler.ports import Clock, Store
from reconciler.settings import Settings

WHOLE_ENVIRONMENT = "*"  # the journal step's server: the suspension is the environment's, not a server's


@dataclass(frozen=True)
class SuspendResult:
    environment: str  # the environment's name (its id when it has none)
    suspension: Suspension | None  # the one stored (suspend) or removed (resume; None: it was not suspended)


def who() -> str:
    """``user@host`` of the operator running the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def find_environment(store: Store, environment: str) -> RecordedEnvironment:
    """The database row ``environment`` names (its name, or its id); else an error listing the valid names."""
    rows = sorted(store.observe_environments(), key=lambda r: r.id)
    for row in rows:
        if row.name == environment or environment_key(row.id) == environment_key(environment):
            return row
    valid = ", ".join(sorted({r.name or r.id for r in rows})) or "none registered"
    raise ConfigError(f"environment {environment!r} is not in the database (valid: {valid})")


def suspend(
    settings: Settings, environment: str, reason: str, *, by: str | None = None, clock: Clock | None = None
) -> SuspendResult:
    """Suspend ``environment``: the daemon and ``apply`` leave it alone until ``resume``; ``plan`` still
    shows its drift. Suspending a suspended environment replaces its reason, who and when."""
    reason = reason.strip()
    if not reason:
        raise ConfigError("--reason must say why (it is shown by plan, status and the journal)")
    clock = clock or SystemClock()
    store = open_store(settings.database_url)
    try:
        row = find_environment(store, environment)
        name = row.name or row.id
        suspension = Suspension(row.id, reason, by or who(), clock.now())
        _journalled(
            settings, clock, "suspend", name, what=suspension, write=lambda: store.suspend_environment(suspension)
        )
        return SuspendResult(name, suspension)
    finally:
        store.close()


def resume(
    settings: Settings, environment: str, *, by: str | None = None, clock: Clock | None = None
) -> SuspendResult:
    """Lift ``environment``'s suspension: the next cycle reconciles it. Not suspended: nothing is written."""
    clock = clock or SystemClock()
    store = open_store(settings.database_url)
    try:
        row = find_environment(store, environment)
        name = row.name or row.id
        current = next((s for s in store.suspensions() if s.environment_id == row.id), None)
        if current is None:
            return SuspendResult(name, None)
        lifted = Suspension(row.id, f"was {current.describe()}", by or who(), clock.now())
        removed: list[Suspension | None] = []
        _journalled(
            settings,
            clock,
            "resume",
            name,
            what=lifted,
            write=lambda: removed.append(store.resume_environment(row.id)),
        )
        return SuspendResult(name, removed[0] if removed else current)
    finally:
        store.close()


def _journalled(
    settings: Settings, clock: Clock, action: str, name: str, *, what: Suspension, write: Callable[[], object]
) -> None:
    """A run of kind ``action`` with one step on the environment: its intent, the write, its outcome."""
    journal = open_journal(settings)
    try:
        now = clock.now()
        run_id = journal.start_run(action, now, note=f"by {what.by}: {what.reason}")
        step_id = journal.intent(
            run_id, now, environment=name, server=WHOLE_ENVIRONMENT, action=action, reason=what.reason
        )
        try:
            write()
        except ReconcilerError as exc:
            journal.outcome(step_id, clock.now(), "failed", error=str(exc))
            journal.finish_run(run_id, clock.now(), "failed")
            raise
        journal.outcome(step_id, clock.now(), "ok")
        journal.finish_run(run_id, clock.now(), "suspended" if action == "suspend" else "resumed")
    finally:
        journal.close()
