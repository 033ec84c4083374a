"""PostgreSQL only: the schemas deployed Agentopia databases really have, Agentopia's own database, the
advisory locks and connection failures."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from reconciler.adapters.postgres_store import PostgresStore
from reconciler.adapters.store_rows import MCP_COLUMNS
from reconciler.app.stores import migrate_database
from reconciler.core.suspension import Suspension
from reconciler.errors import SchemaMissingError, StoreError

from .conftest import Backend
from .helpers import new_instance, server

pytestmark = pytest.mark.postgres

VARIANTS = {
    "all": (),
    "two": ("mcp_transport_type", "mcp_server_capabilities", "mcp_discovery_metadata"),
    "none": MCP_COLUMNS,
}


def _raw_env(backend: Backend) -> str:
    env_id = str(uuid.uuid4())
    backend.raw(
        "INSERT INTO account_tool_environments (id, user_id, name, public_ip_address, status, region_slug, "
        "size_slug, image_slug) VALUES (?, ?, 'prod-1', '10.9.8.7', 'active', 'nyc3', 's-1vcpu', 'ubuntu')",
        [env_id, str(uuid.uuid4())],
    )
    return env_id


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_mcp_columns_are_written_where_they_exist(pg_backend: Backend, variant: str) -> None:
    migrate_database(pg_backend.url)
    for column in VARIANTS[variant]:
        pg_backend.raw(f"ALTER TABLE account_tool_instances DROP COLUMN {column}")
    store = pg_backend.open()
    expected = {c for c in MCP_COLUMNS if c not in VARIANTS[variant]}
    assert store.mcp_columns == expected
    env_id = str(store.add_environment("tb1", "127.0.0.2").id)
    spec = server(transport="sse", endpoint="/sse", capabilities=("tools", "prompts"))
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.update_instance(iid, status="running", config=dict(store.observe().instances[0].config))
    columns = ", ".join(["base_config_override_json", *sorted(expected)])
    [row] = pg_backend.raw(f"SELECT {columns} FROM account_tool_instances WHERE id = ?", [iid])
    values = dict(zip(["base_config_override_json", *sorted(expected)], row, strict=True))
    # The MCP fields live in the config whatever the columns.
    assert values["base_config_override_json"]["mcp"] == {
        "server_type": "mcp_server", "transport": "sse", "endpoint": "/sse", "capabilities": ["tools", "prompts"],
    }  # fmt: skip
    if "mcp_server_type" in expected:
        assert values["mcp_server_type"] == "mcp_server" and values["mcp_endpoint_path"] == "/sse"
    if "mcp_transport_type" in expected:
        assert values["mcp_transport_type"] == "sse"
        assert values["mcp_server_capabilities"] == ["tools", "prompts"]
    [recorded] = store.observe().instances
    assert recorded.status == "running" and recorded.managed


@pytest.mark.parametrize("unique", [True, False])
def test_the_unique_pair_is_detected_and_honoured(pg_backend: Backend, unique: bool) -> None:
    migrate_database(pg_backend.url)
    if not unique:
        pg_backend.raw("ALTER TABLE account_tool_instances DROP CONSTRAINT account_tool_instances_env_catalog_key")
    store = pg_backend.open()
    assert store.unique_image_per_environment is unique
    env_id = str(store.add_environment("tb1", "127.0.0.2").id)
    catalog = store.ensure_catalog("ghcr.io/acme/same:1")
    store.create_instance(new_instance(env_id, catalog, server("one", "ghcr.io/acme/same:1")))
    second = new_instance(env_id, catalog, server("two", "ghcr.io/acme/same:1"))
    if unique:
        with pytest.raises(StoreError, match="allows one server per image"):
            store.create_instance(second)
    else:
        store.create_instance(second)
    assert len(store.observe().instances) == (1 if unique else 2)


def _make_agentopia(backend: Backend) -> None:
    """Agentopia's production database: the tables, without the reconciler's marker or migrations table."""
    migrate_database(backend.url)
    backend.raw("DROP TABLE mcp_reconciler_meta")
    backend.raw("DROP TABLE schema_migrations")
    for table in ("mcp_reconciler_suspensions", "mcp_reconciler_leases", "mcp_reconciler_replicas"):
        backend.raw(f"DROP TABLE {table}")


def test_an_agentopia_database_is_read_and_written_but_never_migrated_or_registered(pg_backend: Backend) -> None:
    _make_agentopia(pg_backend)
    env_id = _raw_env(pg_backend)
    store = pg_backend.open()
    assert store.is_agentopia_database and not store.created_by_reconciler
    with pytest.raises(StoreError, match="refusing to migrate") as info:
        migrate_database(pg_backend.url)
    assert "--force" in str(info.value)
    with pytest.raises(StoreError, match="belongs to Agentopia"):
        store.add_environment("tb1", "127.0.0.2")
    with pytest.raises(StoreError, match="belongs to Agentopia"):
        store.remove_environment("prod-1")
    # The reconciler's real job there still works: observe and instance rows.
    [env] = store.observe().environments
    assert env.id == env_id and env.address == "10.9.8.7"
    spec = server()
    store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    assert len(store.observe().instances) == 1
    # Suspensions live in a table of the reconciler's own: until it is added, nothing is suspended there
    # and suspending names the command (with --force, this being Agentopia's database).
    assert store.suspensions() == () and not store.shares_work  # replicas fall back to the advisory locks
    held = Suspension(env_id, "incident", "alice@ops", datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(SchemaMissingError, match=r"db migrate .* --force"):
        store.suspend_environment(held)
    forced = migrate_database(pg_backend.url, force=True)
    assert forced.applied[:3] == (1, 2, 3) and not forced.created
    assert pg_backend.open().is_agentopia_database  # forcing the schema does not make it ours
    store.suspend_environment(held)  # the same open store sees the table the migration added
    assert store.suspensions() == (held,)


def test_an_empty_database_is_migrated_and_becomes_the_reconcilers(pg_backend: Backend) -> None:
    store = pg_backend.open(create=True)
    assert store.created_by_reconciler and not store.is_agentopia_database
    assert pg_backend.raw("SELECT value FROM mcp_reconciler_meta WHERE key = 'created_by'") == [
        ("mcp-reconciler",)
    ]


def test_advisory_lock_held_by_one_store_is_refused_to_another_until_released(pg_backend: Backend) -> None:
    one = pg_backend.open(create=True)
    two = pg_backend.open()
    env = str(uuid.uuid4())
    assert one.try_lock_environment(env)
    assert one.try_lock_environment(env)  # re-entrant within the holder
    assert not two.try_lock_environment(env)
    assert two.try_lock_environment(str(uuid.uuid4()))  # other environments are independent
    one.unlock_environment(env)
    assert two.try_lock_environment(env)
    assert not one.try_lock_environment(env)
    assert one.held_locks() == frozenset() and env in two.held_locks()


def test_a_dropped_lock_connection_is_detected_and_frees_the_lock(pg_backend: Backend, pg_admin_url: str) -> None:
    one = pg_backend.open(create=True)
    two = pg_backend.open()
    env = str(uuid.uuid4())
    assert one.try_lock_environment(env) and not one.lock_lost()
    pid = one._lock_conn.info.backend_pid
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone() == (True,)
    assert one.lock_lost()
    assert one.held_locks() == frozenset()
    assert two.try_lock_environment(env)
    assert not one.try_lock_environment(env)  # reconnects, and the lock is now the other's
    assert one.lock_lost()  # still flagged until this store takes a lock again
    two.unlock_environment(env)
    assert one.try_lock_environment(env) and not one.lock_lost()
    assert one.held_locks() == frozenset({env})


def test_a_dropped_main_connection_is_one_retryable_error_then_reconnects(
    pg_backend: Backend, pg_admin_url: str
) -> None:
    store = pg_backend.open(create=True)
    store.add_environment("tb1", "127.0.0.2")
    pid = store._conn.info.backend_pid
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    with pytest.raises(StoreError) as info:
        store.observe()
    assert info.value.retryable and "\n" not in str(info.value)
    assert [e.name for e in store.observe().environments] == ["tb1"]


def test_a_database_that_is_down_is_one_line_naming_the_url_without_its_password() -> None:
    url = "postgresql://reconciler:hunter2-pw@127.0.0.1:1/agentopia"
    with pytest.raises(StoreError) as info:
        PostgresStore(url, connect_timeout=2)
    message = str(info.value)
    assert "hunter2-pw" not in message and "reconciler:***@127.0.0.1:1/agentopia" in message
    assert "\n" not in message and info.value.retryable
    assert info.value.__cause__ is None  # the driver's exception, which may quote the DSN, is not chained


def test_a_password_given_as_a_parameter_is_masked_too() -> None:
    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://127.0.0.1:1/x?password=hunter3-pw&user=u", connect_timeout=1)
    assert "hunter3-pw" not in str(info.value) and "password=***" in str(info.value)


def test_catalog_rows_race_to_one_row(pg_backend: Backend) -> None:
    one = pg_backend.open(create=True)
    two = pg_backend.open()
    assert one.ensure_catalog("ghcr.io/acme/x:1") == two.ensure_catalog("ghcr.io/acme/x:1")
    rows: list[Any] = pg_backend.raw(
        "SELECT version_info FROM tool_catalog WHERE docker_image_url = 'ghcr.io/acme/x:1'"
    )
    assert len(rows) == 1 and json.loads(json.dumps(rows[0][0]))["managed_by"] == "mcp-reconciler"


def test_an_unsynced_status_leaves_the_connection_synced_even_when_it_fails(pg_backend: Backend) -> None:
    """``synced=False`` lowers ``synchronous_commit`` for its own transaction only (SET LOCAL): every other
    write on the connection, the row a deploy names among them, still waits for the server's WAL flush."""
    store: PostgresStore = pg_backend.open(create=True)
    env_id = str(store.add_environment("tb1", "127.0.0.2").id)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))

    def level() -> str:
        with store._guard("reading the setting") as conn:
            return str(store._all(conn, "SHOW synchronous_commit")[0]["synchronous_commit"])

    before = level()
    assert before != "off"
    store.update_instance(iid, status="running", synced=False)
    assert level() == before
    with pytest.raises(StoreError, match="does not exist"):
        store.update_instance(str(uuid.uuid4()), status="running", synced=False)
    pg_backend.raw(
        "ALTER TABLE account_tool_instances ADD CONSTRAINT test_refuse "
        "CHECK (instance_error_message IS DISTINCT FROM 'refused')"
    )
    with pytest.raises(StoreError, match="test_refuse"):  # refused by the server, inside the transaction
        store.update_instance(iid, status="error", error_message="refused", synced=False)
    assert level() == before
    assert [r.status for r in store.observe().instances] == ["running"]


