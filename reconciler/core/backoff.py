"""Per-environment exponential backoff (docs/architecture.md): pure decisions, time passed in.

A toolbox that keeps failing (unreachable, or a step failed) is left alone for a while that doubles with
each failure, up to a cap, with jitter so that many failing toolboxes do not retry in lock step. One
success resets it. Times are monotonic seconds given by the caller; randomness comes in as a number in
[0, 1) so that tests can pin it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    base: float = 30.0  # seconds after the first failure
    factor: float = 2.0
    cap: float = 900.0  # 15 minutes
    jitter: float = 0.1  # fraction of the delay, applied as +/- jitter

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1); ``rand`` in [0, 1)."""
        if failures <= 0:
            return 0.0
        raw = min(self.cap, self.base * self.factor ** (failures - 1))
        spread = raw * self.jitter * (2.0 * rand - 1.0)
        return max(0.0, min(self.cap * (1.0 + self.jitter), raw + spread))


@dataclass(frozen=True)
class BackoffState:
    """One environment's record: consecutive failures and the earliest time to try again."""

    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    def due(self, now: float) -> bool:
        return self.failures == 0 or now >= self.retry_at

    @property
    def backing_off(self) -> bool:
        return self.failures > 0


def failed(state: BackoffState, policy: BackoffPolicy, now: float, rand: float, error: str) -> BackoffState:
    failures = state.failures + 1
    return BackoffState(failures, now + policy.delay(failures, rand), error)


def succeeded(state: BackoffState) -> BackoffState:
    return BackoffState() if state.failures else state


def jittered_interval(interval: float, jitter: float, rand: float) -> float:
    """The scheduler's next wait: ``interval`` plus up to ``jitter`` seconds (``rand`` in [0, 1))."""
    return interval + max(0.0, jitter) * rand
