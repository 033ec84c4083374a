"""The planner: desired + recorded + live -> an ordered Plan, each step with its reason (the diff rules of
docs/architecture.md).

Pure and deterministic: no I/O, no clock (``now`` comes in), dict lookups only so 100k servers plan in
linear time. Everything the planner leaves alone is explained by a Notice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from reconciler.core.diff import create_changes, spec_changes
from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    Observed,
    RecordedEnvironment,
    RecordedInstance,
    ServerHealth,
    Unreachable,
    is_uuid,
)
from reconciler.core.plan import (
    BLOCKED_KEY,
    HEALTH_FIELD,
    Action,
    BlockReason,
    Change,
    HealthEntry,
    Notice,
    NoticeKind,
    Plan,
    Policy,
    Step,
)
from reconciler.core.readiness import offer_drift
from reconciler.core.safety import guard_mass_delete, refuse_empty
from reconciler.core.status_map import NOT_RUNNING_STATES, UNCERTAIN_STATES, status_for
from reconciler.model.spec import MANAGED_BY, Desired, EnvironmentSpec, ServerSpec
from reconciler.model.spec_hash import HASH_VERSION, Fingerprints, spec_hash
from reconciler.model.stored import read_stored, stored_key_id

_ADOPT_NAMESPACE = uuid.UUID("5b0d7a52-3c4e-4f0e-9a51-6d2c0e7b9f14")  # ids of rows written by adoption

# Within a toolbox, deletes and stops free names and ports before anything new starts.
ACTION_ORDER: Mapping[Action, int] = {
    Action.ADOPT: 0,  # first: a restart or stop of the same server needs its row
    Action.DELETE: 0,
    Action.STOP: 1,
    Action.REPLACE: 2,
    Action.RESTART: 3,
    Action.START: 3,
    Action.CREATE: 4,
    Action.SYNC_STATUS: 5,
    Action.SYNC_CONFIG: 5,
}


def plan(
    desired: Desired,
    observed: Observed,
    policy: Policy,
    now: datetime,
    secret_fingerprints: Mapping[str, str],
) -> Plan:
    return _plan(desired, observed, policy, now, secret_fingerprints, memo=None)[0]


@dataclass(frozen=True)
class EnvironmentPlan:
    """One toolbox's part of a plan and every input it was made from. ``now`` is not among them: a part is kept
    only when no row carries a block mark (``blocked``), the planner's one use of the time."""

    env: RecordedEnvironment
    spec: EnvironmentSpec
    rows: tuple[RecordedInstance, ...]
    listing: LiveListing
    health: Mapping[str, ServerHealth]
    steps: tuple[Step, ...]
    notices: tuple[Notice, ...]
    errors: tuple[str, ...]
    managed_count: int
    timeless: bool  # no row carries a block mark: the part does not depend on ``now`` and may be kept

    def made_from(
        self,
        env: RecordedEnvironment,
        spec: EnvironmentSpec,
        rows: Sequence[RecordedInstance],
        listing: LiveListing,
        health: Mapping[str, ServerHealth],
    ) -> bool:
        """The same inputs, as far as the planner reads them: equal values, including what their equality
        leaves out (a spec's manifest lines, a row's stored config)."""
        return (
            same_spec(self.spec, spec)
            and _env_read(self.env) == _env_read(env)
            and len(self.rows) == len(rows)
            and all(a is b or _row_read(a) == _row_read(b) for a, b in zip(self.rows, rows, strict=True))
            and (self.listing is listing or self.listing == listing)
            and self.health == health
        )


# The fields of the recorded rows a toolbox's plan reads. The others (an environment's address, its and the
# instances' heartbeats, a row's error message) are not read: a change in them keeps the part, so that the
# heartbeats moving on do not plan the whole fleet again. A field added to the rows must be put on one side
# (tests/core/test_plan_memo.py checks that every field is).
ENVIRONMENT_FIELDS_READ = ("id", "name", "status")
INSTANCE_FIELDS_READ = (
    "id", "environment_id", "catalog_id", "name", "status", "image", "managed", "spec_hash", "hash_version",
    "protect", "config",
)  # fmt: skip
_env_read = attrgetter(*ENVIRONMENT_FIELDS_READ)
_row_read = attrgetter(*INSTANCE_FIELDS_READ)


