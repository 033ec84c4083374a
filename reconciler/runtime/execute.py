"""Apply a plan: in order within a toolbox, in parallel across toolboxes, each step journalled.

Every step writes its journal intent before touching the DTMA and its outcome after. Secret values are
resolved by the caller from the environment and handed in here only; they reach the DTMA and nothing else:
every text that comes back from an agent is redacted of them (and bounded) before it is stored, journalled
or returned.

Retries live in the DTMA client alone (idempotent calls); the executor never wraps a call in a second retry
loop. What the executor adds is meaning, from what real agents do (docs/architecture.md, "The DTMA agent's
behaviours the client copes with"). This module schedules the steps; the parts live beside it:
``step_actions`` (what each action does), ``deploy`` (a create, the deploy watch), ``instance_rows`` (row
writes and the blocked-name marker), ``step_results`` (the config and results). Here: a transport failure
skips the rest of that toolbox's steps with one reason; other toolboxes go on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import Action, BlockReason, NoticeKind, Step
from reconciler.core.redact import Redactor
from reconciler.errors import DtmaDeployTimeoutError, DtmaError, DtmaTransportError, ReconcilerError
from reconciler.ports import Clock, Dtma, DtmaTarget, Journal, Prober, Store
from reconciler.runtime.deploy import Deployer
from reconciler.runtime.instance_rows import InstanceRows
from reconciler.runtime.probing import ReadinessConfig, ReadinessWait
from reconciler.runtime.step_actions import StepActions
from reconciler.runtime.step_results import ApplyResult, DeployPending, ExecutorConfig, StepFailed, StepResult

__all__ = ["ApplyResult", "Executor", "ExecutorConfig", "StepFailed", "StepResult", "deploy_groups"]


_DEFAULT_CONFIG = ExecutorConfig()
_DEFAULT_READINESS = ReadinessConfig()


class _Chain:
    """One toolbox's steps in order; after a transport failure the rest are skipped with one reason."""

    def __init__(self) -> None:
        self.broken: str | None = None
        # Docker's name conflict: later creates on this toolbox would meet it too.
        self.forgotten: str | None = None


def deploy_groups(chain: Sequence[Step], concurrency: int) -> list[list[Step]]:
    """One toolbox's steps in order, cut into groups that may run at once: consecutive creates, at most
    ``concurrency`` wide in flight, never two with the same name or host port in one group (the agent checks
    names and ports against its registry before the pull and registers only after it, so it would not catch
    such a pair); every other action is a group of its own, so it waits for what came before it and what
    follows waits for it."""
    groups: list[list[Step]] = []
    names: set[str] = set()
    ports: set[int] = set()
    for step in chain:
        port = step.desired.host_port if step.desired is not None else None
        joins = (
            concurrency > 1
            and step.action is Action.CREATE
            and groups
            and groups[-1][0].action is Action.CREATE
            and step.server not in names
            and (port is None or port not in ports)
        )
        if not joins:
            groups.append([])
            names, ports = set(), set()
        groups[-1].append(step)
        names.add(step.server)
        if port is not None:
            ports.add(port)
    return groups


