"""Apply a plan: in order within a toolbox, in parallel across toolboxes, each step re-checked first.

Every step writes its journal intent before touching the DTMA and its outcome after. Secret values are
resolved by the caller from the environment and handed in here only; they reach the DTMA and nothing else:
every text that comes back from an agent is redacted of them (and bounded) before it is stored, journalled
or returned.

Retries live in the DTMA client alone (idempotent calls); the executor never wraps a call in a second retry
loop. What the executor adds is meaning, from what real agents do (see README, "How the reconciler copes
with the DTMA agent"):
- a stop answered "already stopped" (Docker's 304) is a success; a restart of a container that is not running
  is a start alone (stop only goes to running, paused or restarting containers);
- a deploy that timed out is never re-sent in the same run: the listing is polled until the container shows
  or the deadline passes, and the step ends ``pending``;
- a row is dropped only after the agent confirmed its container gone;
- a name the agent holds without a container, or Docker's name conflict, blocks the create with one notice
  and a marker in the row's stored config, so the planner does not re-send it every cycle;
- a transport failure skips the rest of that toolbox's steps with one reason; other toolboxes go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from reconciler.core.observed import LiveContainer, LiveListing
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import BLOCKED_KEY, Action, BlockReason, NoticeKind, Step
from reconciler.core.redact import agent_text
from reconciler.errors import (
    DtmaAlreadyStoppedError,
    DtmaConflictError,
    DtmaDeployTimeoutError,
    DtmaError,
    DtmaNameHeldError,
    DtmaNameTakenError,
    DtmaNoSuchContainerError,
    DtmaNotFoundError,
    DtmaPortConflictError,
    DtmaServerError,
    DtmaTransportError,
    ReconcilerError,
)
from reconciler.model.secrets import Secret
from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.model.stored import stored_config
from reconciler.ports import Clock, DeployRequest, Dtma, DtmaTarget, Journal, NewInstance, Store

log = logging.getLogger(__name__)

# Docker states in which a container is running or may run again by itself: only these get a stop.
STOPPABLE_STATES: frozenset[str] = frozenset({"running", "paused", "restarting"})
# Row statuses of a server whose container was never made: a 404 on its delete confirms nothing is left.
NEVER_DEPLOYED: frozenset[str] = frozenset({"pending_deploy", "pending_install", "error_install", "error"})


@dataclass(frozen=True)
class ExecutorConfig:
    global_concurrency: int = 16
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


@dataclass(frozen=True)
class ApplyResult:
    results: tuple[StepResult, ...] = field(default=())

    @property
    def converged(self) -> bool:
        return all(r.outcome in (StepOutcome.OK, StepOutcome.SKIPPED) and r.notice is None for r in self.results)

    @property
    def applied_any(self) -> bool:
        return any(r.outcome == StepOutcome.OK for r in self.results)


class StepFailed(ReconcilerError):
    def __init__(self, message: str, status_code: int | None = None, notice: NoticeKind | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.notice = notice


class _Pending(ReconcilerError):
    """A deploy was sent, its answer timed out, and the container has not shown up yet."""


class _Chain:
    """One toolbox's steps in order; after a transport failure the rest are skipped with one reason."""

    def __init__(self) -> None:
        self.broken: str | None = None
        self.forgotten: str | None = (
            None  # Docker's name conflict: later creates on this toolbox would meet it too
        )


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
        config: ExecutorConfig = ExecutorConfig(),
        on_step: Callable[[StepResult], None] | None = None,
        gate: Callable[[Step], str | None] | None = None,
    ) -> None:
        self.store, self.dtma, self.targets, self.journal = store, dtma, targets, journal
        self.run_id, self.clock, self.sleep, self.config = run_id, clock, sleep, config
        self._secrets = secret_values
        self._fingerprints = secret_fingerprints
        self._on_step = on_step
        self._gate = gate  # a reason not to start a step (daemon stopping, lock lost), or None
        self._store_lock = threading.Lock()  # stores may not be thread-safe; DTMA calls run unlocked
        # Everything an agent's text must never show: the secret values and the bearer tokens.
        self._hidden = tuple(self._secrets.values()) + tuple(t.token.reveal() for t in targets.values())

    def apply(self, steps: Sequence[Step]) -> ApplyResult:
        by_env: dict[str, list[Step]] = {}
        for step in steps:
            by_env.setdefault(step.environment_id, []).append(step)
        results: list[StepResult] = []
        lock = threading.Lock()

        def run_chain(chain: list[Step]) -> None:
            state = _Chain()
            for step in chain:
                veto = self._gate(step) if self._gate is not None else None
                # A vetoed or skipped step is not started, so it has no journal row: nothing was attempted.
                if veto:
                    result = StepResult(step, StepOutcome.SKIPPED, veto)
                elif state.broken is not None:
                    result = StepResult(step, StepOutcome.SKIPPED, state.broken, notice=NoticeKind.UNREACHABLE)
                elif state.forgotten is not None and step.action is Action.CREATE:
                    result = self._hold_forgotten(step, state.forgotten)
                else:
                    result = self._run_step(step, state)
                with lock:
                    results.append(result)
                if self._on_step is not None:
                    self._on_step(result)

        workers = max(1, min(self.config.global_concurrency, len(by_env) or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
            for fut in [pool.submit(run_chain, chain) for chain in by_env.values()]:
                fut.result()
        order = {id(s): i for i, s in enumerate(steps)}
        return ApplyResult(tuple(sorted(results, key=lambda r: order.get(id(r.step), 0))))

    # -- one step --------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        return agent_text(text, self._hidden)

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
            outcome, message = self._act(step)
        except _Pending as exc:
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
                self._mark_error(step, message)
            self.journal.outcome(step_id, self.clock.now(), StepOutcome.FAILED, error=message, status_code=code)
            return StepResult(step, StepOutcome.FAILED, message, code, notice=notice)
        except ReconcilerError as exc:
            message = self._clean(str(exc))
            self.journal.outcome(step_id, self.clock.now(), StepOutcome.FAILED, error=message)
            return StepResult(step, StepOutcome.FAILED, message)
        self.journal.outcome(step_id, self.clock.now(), outcome, error=message or None)
        return StepResult(step, outcome, message)

    def _hold_forgotten(self, step: Step, why: str) -> StepResult:
        """A create on a toolbox whose agent just showed it forgot its containers: not sent, held back."""
        message = f"not sent: {why}"
        if step.instance_id and step.desired is not None and step.spec_hash is not None:
            self._block(step.instance_id, step.desired, step.spec_hash, BlockReason.NAME_TAKEN, message)
        return StepResult(step, StepOutcome.SKIPPED, message, notice=NoticeKind.FORGOTTEN)

    def _act(self, step: Step) -> tuple[StepOutcome, str]:
        if step.action is Action.SYNC_STATUS:
            if step.instance_id and step.status_to:
                with self._store_lock:
                    self.store.update_instance(step.instance_id, status=step.status_to, clear_error=True)
            if step.desired is not None:  # a server found stopped as the manifest wants it: remember that
                self._record_desired(step, step.desired.state)
            return StepOutcome.OK, ""
        if step.action is Action.SYNC_CONFIG:  # protect: stored, no DTMA call
            if step.instance_id and step.desired is not None:
                with self._store_lock:
                    self.store.merge_config(step.instance_id, {"protect": step.desired.protect})
            return StepOutcome.OK, ""
        target = self.targets.get(step.environment_id)
        if target is None:
            raise StepFailed(f"{step.environment_name}: no DTMA address known")
        listing = self.dtma.list(target)
        gone = _gone(listing, step.server)
        current = None if gone else listing.by_name().get(step.server)
        action = step.action
        if action is Action.CREATE:
            if current is not None:
                if step.instance_id and current.instance_id == step.instance_id:
                    # An earlier, interrupted run deployed it: finish that instead of deploying twice.
                    self._wait_running(step, target)
                    self._finish(step, step.instance_id, step.desired)
                    return StepOutcome.SKIPPED, "already deployed"
                raise StepFailed(f"{step.environment_name}/{step.server}: a container of that name already exists")
            self._create(step, target)
        elif action is Action.REPLACE:
            if current is not None:
                self._delete(step, target)
            self._create(step, target)
        elif action in (Action.RESTART, Action.START):
            if current is None:
                raise StepFailed(
                    f"{step.environment_name}/{step.server}: container is gone; the next plan recreates it"
                )
            if current.state == "running":
                self._record_desired(step, "running")
                return StepOutcome.SKIPPED, "already running"
            # The agent has no restart route; a container that is not running needs a start alone (a stop
            # of an exited container is Docker's 304, which the older agent's callers saw as a failure).
            if current.state in STOPPABLE_STATES:
                self._named(lambda: self._stop(target, step.server), step)
            self._named(lambda: self.dtma.start(target, step.server), step)
            self._record_desired(step, "running")
            self._set_status(step.instance_id, "running")
        elif action is Action.STOP:
            if current is not None and current.state in STOPPABLE_STATES:
                self._named(lambda: self._stop(target, step.server), step)
            self._record_desired(step, "stopped")
            self._set_status(step.instance_id, "stopped")
        elif action is Action.DELETE and (gone or self._delete(step, target, listing)) and step.instance_id:
            with self._store_lock:
                self.store.delete_instance(step.instance_id)
        return StepOutcome.OK, ""

    def _stop(self, target: DtmaTarget, name: str) -> None:
        # Docker's 304: the container was not running, which is what a stop wants.
        with suppress(DtmaAlreadyStoppedError):
            self.dtma.stop(target, name)

    def _named(self, call: Callable[[], None], step: Step) -> None:
        """A start or stop: a 404 here means the agent no longer manages the name (it restarted)."""
        try:
            call()
        except DtmaNotFoundError as exc:
            raise StepFailed(
                f"{exc}; the DTMA agent on {step.environment_name} no longer manages {step.server} (it probably "
                "restarted and forgot its containers): restart or re-register the agent",
                exc.status_code,
                NoticeKind.FORGOTTEN,
            ) from exc

    def _delete(self, step: Step, target: DtmaTarget, listing: LiveListing | None = None) -> bool:
        """Send DELETE; True when the agent confirmed the container gone. A 404 from an agent that does not
        list the name is ambiguous (the agent may have restarted and forgotten a container that still runs),
        except when the listing is the host-wide one (shape b), which shows every container, or when the row
        says no container was ever deployed (a create that failed)."""
        try:
            self.dtma.delete(target, step.server)
        except DtmaNoSuchContainerError:
            return True  # the agent manages the name and Docker says no such container: gone
        except DtmaNotFoundError as exc:
            unlisted = listing is not None and step.server not in listing.by_name()
            if unlisted and (listing.shape == "b" or step.status_from in NEVER_DEPLOYED):  # type: ignore[union-attr]
                return True
            raise StepFailed(
                f"{exc}; the DTMA agent on {step.environment_name} does not manage {step.server} and does "
                "not list it: if the agent restarted, the container may still run. The row is kept; remove the "
                f"container on the host (docker rm -f {step.server}) or restart or re-register the agent",
                exc.status_code,
                NoticeKind.FORGOTTEN,
            ) from exc
        return True

    def _record_desired(self, step: Step, state: str) -> None:
        """Store the desired state with the row, so that a server stopped on purpose is later started (not
        restarted) and status shows what the manifest says."""
        spec = step.desired
        if step.instance_id is None or spec is None or step.spec_hash is None:
            return
        if spec.state != state:
            spec = _with_state(spec, state)
        with self._store_lock:
            self.store.update_instance(
                step.instance_id, config=stored_config(spec, step.spec_hash, self._fingerprints)
            )

    def _create(self, step: Step, target: DtmaTarget) -> None:
        spec = step.desired
        if spec is None or step.spec_hash is None:
            raise StepFailed(f"{step.environment_name}/{step.server}: step carries no desired spec")
        config = stored_config(spec, step.spec_hash, self._fingerprints)
        with self._store_lock:
            catalog_id = self.store.ensure_catalog(spec.image, environment_id=step.environment_id)
            if step.instance_id:
                instance_id = step.instance_id
                # catalog_id: an image change moves the row to the new image's catalog row.
                self.store.update_instance(
                    instance_id, status="pending_deploy", config=config, clear_error=True, catalog_id=catalog_id
                )
            else:
                instance_id = self.store.create_instance(
                    NewInstance(
                        environment_id=step.environment_id,
                        catalog_id=catalog_id,
                        name=spec.name,
                        config=config,
                        transport=spec.transport,
                        endpoint=spec.endpoint,
                        capabilities=spec.capabilities,
                    )
                )
        try:
            self._deploy(step, spec, target, instance_id)
        except _Pending as exc:
            self._block(instance_id, spec, step.spec_hash, BlockReason.DEPLOY_PENDING, self._clean(str(exc)),
                        status="deploying")  # fmt: skip
            raise
        except StepFailed as exc:
            if exc.notice is NoticeKind.NAME_HELD:
                self._block(instance_id, spec, step.spec_hash, BlockReason.NAME_HELD, self._clean(str(exc)))
            elif exc.notice is NoticeKind.FORGOTTEN:
                self._block(instance_id, spec, step.spec_hash, BlockReason.NAME_TAKEN, self._clean(str(exc)))
            else:
                self._mark_error_id(instance_id, self._clean(str(exc)))
            raise
        except DtmaError as exc:
            self._mark_error_id(instance_id, self._clean(str(exc)))
            raise

    def _deploy(self, step: Step, spec: ServerSpec, target: DtmaTarget, instance_id: str) -> None:
        request = DeployRequest(
            image=spec.image,
            name=spec.name,
            instance_id=instance_id,
            env=self._env(spec),
            # A container port without a hostPort is not published at all: a binding without HostPort would
            # make Docker publish a random port on every interface.
            port=spec.port if spec.host_port is not None else None,
            host_port=spec.host_port,
            host_ip=spec.effective_host_ip if spec.host_port is not None else None,
        )
        where = f"{step.environment_name}/{spec.name}"
        attempt = 0
        while True:
            attempt += 1
            try:
                self.dtma.deploy(target, request)
                break
            except DtmaTransportError as exc:
                # The request may have reached the agent, which may still be pulling the image: never send it
                # again in this run; watch the listing instead. (A refused connection fails the listing too.)
                self._await_pending(step, target, instance_id, exc)
                break
            except DtmaNameHeldError as exc:
                if self._ours(target, spec.name, instance_id):
                    break  # an earlier, interrupted attempt already created it
                raise StepFailed(
                    f"{where}: {exc}. No container of that name is listed: the DTMA agent on "
                    f"{step.environment_name} holds the name from a container removed behind its back; restart "
                    f"the DTMA agent on {step.environment_name} to release the name",
                    exc.status_code,
                    NoticeKind.NAME_HELD,
                ) from exc
            except DtmaNameTakenError as exc:
                if self._ours(target, spec.name, instance_id):
                    break
                raise StepFailed(
                    f"{where}: {exc}. Docker has a container named {spec.name} that the DTMA agent on "
                    f"{step.environment_name} does not manage: the agent probably restarted and forgot its "
                    "containers (or the container was made by hand). Restart or re-register the agent, or remove "
                    f"the container on the host (docker rm -f {spec.name})",
                    exc.status_code,
                    NoticeKind.FORGOTTEN,
                ) from exc
            except DtmaPortConflictError as exc:
                raise StepFailed(f"{where}: {exc}", exc.status_code) from exc
            except DtmaConflictError as exc:
                if self._ours(target, spec.name, instance_id):
                    break
                raise StepFailed(f"{where}: {exc}", exc.status_code) from exc
            except DtmaServerError:
                if attempt >= self.config.retries:
                    raise
                # POST /tools is sent again only when the listing shows the container absent.
                if self._live(target, spec.name) is not None:
                    break
                self.sleep(self.config.backoff_base * 2 ** (attempt - 1))
        self._set_status(instance_id, "deploying")
        self._wait_running(step, target)
        self._finish(step, instance_id, spec, target)

    def _finish(
        self, step: Step, instance_id: str, spec: ServerSpec | None, target: DtmaTarget | None = None
    ) -> None:
        if spec is not None and spec.state == "stopped" and target is not None:
            self._stop(target, spec.name)
            self._set_status(instance_id, "stopped")
        else:
            self._set_status(instance_id, "running")

    def _await_pending(self, step: Step, target: DtmaTarget, instance_id: str, exc: DtmaError) -> None:
        deadline = self.clock.monotonic() + self.config.pending_timeout
        self._set_status(instance_id, "deploying")
        while True:
            if self._live(target, step.server) is not None:
                return
            if self.clock.monotonic() >= deadline:
                raise _Pending(
                    f"{step.environment_name}/{step.server}: deploy sent, no answer ({exc}), and not listed after "
                    f"{self.config.pending_timeout:g}s; the agent may still be pulling the image. Not sent again: "
                    "the next run checks the listing"
                )
            self.sleep(self.config.poll_interval)

    def _ours(self, target: DtmaTarget, name: str, instance_id: str) -> bool:
        mine = self._live(target, name)
        return mine is not None and mine.instance_id == instance_id

    def _live(self, target: DtmaTarget, name: str) -> LiveContainer | None:
        listing = self.dtma.list(target)
        return None if _gone(listing, name) else listing.by_name().get(name)

    def _wait_running(self, step: Step, target: DtmaTarget) -> None:
        deadline = self.clock.monotonic() + self.config.ready_timeout
        while True:
            seen = self._live(target, step.server)
            if seen is not None and seen.state == "running":
                return
            if self.clock.monotonic() >= deadline:
                state = seen.state if seen else "absent"
                raise StepFailed(
                    f"{step.environment_name}/{step.server}: not running after {self.config.ready_timeout:g}s "
                    f"(state {state})"
                )
            self.sleep(self.config.poll_interval)

    def _env(self, spec: ServerSpec) -> tuple[tuple[str, Secret | str], ...]:
        out: list[tuple[str, Secret | str]] = []
        for key, value in spec.env:
            if isinstance(value, SecretRef):
                if value.env_var not in self._secrets:
                    raise StepFailed(f"{spec.name}: secret variable {value.env_var} is not set")
                out.append((key, Secret(self._secrets[value.env_var])))
            else:
                out.append((key, value))
        return tuple(out)

    def _block(self, instance_id: str, spec: ServerSpec, spec_hash: str, reason: BlockReason, message: str,
               *, status: str = "error") -> None:  # fmt: skip
        config: dict[str, Any] = stored_config(spec, spec_hash, self._fingerprints)
        config[BLOCKED_KEY] = {"reason": str(reason), "since": _iso(self.clock.now()), "message": message}
        try:
            with self._store_lock:
                self.store.update_instance(instance_id, status=status, error_message=message, config=config)
        except ReconcilerError:
            log.warning("could not record why instance %s is blocked", instance_id)

    def _set_status(self, instance_id: str | None, status: str) -> None:
        if instance_id:
            with self._store_lock:
                self.store.update_instance(instance_id, status=status, clear_error=status != "error")

    def _mark_error(self, step: Step, message: str) -> None:
        if step.instance_id is not None and step.action is not Action.DELETE:
            self._mark_error_id(step.instance_id, message)

    def _mark_error_id(self, instance_id: str, message: str) -> None:
        try:
            with self._store_lock:
                self.store.update_instance(instance_id, status="error", error_message=message)
        except ReconcilerError:
            log.warning("could not record the error of instance %s", instance_id)


def _gone(listing: LiveListing, name: str) -> bool:
    """The older agent's ``not_found`` entry: the container is gone, by the agent's own word. The planner reads
    it the same way (absent)."""
    return any(c.name == name and c.state == "not_found" for c in listing.containers)


def _with_state(spec: ServerSpec, state: str) -> ServerSpec:
    return replace(spec, state=state)  # type: ignore[arg-type]


def _iso(when: datetime) -> str:
    return when.isoformat()