@dataclass(frozen=True)
class PlanMemo:
    """What ``plan_reusing`` keeps of the last plan: each toolbox's part by environment id, with the run-wide
    inputs every part shares (the policy, the secret fingerprints and the id of the key that made them)."""

    policy: Policy | None = None
    fingerprints: tuple[tuple[tuple[str, str], ...], str | None] | None = None
    environments: Mapping[str, EnvironmentPlan] = field(default_factory=dict)


def plan_reusing(
    desired: Desired,
    observed: Observed,
    policy: Policy,
    now: datetime,
    secret_fingerprints: Mapping[str, str],
    *,
    memo: PlanMemo,
) -> tuple[Plan, PlanMemo]:
    """``plan``, with each toolbox whose inputs are those of the last call (``memo``) given the part planned
    then instead of being planned again, and the memo for the next call. The same Plan as ``plan`` gives:
    a daemon plans an unchanged fleet every interval, and a toolbox's part is a function of its inputs only."""
    return _plan(desired, observed, policy, now, secret_fingerprints, memo=memo)


def same_spec(a: EnvironmentSpec, b: EnvironmentSpec) -> bool:
    """The same spec, manifest lines included (they are left out of the specs' equality)."""
    # The servers tuple itself: ``--prune``/``--adopt`` give a new spec each cycle around the same servers, and
    # equal servers may come from other manifest lines (``source`` is left out of their equality).
    return a is b or (a.servers is b.servers and a == b and a.source == b.source)


def _fingerprints_key(fingerprints: Mapping[str, str]) -> tuple[tuple[tuple[str, str], ...], str | None]:
    key_id = fingerprints.key_id if isinstance(fingerprints, Fingerprints) else None
    return tuple(sorted(fingerprints.items())), key_id


def _timeless(rows: Sequence[RecordedInstance]) -> bool:
    """No row carries a block mark: the toolbox's part does not depend on ``now``."""
    return not any(isinstance(r.config, Mapping) and BLOCKED_KEY in r.config for r in rows)


