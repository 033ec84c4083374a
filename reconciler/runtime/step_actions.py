"""What each step's action does against one toolbox, re-checked against the listing right before it acts.

- a stop answered "already stopped" (Docker's 304) is a success; a restart of a container that is not running
  is a start alone (stop only goes to running, paused or restarting containers);
- a row is dropped only after the agent confirmed its container gone;
- creates and replaces deploy through ``deploy.Deployer``;
- an adopt writes the managed row of a container still listed with the declared image, and calls nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from reconciler.core.health import ProbeResult
from reconciler.core.observed import LiveContainer, LiveListing
from reconciler.core.outcomes import StepOutcome
from reconciler.core.plan import HEALTH_FIELD, Action, NoticeKind, Step
from reconciler.core.readiness import offer_drift
from reconciler.errors import DtmaNoSuchContainerError, DtmaNotFoundError
from reconciler.ports import Dtma, DtmaTarget
from reconciler.runtime.deploy import Deployer
from reconciler.runtime.instance_rows import InstanceRows
from reconciler.runtime.live_checks import gone, stop_quietly
from reconciler.runtime.step_results import Done, StepFailed

# Docker states in which a container is running or may run again by itself: only these get a stop.
STOPPABLE_STATES: frozenset[str] = frozenset({"running", "paused", "restarting"})
# Row statuses of a server whose container was never made: a 404 on its delete confirms nothing is left.
NEVER_DEPLOYED: frozenset[str] = frozenset({"pending_deploy", "pending_install", "error_install", "error"})


class StepActions:
    def __init__(self, *, dtma: Dtma, rows: InstanceRows, deployer: Deployer) -> None:
        self.dtma, self.rows, self.deployer = dtma, rows, deployer

    def act(self, step: Step, targets: Mapping[str, DtmaTarget]) -> Done:
        if step.action is Action.SYNC_STATUS:
            if step.instance_id and step.status_to:
                self.rows.sync_status(step.instance_id, step.status_to)
            if step.desired is not None:  # a server found stopped as the manifest wants it: remember that
                self.rows.record_desired(step, step.desired.state)
            return Done(StepOutcome.OK)
        if step.action is Action.SYNC_CONFIG:  # protect: stored, no DTMA call
            if step.instance_id and step.desired is not None:
                self.rows.store_protect(step.instance_id, step.desired.protect)
            return Done(StepOutcome.OK)
        target = targets.get(step.environment_id)
        if target is None:
            raise StepFailed(f"{step.environment_name}: no DTMA address known")
        listing = self.dtma.list(target)
        is_gone = gone(listing, step.server)
        current = None if is_gone else listing.by_name().get(step.server)
        action = step.action
        if action is Action.ADOPT:
            return self._adopt(step, current)
        if action is Action.CREATE:
            if current is not None:
                if step.instance_id and current.instance_id == step.instance_id:
                    # An earlier, interrupted run deployed it: finish that instead of deploying twice.
                    unpublished = self.deployer.wait_running(step, target)
                    self.deployer.finish(step.instance_id, step.desired)
                    return _done(StepOutcome.SKIPPED, "already deployed", unpublished)
                raise StepFailed(f"{step.environment_name}/{step.server}: a container of that name already exists")
            return self._ready(step, *self.deployer.create(step, target))
        if action is Action.REPLACE:
            if current is not None:
                self._delete(step, target)
            return self._ready(step, *self.deployer.create(step, target))
        if action in (Action.RESTART, Action.START):
            if current is None:
                raise StepFailed(
                    f"{step.environment_name}/{step.server}: container is gone; the next plan recreates it"
                )
            unhealthy = any(c.field == HEALTH_FIELD for c in step.changes)
            if current.state == "running" and not unhealthy:
                self.rows.record_desired(step, "running")
                return Done(StepOutcome.SKIPPED, "already running")
            # The agent has no restart route; a container that is not running needs a start alone (a stop
            # of an exited container is Docker's 304, which the older agent's callers saw as a failure).
            if current.state in STOPPABLE_STATES:
                self._named(lambda: stop_quietly(self.dtma, target, step.server), step)
            self._named(lambda: self.dtma.start(target, step.server), step)
            self.rows.record_desired(step, "running")
            self.rows.set_status(step.instance_id, "running")
            return self._ready(step, None, self.deployer.ready(step, target, step.instance_id))
        elif action is Action.STOP:
            if current is not None and current.state in STOPPABLE_STATES:
                self._named(lambda: stop_quietly(self.dtma, target, step.server), step)
            self.rows.record_desired(step, "stopped")
            self.rows.set_status(step.instance_id, "stopped")
        elif action is Action.DELETE and (is_gone or self._delete(step, target, listing)) and step.instance_id:
            self.rows.drop(step.instance_id)
        return Done(StepOutcome.OK)

    def _ready(self, step: Step, unpublished: str | None, probe: ProbeResult | None) -> Done:
        """A create, replace or start that worked: ``ok`` once the server passed its readiness (or has none to
        pass), else ``unready`` naming the server and the probe's error."""
        if probe is not None and not probe.ok:
            message = self.deployer.unready_message(step, probe)
            if unpublished is not None:
                message = f"{message}; {unpublished}"
            return Done(StepOutcome.UNREADY, message, probe=probe)
        # It answers, but a step is not done while the server offers less than its manifest declares: the next
        # plan would report offer drift, so ``ok`` (and a converged apply, or a rollout going on) would claim
        # more than is true.
        drift = offer_drift(step.desired, probe) if probe is not None and step.desired is not None else None
        if drift is not None:
            where = f"{step.environment_name}/{step.server}"
            return Done(StepOutcome.UNREADY, f"{where}: running, but it offers less than declared: {drift}",
                        probe=probe)  # fmt: skip
        done = _done(StepOutcome.OK, "", unpublished)
        return replace(done, probe=probe)

    def _adopt(self, step: Step, current: LiveContainer | None) -> Done:
        """Write the row of a container that runs as planned; no DTMA call but the listing that checks it."""
        where = f"{step.environment_name}/{step.server}"
        if step.desired is None or step.spec_hash is None:
            raise StepFailed(f"{where}: an adopt step needs the declared server")
        if current is None:
            raise StepFailed(f"{where}: container is gone; the next plan creates it")
        if current.image is not None and current.image != step.desired.image:
            raise StepFailed(
                f"{where}: the container now runs image {current.image}, not {step.desired.image}; not adopted"
            )
        self.rows.adopt(step, step.desired, step.spec_hash)
        return Done(StepOutcome.OK)

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


def _done(outcome: StepOutcome, message: str, unpublished: str | None) -> Done:
    """A create's result: with a notice when its declared hostPort came out unpublished."""
    if unpublished is None:
        return Done(outcome, message)
    text = f"{message}; {unpublished}" if message else unpublished
    return Done(outcome, text, NoticeKind.PORT_UNPUBLISHED)
