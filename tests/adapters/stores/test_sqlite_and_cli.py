"""SQLite specifics (the file, the daemon lock) and the `reconciler db` commands on both backends."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.app.stores import open_store, parse_database_url
from reconciler.cli import main
from reconciler.errors import ConfigError, LockHeldError, SchemaMissingError

from .conftest import Backend


def test_the_default_database_is_created_with_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    assert main(["db", "migrate"]) == 0
    assert (tmp_path / ".reconciler" / "state.db").is_file()
    assert "applied migration(s) 0001, 0002" in capsys.readouterr().out


def test_a_missing_sqlite_file_is_not_created_by_readers(tmp_path: Path) -> None:
    with pytest.raises(SchemaMissingError, match="reconciler db migrate --database sqlite:///"):
        open_store(f"sqlite:///{tmp_path / 'nope' / 'state.db'}")
    assert not (tmp_path / "nope").exists()


def test_a_second_daemon_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteStore(path, create=True)
    second = SqliteStore(path)
    try:
        first.acquire_daemon_lock()
        with pytest.raises(LockHeldError) as info:
            second.acquire_daemon_lock()
        assert f"{path}.lock" in str(info.value)
        # The per-environment lock (the daemon's and apply's) is a lock file of its own: one holder at a time.
        assert second.try_lock_environment("any") and not first.try_lock_environment("any")
        assert second.lock_holder("any") == f"pid {os.getpid()} on host {socket.gethostname()}"
        second.unlock_environment("any")
        assert first.try_lock_environment("any")
        first.close()
        second.acquire_daemon_lock()  # released with the first store
    finally:
        second.close()


def test_sqlite_check_constraints_hold_the_enum(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path, create=True).close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO account_tool_environments (id, user_id, status, region_slug, size_slug, image_slug) "
            "VALUES ('x', 'u', 'up', 'r', 's', 'i')"
        )
    conn.close()


def test_updated_at_moves_on_update(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, create=True)
    env = store.add_environment("tb1", "127.0.0.2")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE account_tool_environments SET updated_at = '2000-01-01T00:00:00Z'")
    conn.execute("UPDATE account_tool_environments SET status = 'inactive' WHERE id = ?", [env.id])
    conn.commit()
    [(updated,)] = conn.execute("SELECT updated_at FROM account_tool_environments").fetchall()
    conn.close()
    store.close()
    assert updated > "2000-01-01T00:00:00Z"


def test_database_urls_are_parsed_and_unknown_schemes_refused_without_passwords() -> None:
    assert parse_database_url("sqlite:///.reconciler/state.db").target == ".reconciler/state.db"
    assert parse_database_url("sqlite:////var/lib/r/state.db").target == "/var/lib/r/state.db"
    assert parse_database_url("postgresql://u@h/db").kind == "postgres"
    with pytest.raises(ConfigError) as info:
        parse_database_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)


def test_db_commands_register_list_and_remove(
    sql_backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = sql_backend
    assert main(["db", "migrate", "--database", backend.url]) == 0
    assert main(["db", "migrate", "--database", backend.url]) == 0
    assert "up to date" in capsys.readouterr().out
    monkeypatch.setenv("RECONCILER_DATABASE_URL", backend.url)  # the fallback when --database is absent
    assert main(["db", "add-environment", "tb1", "--address", "127.0.0.5"]) == 0
    assert main(["db", "add-environment", "tb0", "--address", "127.0.0.6", "--status", "inactive",
                 "--id", "6f1c1b8e-52a1-4b56-9e1c-2a8a3a0b4c5d", "--database", backend.url]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["db", "environments", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["name"], e["address"], e["status"]) for e in listed] == [
        ("tb0", "127.0.0.6", "inactive"), ("tb1", "127.0.0.5", "active"),
    ]  # fmt: skip
    assert listed[0]["id"] == "6f1c1b8e-52a1-4b56-9e1c-2a8a3a0b4c5d"
    assert main(["db", "environments"]) == 0
    text = capsys.readouterr().out
    assert "tb1" in text and "127.0.0.5" in text
    assert main(["db", "remove-environment", "tb1"]) == 0
    assert main(["db", "remove-environment", "tb1"]) == 1
    assert "tb1 does not exist" in capsys.readouterr().err
    assert main(["db", "add-environment", "tb9", "--address", "127.0.0.9", "--id", "nope"]) == 1


def test_db_commands_on_a_database_without_schema_say_what_to_run(
    sql_backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = sql_backend
    if backend.path is not None:
        backend.path.touch()
    assert main(["db", "environments", "--database", backend.url]) == 1
    err = capsys.readouterr().err
    assert "reconciler db migrate --database" in err and err.count("\n") == 1


@pytest.mark.postgres
def test_db_commands_refuse_to_touch_agentopias_toolboxes(
    pg_backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "migrate", "--database", pg_backend.url]) == 0
    pg_backend.raw("DROP TABLE mcp_reconciler_meta")
    pg_backend.raw("DROP TABLE schema_migrations")
    capsys.readouterr()
    assert main(["db", "add-environment", "tb1", "--address", "127.0.0.2", "--database", pg_backend.url]) == 1
    assert "belongs to Agentopia" in capsys.readouterr().err
    assert main(["db", "migrate", "--database", pg_backend.url]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["db", "migrate", "--force", "--database", pg_backend.url]) == 0
    assert main(["db", "environments", "--database", pg_backend.url]) == 0  # reading is fine


def test_instance_rows_read_as_tuples_are_decoded_once_and_again_when_they_change() -> None:
    from reconciler.adapters import store_rows

    row = {
        "id": "i-tuple-1",
        "account_tool_environment_id": "env-1",
        "tool_catalog_id": "cat-1",
        "instance_name_on_toolbox": "ctx",
        "status_on_toolbox": "active",
        "base_config_override_json": json.dumps({"Env": ["A=1"]}),
        "instance_error_message": None,
        "last_heartbeat_from_dtma": "2026-01-02T03:04:05+00:00",
        "catalog_image": "ghcr.io/x/ctx:1",
    }
    decoder = store_rows.InstanceDecoder()
    values = tuple(row[c] for c in store_rows.INSTANCE_ROW_COLUMNS)
    (first,) = decoder.decode([values])
    assert first == store_rows.instance_from_row(row)  # the same value as the dict path
    (again,) = decoder.decode([tuple(values)])
    assert again is first  # unchanged row: not decoded again
    changed = dict(row, base_config_override_json=json.dumps({"Env": ["A=2"]}))
    (new,) = decoder.decode([tuple(changed[c] for c in store_rows.INSTANCE_ROW_COLUMNS)])
    assert new.config == {"Env": ["A=2"]} and first.config == {"Env": ["A=1"]}