def _plan(
    desired: Desired,
    observed: Observed,
    policy: Policy,
    now: datetime,
    secret_fingerprints: Mapping[str, str],
    *,
    memo: PlanMemo | None,
) -> tuple[Plan, PlanMemo]:
    kept: Mapping[str, EnvironmentPlan] = {}
    fingerprints_key = None
    if memo is not None:
        fingerprints_key = _fingerprints_key(secret_fingerprints)
        if memo.policy == policy and memo.fingerprints == fingerprints_key:
            kept = memo.environments
    parts: dict[str, EnvironmentPlan] = {}
    by_id = {e.id: e for e in observed.recorded.environments}
    by_name: dict[str, RecordedEnvironment] = {}
    for env in sorted(observed.recorded.environments, key=lambda e: e.id):
        if env.name is not None:
            by_name.setdefault(env.name, env)
    rows_by_env: dict[str, list[RecordedInstance]] = {}
    for row in observed.recorded.instances:
        rows_by_env.setdefault(row.environment_id, []).append(row)
    health_by_env: dict[str, dict[str, ServerHealth]] = {}
    for (env_id, server), one in observed.health.items():
        health_by_env.setdefault(env_id, {})[server] = one

    notices: list[Notice] = []
    errors: list[str] = []
    steps_by_env: dict[str, list[Step]] = {}
    managed_by_env: dict[str, int] = {}
    names: dict[str, str] = {}
    matched: list[tuple[str, RecordedEnvironment, EnvironmentSpec]] = []
    probed: list[HealthEntry] = []
    for spec in desired.environments:
        found = by_id.get(spec.environment) or by_name.get(spec.environment)
        if found is None:
            notices.append(
                Notice(
                    "",
                    spec.environment,
                    None,
                    NoticeKind.UNKNOWN_ENVIRONMENT,
                    f"environment {spec.environment} is not in the database (by name or id); "
                    "register it first (reconciler db add-environment)",
                    spec.source,
                )
            )
            continue
        matched.append((found.name or found.id, found, spec))

    for name, env, spec in sorted(matched, key=lambda t: (t[0], t[1].id)):
        names[env.id] = name
        live = observed.live.get(env.id)
        if env.status != "active":
            notices.append(_unreachable(env, name, f"environment status is {env.status}, not active", spec))
            continue
        if not isinstance(live, LiveListing):
            reason = live.reason if isinstance(live, Unreachable) else "no listing was taken"
            notices.append(_unreachable(env, name, f"DTMA listing failed: {reason}", spec))
            continue
        rows = rows_by_env.get(env.id, [])
        env_health = health_by_env.get(env.id, {})
        part = kept.get(env.id)
        if part is not None and part.made_from(env, spec, rows, live, env_health):
            # Kept with this cycle's objects, so that the next comparison is mostly by identity.
            part = EnvironmentPlan(
                env, spec, tuple(rows), live, env_health, part.steps, part.notices, part.errors,
                part.managed_count, part.timeless,
            )  # fmt: skip
        else:
            env_plan = _EnvPlanner(env, name, spec, rows, live, policy, secret_fingerprints, now, env_health)
            planned = env_plan.run()
            part = EnvironmentPlan(
                env, spec, tuple(rows), live, env_health, tuple(planned), tuple(env_plan.notices),
                tuple(env_plan.errors), env_plan.managed_count, _timeless(rows),
            )  # fmt: skip
        if memo is not None and part.timeless:
            parts[env.id] = part
        env_steps = list(part.steps)
        notices.extend(part.notices)
        errors.extend(part.errors)
        managed = part.managed_count
        managed_by_env[env.id] = managed
        if not spec.servers and managed and not spec.policy.allow_empty:
            env_steps, notice = refuse_empty(env.id, name, managed, env_steps)
            notices.append(notice)
        steps_by_env[env.id] = env_steps
        if env_health:
            probed.extend(_health_entries(env.id, name, env_health))

    # A toolbox with no step has nothing to guard or order (most of them, in a converged fleet).
    with_steps = {env_id: env_steps for env_id, env_steps in steps_by_env.items() if env_steps}
    guarded, refusals = guard_mass_delete(with_steps, managed_by_env, names, policy)
    notices.extend(refusals)
    steps: list[Step] = []
    for env_id in sorted(guarded, key=lambda e: (names[e], e)):
        steps.extend(sorted(guarded[env_id], key=lambda s: (ACTION_ORDER[s.action], s.server)))
    notices.sort(key=_notice_key)
    the_plan = Plan(
        steps=tuple(steps),
        notices=tuple(notices),
        created_at=now,
        manifest_digest=desired.digest,
        errors=tuple(errors),
        health=tuple(probed),
    )
    return the_plan, PlanMemo(policy, fingerprints_key, parts)


def _health_entries(env_id: str, name: str, probes: Mapping[str, ServerHealth]) -> list[HealthEntry]:
    return [
        HealthEntry(
            env_id,
            name,
            server,
            h.kind,
            h.ok,
            h.result.error,
            h.failures,
            h.unhealthy,
            h.result.protocol_version,
            h.result.server_name,
            h.result.server_version,
            h.result.tools,
        )
        for server, h in sorted(probes.items())
    ]


def _notice_key(n: Notice) -> tuple[str, str, str, str, str]:
    return (n.environment_name, n.environment_id, n.server or "", n.kind.value, n.message)


def _unreachable(env: RecordedEnvironment, name: str, why: str, spec: EnvironmentSpec) -> Notice:
    return Notice(env.id, name, None, NoticeKind.UNREACHABLE, f"{name} skipped: {why}", spec.source)


