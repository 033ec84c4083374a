"""What the executor is configured with and what it hands back: its settings, each step's result, the run's."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.core.health import ProbeResult
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import NoticeKind, Step
from reconciler.core.rollout import Halt
from reconciler.errors import ReconcilerError


@dataclass(frozen=True)
class ExecutorConfig:
    global_concurrency: int = 16
    # Creates sent to one toolbox's agent at once (RECONCILER_DTMA_DEPLOY_CONCURRENCY; README, "Deploys in
    # parallel on one toolbox"); 1 sends them one after another.
    deploy_concurrency: int = 1
    ready_timeout: float = 60.0  # seconds a created container may take to show as running
    poll_interval: float = 0.2
    retries: int = 3  # attempts of a POST /tools answered 5xx (the client never retries a deploy itself)
    backoff_base: float = 0.5
    pending_timeout: float = 120.0  # seconds to watch the listing for a deploy whose answer timed out


@dataclass(frozen=True)
class StepResult:
    step: Step
    outcome: StepOutcome
    message: str = ""
    status_code: int | None = None
    attempts: int = 1
    # Set when the step met something the reconciler cannot fix now (a name held by the agent, an agent that
    # forgot its containers, a toolbox that failed mid-apply, a deploy still pending): callers back off on it
    # and never claim convergence.
    notice: NoticeKind | None = None
    probe: ProbeResult | None = None  # the readiness wait's last probe, after a create, replace or start
    run_id: int | None = None  # the journal run it belongs to (set by the executor)
    duration: float | None = None  # seconds from the step's start to its outcome (None: never started)

    def log_fields(self) -> dict[str, str | int]:
        """The structured fields of a log line about this step (``extra=``; JSON logs show them): names,
        the outcome and numbers only, never the message (which may quote an agent)."""
        fields: dict[str, str | int] = {
            "environment": self.step.environment_name,
            "server": self.step.server,
            "action": str(self.step.action),
            "outcome": str(self.outcome),
        }
        if self.run_id is not None:
            fields["run_id"] = self.run_id
        if self.duration is not None:
            fields["duration_ms"] = round(self.duration * 1000)
        return fields


@dataclass(frozen=True)
class ApplyResult:
    results: tuple[StepResult, ...] = field(default=())
    halts: tuple[Halt, ...] = ()  # the rollouts that stopped in this run (runtime.rollout_run)

    @property
    def converged(self) -> bool:
        return all(r.outcome in (StepOutcome.OK, StepOutcome.SKIPPED) and r.notice is None for r in self.results)

    @property
    def applied_any(self) -> bool:
        return any(r.outcome in (StepOutcome.OK, StepOutcome.UNREADY) for r in self.results)


@dataclass(frozen=True)
class Done:
    """What one action did when it did not fail: its outcome, a note, and a notice when what it made still
    differs from the manifest in a way no step can fix (a declared hostPort the image does not publish)."""

    outcome: StepOutcome
    message: str = ""
    notice: NoticeKind | None = None
    probe: ProbeResult | None = None


class StepFailed(ReconcilerError):
    def __init__(self, message: str, status_code: int | None = None, notice: NoticeKind | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.notice = notice


class DeployPending(ReconcilerError):
    """A deploy was sent, its answer timed out, and the container has not shown up yet."""
