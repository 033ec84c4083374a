"""When SQLite commits reach the disk (adapters/sqlite_sync): intents and rows a call relies on are synced,
outcomes and statuses after a call are committed unsynced, and a killed process loses neither."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.adapters.journal import Journal
from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.adapters.sqlite_sync import unsynced
from reconciler.errors import JournalError, StoreError
from tests.adapters.stores.helpers import new_instance, server

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
FULL, NORMAL = 2, 1


def level(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


def test_unsynced_lowers_the_level_for_its_commit_only(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (a INTEGER)")
    with unsynced(conn):
        assert level(conn) == NORMAL
        conn.execute("INSERT INTO t VALUES (1)")  # left open: committed on the way out
    assert level(conn) == FULL and not conn.in_transaction
    with pytest.raises(sqlite3.IntegrityError), unsynced(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise sqlite3.IntegrityError("the write failed")
    assert level(conn) == FULL and not conn.in_transaction
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (3)")
    with unsynced(conn):  # inside an open transaction: joins it at its level
        assert level(conn) == FULL
    conn.commit()
    assert [r[0] for r in conn.execute("SELECT a FROM t ORDER BY a")] == [1, 3]


def test_the_journal_and_the_store_open_synced_and_stay_so_after_unsynced_writes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    store = SqliteStore(tmp_path / "state.db", create=True)
    assert level(journal._db.conn) == FULL and level(store._db.conn) == FULL
    run = journal.start_run("apply", NOW)
    step = journal.intent(run, NOW, environment="e", server="s", action="create", reason="absent")
    journal.outcome(step, NOW, "ok")
    env_id = store.add_environment("tb", "10.0.0.1").id
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.update_instance(iid, status="running", synced=False)
    with pytest.raises(StoreError, match="does not exist"):
        store.update_instance(str(uuid.uuid4()), status="running", synced=False)
    assert level(journal._db.conn) == FULL and level(store._db.conn) == FULL
    store.close()
    journal.close()


def test_a_failed_unsynced_outcome_is_one_error_and_the_next_write_is_synced(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    run = journal.start_run("apply", NOW)
    step = journal.intent(run, NOW, environment="e", server="s", action="create", reason="absent")
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(JournalError, match="the disk is full"):
        journal.outcome(step, NOW, "failed", error="x" * 100_000)
    assert level(journal._db.conn) == FULL
    journal._db.execute("PRAGMA max_page_count = 1000000")
    journal.outcome(step, NOW, "ok")
    assert [s.outcome for s in journal.steps(run_id=run)] == ["ok"]
    journal.close()


def test_a_killed_process_keeps_its_unsynced_outcome_and_status(tmp_path: Path) -> None:
    """The outcome and the status after a call are not synced on their own, yet a process killed right after
    writing them loses neither: they are in the WAL, which the next opener reads."""
    journal_path, db_path = tmp_path / "j.db", tmp_path / "state.db"
    store = SqliteStore(db_path, create=True)
    env_id = store.add_environment("tb", "10.0.0.1").id
    spec = server()
    iid = store.create_instance(new_instance(env_id, store.ensure_catalog(spec.image), spec))
    store.close()
    code = (
        "import os, datetime as d\n"
        "from reconciler.adapters.journal import Journal\n"
        "from reconciler.adapters.sqlite_store import SqliteStore\n"
        f"j = Journal({str(journal_path)!r})\n"
        f"s = SqliteStore({str(db_path)!r})\n"
        "now = d.datetime(2026, 1, 1, tzinfo=d.UTC)\n"
        "r = j.start_run('apply', now)\n"
        "step = j.intent(r, now, environment='e', server='s', action='create', reason='absent')\n"
        f"s.update_instance({iid!r}, status='running', synced=False)\n"
        "j.outcome(step, now, 'ok')\n"
        "os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=30)
    assert done.returncode == 9
    assert [s.outcome for s in Journal(journal_path).steps()] == ["ok"]
    assert [r.status for r in SqliteStore(db_path).observe().instances] == ["running"]