@dataclass
class _EnvPlanner:
    env: RecordedEnvironment
    name: str
    spec: EnvironmentSpec
    rows: Sequence[RecordedInstance]
    listing: LiveListing
    policy: Policy
    fingerprints: Mapping[str, str]
    now: datetime
    health: Mapping[str, ServerHealth]  # this cycle's readiness probes, by server name

    def __post_init__(self) -> None:
        self.notices: list[Notice] = []
        self.steps: list[Step] = []
        self.rows_by_name: dict[str, RecordedInstance] = {}
        self.managed_by_id: dict[str, RecordedInstance] = {}
        for row in sorted(self.rows, key=lambda r: r.id):
            if row.name is not None:
                self.rows_by_name.setdefault(row.name, row)
            if _managed(row):
                self.managed_by_id[row.id] = row
        self.live_by_name: dict[str, LiveContainer] = {}
        for c in self.listing.containers:
            if c.state != "not_found":
                self.live_by_name.setdefault(c.name, c)
        self.managed_count = len(self.managed_by_id)
        self.errors: list[str] = []
        self.forgotten: list[str] = []  # servers whose create waits because the agent forgot its containers

    def notice(self, server: str | None, kind: NoticeKind, message: str, spec: ServerSpec | None = None) -> None:
        self.notices.append(
            Notice(self.env.id, self.name, server, kind, message, spec.source if spec is not None else None)
        )

    def step(self, server: ServerSpec | None, name: str, action: Action, reason: str, **kw: object) -> None:
        self.steps.append(
            Step(
                environment_id=self.env.id,
                environment_name=self.name,
                server=name,
                action=action,
                reason=reason,
                desired=server,
                **{"source": server.source if server is not None else None, **kw},  # type: ignore[arg-type]
            )
        )

    def run(self) -> list[Step]:
        desired = {s.name: s for s in self.spec.servers}
        conflicted = self._image_conflicts()
        handled: set[str] = set()  # live container names accounted for
        for name in sorted(desired):
            server = desired[name]
            handled.add(name)
            if name in conflicted:
                continue
            self._server(server)
        for name in sorted(self.rows_by_name):
            if name in desired:
                continue
            handled.add(name)
            self._leftover(self.rows_by_name[name])
        for row in sorted(self.managed_by_id.values(), key=lambda r: r.id):
            if row.name is None:
                self.notice(None, NoticeKind.ORPHAN, f"managed row {row.id} has no container name; left alone")
        for name in sorted(self.live_by_name):
            if name in handled:
                continue
            c = self.live_by_name[name]
            owner = self.managed_by_id.get(c.instance_id or "")
            if owner is not None and owner.name in desired:
                continue
            self.notice(
                name, NoticeKind.UNMANAGED, f"container {name} ({c.state}) is not managed by the reconciler"
            )
        if self.forgotten:
            listed = ", ".join(sorted(self.forgotten))
            self.notice(
                None,
                NoticeKind.FORGOTTEN,
                f"the DTMA agent on {self.name} answered a create with Docker's name conflict: it probably "
                f"restarted and forgot its containers, which may still run. Not created again for now: {listed}. "
                f"Restart or re-register the DTMA agent on {self.name}, or remove those containers on the host "
                "(docker rm -f NAME); the create is tried again later",
            )
        return self.steps

    def _image_conflicts(self) -> set[str]:
        if not self.policy.one_instance_per_image:
            return set()
        by_image: dict[str, list[ServerSpec]] = {}
        for s in self.spec.servers:
            by_image.setdefault(s.image, []).append(s)
        out: set[str] = set()
        for image, servers in sorted(by_image.items()):
            if len(servers) < 2:
                continue
            listed = ", ".join(sorted(s.name for s in servers))
            message = (
                f"servers {listed} on {self.name} share image {image}; the database allows one instance per "
                "image (catalog row) per toolbox"
            )
            first = min(servers, key=lambda s: (s.source.file, s.source.line, s.name)).source
            where = f"{first}: " if first.line > 0 else ""
            self.errors.append(f"{where}{message}")
            for s in sorted(servers, key=lambda s: s.name):
                out.add(s.name)
                self.notice(s.name, NoticeKind.CONFLICT, f"error: {message}", s)
        return out

    def _server(self, server: ServerSpec) -> None:
        before = len(self.steps)
        self._server_steps(server)
        row = self.rows_by_name.get(server.name)
        if row is None or not _managed(row) or _protected(row) == server.protect:
            return
        if any(s.action in (Action.CREATE, Action.REPLACE) for s in self.steps[before:]):
            return  # those write the whole stored config, protect included
        # protect lives only in the database: storing it is a database-only step, whatever else happens.
        self.step(
            server,
            server.name,
            Action.SYNC_CONFIG,
            f"protect is {str(server.protect).lower()} in the manifest; the stored config says "
            f"{str(_protected(row)).lower()}",
            changes=(Change("protect", str(_protected(row)).lower(), str(server.protect).lower()),),
            instance_id=row.id,
        )

    def _server_steps(self, server: ServerSpec) -> None:
        name = server.name
        row = self.rows_by_name.get(name)
        live = self.live_by_name.get(name)
        if row is not None and not _managed(row):
            if self.spec.policy.adopt and live is not None and live.instance_id in (None, row.id):
                row = self._adopt(server, live, row)
                if row is None:
                    return
            else:
                why = f"row {row.id} named {name} is not managed by the reconciler"
                if self.spec.policy.adopt and live is not None:
                    why += f" and its container belongs to instance {live.instance_id}: not adopted"
                self.notice(name, NoticeKind.CONFLICT, why, server)
                return
        if live is not None and live.instance_id and row is not None and live.instance_id != row.id:
            self.notice(
                name,
                NoticeKind.CONFLICT,
                f"container {name} belongs to instance {live.instance_id}, not to row {row.id}; left alone",
                server,
            )
            return
        if live is not None and row is None:
            owner = self.managed_by_id.get(live.instance_id or "")
            if owner is not None:
                row = owner
            elif not self.spec.policy.adopt:
                self.notice(
                    name,
                    NoticeKind.CONFLICT,
                    f"a container named {name} runs on {self.name} without a managed row; "
                    "neither adopted nor deleted (policy adopt: true, or --adopt, takes it under management)",
                    server,
                )
                return
            else:
                row = self._adopt(server, live, None)
                if row is None:
                    return
        if row is not None and self._made_with_another_key(row):
            self.notice(
                name,
                NoticeKind.CONFLICT,
                f"{name}: secret fingerprints were made with another key: set RECONCILER_SECRET_KEY (to the key "
                "that made them); no replace planned",
                server,
            )
            return
        if live is not None and live.state in UNCERTAIN_STATES:
            said = f" (agent said {live.raw_state})" if live.raw_state else ""
            self.notice(
                name, NoticeKind.UNKNOWN_STATE, f"state of {name} is {live.state}{said}; nothing planned", server
            )
            return
        wanted_hash = spec_hash(server, self.fingerprints)
        if live is None:
            self._create(server, row, wanted_hash)
            return
        config = row.config if row is not None else {}
        old_image = (row.image if row is not None else None) or live.image
        drift = self._drift(server, row, live, wanted_hash)
        if drift and (live.state == "running" or server.state == "running"):
            if server.protect:
                self.notice(
                    name,
                    NoticeKind.PROTECTED,
                    f"{name} is protected: blocked a replace ({drift}; the container must be recreated); "
                    "set protect: false to allow it",
                    server,
                )
                return
            changes = spec_changes(server, config, old_image, self.fingerprints)
            if not changes and row is not None:
                changes = [Change("spec_hash", row.spec_hash, wanted_hash)]
            self.step(
                server,
                name,
                Action.REPLACE,
                f"{drift}; the container must be recreated",
                changes=tuple(changes),
                instance_id=row.id if row is not None else None,
                status_to=_target_status(server),
                spec_hash=wanted_hash,
            )
            return
        if server.state == "running" and live.state in NOT_RUNNING_STATES:
            deliberate = row is not None and row.status == "stopped" and config.get("desired_state") == "stopped"
            action = Action.START if deliberate else Action.RESTART
            why = "was stopped on purpose and is now wanted running" if deliberate else f"is {live.state}"
            self.step(
                server,
                name,
                action,
                f"{name} {why}; desired state is running",
                changes=(Change("state", live.state, "running"),),
                instance_id=row.id if row is not None else None,
                status_to="running",
                spec_hash=_comparable(row, wanted_hash),
            )
            return
        if server.state == "stopped" and live.state == "running":
            self.step(
                server,
                name,
                Action.STOP,
                f"{name} is running; desired state is stopped",
                changes=(Change("state", "running", "stopped"),),
                instance_id=row.id if row is not None else None,
                status_to="stopped",
                spec_hash=_comparable(row, wanted_hash),
            )
            return
        health = self.health.get(name) if live.state == "running" else None
        if live.state == "running":
            self._check_ports(server, live)
            if health is not None and self._health(server, row, health, wanted_hash):
                return
        mapped = status_for(live.state, server.state, health.ok if health is not None else None)
        if row is not None and mapped is not None and row.status != mapped:
            self.step(
                server,
                name,
                Action.SYNC_STATUS,
                _status_reason(row.status, live.state, health),
                changes=(Change("status_on_toolbox", row.status, mapped),),
                instance_id=row.id,
                status_from=row.status,
                status_to=mapped,
                spec_hash=_comparable(row, wanted_hash),
            )

    def _health(
        self, server: ServerSpec, row: RecordedInstance | None, health: ServerHealth, wanted_hash: str
    ) -> bool:
        """Notices from a running server's readiness probe, and (``onUnhealthy: restart``) a restart once it is
        unhealthy; True when a restart was planned. The flap guard stalls a server whose restarts do not help."""
        name, result = server.name, health.result
        if result.ok:
            drift = offer_drift(server, result)
            if drift is not None:
                self.notice(name, NoticeKind.OFFER_DRIFT, f"{name} offers less than declared: {drift}", server)
            return False
        probe = f"its {health.kind} readiness probe"
        if not health.unhealthy:
            self.notice(
                name,
                NoticeKind.PROBE_FAILED,
                f"{name} runs but failed {probe} ({health.failures} of {health.threshold} before unhealthy): "
                f"{result.error}",
                server,
            )
            return False
        self.notice(
            name,
            NoticeKind.UNHEALTHY,
            f"{name} is unhealthy: failed {probe} {health.failures} cycles in a row: {result.error}",
            server,
        )
        if server.on_unhealthy != "restart":
            return False
        self.step(
            server,
            name,
            Action.RESTART,
            f"{name} is unhealthy ({result.error}); onUnhealthy: restart",
            changes=(Change(HEALTH_FIELD, "unhealthy", "healthy"),),
            instance_id=row.id if row is not None else None,
            status_to="running",
            spec_hash=_comparable(row, wanted_hash),
        )
        return True

    def _adopt(
        self, server: ServerSpec, live: LiveContainer, row: RecordedInstance | None
    ) -> RecordedInstance | None:
        """Plan the adoption of a running container (policy.adopt): same name and image as declared, and no
        managed row (none at all, or a row the reconciler does not manage, such as one Agentopia's UI wrote).
        Returns the row as it will be once adopted, so the rest of the plan (a restart, a stop, a published
        port) is judged as for any managed server; None when it cannot be adopted (a notice says why)."""
        name = server.name
        if live.state in UNCERTAIN_STATES:
            said = f" (agent said {live.raw_state})" if live.raw_state else ""
            self.notice(
                name, NoticeKind.UNKNOWN_STATE, f"state of {name} is {live.state}{said}; not adopted", server
            )
            return None
        if live.image is None:
            self.notice(
                name,
                NoticeKind.CONFLICT,
                f"container {name} on {self.name} cannot be adopted: the DTMA listing does not show its image, "
                "so it cannot be checked against the declared one",
                server,
            )
            return None
        if live.image != server.image:
            self.notice(
                name,
                NoticeKind.CONFLICT,
                f"container {name} on {self.name} runs image {live.image} but the manifest declares "
                f"{server.image}: image mismatch, not adopted (declare the image it runs, or remove the "
                "container)",
                server,
            )
            return None
        if row is None and live.instance_id is not None and not is_uuid(live.instance_id):
            # Agentopia's account_tool_instances ids are UUIDs (PostgreSQL refuses anything else): the row that
            # would record this container under its own id cannot be written, on either store.
            self.notice(
                name,
                NoticeKind.CONFLICT,
                f"container {name} on {self.name} carries instance id {live.instance_id!r}, which is not a UUID, "
                "so no instance row can record it: not adopted (remove the container; the next apply creates "
                "the server)",
                server,
            )
            return None
        instance_id = row.id if row is not None else live.instance_id or adopted_instance_id(self.env.id, name)
        status = status_for(live.state, server.state) or (row.status if row is not None else "running")
        whose = f"row {row.id}, which the reconciler does not manage" if row is not None else "no managed row"
        self.step(
            server,
            name,
            Action.ADOPT,
            f"container {name} ({live.state}, {live.image}) runs with {whose}; policy adopt takes it under "
            "management (the container is kept)",
            changes=(Change("managed_by", None, MANAGED_BY),),
            instance_id=instance_id,
            status_from=row.status if row is not None else None,
            status_to=status,
            spec_hash=spec_hash(server, self.fingerprints),
        )
        return RecordedInstance(
            id=instance_id,
            environment_id=self.env.id,
            catalog_id=row.catalog_id if row is not None else "",
            name=name,
            status=status,
            image=server.image,
            managed=True,
        )

    def _check_ports(self, server: ServerSpec, live: LiveContainer) -> None:
        """A declared hostPort the listing does not show published: no step is planned (a new container would
        not change it), only a notice, and the run does not claim convergence."""
        message = unpublished_port(server, live, self.listing.shape, self.name)
        if message is not None:
            self.notice(server.name, NoticeKind.PORT_UNPUBLISHED, message, server)

    def _made_with_another_key(self, row: RecordedInstance) -> bool:
        """The row's secret fingerprints carry another key's id: its spec hash cannot be compared."""
        mine = self.fingerprints.key_id if isinstance(self.fingerprints, Fingerprints) else None
        theirs = stored_key_id(row.config)
        return mine is not None and theirs is not None and mine != theirs

    def _drift(
        self, server: ServerSpec, row: RecordedInstance | None, live: LiveContainer, wanted: str
    ) -> str | None:
        if live.image is not None and live.image != server.image:
            return f"live image {live.image} differs from {server.image}"
        if row is None:
            return None
        if row.image is not None and row.image != server.image:
            return f"recorded image {row.image} differs from {server.image}"
        # A hash of another algorithm version is not comparable: only the image is checked then.
        if row.hash_version == HASH_VERSION and row.spec_hash is not None and row.spec_hash != wanted:
            return "spec changed"
        return None

    def _create(self, server: ServerSpec, row: RecordedInstance | None, wanted: str) -> None:
        if row is not None and self._held_back(server, row):
            return
        if row is None:
            reason = f"{server.name} is declared and not deployed"
            changes = create_changes(server)
        else:
            reason = f"row {row.id} is recorded ({row.status}) but no container {server.name} is listed"
            changes = spec_changes(server, row.config, row.image, self.fingerprints) or [
                Change("container", None, "deployed")
            ]
        self.step(
            server,
            server.name,
            Action.CREATE,
            reason,
            changes=tuple(changes),
            instance_id=row.id if row is not None else None,
            status_to=_target_status(server),
            spec_hash=wanted,
        )

    def _held_back(self, server: ServerSpec, row: RecordedInstance) -> bool:
        """Level-triggered backoff of a create the executor found blocked (BlockReason in the row's stored
        config): while the container is not listed, the same spec is wanted and the block is younger than
        ``Policy.blocked_retry_after``, no create is planned and one notice says why and what fixes it. After
        that time (or once the manifest changes the spec) the create is planned again, once."""
        block = blocked(row, self.policy, self.now)
        if block is None or row.spec_hash != spec_hash(server, self.fingerprints):
            return False
        reason, message = block
        if reason is BlockReason.NAME_TAKEN:
            self.forgotten.append(server.name)
        elif reason is BlockReason.NAME_HELD:
            self.notice(
                server.name,
                NoticeKind.NAME_HELD,
                f"the DTMA agent on {self.name} holds the name {server.name} although no such container is "
                f"listed; restart the DTMA agent on {self.name} to release the name (create held back: {message})",
                server,
            )
        else:
            self.notice(
                server.name,
                NoticeKind.PENDING,
                f"a deploy of {server.name} was sent and is not listed yet (the agent may still be pulling the "
                "image); it is not sent again until the hold expires",
                server,
            )
        return True

    def _leftover(self, row: RecordedInstance) -> None:
        name = row.name or row.id
        live = self.live_by_name.get(name)
        if not _managed(row):
            state = live.state if live is not None else "absent"
            self.notice(name, NoticeKind.UNMANAGED, f"row {row.id} ({state}) is not managed by the reconciler")
            return
        if _protected(row):
            self.notice(
                name,
                NoticeKind.PROTECTED,
                f"{name} is protected and no longer declared; first apply it with protect: false to delete it",
            )
            return
        if not self.spec.policy.prune:
            self.notice(
                name, NoticeKind.ORPHAN, f"{name} is managed but not declared; set prune: true to delete it"
            )
            return
        if live is not None and live.state in UNCERTAIN_STATES:
            self.notice(name, NoticeKind.UNKNOWN_STATE, f"state of {name} is {live.state}; not deleted")
            return
        self.step(
            None,
            name,
            Action.DELETE,
            f"{name} is no longer declared and prune is on",
            changes=(Change("image", row.image, None),),
            instance_id=row.id,
            status_from=row.status,  # the executor reads a 404 as "gone" only for a row never deployed
            source=self.spec.source,  # the document whose prune: true asked for it
        )


