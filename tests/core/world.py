"""An in-memory world (database rows + toolbox listings) for tests: built from JSON, mutated by steps.

``apply_step`` does what the executor would do to the database and the toolbox when a step succeeds, so a
property can check that planning again after applying a plan yields nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    LiveState,
    Observed,
    RecordedEnvironment,
    RecordedInstance,
    RecordedState,
    Unreachable,
)
from reconciler.core.plan import Action, Step
from reconciler.model.spec import ServerSpec
from reconciler.model.spec_hash import spec_hash
from reconciler.model.stored import read_stored, stored_config


def instance_from_config(
    id: str, env_id: str, name: str | None, status: str, config: Mapping[str, Any], image: str | None = None
) -> RecordedInstance:
    """A row as the stores build it: the planner's fields read from the stored config."""
    view = read_stored(config)
    return RecordedInstance(
        id=id,
        environment_id=env_id,
        catalog_id=f"cat-{view.image or image or 'none'}",
        name=name,
        status=status,
        image=view.image or image,
        managed=view.managed,
        spec_hash=view.spec_hash,
        hash_version=view.hash_version,
        protect=view.protect,
        config=dict(config),
    )


@dataclass
class World:
    environments: list[RecordedEnvironment]
    instances: dict[str, RecordedInstance] = field(default_factory=dict)  # by id
    live: dict[str, LiveState] = field(default_factory=dict)  # by environment id
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    next_id: int = 0

    def observed(self) -> Observed:
        return Observed(
            RecordedState(tuple(self.environments), tuple(sorted(self.instances.values(), key=lambda r: r.id))),
            dict(self.live),
        )

    def _containers(self, env_id: str) -> dict[str, LiveContainer]:
        listing = self.live[env_id]
        assert isinstance(listing, LiveListing), f"a step was planned for unreachable {env_id}"
        return {c.name: c for c in listing.containers}

    def _set_containers(self, env_id: str, containers: Mapping[str, LiveContainer]) -> None:
        listing = self.live[env_id]
        assert isinstance(listing, LiveListing)
        self.live[env_id] = replace(listing, containers=tuple(containers[k] for k in sorted(containers)))

    def apply_step(self, step: Step) -> None:
        env = step.environment_id
        containers = self._containers(env)
        if step.action in (Action.CREATE, Action.REPLACE):
            spec = step.desired
            assert spec is not None and step.spec_hash is not None and step.status_to is not None
            row_id = step.instance_id
            if row_id is None:
                self.next_id += 1
                row_id = f"new-{self.next_id}"
            config = stored_config(spec, step.spec_hash, self.fingerprints)
            self.instances[row_id] = instance_from_config(row_id, env, spec.name, step.status_to, config)
            state = "running" if spec.state == "running" else "exited"
            containers[spec.name] = LiveContainer(spec.name, state, image=spec.image, instance_id=row_id)
        elif step.action in (Action.RESTART, Action.START, Action.STOP):
            running = step.action is not Action.STOP
            c = containers[step.server]
            containers[step.server] = replace(c, state="running" if running else "exited")
            self._set_status(step)
        elif step.action is Action.DELETE:
            containers.pop(step.server, None)
            if step.instance_id is not None:
                self.instances.pop(step.instance_id, None)
        elif step.action is Action.SYNC_STATUS:
            self._set_status(step)
        self._set_containers(env, containers)

    def _set_status(self, step: Step) -> None:
        if step.instance_id is not None and step.status_to is not None:
            self.instances[step.instance_id] = replace(self.instances[step.instance_id], status=step.status_to)


def matching_world(
    env_id: str, env_name: str, servers: tuple[ServerSpec, ...], fingerprints: Mapping[str, str]
) -> World:
    """A toolbox on which every server already runs exactly as declared, its rows in agreement."""
    world = World([RecordedEnvironment(env_id, env_name, "10.0.0.1", "active")], fingerprints=fingerprints)
    containers: list[LiveContainer] = []
    for i, spec in enumerate(servers):
        row_id = f"row-{i}"
        config = stored_config(spec, spec_hash(spec, fingerprints), fingerprints)
        status = "running" if spec.state == "running" else "stopped"
        world.instances[row_id] = instance_from_config(row_id, env_id, spec.name, status, config)
        state = "running" if spec.state == "running" else "exited"
        containers.append(LiveContainer(spec.name, state, image=spec.image, instance_id=row_id))
    world.live[env_id] = LiveListing(env_id, tuple(containers), "a")
    return world


def unreachable(env_id: str, reason: str) -> Unreachable:
    return Unreachable(env_id, reason)
