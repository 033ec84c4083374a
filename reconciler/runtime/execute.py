"""Apply a plan: in order within a toolbox, in parallel across toolboxes, each step re-checked first.

Every step writes its journal intent before touching the DTMA and its outcome after. Secret values are
resolved by the caller from the environment and handed in here only; they reach the DTMA and nothing else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from reconciler.adapters.journal import Journal
from reconciler.core.observed import LiveContainer
from reconciler.core.plan import Action, Step
from reconciler.errors import DtmaConflictError, DtmaError, DtmaNotFoundError, ReconcilerError
from reconciler.model.secrets import Secret
from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.model.stored import stored_config
from reconciler.ports import Clock, DeployRequest, Dtma, DtmaTarget, NewInstance, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ExecutorConfig:
    global_concurrency: int = 16
    ready_timeout: float = 60.0  # seconds a created container may take to show as running
    poll_interval: float = 0.2
    retries: int = 3  # attempts for a retryable DTMA failure
    backoff_base: float = 0.5


@dataclass(frozen=True)
class StepResult:
    step: Step
    outcome: str  # ok | failed | skipped
    message: str = ""
    status_code: int | None = None
    attempts: int = 1


@dataclass(frozen=True)
class ApplyResult:
    results: tuple[StepResult, ...] = field(default=())

    @property
    def converged(self) -> bool:
        return all(r.outcome != "failed" for r in self.results)

    @property
    def applied_any(self) -> bool:
        return any(r.outcome == "ok" for r in self.results)


class StepFailed(ReconcilerError):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


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

    def apply(self, steps: Sequence[Step]) -> ApplyResult:
        by_env: dict[str, list[Step]] = {}
        for step in steps:
            by_env.setdefault(step.environment_id, []).append(step)
        results: list[StepResult] = []
        lock = threading.Lock()

        def run_chain(chain: list[Step]) -> None:
            for step in chain:
                veto = self._gate(step) if self._gate is not None else None
                # A vetoed step is not started, so it has no journal row: nothing was attempted.
                result = StepResult(step, "skipped", veto) if veto else self._run_step(step)
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

    def _run_step(self, step: Step) -> StepResult:
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
        except (StepFailed, DtmaError) as exc:
            code = getattr(exc, "status_code", None)
            self._mark_error(step, str(exc))
            self.journal.outcome(step_id, self.clock.now(), "failed", error=str(exc), status_code=code)
            return StepResult(step, "failed", str(exc), code)
        except ReconcilerError as exc:
            self.journal.outcome(step_id, self.clock.now(), "failed", error=str(exc))
            return StepResult(step, "failed", str(exc))
        self.journal.outcome(step_id, self.clock.now(), outcome, error=message or None)
        return StepResult(step, outcome, message)

    def _act(self, step: Step) -> tuple[str, str]:
        if step.action is Action.SYNC_STATUS:
            if step.instance_id and step.status_to:
                with self._store_lock:
                    self.store.update_instance(step.instance_id, status=step.status_to, clear_error=True)
            return "ok", ""
        if step.action is Action.SYNC_CONFIG:  # protect: stored, no DTMA call
            if step.instance_id and step.desired is not None:
                with self._store_lock:
                    self.store.merge_config(step.instance_id, {"protect": step.desired.protect})
            return "ok", ""
        target = self.targets.get(step.environment_id)
        if target is None:
            raise StepFailed(f"{step.environment_name}: no DTMA address known")
        current = self._fresh(target).get(step.server)
        action = step.action
        if action is Action.CREATE:
            if current is not None:
                if step.instance_id and current.instance_id == step.instance_id:
                    # An earlier, interrupted run deployed it: finish that instead of deploying twice.
                    self._wait_running(step, target, step.instance_id)
                    self._set_status(step.instance_id, "running")
                    return "skipped", "already deployed"
                raise StepFailed(f"{step.environment_name}/{step.server}: a container of that name already exists")
            self._create(step, target)
        elif action is Action.REPLACE:
            if current is not None:
                self._call(lambda: self.dtma.delete(target, step.server), ignore_404=True)
            self._create(step, target)
        elif action in (Action.RESTART, Action.START):
            if current is None:
                raise StepFailed(
                    f"{step.environment_name}/{step.server}: container is gone; the next plan recreates it"
                )
            if current.state == "running":
                return "skipped", "already running"
            if action is Action.RESTART:
                self._call(lambda: self.dtma.stop(target, step.server), ignore_404=False)
            self._call(lambda: self.dtma.start(target, step.server), ignore_404=False)
            self._set_status(step.instance_id, "running")
        elif action is Action.STOP:
            if current is not None and current.state == "running":
                self._call(lambda: self.dtma.stop(target, step.server), ignore_404=False)
            self._set_status(step.instance_id, "stopped")
        elif action is Action.DELETE:
            if current is not None:
                self._call(lambda: self.dtma.delete(target, step.server), ignore_404=True)
            if step.instance_id:
                with self._store_lock:
                    self.store.delete_instance(step.instance_id)
        return "ok", ""

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
        except (StepFailed, DtmaError) as exc:
            self._mark_error_id(instance_id, str(exc))
            raise

    def _deploy(self, step: Step, spec: ServerSpec, target: DtmaTarget, instance_id: str) -> None:
        request = DeployRequest(
            image=spec.image,
            name=spec.name,
            instance_id=instance_id,
            env=self._env(spec),
            port=spec.port,
            host_port=spec.host_port,
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                self.dtma.deploy(target, request)
                break
            except DtmaConflictError as exc:
                mine = self._fresh(target).get(spec.name)
                if mine is not None and mine.instance_id == instance_id:
                    break  # an earlier, interrupted attempt already created it
                raise StepFailed(f"{step.environment_name}/{spec.name}: {exc}", exc.status_code) from exc
            except DtmaError as exc:
                if not exc.retryable or attempt >= self.config.retries:
                    raise
                # POST /tools is retried only when the listing shows the container absent.
                if self._fresh(target).get(spec.name) is not None:
                    break
                self.sleep(self.config.backoff_base * 2 ** (attempt - 1))
        self._set_status(instance_id, "deploying")
        self._wait_running(step, target, instance_id)
        if spec.state == "stopped":
            self._call(lambda: self.dtma.stop(target, spec.name), ignore_404=False)
            self._set_status(instance_id, "stopped")
        else:
            self._set_status(instance_id, "running")

    def _wait_running(self, step: Step, target: DtmaTarget, instance_id: str) -> None:
        deadline = self.clock.monotonic() + self.config.ready_timeout
        while True:
            seen = self._fresh(target).get(step.server)
            if seen is not None and seen.state == "running":
                return
            if self.clock.monotonic() >= deadline:
                state = seen.state if seen else "absent"
                raise StepFailed(
                    f"{step.environment_name}/{step.server}: not running after {self.config.ready_timeout:g}s "
                    f"(state {state})"
                )
            self.sleep(self.config.poll_interval)

    def _fresh(self, target: DtmaTarget) -> dict[str, LiveContainer]:
        listing = self._retry(lambda: self.dtma.list(target))
        return listing.by_name()

    def _call(self, fn: Callable[[], None], *, ignore_404: bool) -> None:
        try:
            self._retry(fn)
        except DtmaNotFoundError:
            if not ignore_404:
                raise

    def _retry(self, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except DtmaError as exc:
                if not exc.retryable or attempt >= self.config.retries:
                    raise
                self.sleep(self.config.backoff_base * 2 ** (attempt - 1))

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