def adopted_instance_id(environment_id: str, name: str) -> str:
    """The id of the row an adoption writes when neither a row nor the agent names one: derived from the
    toolbox and the name (the planner is deterministic), so the steps after it in the same plan can name it."""
    return str(uuid.uuid5(_ADOPT_NAMESPACE, f"{environment_id}/{name}"))


def blocked(row: RecordedInstance, policy: Policy, now: datetime) -> tuple[BlockReason, str] | None:
    """The block the executor recorded on this row, while it holds (younger than blocked_retry_after)."""
    mark = row.config.get(BLOCKED_KEY) if isinstance(row.config, Mapping) else None
    if not isinstance(mark, Mapping):
        return None
    try:
        reason = BlockReason(str(mark.get("reason")))
        since = datetime.fromisoformat(str(mark.get("since")))
    except ValueError:
        return None
    if since.tzinfo is None or now.tzinfo is None:
        since, now = since.replace(tzinfo=None), now.replace(tzinfo=None)
    if (now - since).total_seconds() >= policy.blocked_retry_after:
        return None
    return reason, str(mark.get("message") or reason.value)


def _status_reason(recorded: str, live_state: str, health: ServerHealth | None) -> str:
    if health is None:
        return f"database says {recorded} but the container is {live_state}"
    if health.ok:
        return f"database says {recorded} but the container is {live_state} and passes its {health.kind} probe"
    return (
        f"database says {recorded} but the container's server fails its {health.kind} probe: {health.result.error}"
    )


