"""Protocols the runtime needs from the outside world. Adapters implement them; the runtime uses only these."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from reconciler.core.health import ProbeResult, ProbeTarget
from reconciler.core.leases import Heartbeat, Lease
from reconciler.core.observed import LiveListing, RecordedEnvironment, RecordedInstance, RecordedState
from reconciler.core.suspension import Suspension
from reconciler.model.secrets import Secret


@dataclass(frozen=True)
class NewInstance:
    """What the executor asks the store to insert before deploying (status pending_deploy)."""

    environment_id: str
    catalog_id: str
    name: str
    config: Mapping[str, Any]  # redacted base_config_override_json (managed_by, spec_hash, mcp, ...)
    transport: str
    endpoint: str | None
    capabilities: tuple[str, ...]
    instance_id: str | None = None  # let the store choose when None


@dataclass(frozen=True)
class HealthRecord:
    """What a readiness probe found about one instance, for ``Store.record_health``: keys merged over the
    row's ``mcp_discovery_metadata``, and the capabilities the server announced (None: leave the column)."""

    instance_id: str
    metadata: Mapping[str, Any]
    capabilities: Sequence[str] | None = None


@dataclass(frozen=True)
class EnvironmentRow:
    """A toolbox registered through ``reconciler db add-environment``."""

    id: str
    name: str
    address: str | None
    status: str


