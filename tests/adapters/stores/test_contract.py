"""The Store contract: the same test functions on SQLite and on PostgreSQL (see conftest.Backend)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.adapters.store_rows import GENERIC_CATALOG_ID
from reconciler.core.observed import INSTALLATION_STATUSES
from reconciler.errors import SchemaMissingError, StoreError
from reconciler.model.spec import MANAGED_BY, SecretRef
from reconciler.model.spec_hash import HASH_VERSION, SECRET_MARKER
from reconciler.ports import Store

from .conftest import Backend
from .helpers import config_for, new_instance, server


def _env(store: Any, name: str = "tb1", address: str = "127.0.0.2", **kw: Any) -> str:
    return str(store.add_environment(name, address, **kw).id)


def test_store_satisfies_the_protocol(store: Any) -> None:
    typed: Store = store  # mypy checks the shape; here the methods must exist and be callable
    for name in ("observe", "observe_environments", "observe_instances",
                 "ensure_catalog", "create_instance", "update_instance", "delete_instance",
                 "fingerprint", "try_lock_environment", "unlock_environment", "ping", "close"):  # fmt: skip
        assert callable(getattr(typed, name))
    typed.ping()


def test_migrate_creates_the_schema_and_twice_is_a_no_op(sql_backend: Backend) -> None:
    from reconciler.adapters.migrations import migrations
    from reconciler.app.stores import migrate_database

    backend = sql_backend
    every = tuple(m.version for m in migrations("sqlite"))
    assert every == tuple(m.version for m in migrations("postgres")) and every[:3] == (1, 2, 3)
    first = migrate_database(backend.url)
    assert first.applied == every and first.created
    second = migrate_database(backend.url)
    assert second.applied == () and second.current == every[-1] and not second.created
    assert sorted(backend.raw("SELECT version FROM schema_migrations")) == [(v,) for v in every]
    store = backend.open()
    assert store.created_by_reconciler and not store.is_agentopia_database


def test_the_generic_catalog_row_is_there(store: Any, backend: Backend) -> None:
    generic = backend.values("tool_catalog", GENERIC_CATALOG_ID, "name", "docker_image_url", "category")
    assert generic == ("MCP Server", "mcpserver/generic:latest", "mcp")


def test_opening_without_schema_names_the_command_to_run(sql_backend: Backend) -> None:
    backend = sql_backend
    if backend.kind == "sqlite":
        assert backend.path is not None
        backend.path.touch()
    with pytest.raises(SchemaMissingError) as info:
        backend.open()
    message = str(info.value)
    assert "reconciler db migrate --database" in message and "\n" not in message


def test_environments_are_added_listed_observed_and_removed(store: Any) -> None:
    env_id = _env(store, "tb1", "127.0.0.2")
    _env(store, "tb0", "10.1.2.3", status="inactive")
    listed = store.list_environments()
    assert [(e.name, e.address, e.status) for e in listed] == [
        ("tb0", "10.1.2.3", "inactive"), ("tb1", "127.0.0.2", "active"),
    ]  # fmt: skip
    recorded = {e.name: e for e in store.observe().environments}
    assert recorded["tb1"].id == env_id and recorded["tb1"].address == "127.0.0.2"
    assert recorded["tb1"].status == "active" and recorded["tb1"].dtma_token is None
    with pytest.raises(StoreError, match="tb1 already exists"):
        _env(store, "tb1", "127.0.0.3")
    with pytest.raises(StoreError, match="not an IP address"):
        _env(store, "tb9", "not-an-ip")
    with pytest.raises(StoreError, match="not in account_tool_environment_status_enum"):
        _env(store, "tb9", "127.0.0.9", status="up")
    assert store.remove_environment("tb1") == 0
    assert [e.name for e in store.observe().environments] == ["tb0"]
    with pytest.raises(StoreError, match="tb1 does not exist"):
        store.remove_environment("tb1")


def test_add_environment_keeps_a_given_id(store: Any) -> None:
    wanted = str(uuid.uuid4())
    assert _env(store, environment_id=wanted) == wanted
    with pytest.raises(StoreError, match="not a UUID"):
        _env(store, "tb2", environment_id="nope")


def test_ensure_catalog_makes_one_marked_row_per_image_and_reuses_it(backend: Backend, store: Any) -> None:
    owner = str(uuid.uuid4())
    env_id = _env(store, user_id=owner)
    a = store.ensure_catalog("ghcr.io/acme/a:1", environment_id=env_id)
    assert store.ensure_catalog("ghcr.io/acme/a:1") == a
    b = store.ensure_catalog("ghcr.io/acme/b:1")
    assert b != a and GENERIC_CATALOG_ID not in (a, b)
    again = backend.open()  # a fresh store has no cache: it must find the row in the table
    assert again.ensure_catalog("ghcr.io/acme/a:1") == a
    tool_name, name, package, docker, category, info, public, created_by = backend.values(
        "tool_catalog", a, "tool_name", "name", "package_identifier", "docker_image_url", "category",
        "version_info", "is_public", "created_by",
    )  # fmt: skip
    assert package == docker == "ghcr.io/acme/a:1" and category == "mcp"
    # Private, and owned by the user of the toolbox that first needed it (no toolbox: no owner).
    assert not public and str(created_by) == owner
    public_b, created_by_b = backend.values("tool_catalog", b, "is_public", "created_by")
    assert not public_b and created_by_b is None
    assert "ghcr.io/acme/a:1" in tool_name and "ghcr.io/acme/a:1" in name
    assert info["managed_by"] == MANAGED_BY
    assert backend.count("tool_catalog") == 3


def test_ensure_catalog_does_not_adopt_a_row_it_did_not_make(backend: Backend, store: Any) -> None:
    image = "mcpserver/generic:latest"  # the generic row's image, which Agentopia's instances use
    own = store.ensure_catalog(image)
    assert own != GENERIC_CATALOG_ID


def test_create_instance_records_a_pending_row_with_its_config(backend: Backend, store: Any) -> None:
    env_id = _env(store)
    spec = server("ctx", "ghcr.io/acme/ctx:1.0.0", host_port=31001)
    catalog = store.ensure_catalog(spec.image)
    iid = store.create_instance(new_instance(env_id, catalog, spec))
    [row] = store.observe().instances
    _, digest = config_for(spec)
    assert (row.id, row.environment_id, row.catalog_id, row.name) == (iid, env_id, catalog, "ctx")
    assert row.status == "pending_deploy" and row.managed and row.image == spec.image
    assert row.spec_hash == digest and row.hash_version == HASH_VERSION and not row.protect
    assert row.config["mcp"]["transport"] == "sse"
    server_type, path, transport, ports, version = backend.values(
        "account_tool_instances", iid, "mcp_server_type", "mcp_endpoint_path", "mcp_transport_type",
        "port_mapping_json", "version",
    )  # fmt: skip
    assert (server_type, path, transport) == ("mcp_server", "/sse", "sse")
    # The shape port_mapping_json's column comment documents, not Docker's port map.
    assert ports == {"container_port": 8080, "host_port": 31001}
    assert version == "1.0.0"  # the image tag


def test_create_instance_keeps_a_given_id(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    wanted = str(uuid.uuid4())
    assert (
        store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec, instance_id=wanted))
        == wanted
    )


def test_streamable_http_is_written_as_the_closest_accepted_transport_and_kept_true_in_the_config(
    backend: Backend, store: Any
) -> None:
    env_id = _env(store)
    spec = server(transport="streamable-http", endpoint="/mcp")
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    server_type, transport, meta = backend.values(
        "account_tool_instances", iid, "mcp_server_type", "mcp_transport_type", "mcp_discovery_metadata"
    )
    # chk_mcp_server_required_fields: an mcp_server names a transport the column accepts.
    assert (server_type, transport) == ("mcp_server", "sse")
    assert meta["transport"] == "streamable-http" and meta["column_transport"] == "sse"
    [row] = store.observe().instances
    assert row.config["mcp"]["transport"] == "streamable-http"


def test_a_port_without_host_port_and_no_port_at_all(backend: Backend, store: Any) -> None:
    env_id = _env(store)
    with_port = server("a", "ghcr.io/acme/a:2", port=8080)
    no_port = server("b", "ghcr.io/acme/b@sha256:" + "a" * 64, port=None)
    ids = [
        store.create_instance(new_instance(env_id, store.ensure_catalog(s.image), s)) for s in (with_port, no_port)
    ]
    got = {iid: backend.values("account_tool_instances", iid, "port_mapping_json", "version") for iid in ids}
    assert got[ids[0]] == ({"container_port": 8080, "host_port": None}, "2")
    assert got[ids[1]] == (None, "sha256:" + "a" * 64)


def test_an_image_change_moves_the_row_to_the_new_images_catalog_row(backend: Backend, store: Any) -> None:
    env_id = _env(store)
    old, new = server(image="ghcr.io/acme/ctx:1.0.0"), server(image="ghcr.io/acme/ctx:2.0.0")
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(old.image), old))
    catalog = store.ensure_catalog(new.image, environment_id=env_id)
    config, _ = config_for(new)
    store.update_instance(iid, config=config, catalog_id=catalog)
    [row] = store.observe().instances
    assert row.catalog_id == catalog and row.image == new.image
    assert backend.values("account_tool_instances", iid, "version") == ("2.0.0",)


def test_heartbeats_are_written_for_listed_instances_at_most_once_a_minute(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert store.record_heartbeats([iid, str(uuid.uuid4())], first) == 1
    assert store.record_heartbeats([iid], first + timedelta(seconds=30)) == 0  # too soon: not rewritten
    [row] = store.observe().instances
    assert row.last_heartbeat_from_dtma == first
    later = first + timedelta(seconds=61)
    assert store.record_heartbeats([iid], later) == 1
    assert store.observe().instances[0].last_heartbeat_from_dtma == later
    assert store.record_heartbeats([], later) == 0


def test_image_falls_back_to_the_catalog_for_rows_the_reconciler_did_not_make(
    backend: Backend, store: Any
) -> None:
    env_id = _env(store)
    backend.insert("account_tool_instances", [{
        "id": str(uuid.uuid4()), "account_tool_environment_id": env_id, "tool_catalog_id": GENERIC_CATALOG_ID,
        "instance_name_on_toolbox": "agentopia-made", "status_on_toolbox": "active",
        "base_config_override_json": {"Env": ["A=b"]},
    }])  # fmt: skip
    [row] = store.observe().instances
    assert row.image == "mcpserver/generic:latest" and not row.managed and row.status == "active"


def test_the_unique_pair_refuses_a_second_server_of_one_image(store: Any) -> None:
    assert store.unique_image_per_environment
    env_id = _env(store)
    catalog = store.ensure_catalog("ghcr.io/acme/same:1")
    store.create_instance(new_instance(env_id, catalog, server("one", "ghcr.io/acme/same:1")))
    with pytest.raises(StoreError, match="one server per image"):
        store.create_instance(new_instance(env_id, catalog, server("two", "ghcr.io/acme/same:1")))
    assert [i.name for i in store.observe().instances] == ["one"]


def test_create_instance_on_a_missing_environment_is_a_clear_error(store: Any) -> None:
    spec = server()
    with pytest.raises(StoreError, match="does not exist"):
        store.create_instance(new_instance(str(uuid.uuid4()), store.ensure_catalog(spec.image), spec))


def test_update_instance_sets_status_error_heartbeat_and_config(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    beat = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.update_instance(
        iid, status="error", error_message="pull failed for ghcr.io/acme/ctx:1.0.0", heartbeat=beat
    )
    [row] = store.observe().instances
    assert row.status == "error" and row.error_message == "pull failed for ghcr.io/acme/ctx:1.0.0"
    assert row.last_heartbeat_from_dtma == beat
    new_spec = server(endpoint="/v2/sse", protect=True)
    config, digest = config_for(new_spec)
    store.update_instance(iid, status="running", clear_error=True, config=config)
    [row] = store.observe().instances
    assert row.status == "running" and row.error_message is None
    assert row.spec_hash == digest and row.protect and row.config["mcp"]["endpoint"] == "/v2/sse"


def test_update_refuses_a_status_outside_the_enum_and_writes_nothing(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    for bad in ("exited", "error_deploying", "starting_on_toolbox", ""):
        with pytest.raises(StoreError, match="not in account_tool_installation_status_enum"):
            store.update_instance(iid, status=bad, error_message="should not be written")
    [row] = store.observe().instances
    assert row.status == "pending_deploy" and row.error_message is None


def test_update_of_a_missing_row_is_an_error(store: Any) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.update_instance(str(uuid.uuid4()), status="running")


def test_an_unsynced_status_write_is_the_same_write_seen_at_once_by_another_store(
    backend: Backend, store: Any
) -> None:
    """``synced=False`` (a status after an agent call) changes when the write reaches the disk, nothing else:
    the same row, committed before the call returns, and the same errors."""
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.update_instance(iid, status="error", error_message="boom")
    store.update_instance(iid, status="running", clear_error=True, synced=False)
    other = backend.open()
    [row] = other.observe().instances
    assert (row.status, row.error_message) == ("running", None)
    with pytest.raises(StoreError, match="not in account_tool_installation_status_enum"):
        store.update_instance(iid, status="exited", synced=False)
    with pytest.raises(StoreError, match="does not exist"):
        store.update_instance(str(uuid.uuid4()), status="running", synced=False)
    store.update_instance(iid, status="deploying")  # a synced write after the failed ones goes on
    assert [r.status for r in other.observe().instances] == ["deploying"]


def test_sync_changes_no_row(backend: Backend, store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.update_instance(iid, status="running", synced=False)
    before = backend.all_text() if backend.sql else None
    store.sync()
    store.sync()  # nothing written since: still fine
    assert [r.status for r in store.observe().instances] == ["running"]
    if backend.sql:
        assert backend.all_text() == before


def test_every_enum_status_is_written_and_read_back(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    seen = []
    for status in INSTALLATION_STATUSES:
        store.update_instance(iid, status=status)
        [row] = store.observe().instances
        seen.append(row.status)
    assert seen == list(INSTALLATION_STATUSES)


def test_values_outside_the_enum_written_by_others_are_read_as_they_are(backend: Backend, store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    if backend.kind == "postgres":  # some deployed databases hold the column as text
        backend.raw("ALTER TABLE account_tool_instances ALTER COLUMN status_on_toolbox TYPE text")
        store = backend.open()
    backend.set("account_tool_instances", iid, "status_on_toolbox", "exited")
    [row] = store.observe().instances
    assert row.status == "exited"


def test_delete_instance_removes_the_row_and_is_idempotent(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.delete_instance(iid)
    store.delete_instance(iid)
    assert store.observe().instances == ()


def test_removing_an_environment_cascades_to_its_instances(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    assert store.remove_environment("tb1") == 1
    assert store.observe().instances == ()


def test_fingerprint_changes_with_the_environment_rows_only(store: Any) -> None:
    a = _env(store, "a", "127.0.0.2")
    b = _env(store, "b", "127.0.0.3")
    spec = server()
    catalog = store.ensure_catalog(spec.image)
    iid = store.create_instance(new_instance(a, catalog, spec))
    before_a, before_b = store.fingerprint(a), store.fingerprint(b)
    assert before_a.startswith("sha256:") and before_a == store.fingerprint(a)
    store.update_instance(iid, heartbeat=datetime(2026, 1, 1, tzinfo=UTC))
    assert store.fingerprint(a) == before_a  # heartbeats move without changing any plan
    store.update_instance(iid, status="running")
    assert store.fingerprint(a) != before_a
    store.create_instance(new_instance(b, catalog, server("other")))
    assert store.fingerprint(b) != before_b
    missing = store.fingerprint(str(uuid.uuid4()))
    assert missing == store.fingerprint(str(uuid.uuid4())) and missing not in (before_a, before_b)


def test_fingerprints_agree_across_store_instances(backend: Backend, store: Any) -> None:
    a = _env(store)
    spec = server()
    store.create_instance(new_instance(a, store.ensure_catalog(spec.image), spec))
    assert backend.open().fingerprint(a) == store.fingerprint(a)


CANARY = "CANARY-5ec7e7-d0-not-store"


def test_a_secret_value_never_reaches_any_table(backend: Backend, store: Any) -> None:
    env_id = _env(store)
    spec = server(env=(("API_KEY", SecretRef("CANARY_VAR")), ("LOG_LEVEL", "info")))
    new = new_instance(env_id, store.ensure_catalog(spec.image), spec, secrets={"CANARY_VAR": CANARY})
    iid = store.create_instance(new)
    config, _ = config_for(spec, {"CANARY_VAR": CANARY})
    store.update_instance(iid, status="running", config=config, heartbeat=datetime.now(UTC))
    store.update_instance(iid, status="error", error_message="deploy of ctx failed: 500")
    dump = backend.all_text()
    assert SECRET_MARKER in dump and "LOG_LEVEL=info" in dump  # the config did reach the database
    assert CANARY not in dump
    assert CANARY not in repr(store.observe())


def test_observe_takes_two_queries_for_a_thousand_environments(backend: Backend, store: Any) -> None:
    catalogs = [store.ensure_catalog(f"ghcr.io/acme/s{i}:1") for i in range(10)]
    env_rows = [
        {"id": str(uuid.uuid4()), "user_id": "00000000-0000-0000-0000-000000000000", "name": f"tb{i:04d}",
         "public_ip_address": f"10.0.{i // 250}.{i % 250 + 1}", "status": "active", "region_slug": "r",
         "size_slug": "s", "image_slug": "i"}
        for i in range(1000)
    ]  # fmt: skip
    backend.insert("account_tool_environments", env_rows)
    config = {"managed_by": MANAGED_BY, "spec_hash": "sha256:x", "spec_hash_version": 1}
    instance_rows = [
        {"id": str(uuid.uuid4()), "account_tool_environment_id": env["id"], "tool_catalog_id": catalogs[j],
         "instance_name_on_toolbox": f"s{j}", "status_on_toolbox": "running", "base_config_override_json": config}
        for env in env_rows for j in range(10)
    ]  # fmt: skip
    backend.insert("account_tool_instances", instance_rows)
    before = store.query_count
    started = time.perf_counter()
    recorded = store.observe()
    elapsed = time.perf_counter() - started
    assert store.query_count - before == 2
    assert len(recorded.environments) == 1000 and len(recorded.instances) == 10_000
    assert all(i.managed and i.image and i.image.startswith("ghcr.io/acme/s") for i in recorded.instances)
    before = store.query_count
    assert store.observe_environments() == recorded.environments  # the halves of observe(), one query each
    assert store.query_count - before == 1
    assert store.observe_instances() == recorded.instances
    assert store.query_count - before == 2
    print(f"\n{backend.kind}: observe of 1,000 environments x 10 instances took {elapsed * 1000:.0f} ms")


def test_merge_config_sets_keys_of_the_stored_config_and_nothing_else(store: Any) -> None:
    env_id = _env(store)
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    [before] = store.observe().instances
    store.merge_config(iid, {"protect": True})
    [after] = store.observe().instances
    assert after.protect and not before.protect
    assert after.spec_hash == before.spec_hash and after.status == before.status
    assert {k: v for k, v in after.config.items() if k != "protect"} == {
        k: v for k, v in before.config.items() if k != "protect"
    }
    store.merge_config(iid, {"protect": False})
    assert not store.observe().instances[0].protect
    with pytest.raises(StoreError, match="does not exist"):
        store.merge_config(str(uuid.uuid4()), {"protect": True})


def test_migration_0002_brings_rows_written_before_it_to_the_new_shapes(sql_backend: Backend) -> None:
    from reconciler.adapters.migrations import migrations
    from reconciler.app.stores import migrate_database

    backend = sql_backend
    first = migrations(backend.kind)[0]
    if backend.kind == "sqlite":
        import sqlite3

        assert backend.path is not None
        with sqlite3.connect(backend.path) as conn:
            conn.executescript(first.sql)
    else:
        backend.raw(first.sql)
    backend.raw("INSERT INTO schema_migrations (version, name) VALUES (1, ?)", [first.name])
    backend.raw("INSERT INTO mcp_reconciler_meta (key, value) VALUES ('created_by', 'mcp-reconciler')")
    env_id, catalog, iid = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    backend.insert("account_tool_environments", [{
        "id": env_id, "user_id": str(uuid.uuid4()), "name": "tb1", "public_ip_address": "127.0.0.2",
        "status": "active", "region_slug": "r", "size_slug": "s", "image_slug": "i",
    }])  # fmt: skip
    backend.insert("tool_catalog", [{
        "id": catalog, "tool_name": "mcp-reconciler: web:1", "name": "mcp-reconciler: web:1",
        "package_identifier": "ghcr.io/acme/web:1", "docker_image_url": "ghcr.io/acme/web:1",
        "version_info": {"managed_by": MANAGED_BY, "image": "ghcr.io/acme/web:1"},
    }])  # fmt: skip
    config = {"managed_by": MANAGED_BY, "image": "ghcr.io/acme/web:1", "port": 8080,
              "HostConfig": {"PortBindings": {"8080/tcp": [{"HostPort": "31001"}]}},
              "mcp": {"server_type": "mcp_server", "transport": "streamable-http"}}  # fmt: skip
    backend.insert("account_tool_instances", [{
        "id": iid, "account_tool_environment_id": env_id, "tool_catalog_id": catalog,
        "instance_name_on_toolbox": "web", "status_on_toolbox": "running", "base_config_override_json": config,
        "port_mapping_json": config["HostConfig"]["PortBindings"], "mcp_server_type": "mcp_server",
        "mcp_transport_type": None,
    }])  # fmt: skip
    assert migrate_database(backend.url).applied[:2] == (2, 3)
    assert backend.values("tool_catalog", catalog, "is_public") == (False,)
    assert backend.values("tool_catalog", GENERIC_CATALOG_ID, "is_public") == (True,)  # Agentopia's row
    assert backend.values("account_tool_instances", iid, "mcp_transport_type", "port_mapping_json") == (
        "sse", {"container_port": 8080, "host_port": 31001},
    )  # fmt: skip


def test_health_is_merged_over_the_discovery_metadata_and_read_back_for_status(
    backend: Backend, store: Any
) -> None:
    from reconciler.ports import HealthRecord

    env_id = _env(store)
    spec = server(transport="streamable-http", endpoint="/mcp", capabilities=("tools", "prompts"))
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    other = store.create_instance(
        new_instance(env_id, store.ensure_catalog("ghcr.io/acme/b:1"), server("b", "ghcr.io/acme/b:1"))
    )
    assert store.recorded_health() == {}
    probe = {"health": "healthy", "tools": ["fetch", "search"], "protocol_version": "2025-06-18",
             "last_probe": {"at": "2026-11-27T12:00:00+00:00", "ok": True, "error": None}}  # fmt: skip
    store.record_health([HealthRecord(iid, probe, ["tools"]), HealthRecord(str(uuid.uuid4()), probe, None)])
    meta, capabilities = backend.values(
        "account_tool_instances", iid, "mcp_discovery_metadata", "mcp_server_capabilities"
    )
    assert meta["transport"] == "streamable-http"  # the reconciler's own keys stay
    assert meta["tools"] == ["fetch", "search"] and meta["last_probe"]["ok"] is True
    assert capabilities == ["tools"]  # what the server announced, not what the manifest declared
    failed = {
        "health": "unhealthy",
        "last_probe": {"at": "2026-11-27T12:01:00+00:00", "ok": False, "error": "refused"},
    }
    store.record_health([HealthRecord(iid, failed)])
    meta, capabilities = backend.values(
        "account_tool_instances", iid, "mcp_discovery_metadata", "mcp_server_capabilities"
    )
    assert (meta["health"], meta["tools"], capabilities) == ("unhealthy", ["fetch", "search"], ["tools"])
    read = store.recorded_health()
    assert set(read) == {iid} and other not in read
    assert read[iid]["last_probe"]["error"] == "refused"


def test_a_suspension_is_stored_replaced_seen_by_another_store_and_removed(backend: Backend, store: Any) -> None:
    from reconciler.core.suspension import Suspension

    tb1, tb2 = _env(store, "tb1"), _env(store, "tb2", "127.0.0.3")
    assert store.suspensions() == ()
    at = datetime(2026, 11, 27, 13, 5, tzinfo=UTC)
    first = Suspension(tb1, "incident 42: manual fix", "alice@ops-1", at)
    store.suspend_environment(first)
    other = backend.open()  # another replica on the same database
    assert other.suspensions() == (first,)
    again = Suspension(tb1, "incident 42, still", "bob@ops-2", at + timedelta(minutes=5))
    other.suspend_environment(again)  # suspending a suspended environment replaces who, when and why
    assert store.suspensions() == (again,)
    assert store.resume_environment(tb2) is None  # not suspended: nothing to remove
    assert other.resume_environment(tb1) == again
    assert store.suspensions() == () and store.resume_environment(tb1) is None


def test_a_suspension_goes_with_its_environment(store: Any) -> None:
    from reconciler.core.suspension import Suspension

    tb1 = _env(store, "tb1")
    store.suspend_environment(Suspension(tb1, "why", "me@here", datetime(2026, 1, 1, tzinfo=UTC)))
    store.remove_environment("tb1")
    assert store.suspensions() == ()
    with pytest.raises(StoreError):  # an environment that does not exist cannot be suspended
        store.suspend_environment(Suspension(tb1, "why", "me@here", datetime(2026, 1, 1, tzinfo=UTC)))


def test_leases_are_claimed_when_free_expired_or_own_and_never_from_a_valid_owner(
    backend: Backend, store: Any
) -> None:
    from reconciler.core.leases import Heartbeat

    tb1, tb2 = _env(store, "tb1"), _env(store, "tb2", "127.0.0.3")
    t0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    other = backend.open()  # another replica on the same database
    assert store.beat("a", t0, forget_before=t0 - timedelta(hours=1)) == (Heartbeat("a", t0),)
    beats = other.beat("b", t0 + timedelta(seconds=1), forget_before=t0 - timedelta(hours=1))
    assert [b.replica for b in beats] == ["a", "b"]
    until = t0 + timedelta(seconds=60)
    assert store.claim_leases("a", [tb1, tb2], t0, until) == {tb1, tb2}
    assert other.claim_leases("b", [tb1, tb2], t0 + timedelta(seconds=30), until) == frozenset()  # a's, valid
    assert store.claim_leases("a", [tb1], t0 + timedelta(seconds=30), until + timedelta(seconds=30)) == {tb1}
    # Renewing between cycles extends a's valid leases only (tb2's is a's too, valid until t0+60).
    assert store.renew_leases("a", t0 + timedelta(seconds=61), until + timedelta(seconds=30)) == 1
    assert store.renew_leases("b", t0 + timedelta(seconds=30), until + timedelta(seconds=300)) == 0
    other.release_leases("b", [tb1])  # not b's: nothing happens
    store.release_leases("a", [tb2])
    assert other.claim_leases("b", [tb1, tb2], t0 + timedelta(seconds=30), until) == {tb2}
    # a's lease of tb1 was renewed to t0+90: expired at t0+90, b takes it then.
    assert other.claim_leases("b", [tb1], t0 + timedelta(seconds=89), until) == frozenset()
    later = t0 + timedelta(seconds=90)
    assert other.claim_leases("b", [tb1], later, later + timedelta(seconds=60)) == {tb1}
    assert {(lease.environment_id, lease.owner) for lease in store.leases()} == {(tb1, "b"), (tb2, "b")}
    [lease] = [x for x in store.leases() if x.environment_id == tb1]
    assert lease.expires_at == later + timedelta(seconds=60)
    other.retire_replica("b")  # a clean stop: its heartbeat and leases go at once
    assert store.leases() == () and [b.replica for b in store.beat("a", later, forget_before=t0)] == ["a"]
    # A heartbeat older than forget_before is forgotten (restarted replicas come back under new ids).
    other.beat("c", t0, forget_before=t0 - timedelta(hours=1))
    assert store.beat("a", later, forget_before=t0 + timedelta(seconds=1)) == (Heartbeat("a", later),)
    assert store.shares_work is (backend.kind == "postgres")


def test_the_mcp_columns_of_one_environment_are_read_for_import(store: Any) -> None:
    tb1, tb2 = _env(store, "tb1"), _env(store, "tb2", "127.0.0.3")
    spec = server(transport="websocket", endpoint="/ws", capabilities=("tools", "prompts"))
    iid = store.create_instance(new_instance(tb1, store.ensure_catalog(spec.image), spec))
    other = server("b", "ghcr.io/acme/b:1")
    store.create_instance(new_instance(tb2, store.ensure_catalog(other.image), other))
    found = store.recorded_mcp(tb1)
    assert set(found) == {iid}
    assert found[iid]["mcp_transport_type"] == "websocket" and found[iid]["mcp_endpoint_path"] == "/ws"
    assert found[iid]["mcp_server_capabilities"] == ["tools", "prompts"]
    assert store.recorded_mcp(str(uuid.uuid4())) == {}
