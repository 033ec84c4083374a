"""One create on one toolbox: the row, ``POST /tools`` with its meanings, the deploy watch, the wait to run.

A deploy that timed out is never re-sent in the same run: the listing is polled until the container shows or
``ExecutorConfig.pending_timeout`` passes, and the step ends ``pending``. A name the agent holds without a
container, or Docker's name conflict, blocks the create with one notice and a marker in the row (see
``instance_rows``), so the planner does not re-send it every cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from reconciler.core.health import ProbeResult
from reconciler.core.observed import ServerHealth
from reconciler.core.plan import BlockReason, NoticeKind, Step
from reconciler.core.planner import unpublished_port
from reconciler.errors import (
    DtmaConflictError,
    DtmaError,
    DtmaNameHeldError,
    DtmaNameTakenError,
    DtmaPortConflictError,
    DtmaServerError,
    DtmaTransportError,
)
from reconciler.model.secrets import Secret
from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.ports import Clock, DeployRequest, Dtma, DtmaTarget, HealthRecord
from reconciler.runtime.instance_rows import InstanceRows
from reconciler.runtime.live_checks import gone, live, stop_quietly
from reconciler.runtime.probing import ReadinessWait, health_metadata
from reconciler.runtime.step_results import DeployPending, ExecutorConfig, StepFailed


class Deployer:
    def __init__(
        self,
        *,
        dtma: Dtma,
        rows: InstanceRows,
        clock: Clock,
        sleep: Callable[[float], None],
        config: ExecutorConfig,
        secret_values: Mapping[str, str],
        clean: Callable[[str], str],
        readiness: ReadinessWait,
    ) -> None:
        self.dtma, self.rows, self.clock, self.sleep, self.config = dtma, rows, clock, sleep, config
        self._secrets = secret_values
        self._clean = clean
        self.readiness = readiness

    def create(self, step: Step, target: DtmaTarget) -> tuple[str | None, ProbeResult | None]:
        """Deploy the step's server and wait for its readiness; returns why its declared hostPort is not
        published (if it is not) and the readiness wait's last probe (None: nothing to probe)."""
        spec = step.desired
        if spec is None or step.spec_hash is None:
            raise StepFailed(f"{step.environment_name}/{step.server}: step carries no desired spec")
        instance_id = self.rows.prepare_create(step, spec, step.spec_hash)
        try:
            return self._deploy(step, spec, target, instance_id)
        except DeployPending as exc:
            self.rows.block(instance_id, spec, step.spec_hash, BlockReason.DEPLOY_PENDING, self._clean(str(exc)),
                            status="deploying")  # fmt: skip
            raise
        except StepFailed as exc:
            if exc.notice is NoticeKind.NAME_HELD:
                self.rows.block(instance_id, spec, step.spec_hash, BlockReason.NAME_HELD, self._clean(str(exc)))
            elif exc.notice is NoticeKind.FORGOTTEN:
                self.rows.block(instance_id, spec, step.spec_hash, BlockReason.NAME_TAKEN, self._clean(str(exc)))
            else:
                self.rows.mark_error_id(instance_id, self._clean(str(exc)))
            raise
        except DtmaError as exc:
            self.rows.mark_error_id(instance_id, self._clean(str(exc)))
            raise

    def _deploy(
        self, step: Step, spec: ServerSpec, target: DtmaTarget, instance_id: str
    ) -> tuple[str | None, ProbeResult | None]:
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
                if live(self.dtma, target, spec.name) is not None:
                    break
                self.sleep(self.config.backoff_base * 2 ** (attempt - 1))
        self.rows.set_status(instance_id, "deploying")
        message = self.wait_running(step, target)
        self.finish(instance_id, spec, target)
        if message is not None:  # its hostPort is not published: no probe can reach it (the notice says why)
            return message, None
        return message, self.ready(step, target, instance_id)

    def ready(self, step: Step, target: DtmaTarget, instance_id: str | None) -> ProbeResult | None:
        """Wait until the server passes its readiness (or its timeout runs out) and record what the last probe
        found; a server that never passed is ``error_runtime`` with the probe's error."""
        spec = step.desired
        result = self.readiness.wait(spec, target)
        if result is None or spec is None or instance_id is None:
            return result
        health = ServerHealth(spec.readiness_type, result, self.clock.now(), failures=0 if result.ok else 1)
        capabilities = list(result.capabilities) if result.ok and spec.readiness_type == "mcp" else None
        self.rows.record_health(HealthRecord(instance_id, health_metadata(health, "running"), capabilities))
        if not result.ok:
            self.rows.mark_unready(instance_id, self._clean(self.unready_message(step, result)))
        return result

    def unready_message(self, step: Step, result: ProbeResult) -> str:
        timeout = self.readiness.timeout(step.desired) if step.desired is not None else 0.0
        return (
            f"{step.environment_name}/{step.server}: running, but not ready after {timeout:g}s "
            f"({step.desired.readiness_type if step.desired else 'readiness'} probe): {result.error}"
        )

    def finish(self, instance_id: str, spec: ServerSpec | None, target: DtmaTarget | None = None) -> None:
        if spec is not None and spec.state == "stopped" and target is not None:
            stop_quietly(self.dtma, target, spec.name)
            self.rows.set_status(instance_id, "stopped")
        else:
            self.rows.set_status(instance_id, "running")

    def _await_pending(self, step: Step, target: DtmaTarget, instance_id: str, exc: DtmaError) -> None:
        """The deploy watch: the listing, polled until the container shows or the deadline passes."""
        deadline = self.clock.monotonic() + self.config.pending_timeout
        self.rows.set_status(instance_id, "deploying")
        while True:
            if live(self.dtma, target, step.server) is not None:
                return
            if self.clock.monotonic() >= deadline:
                raise DeployPending(
                    f"{step.environment_name}/{step.server}: deploy sent, no answer ({exc}), and not listed after "
                    f"{self.config.pending_timeout:g}s; the agent may still be pulling the image. Not sent again: "
                    "the next run checks the listing"
                )
            self.sleep(self.config.poll_interval)

    def _ours(self, target: DtmaTarget, name: str, instance_id: str) -> bool:
        mine = live(self.dtma, target, name)
        return mine is not None and mine.instance_id == instance_id

    def wait_running(self, step: Step, target: DtmaTarget) -> str | None:
        """Poll the listing until the container runs; then why its declared hostPort is not published, if not."""
        deadline = self.clock.monotonic() + self.config.ready_timeout
        while True:
            listing = self.dtma.list(target)
            seen = None if gone(listing, step.server) else listing.by_name().get(step.server)
            if seen is not None and seen.state == "running":
                if step.desired is None:
                    return None
                return unpublished_port(step.desired, seen, listing.shape, step.environment_name)
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
