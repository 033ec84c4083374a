"""The plan: ordered steps, each with its reason, plus the notices that explain what is left alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from reconciler.model.spec import ServerSpec, SourceRef

if TYPE_CHECKING:
    from reconciler.core.rollout import Rollout


class Action(StrEnum):
    CREATE = "create"
    REPLACE = "replace"  # delete then create
    RESTART = "restart"  # stop then start: the agent has no restart route
    START = "start"
    STOP = "stop"
    DELETE = "delete"
    SYNC_STATUS = "sync-status"  # database repair only, no DTMA call
    SYNC_CONFIG = "sync-config"  # stored config only (protect), no DTMA call
    ADOPT = "adopt"  # write the managed row of a running container (policy.adopt); the container is kept


class NoticeKind(StrEnum):
    UNMANAGED = "unmanaged"  # a container or row the reconciler does not own: never touched
    ORPHAN = "orphan"  # a managed server missing from the manifest, kept because prune is off
    UNREACHABLE = "unreachable"  # listing failed or environment not active: skipped
    UNKNOWN_ENVIRONMENT = "unknown-environment"  # manifest names a toolbox the database lacks
    REFUSED = "refused"  # a safety rule stopped steps (mass delete, empty desired set)
    PROTECTED = "protected"  # protect: true kept a server from deletion or a replace
    UNKNOWN_STATE = "unknown-state"  # live state unknown: no destructive step planned
    FORGOTTEN = "forgotten"  # the agent restarted and no longer manages a running container
    STALLED = "stalled"  # flap guard: left alone until manifest or live state changes
    CONFLICT = "conflict"  # e.g. two servers of one image on a toolbox with the unique constraint
    NAME_HELD = "name-held"  # the agent holds a name no container has: only an agent restart frees it
    PENDING = "pending"  # a deploy was sent and not yet confirmed: not re-sent until it shows or times out
    PORT_UNPUBLISHED = "port-unpublished"  # a declared hostPort the listing does not show published
    PROBE_FAILED = "probe-failed"  # a running server failed its readiness probe this cycle
    UNHEALTHY = "unhealthy"  # ... for failureThreshold cycles in a row (notified; onUnhealthy acts on it)
    OFFER_DRIFT = "offer-drift"  # the server answers MCP but offers less than declared (capabilities, tools)
    ROLLOUT_HALTED = "rollout-halted"  # a rollout stopped here (core.rollout): said once, on the halting toolbox
    ROLLOUT_HELD = "rollout-held"  # a halted rollout's step not done: this toolbox keeps the version it runs
    SUSPENDED = "suspended"  # `reconciler suspend`: the environment (no server) or a step held back (server)


# Which kinds mean "cannot be settled now" (the plan is incomplete) is core.verdict.GAP_KINDS.


# The change a restart planned for an unhealthy server carries: the executor restarts it even though its
# container runs (a restart of a running container is otherwise a no-op).
HEALTH_FIELD = "health"


class BlockReason(StrEnum):
    """Why the executor left a create unfinished; kept in the row's stored config under ``blocked`` so that
    the planner holds the create back for ``Policy.blocked_retry_after`` instead of re-sending it every cycle."""

    NAME_HELD = "name-held"  # 409 "already exists" while no such container is listed
    NAME_TAKEN = "name-taken"  # Docker's name conflict: the agent forgot its containers, or one made by hand
    DEPLOY_PENDING = "deploy-pending"  # the deploy timed out; the agent may still be pulling the image


BLOCKED_KEY = "blocked"  # {"reason": BlockReason, "since": ISO time, "message": redacted agent text}


@dataclass(frozen=True)
class Change:
    """One field that differs. Secret values are rendered as ``(sensitive, changed)``, never in clear."""

    field: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Step:
    environment_id: str
    environment_name: str
    server: str
    action: Action
    reason: str
    changes: tuple[Change, ...] = ()
    source: SourceRef | None = None  # the manifest line that asked for it
    desired: ServerSpec | None = None
    instance_id: str | None = None  # the recorded row it acts on, if any
    status_from: str | None = None  # for sync-status; for adopt, set when the row to take over exists
    status_to: str | None = None  # the enum value written when the step succeeds
    spec_hash: str | None = None  # desired spec hash (create, replace)

    @property
    def destructive(self) -> bool:
        """Delete, replace, and stop/restart of a server that is running now."""
        return self.action in (Action.DELETE, Action.REPLACE, Action.STOP, Action.RESTART)

    @property
    def calls_dtma(self) -> bool:
        return self.action not in (Action.SYNC_STATUS, Action.SYNC_CONFIG, Action.ADOPT)


@dataclass(frozen=True)
class Notice:
    environment_id: str
    environment_name: str
    server: str | None
    kind: NoticeKind
    message: str
    source: SourceRef | None = None


@dataclass(frozen=True)
class HealthEntry:
    """One running server's readiness probe as the plan shows it (text, markdown, JSON)."""

    environment_id: str
    environment_name: str
    server: str
    kind: str  # mcp or http
    ok: bool
    error: str | None = None
    failures: int = 0  # consecutive failed cycles
    unhealthy: bool = False  # failed failureThreshold cycles in a row
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Run-wide safety settings (per-environment prune/allowEmpty come from the manifest)."""

    mass_delete_fraction: float = 0.5
    mass_delete_min_servers: int = 3
    mass_delete_max_total: int = 10
    allow_mass_delete: str | None = None  # the reason, when the operator allowed it
    # Agentopia's unique (environment, catalog) pair: two servers of one image on a toolbox cannot coexist.
    one_instance_per_image: bool = True
    # How long a create the executor found blocked (BlockReason) is held back before it is tried again.
    blocked_retry_after: float = 600.0


# Summary buckets, in the order the summaries name them. A start (a server stopped on purpose, wanted
# running) is counted apart from a restart (a server found not running).
SUMMARY_KEYS: tuple[tuple[str, tuple[Action, ...]], ...] = (
    ("create", (Action.CREATE,)),
    ("replace", (Action.REPLACE,)),
    ("restart", (Action.RESTART,)),
    ("start", (Action.START,)),
    ("stop", (Action.STOP,)),
    ("delete", (Action.DELETE,)),
    ("repair", (Action.SYNC_STATUS, Action.SYNC_CONFIG)),
    ("adopt", (Action.ADOPT,)),
)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    notices: tuple[Notice, ...] = ()
    created_at: datetime | None = None
    manifest_digest: str = ""
    errors: tuple[str, ...] = field(default=())  # plan-level errors (e.g. unresolved secrets)
    health: tuple[HealthEntry, ...] = ()  # the readiness probes of the running servers planned for

    def health_line(self) -> str | None:
        """``health: 4 servers probed, 3 healthy, 1 failing (web)``, or None when nothing was probed."""
        if not self.health:
            return None
        failing = sorted(f"{h.environment_name}/{h.server}" for h in self.health if not h.ok)
        text = f"health: {len(self.health)} server(s) probed, {len(self.health) - len(failing)} healthy"
        if failing:
            shown = ", ".join(failing[:5]) + (", ..." if len(failing) > 5 else "")
            text += f", {len(failing)} failing ({shown})"
        return text

    rollouts: tuple[Rollout, ...] = ()  # replaces of one server across toolboxes, applied in waves

    @property
    def has_changes(self) -> bool:
        return bool(self.steps)

    @property
    def has_destructive(self) -> bool:
        return any(s.destructive for s in self.steps)

    def summary_counts(self) -> dict[str, int]:
        counts = dict.fromkeys((k for k, _ in SUMMARY_KEYS), 0)
        bucket = {a: k for k, actions in SUMMARY_KEYS for a in actions}
        for s in self.steps:
            counts[bucket[s.action]] += 1
        return counts