def _comparable(row: RecordedInstance | None, wanted: str) -> str | None:
    """The spec hash a start or stop may store with the row's desired state: only when the row's hash is of
    this algorithm version (and so was compared), else the stored config is left as it is."""
    return wanted if row is not None and row.hash_version == HASH_VERSION else None


def unpublished_port(server: ServerSpec, live: LiveContainer, shape: str, environment: str) -> str | None:
    """Why a declared hostPort is not published, or None when it is (or cannot be checked). The agent sets no
    ExposedPorts, so Docker publishes a binding only for a port the image EXPOSEs. Shape (a) lists no ports:
    nothing can be checked there. The executor asks the same right after a create."""
    if server.host_port is None or server.port is None or shape == "a":
        return None
    published = {p.host_port for p in live.ports if p.host_port is not None}
    if server.host_port in published:
        return None
    return (
        f"hostPort {server.host_port} of {server.name} is not published on {environment} (the listing shows "
        f"{_ports_text(live)}): the image probably does not EXPOSE port {server.port}, and the DTMA agent "
        f"sets no ExposedPorts; add EXPOSE {server.port} to the image (or use a port it exposes)"
    )


def _ports_text(live: LiveContainer) -> str:
    shown = [f"{p.host_port}->{p.container_port}" for p in live.ports if p.host_port is not None]
    return ", ".join(shown) if shown else "no published port"


def _managed(row: RecordedInstance) -> bool:
    return row.managed or read_stored(row.config).managed


def _protected(row: RecordedInstance) -> bool:
    # Every store decodes ``protect`` from the stored config into the row (store_rows.instance_from_row);
    # reading the config again here cost 10,000 decodes a cycle in a steady fleet.
    return row.protect


def _target_status(server: ServerSpec) -> str:
    return "running" if server.state == "running" else "stopped"
