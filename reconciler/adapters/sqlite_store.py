"""The embedded store: the Agentopia tables in one SQLite file, through sqlite-utils.

JSON is stored as text, timestamps as ISO 8601 text in UTC, and the PostgreSQL enums are CHECK constraints
with the same values. One daemon per file: ``acquire_daemon_lock`` takes an exclusive flock on
``<file>.lock`` so that a second daemon refuses to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from reconciler.adapters import store_rows as rows
from reconciler.adapters.migrations import (
    AGENTOPIA_TABLES,
    CREATED_BY_KEY,
    CREATED_BY_VALUE,
    LEASES_TABLE,
    META_TABLE,
    MIGRATIONS_TABLE,
    REPLICAS_TABLE,
    SUSPENSIONS_TABLE,
    MigrationResult,
    migrate_command,
    migrations,
)
from reconciler.adapters.sqlite_sync import SYNCED, sync_wal, unsynced
from reconciler.collector import collector_paused
from reconciler.core.leases import Heartbeat, Lease
from reconciler.core.observed import RecordedEnvironment, RecordedInstance, RecordedState
from reconciler.core.suspension import Suspension
from reconciler.errors import LockHeldError, SchemaMissingError, StoreError
from reconciler.ports import EnvironmentRow, HealthRecord, NewInstance
from reconciler.state_dir import make_state_dir

log = logging.getLogger(__name__)

_ENV_COLUMNS = "id, name, public_ip_address AS address, status, last_heartbeat_at, dtma_bearer_token"
# The instance columns in rows.INSTANCE_ROW_COLUMNS order (the last one, catalog_image, is the join's).
_INSTANCE_COLUMNS = ", ".join(f"i.{c}" for c in rows.INSTANCE_ROW_COLUMNS[:-1])


class SqliteStore:
    """``Store`` over a SQLite file. Calls are serialised by an internal lock, so threads may share it."""

    def __init__(self, path: str | Path, *, create: bool = False, check_schema: bool = True) -> None:
        """``create`` makes the file (and its directory) and applies the migrations; otherwise a missing
        file or schema raises SchemaMissingError, unless ``check_schema`` is False (for ``migrate``)."""
        self.path = Path(path)
        self.url = f"sqlite:///{path}"
        self.query_count = 0  # every SQL statement sent, for tests that bound the number of round trips
        self._lock = threading.RLock()
        self._daemon_lock_fd: int | None = None
        self._held: set[str] = set()
        self._env_lock_fds: dict[str, int] = {}  # open for the store's life; flock'ed while held
        # Fixed width, so rewriting it in place never leaves a longer holder's tail behind.
        self._holder_line = f"pid {os.getpid()} on host {socket.gethostname()}".ljust(200)[:200].encode() + b"\n"
        self._catalog_cache: dict[str, str] = {}
        self._decoder = rows.InstanceDecoder()  # kept: an unchanged row is not decoded again
        if not self.path.exists():
            if check_schema and not create:
                raise SchemaMissingError(
                    f"SQLite database {self.path} does not exist; create it with `{migrate_command(self.url)}`"
                )
            make_state_dir(self.path.parent)  # .reconciler/ gets its .gitignore
        try:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
            self._db = sqlite_utils.Database(conn, recursive_triggers=False, tracer=self._count)
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SYNCED)  # every commit synced unless it says otherwise (adapters/sqlite_sync)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}", retryable=True) from exc
        if create:
            self.migrate()
        elif check_schema:
            self._require_schema()

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _count(self, sql: str, params: Any) -> None:
        self.query_count += 1

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Serialise calls and turn sqlite3 errors into one-line StoreErrors naming the file."""
        with self._lock:
            try:
                yield
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"SQLite {self.path}: {what}: {exc}") from exc
            except sqlite3.Error as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                raise StoreError(f"SQLite {self.path}: {what}: {exc}", retryable=locked) from exc

    def _tables(self) -> set[str]:
        return set(self._db.table_names())

    def _require_schema(self) -> None:
        with self._guard("reading the schema"):
            missing = [t for t in AGENTOPIA_TABLES if t not in self._tables()]
        if missing:
            raise SchemaMissingError(
                f"SQLite database {self.path} lacks table(s) {', '.join(missing)}; "
                f"run `{migrate_command(self.url)}`"
            )

    # -- schema --------------------------------------------------------------------------------------------

    @property
    def created_by_reconciler(self) -> bool:
        with self._guard("reading the marker"):
            if META_TABLE not in self._tables():
                return False
            found = list(self._db.query(f"SELECT value FROM {META_TABLE} WHERE key = ?", [CREATED_BY_KEY]))
        return bool(found) and found[0]["value"] == CREATED_BY_VALUE

    @property
    def is_agentopia_database(self) -> bool:
        """The tables exist but the reconciler did not create them: the toolboxes are not ours to edit."""
        with self._guard("reading the schema"):
            has_tables = any(t in self._tables() for t in AGENTOPIA_TABLES)
        return has_tables and not self.created_by_reconciler

    @property
    def unique_image_per_environment(self) -> bool:
        """Whether unique (account_tool_environment_id, tool_catalog_id) holds (then one server per image)."""
        wanted = {"account_tool_environment_id", "tool_catalog_id"}
        with self._guard("reading indexes"):
            for index in self._db.query("PRAGMA index_list(account_tool_instances)"):
                if not index["unique"]:
                    continue
                cols = {r["name"] for r in self._db.query(f"PRAGMA index_info('{index['name']}')")}
                if cols == wanted:
                    return True
        return False

    @property
    def mcp_columns(self) -> frozenset[str]:
        with self._guard("reading columns"):
            cols = set(self._db["account_tool_instances"].columns_dict)
        return frozenset(c for c in rows.MCP_COLUMNS if c in cols)

    def schema_version(self) -> int:
        with self._guard("reading schema_migrations"):
            if MIGRATIONS_TABLE not in self._tables():
                return 0
            found = list(self._db.query(f"SELECT max(version) AS v FROM {MIGRATIONS_TABLE}"))
        return int(found[0]["v"] or 0)

    def migrate(self, *, force: bool = False) -> MigrationResult:
        """Apply the migrations not yet recorded, each in its own transaction. Twice is a no-op."""
        with self._guard("migrating"):
            tables = self._tables()
            empty = not any(t in tables for t in AGENTOPIA_TABLES)
            if not empty and not force and self.is_agentopia_database:
                raise StoreError(
                    f"SQLite {self.path} has Agentopia tables the reconciler did not create; "
                    "refusing to migrate it (pass --force to apply the migrations anyway)"
                )
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT '')"
            )
            done = {r["version"] for r in self._db.query(f"SELECT version FROM {MIGRATIONS_TABLE}")}
            applied: list[int] = []
            for migration in migrations("sqlite"):
                if migration.version in done:
                    continue
                record = (
                    f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES "
                    f"({migration.version}, '{migration.name}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));"
                )
                if empty and not applied:
                    # The marker goes in with the first migration, so a crash cannot leave our own tables
                    # looking like Agentopia's.
                    record += (
                        f"\nINSERT OR IGNORE INTO {META_TABLE} (key, value) "
                        f"VALUES ('{CREATED_BY_KEY}', '{CREATED_BY_VALUE}');"
                    )
                # executescript commits anything pending first; the script is its own transaction.
                self.query_count += 1
                try:
                    self._db.conn.executescript(f"BEGIN;\n{migration.sql}\n{record}\nCOMMIT;")
                except sqlite3.Error:
                    if self._db.conn.in_transaction:
                        self._db.conn.execute("ROLLBACK")
                    raise
                applied.append(migration.version)
                log.info("applied migration %04d_%s to %s", migration.version, migration.name, self.path)
        return MigrationResult(tuple(applied), self.schema_version(), created=empty)

    # -- Store ---------------------------------------------------------------------------------------------

    def observe(self) -> RecordedState:
        """Two queries, however many rows: environments, then instances joined to their catalog image."""
        return RecordedState(environments=self.observe_environments(), instances=self.observe_instances())

    def observe_environments(self) -> tuple[RecordedEnvironment, ...]:
        """The environments alone (one query): enough to start listing the toolboxes."""
        with self._guard("observing"):
            envs = list(self._db.query(f"SELECT {_ENV_COLUMNS} FROM account_tool_environments ORDER BY id"))
        return tuple(rows.environment_from_row(r) for r in envs)

    def observe_instances(self) -> tuple[RecordedInstance, ...]:
        """Every instance joined to its catalog image (one query)."""
        sql = (
            f"SELECT {_INSTANCE_COLUMNS}, c.docker_image_url AS catalog_image "
            "FROM account_tool_instances i LEFT JOIN tool_catalog c ON c.id = i.tool_catalog_id "
            "ORDER BY i.id"
        )
        with self._guard("observing"):
            # Plain tuples from the cursor (columns in rows.INSTANCE_ROW_COLUMNS order): building a dict
            # per row was most of this read's CPU, and it runs while the listings need the GIL.
            self._count(sql, None)
            with collector_paused():
                return self._decoder.decode(self._db.conn.execute(sql).fetchall())

    def ensure_catalog(self, image: str, *, environment_id: str | None = None) -> str:
        cached = self._catalog_cache.get(image)
        if cached is not None:
            return cached
        with self._guard(f"ensuring the catalog row of {image}"), self._db.atomic():
            found = self._own_catalog(image)
            if found is None:
                present = set(self._db["tool_catalog"].columns_dict)
                owner = self._owner(environment_id) if "created_by" in present else None
                values = {
                    k: v for k, v in rows.catalog_values(image, str(uuid.uuid4()), owner).items() if k in present
                }
                self._insert("tool_catalog", values, json_columns=("version_info", "default_config_template"))
                found = values["id"]
                log.info("created catalog row %s for image %s", found, image)
        self._catalog_cache[image] = found
        return found

    def _owner(self, environment_id: str | None) -> str | None:
        """The user owning a toolbox: who a new catalog row is ``created_by``."""
        if environment_id is None:
            return None
        found = list(
            self._db.query("SELECT user_id FROM account_tool_environments WHERE id = ?", [environment_id])
        )
        return str(found[0]["user_id"]) if found and found[0]["user_id"] else None

    def _own_catalog(self, image: str) -> str | None:
        for row in self._db.query(
            "SELECT id, version_info FROM tool_catalog WHERE docker_image_url = ? ORDER BY created_at, id", [image]
        ):
            info = rows.parse_json(row["version_info"])
            if isinstance(info, dict) and info.get("managed_by") == CREATED_BY_VALUE:
                return str(row["id"])
        return None

    def _insert(self, table: str, values: Mapping[str, Any], *, json_columns: tuple[str, ...] = ()) -> None:
        cols = list(values)
        params = [rows.dump_json(values[c]) if c in json_columns and values[c] is not None else values[c]
                  for c in cols]  # fmt: skip
        self._db.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})", params
        )

    def create_instance(self, new: NewInstance) -> str:
        instance_id = new.instance_id or str(uuid.uuid4())
        values = rows.new_instance_values(new, instance_id)
        json_columns = ("base_config_override_json", "port_mapping_json", *rows.MCP_JSON_COLUMNS)
        try:
            with self._guard(f"creating instance {new.name} on {new.environment_id}"), self._db.atomic():
                self._insert("account_tool_instances", values, json_columns=json_columns)
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise StoreError(_integrity_message(new, str(exc.__cause__))) from exc.__cause__
            raise
        return instance_id

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
        sets: dict[str, Any] = {}
        if catalog_id is not None:
            sets["tool_catalog_id"] = catalog_id
        if status is not None:
            rows.check_status(status, instance_id)
            sets["status_on_toolbox"] = status
        if error_message is not None:
            sets["instance_error_message"] = error_message
        elif clear_error:
            sets["instance_error_message"] = None
        if heartbeat is not None:
            sets["last_heartbeat_from_dtma"] = rows.format_time(heartbeat)
        if config is not None:
            sets["base_config_override_json"] = rows.dump_json(dict(config))
            for column, value in rows.config_columns(config).items():
                json_column = column in rows.MCP_JSON_COLUMNS or column == "port_mapping_json"
                sets[column] = rows.dump_json(value) if json_column and value is not None else value
        if not sets:
            return
        assignments = ", ".join(f"{c} = ?" for c in sets)
        with (
            self._guard(f"updating instance {instance_id}"),
            contextlib.nullcontext() if synced else unsynced(self._db.conn),
            self._db.atomic(),
        ):
            cursor = self._db.execute(
                f"UPDATE account_tool_instances SET {assignments} WHERE id = ?", [*sets.values(), instance_id]
            )
            if cursor.rowcount == 0:
                raise StoreError(f"instance {instance_id} does not exist (deleted meanwhile?)")

    def merge_config(self, instance_id: str, values: Mapping[str, Any]) -> None:
        with self._guard(f"updating the config of instance {instance_id}"), self._db.atomic():
            found = list(
                self._db.query(
                    "SELECT base_config_override_json AS c FROM account_tool_instances WHERE id = ?", [instance_id]
                )
            )
            if not found:
                raise StoreError(f"instance {instance_id} does not exist (deleted meanwhile?)")
            config = rows.parse_json(found[0]["c"])
            merged = {**(config if isinstance(config, dict) else {}), **values}
            self._db.execute(
                "UPDATE account_tool_instances SET base_config_override_json = ? WHERE id = ?",
                [rows.dump_json(merged), instance_id],
            )

    def record_heartbeats(self, instance_ids: Collection[str], at: datetime, *, min_interval: float = 60.0) -> int:
        """``last_heartbeat_from_dtma = at`` on the instances an agent has just listed; rows beaten less than
        ``min_interval`` seconds before ``at`` are left alone. Returns how many rows were written."""
        ids = list(instance_ids)
        if not ids:
            return 0
        stamp, older = rows.format_time(at), rows.format_time(at - timedelta(seconds=min_interval))
        written = 0
        with self._guard("recording heartbeats"), self._db.atomic():
            for start in range(0, len(ids), 500):  # SQLite bounds the number of parameters
                chunk = ids[start : start + 500]
                cursor = self._db.execute(
                    "UPDATE account_tool_instances SET last_heartbeat_from_dtma = ? "
                    f"WHERE id IN ({', '.join('?' for _ in chunk)}) "
                    "AND (last_heartbeat_from_dtma IS NULL OR last_heartbeat_from_dtma < ?)",
                    [stamp, *chunk, older],
                )
                written += max(cursor.rowcount, 0)
        return written

    def recorded_mcp(self, environment_id: str) -> dict[str, dict[str, Any]]:
        present = sorted(self.mcp_columns - {"mcp_server_type"})
        if not present:
            return {}
        sql = f"SELECT id, {', '.join(present)} FROM account_tool_instances WHERE account_tool_environment_id = ?"
        with self._guard("reading MCP columns"):
            found = list(self._db.query(sql, [environment_id]))
        return rows.mcp_columns_of(found)

    def recorded_health(self) -> dict[str, dict[str, Any]]:
        if "mcp_discovery_metadata" not in self.mcp_columns:
            return {}
        sql = (
            "SELECT id, mcp_discovery_metadata AS m FROM account_tool_instances "
            "WHERE mcp_discovery_metadata IS NOT NULL"
        )
        with self._guard("reading health"):
            found = {str(r["id"]): rows.probed_metadata(r["m"]) for r in self._db.query(sql)}
        return {k: v for k, v in found.items() if v is not None}

    def record_health(self, records: Sequence[HealthRecord]) -> None:
        columns = self.mcp_columns
        if not records or "mcp_discovery_metadata" not in columns:
            return
        with self._guard("recording health"), self._db.atomic():
            for record in records:
                found = list(
                    self._db.query(
                        "SELECT mcp_discovery_metadata AS m FROM account_tool_instances WHERE id = ?",
                        [record.instance_id],
                    )
                )
                if not found:
                    continue
                sets = {
                    "mcp_discovery_metadata": rows.dump_json(rows.merged_metadata(found[0]["m"], record.metadata))
                }
                if record.capabilities is not None and "mcp_server_capabilities" in columns:
                    sets["mcp_server_capabilities"] = rows.dump_json(list(record.capabilities))
                assignments = ", ".join(f"{c} = ?" for c in sets)
                self._db.execute(
                    f"UPDATE account_tool_instances SET {assignments} WHERE id = ?",
                    [*sets.values(), record.instance_id],
                )

    def delete_instance(self, instance_id: str) -> None:
        with self._guard(f"deleting instance {instance_id}"), self._db.atomic():
            self._db.execute("DELETE FROM account_tool_instances WHERE id = ?", [instance_id])

    def fingerprint(self, environment_id: str) -> str:
        with self._guard(f"fingerprinting environment {environment_id}"):
            envs = list(
                self._db.query(
                    f"SELECT {_ENV_COLUMNS} FROM account_tool_environments WHERE id = ?", [environment_id]
                )
            )
            instances = list(
                self._db.query(
                    "SELECT id, tool_catalog_id, instance_name_on_toolbox, status_on_toolbox, "
                    "base_config_override_json FROM account_tool_instances WHERE account_tool_environment_id = ?",
                    [environment_id],
                )
            )
        return rows.fingerprint(envs[0] if envs else None, instances)

    # -- suspensions (reconciler suspend / resume) ---------------------------------------------------------

    def suspensions(self) -> tuple[Suspension, ...]:
        with self._guard("reading suspensions"):
            if SUSPENSIONS_TABLE not in self._tables():
                return ()  # a database migrated before suspensions existed: nothing can be suspended in it
            found = list(self._db.query(f"SELECT * FROM {SUSPENSIONS_TABLE} ORDER BY environment_id"))
        return tuple(rows.suspension_from_row(r) for r in found)

    def suspend_environment(self, suspension: Suspension) -> None:
        with self._guard(f"suspending environment {suspension.environment_id}"), self._db.atomic():
            if SUSPENSIONS_TABLE not in self._tables():
                raise SchemaMissingError(
                    f"SQLite database {self.path} has no table {SUSPENSIONS_TABLE}; "
                    f"run `{migrate_command(self.url)}`"
                )
            self._db.execute(
                f"INSERT INTO {SUSPENSIONS_TABLE} (environment_id, reason, suspended_by, suspended_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (environment_id) DO UPDATE SET reason = excluded.reason, "
                "suspended_by = excluded.suspended_by, suspended_at = excluded.suspended_at",
                [suspension.environment_id, suspension.reason, suspension.by, rows.format_time(suspension.at)],
            )

    def resume_environment(self, environment_id: str) -> Suspension | None:
        with self._guard(f"resuming environment {environment_id}"), self._db.atomic():
            if SUSPENSIONS_TABLE not in self._tables():
                return None
            found = list(
                self._db.query(f"SELECT * FROM {SUSPENSIONS_TABLE} WHERE environment_id = ?", [environment_id])
            )
            self._db.execute(f"DELETE FROM {SUSPENSIONS_TABLE} WHERE environment_id = ?", [environment_id])
        return rows.suspension_from_row(found[0]) if found else None

    # -- replicas sharing the work (leases) ----------------------------------------------------------------

    @property
    def shares_work(self) -> bool:
        """No: a SQLite file serves one daemon (``acquire_daemon_lock``), which owns every environment."""
        return False

    def beat(self, replica: str, now: datetime, *, forget_before: datetime) -> tuple[Heartbeat, ...]:
        with self._guard("recording the replica's heartbeat"), self._db.atomic():
            self._db.execute(
                f"INSERT INTO {REPLICAS_TABLE} (replica_id, last_seen) VALUES (?, ?) ON CONFLICT (replica_id) "
                "DO UPDATE SET last_seen = excluded.last_seen",
                [replica, rows.format_time(now)],
            )
            self._db.execute(
                f"DELETE FROM {REPLICAS_TABLE} WHERE last_seen < ?", [rows.format_time(forget_before)]
            )
            found = list(self._db.query(f"SELECT replica_id, last_seen FROM {REPLICAS_TABLE} ORDER BY replica_id"))
        return tuple(Heartbeat(str(r["replica_id"]), _time(r["last_seen"])) for r in found)

    def leases(self) -> tuple[Lease, ...]:
        with self._guard("reading the leases"):
            found = list(self._db.query(f"SELECT * FROM {LEASES_TABLE} ORDER BY environment_id"))
        return tuple(Lease(str(r["environment_id"]), str(r["owner"]), _time(r["expires_at"])) for r in found)

    def claim_leases(
        self, replica: str, environment_ids: Collection[str], now: datetime, expires_at: datetime
    ) -> frozenset[str]:
        claimed: set[str] = set()
        until, at = rows.format_time(expires_at), rows.format_time(now)
        with self._guard("claiming leases"), self._db.atomic():
            for env in sorted(environment_ids):
                cursor = self._db.execute(
                    f"INSERT INTO {LEASES_TABLE} (environment_id, owner, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (environment_id) DO UPDATE SET owner = excluded.owner, "
                    f"expires_at = excluded.expires_at WHERE {LEASES_TABLE}.owner = excluded.owner "
                    f"OR {LEASES_TABLE}.expires_at <= ?",
                    [env, replica, until, at],
                )
                if cursor.rowcount > 0:
                    claimed.add(env)
        return frozenset(claimed)

    def renew_leases(self, replica: str, now: datetime, expires_at: datetime) -> int:
        with self._guard("renewing leases"), self._db.atomic():
            cursor = self._db.execute(
                f"UPDATE {LEASES_TABLE} SET expires_at = ? WHERE owner = ? AND expires_at > ?",
                [rows.format_time(expires_at), replica, rows.format_time(now)],
            )
        return max(cursor.rowcount, 0)

    def release_leases(self, replica: str, environment_ids: Collection[str]) -> None:
        with self._guard("releasing leases"), self._db.atomic():
            for env in environment_ids:
                self._db.execute(
                    f"DELETE FROM {LEASES_TABLE} WHERE owner = ? AND environment_id = ?", [replica, env]
                )

    def retire_replica(self, replica: str) -> None:
        with self._guard("retiring the replica"), self._db.atomic():
            if LEASES_TABLE not in self._tables():
                return
            self._db.execute(f"DELETE FROM {LEASES_TABLE} WHERE owner = ?", [replica])
            self._db.execute(f"DELETE FROM {REPLICAS_TABLE} WHERE replica_id = ?", [replica])

    def _env_lock_path(self, environment_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", environment_id)
        return Path(f"{self.path}.locks") / f"{safe}.lock"

    def try_lock_environment(self, environment_id: str) -> bool:
        """An exclusive lock on ``<file>.locks/<environment id>.lock`` (the daemon and ``apply`` take it, so
        they never act on one environment at once); False when another process holds it.

        The file stays open between cycles (unlocked, not closed), and the holder line is rewritten in place
        at a fixed width: a daemon over a thousand toolboxes takes every lock every cycle, and opening and
        truncating a thousand files was a tenth of a second of CPU each time."""
        if environment_id in self._held:
            return True
        fd = self._env_lock_fds.get(environment_id)
        if fd is None:
            path = self._env_lock_path(environment_id)
            try:
                path.parent.mkdir(exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot take the lock {path}: {exc.strerror or exc}") from None
            self._env_lock_fds[environment_id] = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        os.pwrite(fd, self._holder_line, 0)
        self._held.add(environment_id)
        return True

    def unlock_environment(self, environment_id: str) -> None:
        self._held.discard(environment_id)
        fd = self._env_lock_fds.get(environment_id)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def lock_holder(self, environment_id: str) -> str | None:
        """``pid N on host H`` of the process holding the environment's lock, as it wrote it."""
        try:
            text = self._env_lock_path(environment_id).read_text().strip()
        except OSError:
            return None
        return text or None

    def held_locks(self) -> frozenset[str]:
        return frozenset(self._held)

    def lock_lost(self) -> bool:
        return False

    def acquire_daemon_lock(self) -> None:
        """Take an exclusive lock on ``<file>.lock`` for this process's lifetime, or raise LockHeldError."""
        if self._daemon_lock_fd is not None:
            return
        lock_path = Path(f"{self.path}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LockHeldError(
                f"another reconciler daemon is running on {self.path} (it holds the lock {lock_path}); "
                "a SQLite database serves one daemon: stop the other one, or use PostgreSQL for several"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._daemon_lock_fd = fd

    def release_daemon_lock(self) -> None:
        if self._daemon_lock_fd is not None:
            fcntl.flock(self._daemon_lock_fd, fcntl.LOCK_UN)
            os.close(self._daemon_lock_fd)
            self._daemon_lock_fd = None

    def ping(self) -> None:
        with self._guard("ping"):
            self._db.execute("SELECT 1")

    def sync(self) -> None:
        with self._guard("syncing the database"):
            try:
                sync_wal(self.path)
            except OSError as exc:
                raise StoreError(f"SQLite {self.path}: syncing the database: {exc}", retryable=True) from exc

    def close(self) -> None:
        self.release_daemon_lock()
        for environment_id, fd in list(self._env_lock_fds.items()):
            self._held.discard(environment_id)
            os.close(fd)  # releases the flock
        self._env_lock_fds.clear()
        with self._lock:
            self._db.close()

    # -- toolbox registration (reconciler db ...) ----------------------------------------------------------

    def _refuse_on_agentopia(self, what: str) -> None:
        if self.is_agentopia_database:
            raise StoreError(
                f"refusing to {what}: {self.path} holds Agentopia's tables and the reconciler did not create "
                "it; Agentopia provisions the toolboxes there"
            )

    def add_environment(
        self,
        name: str,
        address: str,
        *,
        status: str = "active",
        environment_id: str | None = None,
        user_id: str | None = None,
    ) -> EnvironmentRow:
        self._refuse_on_agentopia(f"add environment {name}")
        values = rows.new_environment_values(name, address, status, environment_id, user_id)
        with self._guard(f"adding environment {name}"), self._db.atomic():
            if list(self._db.query("SELECT id FROM account_tool_environments WHERE name = ?", [name])):
                raise StoreError(f"environment {name} already exists")
            self._insert(
                "account_tool_environments",
                values,
            )
        return EnvironmentRow(values["id"], name, address, status)

    def list_environments(self) -> list[EnvironmentRow]:
        with self._guard("listing environments"):
            found = list(
                self._db.query(
                    "SELECT id, name, public_ip_address AS address, status FROM account_tool_environments "
                    "ORDER BY name, id"
                )
            )
        return [EnvironmentRow(str(r["id"]), r["name"] or "", r["address"], str(r["status"])) for r in found]

    def remove_environment(self, name: str) -> int:
        """Delete the environment named ``name`` and (by cascade) its instance rows; returns how many."""
        self._refuse_on_agentopia(f"remove environment {name}")
        with self._guard(f"removing environment {name}"), self._db.atomic():
            found = list(self._db.query("SELECT id FROM account_tool_environments WHERE name = ?", [name]))
            if not found:
                raise StoreError(f"environment {name} does not exist")
            ids = [r["id"] for r in found]
            marks = ", ".join("?" for _ in ids)
            count_sql = (
                f"SELECT count(*) AS n FROM account_tool_instances WHERE account_tool_environment_id IN ({marks})"
            )
            count = next(iter(self._db.query(count_sql, ids)))["n"]
            self._db.execute(f"DELETE FROM account_tool_environments WHERE id IN ({marks})", ids)
        return int(count)


def _time(value: Any) -> datetime:
    return rows.parse_time(value) or datetime.min.replace(tzinfo=UTC)


def _integrity_message(new: NewInstance, detail: str) -> str:
    if "UNIQUE" in detail and "tool_catalog_id" in detail:
        return (
            f"environment {new.environment_id} already has an instance of catalog row {new.catalog_id}: the "
            f"unique (account_tool_environment_id, tool_catalog_id) pair allows one server per image "
            f"(instance {new.name})"
        )
    if "FOREIGN KEY" in detail:
        return (
            f"instance {new.name}: environment {new.environment_id} or catalog row {new.catalog_id} does not exist"
        )
    return f"instance {new.name} on environment {new.environment_id}: {detail}"
