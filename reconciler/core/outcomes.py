"""The one vocabulary of outcomes: of a step, and of a run as the journal, the exit code and metrics see it.

They are ``StrEnum`` members so that the journal stores their plain values and old journals still read.
"""

from __future__ import annotations

from enum import StrEnum


class StepOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (stopping, lock lost, an earlier step on the toolbox failed)
    INTERRUPTED = "interrupted"  # intent journalled, no outcome (a crash or a second signal)
    PENDING = "pending"  # sent, not yet confirmed (a deploy whose answer outlasted its deadline)
    UNREADY = "unready"  # applied (created, replaced, started), but the server did not pass its readiness in time


class RunOutcome(StrEnum):
    # plan runs
    NO_CHANGES = "no-changes"  # every toolbox in scope observed and matching
    CHANGES = "changes"
    # apply runs (apply, run --once, a daemon cycle)
    CONVERGED = "converged"  # every toolbox in scope observed, and every step ok
    PARTIAL = "partial"  # some steps ok, some failed or unready
    FAILED = "failed"  # steps were tried, none succeeded
    NOTHING_APPLIED = "nothing-applied"  # errors stopped it before any step
    STOPPED = "stopped"  # the daemon was asked to stop mid-run
    # either kind
    INCOMPLETE = "incomplete"  # a toolbox in scope was not observed, or a declared server cannot be reconciled
    REFUSED = "refused"  # a safety rule or a stale saved plan refused it