class Executor:
    def __init__(
        self,
        *,
        store: Store,
        dtma: Dtma,
        targets: Mapping[str, DtmaTarget],
        journal: Journal,
        run_id: int,
        clock: Clock,
        sleep: Callable[[float], None],
        secret_values: Mapping[str, str],
        secret_fingerprints: Mapping[str, str],
        config: ExecutorConfig = _DEFAULT_CONFIG,
        on_step: Callable[[StepResult], None] | None = None,
        gate: Callable[[Step], str | None] | None = None,
        prober: Prober | None = None,
        readiness: ReadinessConfig = _DEFAULT_READINESS,
    ) -> None:
        self.store, self.dtma, self.targets, self.journal = store, dtma, targets, journal
        self.run_id, self.clock, self.sleep, self.config = run_id, clock, sleep, config
        self._on_step = on_step
        self._gate = gate  # a reason not to start a step (daemon stopping, lock lost), or None
        # Everything an agent's text must never show: the secret values and the bearer tokens.
        self._hidden = Redactor((*secret_values.values(), *(t.token.reveal() for t in targets.values())))
        self._rows = InstanceRows(store, clock, secret_fingerprints)
        deployer = Deployer(
            dtma=dtma, rows=self._rows, clock=clock, sleep=sleep, config=config, secret_values=secret_values,
            clean=self._clean, readiness=ReadinessWait(prober, clock, sleep, readiness),
        )  # fmt: skip
        self._actions = StepActions(dtma=dtma, rows=self._rows, deployer=deployer)

    def apply(
        self,
        steps: Sequence[Step],
        *,
        concurrency: int | None = None,
        hold: Callable[[Step], str | None] | None = None,
        observe: Callable[[StepResult], None] | None = None,
    ) -> ApplyResult:
        """``concurrency`` bounds the toolboxes in flight below the configured one (a rollout's later wave);
        ``hold`` gives a reason to journal a step ``skipped`` without trying it (its rollout halted); ``observe``
        sees each result before ``on_step`` (the wave runner's progress)."""
        by_env: dict[str, list[Step]] = {}
        for step in steps:
            by_env.setdefault(step.environment_id, []).append(step)
        results: list[StepResult] = []
        lock = threading.Lock()

        def run_one(step: Step, state: _Chain) -> None:
            veto = self._gate(step) if self._gate is not None else None
            started, duration = self.clock.monotonic(), None
            # A vetoed or skipped step is not started, so it has no journal row: nothing was attempted.
            if veto:
                result = StepResult(step, StepOutcome.SKIPPED, veto)
            elif state.broken is not None:
                result = StepResult(step, StepOutcome.SKIPPED, state.broken, notice=NoticeKind.UNREACHABLE)
            elif state.forgotten is not None and step.action is Action.CREATE:
                result = self._hold_forgotten(step, state.forgotten)
            elif hold is not None and (held := hold(step)) is not None:
                result = self._skip_held(step, held)
            else:
                result = self._run_step(step, state)
                duration = self.clock.monotonic() - started
            result = replace(result, run_id=self.run_id, duration=duration)
            with lock:
                results.append(result)
            if observe is not None:
                observe(result)
            if self._on_step is not None:
                self._on_step(result)

        def run_chain(chain: list[Step]) -> None:
            state = _Chain()
            for group in deploy_groups(chain, self.config.deploy_concurrency):
                if len(group) == 1:
                    run_one(group[0], state)
                    continue
                # Creates on one toolbox overlap (each still journals its intent before its call): the agent
                # answers a deploy only after the pull, so one at a time would make a toolbox's creates take
                # the sum of their pulls.
                width = min(self.config.deploy_concurrency, len(group))
                with ThreadPoolExecutor(max_workers=width, thread_name_prefix="deploy") as pool:
                    for fut in [pool.submit(run_one, step, state) for step in group]:
                        fut.result()

        bound = min(concurrency or self.config.global_concurrency, self.config.global_concurrency)
        workers = max(1, min(bound, len(by_env) or 1))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
                for fut in [pool.submit(run_chain, chain) for chain in by_env.values()]:
                    fut.result()
        finally:
            self._rows.sync()
        order = {id(s): i for i, s in enumerate(steps)}
        return ApplyResult(tuple(sorted(results, key=lambda r: order.get(id(r.step), 0))))

    def _clean(self, text: str) -> str:
        return self._hidden.agent_text(text)

    def _run_step(self, step: Step, chain: _Chain) -> StepResult:
        step_id = self.journal.intent(
            self.run_id,
            self.clock.now(),
            environment=step.environment_name,
            server=step.server,
            action=str(step.action),
            reason=step.reason,
        )
        try:
            done = self._actions.act(step, self.targets)
        except DeployPending as exc:
            message = self._clean(str(exc))
            self.journal.outcome(step_id, self.clock.now(), StepOutcome.PENDING, error=message)
            return StepResult(step, StepOutcome.PENDING, message, notice=NoticeKind.PENDING)
        except (StepFailed, DtmaError) as exc:
            code = getattr(exc, "status_code", None)
            message = self._clean(str(exc))
            notice = getattr(exc, "notice", None)
            if isinstance(exc, DtmaTransportError) and not isinstance(exc, DtmaDeployTimeoutError):
                chain.broken = self._clean(
                    f"skipped: {step.environment_name} failed mid-apply ({exc}); its remaining steps wait for "
                    "the next run"
                )
                notice = NoticeKind.UNREACHABLE
            if notice is NoticeKind.FORGOTTEN:
                chain.forgotten = message
            if notice not in (NoticeKind.NAME_HELD, NoticeKind.FORGOTTEN):
                self._rows.mark_error(step, message)
            self.journal.outcome(step_id, self.clock.now(), StepOutcome.FAILED, error=message, status_code=code)
            return StepResult(step, StepOutcome.FAILED, message, code, notice=notice)
        except ReconcilerError as exc:
            message = self._clean(str(exc))
            self.journal.outcome(step_id, self.clock.now(), StepOutcome.FAILED, error=message)
            return StepResult(step, StepOutcome.FAILED, message)
        message = self._clean(done.message)
        self.journal.outcome(step_id, self.clock.now(), done.outcome, error=message or None)
        return StepResult(step, done.outcome, message, notice=done.notice, probe=done.probe)

    def _skip_held(self, step: Step, why: str) -> StepResult:
        """A step its rollout held back: journalled ``skipped`` with the reason, so the journal says why this
        toolbox keeps its version; the agent is not called."""
        message = self._clean(why)
        step_id = self.journal.intent(
            self.run_id,
            self.clock.now(),
            environment=step.environment_name,
            server=step.server,
            action=str(step.action),
            reason=step.reason,
        )
        self.journal.outcome(step_id, self.clock.now(), StepOutcome.SKIPPED, error=message)
        return StepResult(step, StepOutcome.SKIPPED, message, notice=NoticeKind.ROLLOUT_HELD)

    def _hold_forgotten(self, step: Step, why: str) -> StepResult:
        """A create on a toolbox whose agent just showed it forgot its containers: not sent, held back."""
        message = f"not sent: {why}"
        if step.instance_id and step.desired is not None and step.spec_hash is not None:
            self._rows.block(step.instance_id, step.desired, step.spec_hash, BlockReason.NAME_TAKEN, message)
        return StepResult(step, StepOutcome.SKIPPED, message, notice=NoticeKind.FORGOTTEN)
