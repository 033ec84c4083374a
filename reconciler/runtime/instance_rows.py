"""What the executor writes to instance rows: status, errors, the desired state, and the blocked-name marker.

The marker (``BLOCKED_KEY`` in the row's stored config) records why a create was held back (a name the agent
holds, an agent that forgot its containers, a deploy still pending), so the planner does not re-send it every
cycle. The executor's threads write at once: every store serialises what it must itself (a PostgreSQL store
writes rows on several connections, so a status need not wait for another row's commit to be flushed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.core.plan import BLOCKED_KEY, Action, BlockReason, Step
from reconciler.errors import ReconcilerError
from reconciler.model.spec import ServerSpec
from reconciler.model.stored import stored_config
from reconciler.ports import Clock, HealthRecord, NewInstance, Store

log = logging.getLogger(__name__)


class InstanceRows:
    def __init__(self, store: Store, clock: Clock, secret_fingerprints: Mapping[str, str]) -> None:
        self.store, self.clock = store, clock
        self._fingerprints = secret_fingerprints
        self._lock = threading.Lock()
        self._unsynced = False  # a status written with synced=False since the last sync()

    def config(self, spec: ServerSpec, spec_hash: str) -> dict[str, Any]:
        return stored_config(spec, spec_hash, self._fingerprints)

    def prepare_create(self, step: Step, spec: ServerSpec, spec_hash: str) -> str:
        """The row a create deploys into (the step's own, or a new one); its id."""
        config = self.config(spec, spec_hash)
        catalog_id = self.store.ensure_catalog(spec.image, environment_id=step.environment_id)
        if step.instance_id:
            # catalog_id: an image change moves the row to the new image's catalog row.
            self.store.update_instance(
                step.instance_id,
                status="pending_deploy",
                config=config,
                clear_error=True,
                catalog_id=catalog_id,
            )
            return step.instance_id
        return self.store.create_instance(_new_row(step, spec, config, catalog_id))

    def adopt(self, step: Step, spec: ServerSpec, spec_hash: str) -> None:
        """Write the managed row of a container that already runs (an ``adopt`` step): the row the step
        names is taken over when it exists (``status_from``: its recorded status), else inserted with the
        step's id (the agent's instance id, or the planner's derived one). The catalog row as a create's."""
        config = self.config(spec, spec_hash)
        status = step.status_to or "running"
        catalog_id = self.store.ensure_catalog(spec.image, environment_id=step.environment_id)
        if step.instance_id and step.status_from is not None:
            self.store.update_instance(
                step.instance_id, status=status, config=config, clear_error=True, catalog_id=catalog_id
            )
            return
        instance_id = self.store.create_instance(
            _new_row(step, spec, config, catalog_id, instance_id=step.instance_id)
        )
        self.store.update_instance(instance_id, status=status, clear_error=True)

    def sync_status(self, instance_id: str, status: str) -> None:
        # error_runtime keeps the message that says why (the probe's error, written with it).
        self.store.update_instance(instance_id, status=status, clear_error=status != "error_runtime")

    def store_protect(self, instance_id: str, protect: bool) -> None:
        self.store.merge_config(instance_id, {"protect": protect})

    def drop(self, instance_id: str) -> None:
        self.store.delete_instance(instance_id)

    def record_desired(self, step: Step, state: str) -> None:
        """Store the desired state with the row, so that a server stopped on purpose is later started (not
        restarted) and status shows what the manifest says."""
        spec = step.desired
        if step.instance_id is None or spec is None or step.spec_hash is None:
            return
        if spec.state != state:
            spec = replace(spec, state=state)  # type: ignore[arg-type]
        self.store.update_instance(step.instance_id, config=self.config(spec, step.spec_hash))

    def block(self, instance_id: str, spec: ServerSpec, spec_hash: str, reason: BlockReason, message: str,
              *, status: str = "error") -> None:  # fmt: skip
        config = self.config(spec, spec_hash)
        config[BLOCKED_KEY] = {"reason": str(reason), "since": self.clock.now().isoformat(), "message": message}
        try:
            self.store.update_instance(instance_id, status=status, error_message=message, config=config)
        except ReconcilerError:
            log.warning("could not record why instance %s is blocked", instance_id)

    def set_status(self, instance_id: str | None, status: str) -> None:
        """The status after an agent call: what the call did, which the next listing would show again, so
        it is not synced on its own (``Store.update_instance``)."""
        if instance_id:
            self.store.update_instance(instance_id, status=status, clear_error=status != "error", synced=False)
            self._unsynced = True

    def sync(self) -> None:
        """At the end of an apply: the statuses written unsynced reach the disk (``Store.sync``). A store that
        cannot be reached now leaves them to the next run's observation, as a crash would."""
        with self._lock:
            if not self._unsynced:
                return
            try:
                self.store.sync()
                self._unsynced = False
            except ReconcilerError:
                log.warning("could not sync the statuses written by this run to the database")

    def record_health(self, record: HealthRecord) -> None:
        try:
            self.store.record_health([record])
        except ReconcilerError:
            log.warning("could not record the health of instance %s", record.instance_id)

    def mark_unready(self, instance_id: str, message: str) -> None:
        """The container runs, its server does not answer: ``error_runtime`` (README, "Status mapping")."""
        try:
            self.store.update_instance(instance_id, status="error_runtime", error_message=message)
        except ReconcilerError:
            log.warning("could not record that instance %s is not ready", instance_id)

    def mark_error(self, step: Step, message: str) -> None:
        if step.instance_id is not None and step.action is not Action.DELETE:
            self.mark_error_id(step.instance_id, message)

    def mark_error_id(self, instance_id: str, message: str) -> None:
        try:
            self.store.update_instance(instance_id, status="error", error_message=message)
        except ReconcilerError:
            log.warning("could not record the error of instance %s", instance_id)


def _new_row(
    step: Step, spec: ServerSpec, config: dict[str, Any], catalog_id: str, instance_id: str | None = None
) -> NewInstance:
    """The instance row a create or an adopt inserts."""
    return NewInstance(
        environment_id=step.environment_id,
        catalog_id=catalog_id,
        name=spec.name,
        config=config,
        transport=spec.transport,
        endpoint=spec.endpoint,
        capabilities=spec.capabilities,
        instance_id=instance_id,
    )
