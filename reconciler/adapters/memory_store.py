"""A store held in memory: the three Agentopia tables as dicts of rows, for tests and simulations.

It keeps the contract of the SQLite and PostgreSQL stores (the same store contract suite runs on all three):
the same row values through ``store_rows``, the enum and foreign-key checks, the unique (environment,
catalog) pair, per-environment locks shared by every store opened on one ``MemoryDatabase`` (as advisory
locks are shared by every session on one PostgreSQL database). Nothing is persisted.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from reconciler.adapters import store_rows as rows
from reconciler.adapters.migrations import CREATED_BY_VALUE, MigrationResult, migrations
from reconciler.core.leases import Heartbeat, Lease
from reconciler.core.observed import RecordedEnvironment, RecordedInstance, RecordedState
from reconciler.core.suspension import Suspension
from reconciler.errors import LockHeldError, StoreError
from reconciler.ports import EnvironmentRow, HealthRecord, NewInstance

Row = dict[str, Any]


def _generic_catalog_row() -> Row:
    return {
        "id": rows.GENERIC_CATALOG_ID,
        "tool_name": "mcp_server",
        "name": "MCP Server",
        "description": "Generic MCP server",
        "package_identifier": "mcpserver/generic:latest",
        "docker_image_url": "mcpserver/generic:latest",
        "packaging_type": "docker_image",
        "status": "available",
        "version_info": {"current_version": "latest"},
        "version": "1.0.0",
        "category": "mcp",
        "default_config_template": None,
        "is_public": True,
        "created_by": None,
    }


@dataclass
class MemoryDatabase:
    """The tables, shared by every ``MemoryStore`` opened on it. Rows hold JSON as Python values."""

    environments: dict[str, Row] = field(default_factory=dict)
    catalog: dict[str, Row] = field(default_factory=lambda: {rows.GENERIC_CATALOG_ID: _generic_catalog_row()})
    instances: dict[str, Row] = field(default_factory=dict)
    unique_pair: bool = True  # Agentopia's unique (account_tool_environment_id, tool_catalog_id)
    suspensions: dict[str, Suspension] = field(default_factory=dict)  # environment id -> its suspension
    heartbeats: dict[str, datetime] = field(default_factory=dict)  # replica id -> last seen
    leases: dict[str, Lease] = field(default_factory=dict)  # environment id -> lease
    lock_holders: dict[str, int] = field(default_factory=dict)  # environment id -> id() of the holding store
    daemon_holder: int | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def table(self, name: str) -> dict[str, Row]:
        tables = {
            "account_tool_environments": self.environments,
            "tool_catalog": self.catalog,
            "account_tool_instances": self.instances,
        }
        if name not in tables:
            raise StoreError(f"no table {name} in the memory store")
        return tables[name]


class MemoryStore:
    """``Store`` over a ``MemoryDatabase`` (a fresh one unless given). Thread-safe."""

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self.url = "memory://"
        self.masked_url = self.url
        self.query_count = 0  # one per call that reads or writes the tables, like a round trip
        self._catalog_cache: dict[str, str] = {}
        self._held: set[str] = set()
        self._lost = False
        self._closed = False

    # -- schema (there is none to migrate; the same answers as a database the reconciler created) ----------

    @property
    def created_by_reconciler(self) -> bool:
        return True

    @property
    def is_agentopia_database(self) -> bool:
        return False

    @property
    def unique_image_per_environment(self) -> bool:
        return self.database.unique_pair

    @property
    def mcp_columns(self) -> frozenset[str]:
        return frozenset(rows.MCP_COLUMNS)

    @property
    def mcp_rules(self) -> rows.McpRules:
        return rows.AGENTOPIA_MCP_RULES

    def schema_version(self) -> int:
        return max((m.version for m in migrations("sqlite")), default=0)

    def migrate(self, *, force: bool = False) -> MigrationResult:
        return MigrationResult((), self.schema_version(), created=False)

    # -- Store ---------------------------------------------------------------------------------------------

    def _use(self) -> threading.RLock:
        if self._closed:
            raise StoreError("the memory store is closed")
        self.query_count += 1
        return self.database.lock

    def observe(self) -> RecordedState:
        return RecordedState(environments=self.observe_environments(), instances=self.observe_instances())

    def observe_environments(self) -> tuple[RecordedEnvironment, ...]:
        with self._use():
            found = [self._env_view(r) for r in self.database.environments.values()]
        return tuple(rows.environment_from_row(r) for r in sorted(found, key=lambda r: str(r["id"])))

    @staticmethod
    def _env_view(row: Row) -> Row:
        return {**row, "address": row.get("public_ip_address")}

    def observe_instances(self) -> tuple[RecordedInstance, ...]:
        with self._use():
            found = []
            for r in self.database.instances.values():
                catalog = self.database.catalog.get(str(r["tool_catalog_id"]))
                image = catalog["docker_image_url"] if catalog else None
                found.append({**copy.deepcopy(r), "catalog_image": image})
        return tuple(rows.instance_from_row(r) for r in sorted(found, key=lambda r: str(r["id"])))

    def ensure_catalog(self, image: str, *, environment_id: str | None = None) -> str:
        cached = self._catalog_cache.get(image)
        if cached is not None:
            return cached
        with self._use():
            found = self._own_catalog(image)
            if found is None:
                env = self.database.environments.get(environment_id or "")
                owner = str(env["user_id"]) if env is not None and env.get("user_id") else None
                values = rows.catalog_values(image, str(uuid.uuid4()), owner)
                for column in ("tool_name", "name"):
                    if any(r.get(column) == values[column] for r in self.database.catalog.values()):
                        raise StoreError(
                            f"cannot create a catalog row for image {image}: {column} {values[column]!r} is taken "
                            "by a row not marked as the reconciler's"
                        )
                self.database.catalog[values["id"]] = values
                found = values["id"]
        self._catalog_cache[image] = found
        return found

    def _own_catalog(self, image: str) -> str | None:
        for row in self.database.catalog.values():
            info = row.get("version_info")
            mine = isinstance(info, dict) and info.get("managed_by") == CREATED_BY_VALUE
            if mine and row.get("docker_image_url") == image:
                return str(row["id"])
        return None

    def create_instance(self, new: NewInstance) -> str:
        instance_id = rows.check_uuid(new.instance_id, "instance id") if new.instance_id else str(uuid.uuid4())
        values = rows.new_instance_values(new, instance_id)
        with self._use():
            db = self.database
            if new.environment_id not in db.environments or new.catalog_id not in db.catalog:
                raise StoreError(
                    f"instance {new.name}: environment {new.environment_id} or catalog row {new.catalog_id} "
                    "does not exist"
                )
            if instance_id in db.instances:
                raise StoreError(f"instance {new.name}: id {instance_id} already exists")
            if db.unique_pair and self._pair_taken(new.environment_id, new.catalog_id, instance_id):
                raise StoreError(
                    f"environment {new.environment_id} already has an instance of catalog row {new.catalog_id}: "
                    f"the unique (account_tool_environment_id, tool_catalog_id) pair allows one server per image "
                    f"(instance {new.name})"
                )
            db.instances[instance_id] = {
                "config_values": None,
                "instance_error_message": None,
                "last_heartbeat_from_dtma": None,
                **copy.deepcopy(values),
            }
        return instance_id

    def _pair_taken(self, environment_id: str, catalog_id: str, instance_id: str) -> bool:
        return any(
            r["account_tool_environment_id"] == environment_id and r["tool_catalog_id"] == catalog_id
            for i, r in self.database.instances.items()
            if i != instance_id
        )

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
        synced: bool = True,  # nothing to sync in memory
    ) -> None:
        sets: Row = {}
        if status is not None:
            rows.check_status(status, instance_id)
            sets["status_on_toolbox"] = status
        if error_message is not None:
            sets["instance_error_message"] = error_message
        elif clear_error:
            sets["instance_error_message"] = None
        if heartbeat is not None:
            sets["last_heartbeat_from_dtma"] = heartbeat
        if config is not None:
            sets["base_config_override_json"] = copy.deepcopy(dict(config))
            sets.update(rows.config_columns(config))
        if catalog_id is not None:
            sets["tool_catalog_id"] = catalog_id
        if not sets:
            return
        with self._use():
            db = self.database
            row = db.instances.get(instance_id)
            if row is None:
                raise StoreError(f"instance {instance_id} does not exist (deleted meanwhile?)")
            if catalog_id is not None:
                if catalog_id not in db.catalog:
                    raise StoreError(f"instance {instance_id}: catalog row {catalog_id} does not exist")
                env_id = str(row["account_tool_environment_id"])
                if db.unique_pair and self._pair_taken(env_id, catalog_id, instance_id):
                    raise StoreError(
                        f"environment {env_id} already has an instance of catalog row {catalog_id}: the unique "
                        "(account_tool_environment_id, tool_catalog_id) pair allows one server per image"
                    )
            row.update(sets)

    def merge_config(self, instance_id: str, values: Mapping[str, Any]) -> None:
        with self._use():
            row = self.database.instances.get(instance_id)
            if row is None:
                raise StoreError(f"instance {instance_id} does not exist (deleted meanwhile?)")
            config = row.get("base_config_override_json")
            row["base_config_override_json"] = {
                **(copy.deepcopy(config) if isinstance(config, dict) else {}),
                **copy.deepcopy(dict(values)),
            }

    def record_heartbeats(self, instance_ids: Collection[str], at: datetime, *, min_interval: float = 60.0) -> int:
        older = at - timedelta(seconds=min_interval)
        written = 0
        with self._use():
            for instance_id in set(instance_ids):
                row = self.database.instances.get(instance_id)
                if row is None:
                    continue
                last = row.get("last_heartbeat_from_dtma")
                if last is None or last < older:
                    row["last_heartbeat_from_dtma"] = at
                    written += 1
        return written

    def recorded_mcp(self, environment_id: str) -> dict[str, dict[str, Any]]:
        with self._use():
            found = [
                {"id": k, **{c: copy.deepcopy(r.get(c)) for c in rows.MCP_COLUMNS if c != "mcp_server_type"}}
                for k, r in self.database.instances.items()
                if str(r.get("account_tool_environment_id")) == environment_id
            ]
        return rows.mcp_columns_of(found)

    def recorded_health(self) -> dict[str, dict[str, Any]]:
        with self._use():
            found = {
                k: rows.probed_metadata(r.get("mcp_discovery_metadata"))
                for k, r in self.database.instances.items()
            }
        return {k: copy.deepcopy(v) for k, v in found.items() if v is not None}

    def record_health(self, records: Sequence[HealthRecord]) -> None:
        with self._use():
            for record in records:
                row = self.database.instances.get(record.instance_id)
                if row is None:
                    continue
                merged = rows.merged_metadata(
                    row.get("mcp_discovery_metadata"), copy.deepcopy(dict(record.metadata))
                )
                row["mcp_discovery_metadata"] = merged
                if record.capabilities is not None:
                    row["mcp_server_capabilities"] = list(record.capabilities)

    def delete_instance(self, instance_id: str) -> None:
        with self._use():
            self.database.instances.pop(instance_id, None)

    def fingerprint(self, environment_id: str) -> str:
        with self._use():
            env = self.database.environments.get(environment_id)
            instances = [
                copy.deepcopy(r)
                for r in self.database.instances.values()
                if r["account_tool_environment_id"] == environment_id
            ]
        return rows.fingerprint(self._env_view(env) if env is not None else None, instances)

    # -- suspensions ----------------------------------------------------------------------------------------

    def suspensions(self) -> tuple[Suspension, ...]:
        with self._use():
            db = self.database
            # The foreign key's cascade: a removed environment takes its suspension with it.
            return tuple(db.suspensions[k] for k in sorted(db.suspensions) if k in db.environments)

    def suspend_environment(self, suspension: Suspension) -> None:
        with self._use():
            if suspension.environment_id not in self.database.environments:
                raise StoreError(f"environment {suspension.environment_id} does not exist")
            self.database.suspensions[suspension.environment_id] = suspension

    def resume_environment(self, environment_id: str) -> Suspension | None:
        with self._use():
            return self.database.suspensions.pop(environment_id, None)

    # -- replicas sharing the work (leases) ----------------------------------------------------------------

    @property
    def shares_work(self) -> bool:
        """No: like a SQLite file, a memory database serves one daemon (``acquire_daemon_lock``)."""
        return False

    def beat(self, replica: str, now: datetime, *, forget_before: datetime) -> tuple[Heartbeat, ...]:
        with self._use():
            beats = self.database.heartbeats
            beats[replica] = now
            for other in [r for r, seen in beats.items() if seen < forget_before]:
                del beats[other]
            return tuple(Heartbeat(r, beats[r]) for r in sorted(beats))

    def leases(self) -> tuple[Lease, ...]:
        with self._use():
            db = self.database
            return tuple(db.leases[k] for k in sorted(db.leases) if k in db.environments)

    def claim_leases(
        self, replica: str, environment_ids: Collection[str], now: datetime, expires_at: datetime
    ) -> frozenset[str]:
        with self._use():
            db = self.database
            claimed: set[str] = set()
            for env in environment_ids:
                if env not in db.environments:
                    continue
                held = db.leases.get(env)
                if held is None or held.owner == replica or held.expires_at <= now:
                    db.leases[env] = Lease(env, replica, expires_at)
                    claimed.add(env)
            return frozenset(claimed)

    def renew_leases(self, replica: str, now: datetime, expires_at: datetime) -> int:
        with self._use():
            db = self.database
            mine = [e for e, lease in db.leases.items() if lease.owner == replica and lease.valid(now)]
            for env in mine:
                db.leases[env] = Lease(env, replica, expires_at)
            return len(mine)

    def release_leases(self, replica: str, environment_ids: Collection[str]) -> None:
        with self._use():
            for env in environment_ids:
                held = self.database.leases.get(env)
                if held is not None and held.owner == replica:
                    del self.database.leases[env]

    def retire_replica(self, replica: str) -> None:
        with self._use():
            db = self.database
            for env in [e for e, lease in db.leases.items() if lease.owner == replica]:
                del db.leases[env]
            db.heartbeats.pop(replica, None)

    # -- locks: shared by every store on one MemoryDatabase -------------------------------------------------

    def try_lock_environment(self, environment_id: str) -> bool:
        with self.database.lock:
            holder = self.database.lock_holders.get(environment_id)
            if holder is not None and holder != id(self):
                return False
            self.database.lock_holders[environment_id] = id(self)
            self._held.add(environment_id)
            self._lost = False
            return True

    def unlock_environment(self, environment_id: str) -> None:
        with self.database.lock:
            if self.database.lock_holders.get(environment_id) == id(self):
                del self.database.lock_holders[environment_id]
            self._held.discard(environment_id)

    def lock_holder(self, environment_id: str) -> str | None:
        """Every store on one MemoryDatabase lives in this process: the holder is another store here."""
        with self.database.lock:
            held = environment_id in self.database.lock_holders
        return f"pid {os.getpid()} on host {socket.gethostname()}" if held else None

    def held_locks(self) -> frozenset[str]:
        with self.database.lock:
            return frozenset(self._held)

    def lock_lost(self) -> bool:
        return self._lost

    def acquire_daemon_lock(self) -> None:
        with self.database.lock:
            holder = self.database.daemon_holder
            if holder is not None and holder != id(self):
                raise LockHeldError("another reconciler daemon is running on this memory store")
            self.database.daemon_holder = id(self)

    def release_daemon_lock(self) -> None:
        with self.database.lock:
            if self.database.daemon_holder == id(self):
                self.database.daemon_holder = None

    def ping(self) -> None:
        with self._use():
            pass

    def sync(self) -> None:
        """Nothing to sync in memory."""

    def close(self) -> None:
        with self.database.lock:
            for environment_id in list(self._held):
                self.unlock_environment(environment_id)
            self.release_daemon_lock()
            self._closed = True

    # -- toolbox registration (reconciler db ...) ----------------------------------------------------------

    def add_environment(
        self,
        name: str,
        address: str,
        *,
        status: str = "active",
        environment_id: str | None = None,
        user_id: str | None = None,
    ) -> EnvironmentRow:
        values = rows.new_environment_values(name, address, status, environment_id, user_id)
        with self._use():
            if any(r.get("name") == name for r in self.database.environments.values()):
                raise StoreError(f"environment {name} already exists")
            self.database.environments[values["id"]] = {
                "last_heartbeat_at": None,
                "dtma_bearer_token": None,
                **values,
            }
        return EnvironmentRow(values["id"], name, address, status)

    def list_environments(self) -> list[EnvironmentRow]:
        with self._use():
            found = list(self.database.environments.values())
        return [
            EnvironmentRow(str(r["id"]), r.get("name") or "", r.get("public_ip_address"), str(r["status"]))
            for r in sorted(found, key=lambda r: (r.get("name") or "", str(r["id"])))
        ]

    def remove_environment(self, name: str) -> int:
        """Delete the environment named ``name`` and (by cascade) its instance rows; returns how many."""
        with self._use():
            db = self.database
            ids = {i for i, r in db.environments.items() if r.get("name") == name}
            if not ids:
                raise StoreError(f"environment {name} does not exist")
            doomed = [i for i, r in db.instances.items() if r["account_tool_environment_id"] in ids]
            for instance_id in doomed:
                del db.instances[instance_id]
            for environment_id in ids:
                del db.environments[environment_id]
                db.suspensions.pop(environment_id, None)
        return len(doomed)


if TYPE_CHECKING:
    from reconciler.ports import Store

    def _is_a_store(store: MemoryStore) -> Store:  # mypy proves the adapter implements the protocol
        return store
