"""The production store: Agentopia's tables in PostgreSQL, through psycopg 3.

Deployed Agentopia databases differ, so the columns, the instance table's CHECK constraints and the unique
(environment, catalog) constraint are read once when the store opens: only columns that exist are written,
and the MCP columns in a combination the CHECKs accept (``store_rows.mcp_values``). A database whose tables the
reconciler did not create is Agentopia's: the store reads and writes instance rows there, but never
migrates it (unless forced) and never registers or removes toolboxes in it.

Locks: one session advisory lock per environment, held on a dedicated connection, so that several daemons
on one database split the toolboxes between them. If that connection drops, the locks are gone with it;
``lock_lost`` tells.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import socket
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

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
from reconciler.collector import collector_paused
from reconciler.core.leases import Heartbeat, Lease
from reconciler.core.observed import RecordedEnvironment, RecordedInstance, RecordedState, is_uuid
from reconciler.core.suspension import Suspension
from reconciler.errors import SchemaMissingError, StoreError
from reconciler.ports import EnvironmentRow, HealthRecord, NewInstance

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5
# Connections for the instance-row writes of an apply (opened when first needed). One connection made the
# executor's threads queue behind each synced insert's WAL flush; on several, the server flushes concurrent
# commits together (its group commit) and a status write does not wait for an insert's flush.
ROW_WRITERS = 4
# pg_advisory_lock key serialising `reconciler db migrate` runs on one database.
_MIGRATION_LOCK_KEY = rows.advisory_key("schema-migrations")
_JSON_COLUMNS = frozenset({
    "base_config_override_json", "port_mapping_json", "version_info", "default_config_template",
    *rows.MCP_JSON_COLUMNS,
})  # fmt: skip
# Optional columns read from account_tool_environments / account_tool_instances, with how to read them.
_ENV_OPTIONAL = {
    "name": "name",
    "public_ip_address": "public_ip_address::text AS address",
    "last_heartbeat_at": "last_heartbeat_at",
    "dtma_bearer_token": "dtma_bearer_token",
}
_INSTANCE_OPTIONAL = ("instance_error_message", "last_heartbeat_from_dtma")

Connection = psycopg.Connection[DictRow]


class PostgresStore:
    """``Store`` over a PostgreSQL database. Calls are serialised by an internal lock."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = False,
        check_schema: bool = True,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """``create`` applies the migrations (refused on Agentopia's database); otherwise a missing schema
        raises SchemaMissingError, unless ``check_schema`` is False (for ``migrate``)."""
        self.url = url
        self.masked_url = rows.mask(url)
        self.query_count = 0  # every SQL statement sent (the row writers' included)
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._lock_conn: Connection | None = None
        # Row writers, synced (True) and unsynced (False, synchronous_commit off for the session): idle ones,
        # and how many are open (idle and in use).
        self._writers: dict[bool, list[Connection]] = {True: [], False: []}
        self._writers_open = {True: 0, False: 0}
        self._writers_free = threading.Condition()
        self._held: set[str] = set()
        self._lost = False
        self._catalog_cache: dict[str, str] = {}
        self._decoder = rows.InstanceDecoder()  # kept: an unchanged row is not decoded again
        self._seen_tables: set[str] = set()
        self._columns: dict[str, frozenset[str]] = {}
        self._unique_pair = True
        self._created_by_us = False
        self._mcp_rules = rows.AGENTOPIA_MCP_RULES
        self._connection()
        try:
            if create:
                self.migrate()
            else:
                self._introspect()
                if check_schema:
                    self._require_schema()
        except BaseException:
            self.close()  # a store that failed to open leaves no connection behind for the collector
            raise

    # -- connections ---------------------------------------------------------------------------------------

    def _connect(self, *, synced: bool = True) -> Connection:
        try:
            return psycopg.connect(
                self.url,
                connect_timeout=max(1, int(self._connect_timeout)),
                autocommit=True,
                row_factory=dict_row,
                application_name="mcp-reconciler",
                # An unsynced row writer's commits do not wait for the WAL flush (Store.update_instance).
                options="" if synced else "-c synchronous_commit=off",
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.masked_url}: {rows.scrub(str(exc), self.url)}",
                retryable=True,
            ) from None

    def _connection(self) -> Connection:
        """The main connection, reopened if it was lost (a database restart must not need a daemon restart)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                log.warning("reconnecting to PostgreSQL at %s", self.masked_url)
                self._drop_idle_writers()  # lost with it, most likely (a restart): they would fail once each
            self._conn = self._connect()
        return self._conn

    def _drop_idle_writers(self) -> None:
        idle: list[Connection] = []
        with self._writers_free:
            for kind, conns in self._writers.items():
                idle += conns
                self._writers_open[kind] -= len(conns)
                self._writers[kind] = []
            self._writers_free.notify_all()
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[Connection]:
        """Serialise calls and turn driver errors into one-line StoreErrors with the password removed."""
        with self._lock, self._errors(what):
            yield self._connection()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"PostgreSQL at {self.masked_url}: {what}: {rows.scrub(str(exc), self.url)}", retryable=True
            ) from None
        except psycopg.Error as exc:
            detail = exc.diag.message_primary or str(exc)
            raise StoreError(f"PostgreSQL at {self.masked_url}: {what}: {rows.scrub(detail, self.url)}") from exc

    @contextlib.contextmanager
    def _row_writer(self, what: str, *, synced: bool = True) -> Iterator[Connection]:
        """One of up to ROW_WRITERS connections of its kind (synced or not), for a write of one instance row
        that is its own transaction (it sees every commit made before it, on any connection); errors as
        ``_guard``. A lost connection is replaced at the next write."""
        with self._errors(what):
            conn = self._take_writer(synced)
            try:
                yield conn
            finally:
                with self._writers_free:
                    if conn.closed or conn.broken:
                        self._writers_open[synced] -= 1
                    else:
                        self._writers[synced].append(conn)
                    self._writers_free.notify_all()

    def _take_writer(self, synced: bool) -> Connection:
        idle = self._writers[synced]
        with self._writers_free:
            while True:
                while idle:
                    conn = idle.pop()
                    if not (conn.closed or conn.broken):
                        return conn
                    self._writers_open[synced] -= 1
                if self._writers_open[synced] < ROW_WRITERS:
                    self._writers_open[synced] += 1
                    break
                self._writers_free.wait()
        try:
            return self._connect(synced=synced)
        except BaseException:
            with self._writers_free:
                self._writers_open[synced] -= 1
                self._writers_free.notify_all()
            raise

    def _execute(self, conn: Connection, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[DictRow]:
        self.query_count += 1
        return conn.execute(sql.encode() if params is None else sql, params)

    def _all(self, conn: Connection, sql: str, params: Sequence[Any] | None = None) -> list[DictRow]:
        return self._execute(conn, sql, params).fetchall()

    # -- schema --------------------------------------------------------------------------------------------

    def _introspect(self) -> None:
        """Columns, CHECK constraints, the unique pair and the marker, read once (and again after a
        migration)."""
        with self._guard("reading the schema") as conn:
            found = self._all(
                conn,
                "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
                [[*AGENTOPIA_TABLES, META_TABLE]],
            )
            columns: dict[str, set[str]] = {}
            for r in found:
                columns.setdefault(r["t"], set()).add(r["c"])
            self._columns = {t: frozenset(c) for t, c in columns.items()}
            self._unique_pair = bool(
                self._all(
                    conn,
                    "SELECT 1 FROM pg_index x WHERE x.indrelid = to_regclass('account_tool_instances') "
                    "AND x.indisunique AND x.indpred IS NULL AND x.indnkeyatts = 2 AND (SELECT "
                    "array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = "
                    "x.indrelid AND a.attnum = ANY(x.indkey)) = ARRAY['account_tool_environment_id', "
                    "'tool_catalog_id']",
                )
            )
            checks = self._all(
                conn,
                "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint "
                "WHERE conrelid = to_regclass('account_tool_instances') AND contype = 'c'",
            )
            self._mcp_rules = rows.mcp_rules_from_checks(str(r["def"]) for r in checks)
            self._created_by_us = META_TABLE in self._columns and bool(
                self._all(
                    conn,
                    f"SELECT 1 FROM {META_TABLE} WHERE key = %s AND value = %s",
                    [CREATED_BY_KEY, CREATED_BY_VALUE],
                )
            )

    def _require_schema(self) -> None:
        missing = [t for t in AGENTOPIA_TABLES if t not in self._columns]
        if missing:
            raise SchemaMissingError(
                f"PostgreSQL database at {self.masked_url} lacks table(s) {', '.join(missing)}; "
                f"run `{migrate_command(self.masked_url)}`"
            )

    @property
    def created_by_reconciler(self) -> bool:
        return self._created_by_us

    @property
    def is_agentopia_database(self) -> bool:
        """The tables exist but the reconciler did not create them: production, which Agentopia owns."""
        return any(t in self._columns for t in AGENTOPIA_TABLES) and not self._created_by_us

    @property
    def unique_image_per_environment(self) -> bool:
        """Whether unique (account_tool_environment_id, tool_catalog_id) holds (then one server per image)."""
        return self._unique_pair

    @property
    def mcp_rules(self) -> rows.McpRules:
        """What the instance table's CHECK constraints accept in the MCP columns."""
        return self._mcp_rules

    @property
    def mcp_columns(self) -> frozenset[str]:
        present = self._columns.get("account_tool_instances", frozenset())
        return frozenset(c for c in rows.MCP_COLUMNS if c in present)

    def schema_version(self) -> int:
        with self._guard("reading schema_migrations") as conn:
            if not self._all(conn, "SELECT to_regclass(%s) AS r", [MIGRATIONS_TABLE])[0]["r"]:
                return 0
            found = self._all(conn, f"SELECT coalesce(max(version), 0) AS v FROM {MIGRATIONS_TABLE}")
        return int(found[0]["v"])

    def migrate(self, *, force: bool = False) -> MigrationResult:
        """Apply pending migrations in one transaction (a failure leaves the database as it was).

        Refused on a database with Agentopia's tables that the reconciler did not create, unless ``force``.
        Applying twice is a no-op.
        """
        applied: list[int] = []
        with self._guard("migrating") as conn, conn.transaction():
            self._execute(conn, "SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK_KEY])
            self._introspect()  # again, now that concurrent migrators wait for us
            empty = not any(t in self._columns for t in AGENTOPIA_TABLES)
            if self.is_agentopia_database and not force:
                raise StoreError(
                    f"refusing to migrate the PostgreSQL database at {self.masked_url}: it has Agentopia's "
                    "tables and the reconciler did not create it (production belongs to Agentopia); "
                    "pass --force to apply the migrations anyway"
                )
            self._execute(
                conn,
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            done = {r["version"] for r in self._all(conn, f"SELECT version FROM {MIGRATIONS_TABLE}")}
            for migration in migrations("postgres"):
                if migration.version in done:
                    continue
                self._execute(conn, migration.sql)
                self._execute(
                    conn,
                    f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (%s, %s)",
                    [migration.version, migration.name],
                )
                applied.append(migration.version)
                log.info("applied migration %04d_%s to %s", migration.version, migration.name, self.masked_url)
            if empty:
                self._execute(
                    conn,
                    f"INSERT INTO {META_TABLE} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                    [CREATED_BY_KEY, CREATED_BY_VALUE],
                )
        self._introspect()
        return MigrationResult(tuple(applied), self.schema_version(), created=empty)

    # -- Store ---------------------------------------------------------------------------------------------

    def _env_select(self, where: str = "") -> str:
        present = self._columns.get("account_tool_environments", frozenset())
        cols = ["id::text AS id", "status::text AS status"]
        for column, expr in _ENV_OPTIONAL.items():
            alias = expr.rsplit(" AS ", 1)[-1]
            cols.append(expr if column in present else f"NULL AS {alias}")
        return f"SELECT {', '.join(cols)} FROM account_tool_environments {where}"

    def observe(self) -> RecordedState:
        """Two queries, however many rows: environments, then instances joined to their catalog image."""
        return RecordedState(environments=self.observe_environments(), instances=self.observe_instances())

    def observe_environments(self) -> tuple[RecordedEnvironment, ...]:
        """The environments alone (one query): enough to start listing the toolboxes."""
        with self._guard("observing") as conn:
            envs = self._all(conn, self._env_select("ORDER BY id"))
        return tuple(rows.environment_from_row(r) for r in envs)

    def observe_instances(self) -> tuple[RecordedInstance, ...]:
        """Every instance joined to its catalog image (one query)."""
        present = self._columns.get("account_tool_instances", frozenset())
        optional = [f"i.{c}" if c in present else f"NULL AS {c}" for c in _INSTANCE_OPTIONAL]
        with self._guard("observing") as conn, collector_paused():
            instances = self._all(
                conn,
                "SELECT i.id::text AS id, i.account_tool_environment_id::text AS account_tool_environment_id, "
                "i.tool_catalog_id::text AS tool_catalog_id, i.instance_name_on_toolbox, "
                # As text: decoded by rows.parse_configs, whose dicts share their keys and short strings.
                "i.status_on_toolbox::text AS status_on_toolbox, "
                "i.base_config_override_json::text AS base_config_override_json, "
                f"{', '.join(optional)}, c.docker_image_url AS catalog_image "
                "FROM account_tool_instances i LEFT JOIN tool_catalog c ON c.id = i.tool_catalog_id ORDER BY i.id",
            )
            pick = operator.itemgetter(*rows.INSTANCE_ROW_COLUMNS)
            return self._decoder.decode([pick(r) for r in instances])

    def ensure_catalog(self, image: str, *, environment_id: str | None = None) -> str:
        cached = self._catalog_cache.get(image)
        if cached is not None:
            return cached
        present = self._columns.get("tool_catalog", frozenset())
        owner = self._owner(environment_id) if "created_by" in present else None
        values = {k: v for k, v in rows.catalog_values(image, str(uuid.uuid4()), owner).items() if k in present}
        own = (
            "SELECT id::text AS id FROM tool_catalog WHERE docker_image_url = %s "
            "AND version_info->>'managed_by' = %s ORDER BY created_at, id LIMIT 1"
        )
        with self._guard(f"ensuring the catalog row of {image}") as conn, conn.transaction():
            found = self._all(conn, own, [image, CREATED_BY_VALUE])
            if not found:
                # DO NOTHING: a concurrent daemon may insert the same row first; then read theirs.
                self._insert(conn, "tool_catalog", values, suffix="ON CONFLICT DO NOTHING")
                found = self._all(conn, own, [image, CREATED_BY_VALUE])
                if not found:
                    raise StoreError(
                        f"cannot create a catalog row for image {image}: tool_name {values['tool_name']!r} "
                        "is taken by a row not marked as the reconciler's"
                    )
                log.info("catalog row %s for image %s", found[0]["id"], image)
        self._catalog_cache[image] = str(found[0]["id"])
        return self._catalog_cache[image]

    def _owner(self, environment_id: str | None) -> str | None:
        """The user owning a toolbox: who a new catalog row is ``created_by``."""
        if environment_id is None or not is_uuid(environment_id):
            return None
        with self._guard(f"reading the owner of environment {environment_id}") as conn:
            found = self._all(
                conn, "SELECT user_id::text AS u FROM account_tool_environments WHERE id = %s", [environment_id]
            )
        return str(found[0]["u"]) if found and found[0]["u"] else None

    def _insert(self, conn: Connection, table: str, values: Mapping[str, Any], *, suffix: str = "") -> None:
        cols = list(values)
        params = [Jsonb(values[c]) if c in _JSON_COLUMNS and values[c] is not None else values[c] for c in cols]
        self._execute(
            conn,
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)}) {suffix}",
            params,
        )

    def create_instance(self, new: NewInstance) -> str:
        instance_id = rows.check_uuid(new.instance_id, "instance id") if new.instance_id else str(uuid.uuid4())
        present = self._columns.get("account_tool_instances", frozenset())
        every = rows.new_instance_values(new, instance_id, self._mcp_rules)
        values = {k: v for k, v in every.items() if k in present}
        with self._row_writer(f"creating instance {new.name} on environment {new.environment_id}") as conn:
            try:
                # One statement on an autocommit connection is its own transaction: one round trip, not
                # three (BEGIN, INSERT, COMMIT); the executor writes a row before and after every deploy.
                self._insert(conn, "account_tool_instances", values)
            except pg_errors.UniqueViolation as exc:
                if "tool_catalog_id" in (exc.diag.message_detail or "") or "catalog" in (
                    exc.diag.constraint_name or ""
                ):
                    raise StoreError(
                        f"environment {new.environment_id} already has an instance of catalog row "
                        f"{new.catalog_id}: the unique (account_tool_environment_id, tool_catalog_id) pair "
                        f"allows one server per image (instance {new.name})"
                    ) from None
                raise StoreError(f"instance {new.name}: {exc.diag.message_detail or exc}") from None
            except pg_errors.ForeignKeyViolation:
                raise StoreError(
                    f"instance {new.name}: environment {new.environment_id} or catalog row {new.catalog_id} "
                    "does not exist"
                ) from None
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
        present = self._columns.get("account_tool_instances", frozenset())
        sets: dict[str, Any] = {}
        if catalog_id is not None:
            sets["tool_catalog_id"] = rows.check_uuid(catalog_id, "catalog id")
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
            sets["base_config_override_json"] = Jsonb(dict(config))
            sets.update(rows.config_columns(config, self._mcp_rules))
        sets = {
            c: Jsonb(v) if c in _JSON_COLUMNS and v is not None and not isinstance(v, Jsonb) else v
            for c, v in sets.items()
            if c in present
        }
        if not sets:
            return
        if not is_uuid(instance_id):
            raise StoreError(f"instance {instance_id} does not exist (not a UUID)")
        assignments = ", ".join(f"{c} = %s" for c in sets)
        sql = f"UPDATE account_tool_instances SET {assignments} WHERE id = %s"
        # One statement: autocommitted. Unsynced, on a connection whose commits do not wait for the server's WAL
        # flush (Store.update_instance): a later synced commit flushes it too, the WAL being one log.
        with self._row_writer(f"updating instance {instance_id}", synced=synced) as conn:
            cursor = self._execute(conn, sql, [*sets.values(), instance_id])
            if cursor.rowcount == 0:
                raise StoreError(f"instance {instance_id} does not exist (deleted meanwhile?)")

    def merge_config(self, instance_id: str, values: Mapping[str, Any]) -> None:
        if not is_uuid(instance_id):
            raise StoreError(f"instance {instance_id} does not exist (not a UUID)")
        with self._guard(f"updating the config of instance {instance_id}") as conn:  # one statement: autocommitted
            cursor = self._execute(
                conn,
                "UPDATE account_tool_instances SET base_config_override_json = "
                "coalesce(base_config_override_json, '{}'::jsonb) || %s WHERE id = %s",
                [Jsonb(dict(values)), instance_id],
            )
            if cursor.rowcount == 0:
                raise StoreError(f"instance {instance_id} does not exist (deleted meanwhile?)")

    def record_heartbeats(self, instance_ids: Collection[str], at: datetime, *, min_interval: float = 60.0) -> int:
        """``last_heartbeat_from_dtma = at`` on the instances an agent has just listed, in one statement;
        rows beaten less than ``min_interval`` seconds before ``at`` are left as they are (a daemon cycling
        every few seconds does not rewrite every row each cycle). Returns how many rows were written."""
        if "last_heartbeat_from_dtma" not in self._columns.get("account_tool_instances", frozenset()):
            return 0
        ids = [i for i in instance_ids if is_uuid(i)]
        if not ids:
            return 0
        with self._guard("recording heartbeats") as conn:  # one statement: autocommitted
            cursor = self._execute(
                conn,
                "UPDATE account_tool_instances SET last_heartbeat_from_dtma = %s WHERE id = ANY(%s::uuid[]) "
                "AND (last_heartbeat_from_dtma IS NULL OR last_heartbeat_from_dtma < %s)",
                [at, ids, at - timedelta(seconds=min_interval)],
            )
        return max(cursor.rowcount, 0)

    def recorded_mcp(self, environment_id: str) -> dict[str, dict[str, Any]]:
        present = sorted(set(self._columns.get("account_tool_instances", frozenset())) & set(rows.MCP_COLUMNS))
        present = [c for c in present if c != "mcp_server_type"]
        if not present or not is_uuid(environment_id):
            return {}
        with self._guard("reading MCP columns") as conn:
            found = self._all(
                conn,
                f"SELECT id::text AS id, {', '.join(present)} FROM account_tool_instances "
                "WHERE account_tool_environment_id = %s",
                [environment_id],
            )
        return rows.mcp_columns_of(found)

    def recorded_health(self) -> dict[str, dict[str, Any]]:
        if "mcp_discovery_metadata" not in self._columns.get("account_tool_instances", frozenset()):
            return {}
        with self._guard("reading health") as conn:
            found = self._all(
                conn,
                "SELECT id::text AS id, mcp_discovery_metadata AS m FROM account_tool_instances "
                "WHERE mcp_discovery_metadata ? 'last_probe'",
            )
        probed = {str(r["id"]): rows.probed_metadata(r["m"]) for r in found}
        return {k: v for k, v in probed.items() if v is not None}

    def record_health(self, records: Sequence[HealthRecord]) -> None:
        present = self._columns.get("account_tool_instances", frozenset())
        records = [r for r in records if is_uuid(r.instance_id)]
        if not records or "mcp_discovery_metadata" not in present:
            return
        with self._guard("recording health") as conn, conn.transaction():
            for record in records:
                # jsonb || merges at the top level, as the SQLite and memory stores do.
                sets = ["mcp_discovery_metadata = COALESCE(mcp_discovery_metadata, '{}'::jsonb) || %s"]
                params: list[Any] = [Jsonb(dict(record.metadata))]
                if record.capabilities is not None and "mcp_server_capabilities" in present:
                    sets.append("mcp_server_capabilities = %s")
                    params.append(Jsonb(list(record.capabilities)))
                self._execute(
                    conn,
                    f"UPDATE account_tool_instances SET {', '.join(sets)} WHERE id = %s",
                    [*params, record.instance_id],
                )

    def delete_instance(self, instance_id: str) -> None:
        if not is_uuid(instance_id):
            return
        with self._guard(f"deleting instance {instance_id}") as conn:  # one statement: autocommitted
            self._execute(conn, "DELETE FROM account_tool_instances WHERE id = %s", [instance_id])

    def fingerprint(self, environment_id: str) -> str:
        if not is_uuid(environment_id):
            return rows.fingerprint(None, [])
        with self._guard(f"fingerprinting environment {environment_id}") as conn:
            envs = self._all(conn, self._env_select("WHERE id = %s"), [environment_id])
            instances = self._all(
                conn,
                "SELECT id::text AS id, tool_catalog_id::text AS tool_catalog_id, instance_name_on_toolbox, "
                "status_on_toolbox::text AS status_on_toolbox, base_config_override_json "
                "FROM account_tool_instances WHERE account_tool_environment_id = %s",
                [environment_id],
            )
        return rows.fingerprint(envs[0] if envs else None, instances)

    # -- suspensions (reconciler suspend / resume) ---------------------------------------------------------

    def _has_table(self, conn: Connection, table: str) -> bool:
        """Whether one of the reconciler's own tables exists; once seen, not asked again (tables the
        migrations add are never dropped)."""
        if table in self._seen_tables:
            return True
        if self._all(conn, "SELECT to_regclass(%s) IS NOT NULL AS ok", [table])[0]["ok"]:
            self._seen_tables.add(table)
            return True
        return False

    def suspensions(self) -> tuple[Suspension, ...]:
        """Asked every cycle; a database whose migrations predate the table (Agentopia's, not migrated with
        --force) has nothing suspended, and a migration run meanwhile is seen at the next cycle."""
        with self._guard("reading suspensions") as conn:
            if not self._has_table(conn, SUSPENSIONS_TABLE):
                return ()
            found = self._all(
                conn,
                "SELECT environment_id::text AS environment_id, reason, suspended_by, suspended_at "
                f"FROM {SUSPENSIONS_TABLE} ORDER BY environment_id",
            )
        return tuple(rows.suspension_from_row(r) for r in found)

    def suspend_environment(self, suspension: Suspension) -> None:
        rows.check_uuid(suspension.environment_id, "environment id")
        with self._guard(f"suspending environment {suspension.environment_id}") as conn, conn.transaction():
            if not self._has_table(conn, SUSPENSIONS_TABLE):
                force = " --force" if self.is_agentopia_database else ""
                raise SchemaMissingError(
                    f"PostgreSQL database at {self.masked_url} has no table {SUSPENSIONS_TABLE}; "
                    f"run `{migrate_command(self.masked_url)}{force}`"
                )
            self._execute(
                conn,
                f"INSERT INTO {SUSPENSIONS_TABLE} (environment_id, reason, suspended_by, suspended_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (environment_id) DO UPDATE SET reason = EXCLUDED.reason, "
                "suspended_by = EXCLUDED.suspended_by, suspended_at = EXCLUDED.suspended_at",
                [suspension.environment_id, suspension.reason, suspension.by, suspension.at],
            )

    def resume_environment(self, environment_id: str) -> Suspension | None:
        if not is_uuid(environment_id):
            return None
        with self._guard(f"resuming environment {environment_id}") as conn, conn.transaction():
            if not self._has_table(conn, SUSPENSIONS_TABLE):
                return None
            found = self._all(
                conn,
                f"DELETE FROM {SUSPENSIONS_TABLE} WHERE environment_id = %s RETURNING "
                "environment_id::text AS environment_id, reason, suspended_by, suspended_at",
                [environment_id],
            )
        return rows.suspension_from_row(found[0]) if found else None

    # -- replicas sharing the work (leases) ----------------------------------------------------------------

    @property
    def shares_work(self) -> bool:
        """Several daemons may run on PostgreSQL and split the environments by leases, once migration 0004
        has added the tables (until then they only exclude one another through the advisory locks)."""
        with self._guard("reading the schema") as conn:
            return self._has_table(conn, LEASES_TABLE) and self._has_table(conn, REPLICAS_TABLE)

    def beat(self, replica: str, now: datetime, *, forget_before: datetime) -> tuple[Heartbeat, ...]:
        with self._guard("recording the replica's heartbeat") as conn, conn.transaction():
            self._execute(
                conn,
                f"INSERT INTO {REPLICAS_TABLE} (replica_id, last_seen) VALUES (%s, %s) ON CONFLICT (replica_id) "
                "DO UPDATE SET last_seen = EXCLUDED.last_seen",
                [replica, now],
            )
            self._execute(conn, f"DELETE FROM {REPLICAS_TABLE} WHERE last_seen < %s", [forget_before])
            found = self._all(conn, f"SELECT replica_id, last_seen FROM {REPLICAS_TABLE} ORDER BY replica_id")
        return tuple(Heartbeat(str(r["replica_id"]), r["last_seen"]) for r in found)

    def leases(self) -> tuple[Lease, ...]:
        with self._guard("reading the leases") as conn:
            found = self._all(
                conn,
                f"SELECT environment_id::text AS environment_id, owner, expires_at FROM {LEASES_TABLE} "
                "ORDER BY environment_id",
            )
        return tuple(Lease(r["environment_id"], r["owner"], r["expires_at"]) for r in found)

    def claim_leases(
        self, replica: str, environment_ids: Collection[str], now: datetime, expires_at: datetime
    ) -> frozenset[str]:
        ids = [i for i in environment_ids if is_uuid(i)]
        if not ids:
            return frozenset()
        with self._guard("claiming leases") as conn, conn.transaction():
            # One statement: a lease is taken only when free, expired or already ours, so two replicas
            # claiming the same environment at once cannot both get it.
            found = self._all(
                conn,
                f"INSERT INTO {LEASES_TABLE} AS l (environment_id, owner, expires_at) "
                "SELECT e, %s, %s FROM unnest(%s::uuid[]) AS e "
                "ON CONFLICT (environment_id) DO UPDATE SET owner = EXCLUDED.owner, "
                "expires_at = EXCLUDED.expires_at "
                "WHERE l.owner = EXCLUDED.owner OR l.expires_at <= %s RETURNING l.environment_id::text AS id",
                [replica, expires_at, ids, now],
            )
        return frozenset(str(r["id"]) for r in found)

    def renew_leases(self, replica: str, now: datetime, expires_at: datetime) -> int:
        with self._guard("renewing leases") as conn, conn.transaction():
            cursor = self._execute(
                conn,
                f"UPDATE {LEASES_TABLE} SET expires_at = %s WHERE owner = %s AND expires_at > %s",
                [expires_at, replica, now],
            )
        return max(cursor.rowcount, 0)

    def release_leases(self, replica: str, environment_ids: Collection[str]) -> None:
        ids = [i for i in environment_ids if is_uuid(i)]
        if not ids:
            return
        with self._guard("releasing leases") as conn, conn.transaction():
            self._execute(
                conn,
                f"DELETE FROM {LEASES_TABLE} WHERE owner = %s AND environment_id = ANY(%s::uuid[])",
                [replica, ids],
            )

    def retire_replica(self, replica: str) -> None:
        with self._guard("retiring the replica") as conn, conn.transaction():
            if not (self._has_table(conn, LEASES_TABLE) and self._has_table(conn, REPLICAS_TABLE)):
                return
            self._execute(conn, f"DELETE FROM {LEASES_TABLE} WHERE owner = %s", [replica])
            self._execute(conn, f"DELETE FROM {REPLICAS_TABLE} WHERE replica_id = %s", [replica])

    # -- advisory locks ------------------------------------------------------------------------------------

    def _locks_connection(self) -> Connection:
        conn = self._lock_conn
        if conn is None or conn.closed or conn.broken:
            if self._held:
                self._lost = True
                self._held.clear()
            conn = self._lock_conn = self._new_lock_connection()
        return conn

    def _new_lock_connection(self) -> Connection:
        """The connection holding the advisory locks, named after this process so that another one can say
        who holds a lock (``lock_holder``)."""
        conn = self._connect()
        name = f"mcp-reconciler pid {os.getpid()} on host {socket.gethostname()}"[:63]
        conn.execute("SELECT set_config('application_name', %s, false)", [name])
        return conn

    def lock_holder(self, environment_id: str) -> str | None:
        """``pid N on host H`` of the reconciler holding the environment's advisory lock, when known."""
        key = rows.advisory_key(environment_id) & 0xFFFFFFFFFFFFFFFF
        try:
            with self._guard(f"asking who locks environment {environment_id}") as conn:
                found = self._all(
                    conn,
                    "SELECT a.application_name AS name, a.pid AS pid FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
                    [key >> 32, key & 0xFFFFFFFF],
                )
        except StoreError:
            return None
        if not found:
            return None
        name = str(found[0]["name"] or "")
        prefix = "mcp-reconciler "
        return (
            name.removeprefix(prefix) if name.startswith(prefix) else f"PostgreSQL backend pid {found[0]['pid']}"
        )

    def try_lock_environment(self, environment_id: str) -> bool:
        """A session advisory lock on the lock connection; False when another session holds it."""
        with self._lock:
            if environment_id in self._held and not self.lock_lost():
                return True
            key = rows.advisory_key(environment_id)
            conn = self._locks_connection()
            try:
                try:
                    got = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", [key]).fetchone()
                except psycopg.OperationalError:
                    if self._held:
                        raise
                    # A lock connection left over from before a database restart, holding nothing:
                    # open a fresh one and try once more.
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                    conn = self._lock_conn = self._new_lock_connection()
                    got = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", [key]).fetchone()
            except psycopg.Error as exc:
                raise StoreError(
                    f"PostgreSQL at {self.masked_url}: locking environment {environment_id}: "
                    f"{rows.scrub(str(exc), self.url)}",
                    retryable=True,
                ) from None
            if got is not None and got["ok"]:
                self._held.add(environment_id)
                self._lost = False
                return True
            return False

    def unlock_environment(self, environment_id: str) -> None:
        with self._lock:
            if environment_id not in self._held:
                return
            self._held.discard(environment_id)
            conn = self._lock_conn
            if conn is None or conn.closed or conn.broken:
                return
            # A dead connection has released the lock already; nothing else can go wrong that matters.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", [rows.advisory_key(environment_id)])

    def lock_lost(self) -> bool:
        """True once the lock connection is found dead while locks were held (they are gone with it), until
        this store takes a lock again. Checks the connection with a round trip when locks are held."""
        with self._lock:
            conn = self._lock_conn
            if self._held and conn is not None:
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error:
                    log.warning("lost the advisory-lock connection to %s", self.masked_url)
                    self._lost = True
                    self._held.clear()
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
            return self._lost

    def held_locks(self) -> frozenset[str]:
        """The environments whose lock this store holds now (checked against the connection)."""
        with self._lock:
            self.lock_lost()
            return frozenset(self._held)

    def acquire_daemon_lock(self) -> None:
        """Nothing to do: several daemons may share a PostgreSQL database (per-environment locks)."""

    def release_daemon_lock(self) -> None:
        """Nothing to do (see ``acquire_daemon_lock``)."""

    def ping(self) -> None:
        with self._guard("ping") as conn:
            self._execute(conn, "SELECT 1")

    def sync(self) -> None:
        # A commit waits for the WAL flush only when its transaction wrote WAL (taking a transaction id is not
        # enough). pg_logical_emit_message writes one WAL record and no row (a logical-decoding message, which
        # only consumers that ask for messages see), so this statement's commit waits, as every synced commit
        # does, for the WAL up to it: every earlier commit, unsynced ones included, is then on disk.
        with self._guard("syncing the database") as conn:
            self._execute(conn, "SELECT pg_logical_emit_message(true, 'mcp-reconciler', 'sync')")

    def close(self) -> None:
        self._drop_idle_writers()
        with self._lock:
            for conn in (self._lock_conn, self._conn):
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
            self._held.clear()
            self._lock_conn = self._conn = None

    # -- toolbox registration (reconciler db ...) ----------------------------------------------------------

    def _refuse_on_agentopia(self, what: str) -> None:
        if self.is_agentopia_database:
            raise StoreError(
                f"refusing to {what}: the PostgreSQL database at {self.masked_url} belongs to Agentopia "
                "(the reconciler did not create it); Agentopia provisions the toolboxes there"
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
        with self._guard(f"adding environment {name}") as conn, conn.transaction():
            if self._all(conn, "SELECT 1 FROM account_tool_environments WHERE name = %s", [name]):
                raise StoreError(f"environment {name} already exists")
            self._insert(
                conn,
                "account_tool_environments",
                values,
            )
        return EnvironmentRow(values["id"], name, address, status)

    def list_environments(self) -> list[EnvironmentRow]:
        with self._guard("listing environments") as conn:
            found = self._all(conn, self._env_select("ORDER BY name, id"))
        return [
            EnvironmentRow(r["id"], r["name"] or "", rows.host_address(r["address"]), r["status"]) for r in found
        ]

    def remove_environment(self, name: str) -> int:
        """Delete the environment named ``name`` and (by cascade) its instance rows; returns how many."""
        self._refuse_on_agentopia(f"remove environment {name}")
        with self._guard(f"removing environment {name}") as conn, conn.transaction():
            found = self._all(conn, "SELECT id FROM account_tool_environments WHERE name = %s", [name])
            if not found:
                raise StoreError(f"environment {name} does not exist")
            ids = [r["id"] for r in found]
            count = self._all(
                conn,
                "SELECT count(*) AS n FROM account_tool_instances WHERE account_tool_environment_id = ANY(%s)",
                [ids],
            )[0]["n"]
            self._execute(conn, "DELETE FROM account_tool_environments WHERE id = ANY(%s)", [ids])
        return int(count)