def test_sync_flushes_the_wal_past_an_unsynced_status(pg_backend: Backend) -> None:
    store: PostgresStore = pg_backend.open(create=True)
    env_id = str(store.add_environment("tb1", "127.0.0.2").id)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.update_instance(iid, status="running", synced=False)
    [(written,)] = pg_backend.raw("SELECT pg_current_wal_insert_lsn()::text")
    store.sync()
    [(flushed,)] = pg_backend.raw("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", [written])
    assert flushed is True


def test_row_writes_from_many_threads_share_a_few_connections_and_survive_a_lost_one(pg_backend: Backend) -> None:
    """Instance-row writes go through up to ROW_WRITERS connections of their own (several commits flushed
    together); every write lands, and a writer connection the server dropped is replaced at the next write."""
    from concurrent.futures import ThreadPoolExecutor

    from reconciler.adapters.postgres_store import ROW_WRITERS

    store: PostgresStore = pg_backend.open(create=True)
    env_id = str(store.add_environment("tb1", "127.0.0.2").id)
    specs = [server(f"s{i:02d}", image=f"ghcr.io/acme/s{i:02d}:1") for i in range(24)]

    def create(i: int) -> str:
        spec = specs[i]
        iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
        store.update_instance(iid, status="deploying", synced=False)
        store.update_instance(iid, status="running", synced=i % 2 == 0)
        return iid

    with ThreadPoolExecutor(max_workers=12) as pool:
        ids = list(pool.map(create, range(len(specs))))
    assert len(set(ids)) == 24
    assert {r.status for r in store.observe().instances} == {"running"}
    assert 1 <= store._writers_open <= ROW_WRITERS and len(store._writers) == store._writers_open

    pg_backend.raw(  # the server drops every writer connection (a restart, an idle timeout)
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND application_name = 'mcp-reconciler'"
    )
    for _ in range(ROW_WRITERS + 1):  # a write on a dropped connection fails once; the next one reconnects
        with contextlib.suppress(StoreError):
            store.update_instance(ids[0], status="stopped", synced=False)
    store.update_instance(ids[1], status="stopped")
    with contextlib.suppress(StoreError):  # the main connection was dropped too: it reconnects the same way
        store.ping()
    assert [r.status for r in store.observe().instances if r.id in ids[:2]] == ["stopped", "stopped"]
    store.close()
    assert store._writers == [] and store._writers_open == 0