class Store(Protocol):
    """The database (SQLite embedded default, or PostgreSQL on the Agentopia schema). Safe to call from several
    threads at once (the executor's): each store serialises what it must."""

    def observe(self) -> RecordedState: ...

    def observe_environments(self) -> tuple[RecordedEnvironment, ...]:
        """The environment rows of ``observe()`` alone (one query), to start listing before the instances."""
        ...

    def observe_instances(self) -> tuple[RecordedInstance, ...]:
        """The instance rows of ``observe()`` alone (one query)."""
        ...

    @property
    def unique_image_per_environment(self) -> bool:
        """Whether the database allows one instance per catalog row (image) per toolbox."""
        ...

    def ensure_catalog(self, image: str, *, environment_id: str | None = None) -> str:
        """Id of the catalog row for this image, created if missing: marked as the reconciler's, private
        (``is_public = false``) and ``created_by`` the user owning ``environment_id``, where those columns
        exist."""
        ...

    def create_instance(self, new: NewInstance) -> str: ...

    def update_instance(
        self,
        instance_id: str,
        *,
        status: str | None = None,
        error_message: str | None = None,
        clear_error: bool = False,
        heartbeat: datetime | None = None,
        config: Mapping[str, Any] | None = None,
        catalog_id: str | None = None,
        synced: bool = True,
    ) -> None:
        """Write what is given. ``config`` also writes the columns derived from it (MCP columns in a
        combination the table's CHECKs accept, ``port_mapping_json``, ``version``); ``catalog_id`` moves the
        row to another catalog row (an image change). ``synced=False``, for a status that only records what a
        call already did: committed before this returns (a killed process loses nothing), but it may reach the
        disk only with a later synced write, so a power loss or a crash of the database server may lose it;
        the next observation corrects the status. Never for a write an agent call relies on."""
        ...

    def merge_config(self, instance_id: str, values: Mapping[str, Any]) -> None:
        """Set top-level keys of the stored config (``base_config_override_json``) and nothing else, e.g.
        ``{"protect": True}``: a database-only change that leaves the spec hash as it was."""
        ...

    def record_heartbeats(self, instance_ids: Collection[str], at: datetime, *, min_interval: float = 60.0) -> int:
        """``last_heartbeat_from_dtma = at`` on instances an agent has just listed, skipping rows beaten
        less than ``min_interval`` seconds before; returns how many rows were written."""
        ...

    def record_health(self, records: Sequence[HealthRecord]) -> None:
        """Merge each record's keys over ``mcp_discovery_metadata`` (the reconciler's own keys there are kept)
        and write ``mcp_server_capabilities`` where given, in one transaction; only columns the table has.
        A row deleted meanwhile is skipped."""
        ...

    def recorded_mcp(self, environment_id: str) -> Mapping[str, Mapping[str, Any]]:
        """Instance id -> the MCP columns of that environment's rows that have any (``mcp_transport_type``,
        ``mcp_endpoint_path``, ``mcp_server_capabilities``, ``mcp_discovery_metadata``), for ``import``."""
        ...

    def recorded_health(self) -> Mapping[str, Mapping[str, Any]]:
        """Instance id -> its ``mcp_discovery_metadata`` where it holds a probe's answer (for ``status``)."""
        ...

    def delete_instance(self, instance_id: str) -> None: ...

    def fingerprint(self, environment_id: str) -> str:
        """A digest of the environment's row and its instances, to detect change since a saved plan."""
        ...

    def try_lock_environment(self, environment_id: str) -> bool:
        """Take the environment's reconcile lock (shared by every daemon replica and ``apply``) without
        waiting; False when another process holds it."""
        ...

    def unlock_environment(self, environment_id: str) -> None: ...

    def lock_holder(self, environment_id: str) -> str | None:
        """Who holds the environment's lock (``pid N on host H``), when the store can tell."""
        ...

    def lock_lost(self) -> bool:
        """True once the locks this store held were found gone (PostgreSQL: the lock connection died)."""
        ...

    def suspensions(self) -> tuple[Suspension, ...]:
        """Every suspended environment (``reconciler suspend``), one query; none on a database whose
        migrations predate suspensions."""
        ...

    def suspend_environment(self, suspension: Suspension) -> None:
        """Store an environment's suspension (replacing one already there). Raises SchemaMissingError naming
        the migration to run when the database lacks the table."""
        ...

    def resume_environment(self, environment_id: str) -> Suspension | None:
        """Remove an environment's suspension: the one removed, or None when it was not suspended."""
        ...

    @property
    def shares_work(self) -> bool:
        """Whether several daemons may run on this database and split the environments by leases
        (PostgreSQL with migration 0004); False: one daemon, which owns every environment (SQLite)."""
        ...

    def beat(self, replica: str, now: datetime, *, forget_before: datetime) -> tuple[Heartbeat, ...]:
        """Record ``replica``'s heartbeat at ``now``, forget heartbeats older than ``forget_before``, and
        return every replica's."""
        ...

    def leases(self) -> tuple[Lease, ...]:
        """Every environment's lease (which replica owns it, until when)."""
        ...

    def claim_leases(
        self, replica: str, environment_ids: Collection[str], now: datetime, expires_at: datetime
    ) -> frozenset[str]:
        """Take or renew, until ``expires_at``, the leases of ``environment_ids`` that are free, expired at
        ``now`` or ``replica``'s own, atomically; returns the ids ``replica`` holds now among them."""
        ...

    def renew_leases(self, replica: str, now: datetime, expires_at: datetime) -> int:
        """Extend ``replica``'s leases still valid at ``now`` to ``expires_at``; returns how many."""
        ...

    def release_leases(self, replica: str, environment_ids: Collection[str]) -> None:
        """Drop ``replica``'s leases of these environments (another replica's are left as they are)."""
        ...

    def retire_replica(self, replica: str) -> None:
        """A clean stop: remove ``replica``'s heartbeat and leases, so the others take over at once."""
        ...

    def acquire_daemon_lock(self) -> None:
        """SQLite: one daemon per database file (raise LockHeldError). PostgreSQL: nothing to do."""
        ...

    def release_daemon_lock(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreError if the database cannot be reached."""
        ...

    def sync(self) -> None:
        """Make every write so far durable, the unsynced ones of ``update_instance`` included. The executor
        calls it once at the end of an apply that wrote any, so only a run under way is exposed to a power loss
        or a crash of the database server."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DtmaTarget:
    """Where and how to reach one toolbox's agent."""

    environment_id: str
    base_url: str  # http://{public_ip_address}:{DTMA_PORT}
    token: Secret = field(repr=False)
    name: str = ""  # the environment's name, for messages

    @property
    def label(self) -> str:
        """How messages name the toolbox: "research-toolbox at 127.0.0.2:30000" (the id when it has no name)."""
        address = self.base_url.split("://", 1)[-1]
        return f"{self.name or self.environment_id} at {address}"


@dataclass(frozen=True)
class DeployRequest:
    image: str
    name: str
    instance_id: str
    env: tuple[tuple[str, Secret | str], ...] = field(default=(), repr=False)  # resolved values
    port: int | None = None
    host_port: int | None = None
    host_ip: str | None = None  # Docker's HostIp for host_port


@dataclass(frozen=True)
class DeployResult:
    container_id: str | None
    state: str | None


class Dtma(Protocol):
    """A client of the DTMA agents. Every method raises a DtmaError subclass on failure."""

    def list(self, target: DtmaTarget) -> LiveListing: ...

    def list_many(self, targets: Sequence[DtmaTarget]) -> Mapping[str, LiveListing | Exception]:
        """Concurrent listing under the client's bound; a failure is returned, not raised."""
        ...

    def deploy(self, target: DtmaTarget, request: DeployRequest) -> DeployResult: ...

    def start(self, target: DtmaTarget, name: str) -> None: ...

    def stop(self, target: DtmaTarget, name: str) -> None: ...

    def delete(self, target: DtmaTarget, name: str) -> None: ...

    def health(self, target: DtmaTarget) -> bool: ...

    def close(self) -> None: ...


class Prober(Protocol):
    """Readiness probes of MCP servers (adapters/mcp_probe.py)."""

    def probe_many(
        self, targets: Sequence[ProbeTarget], *, concurrency: int, fresh: bool = False
    ) -> dict[tuple[str, str], ProbeResult]:
        """Probe every target, at most ``concurrency`` at once and never two at once for one key; the answer
        is keyed by (environment_id, server). A probe that fails is a result with ``ok=False`` and a
        redacted, one-line error, never an exception. The prober may keep a server's MCP session from one
        call to the next and probe it with one request; ``fresh`` asks for a full handshake (a new or
        restarted server), and a call without it names every server whose session is worth keeping."""
        ...

    def add_secrets(self, values: Iterable[str]) -> None:
        """More values to redact from every probe error from now on (the manifests' secret values)."""
        ...

    def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class Journal(Protocol):
    """What each run did, step by step (adapters/journal.py). A step's intent is committed before its DTMA
    call and its outcome after; ``start_run`` first closes runs left open by dead processes."""

    def add_secrets(self, values: Iterable[str]) -> None:
        """More values to redact from everything written from now on."""
        ...

    def start_run(
        self,
        kind: str,
        now: datetime,
        *,
        manifest_digest: str | None = None,
        git_commit: str | None = None,
        note: str | None = None,
    ) -> int: ...

    def finish_run(self, run_id: int, now: datetime, outcome: str) -> None: ...

    def interrupt_run(self, run_id: int, now: datetime, outcome: str = ...) -> int: ...

    def intent(
        self,
        run_id: int,
        now: datetime,
        *,
        environment: str,
        server: str,
        action: str,
        reason: str,
        attempt: int = 1,
    ) -> int: ...

    def outcome(
        self,
        step_id: int,
        now: datetime,
        outcome: str,
        *,
        error: str | None = None,
        status_code: int | None = None,
        attempt: int | None = None,
    ) -> None: ...

    def prune(self, now: datetime, *, max_age: timedelta | None = None, keep_runs: int | None = None) -> int: ...

    def close(self) -> None: ...


class Git(Protocol):
    """The manifests' git work tree (adapters/git.py)."""

    def commit(self, paths: Sequence[str]) -> str | None:
        """HEAD when git tracks the first path, else None."""
        ...

    def pull(self, paths: Sequence[str]) -> str | None:
        """``git pull --ff-only``: None on success, else a one-line reason (the tree is left as it was)."""
        ...
