"""When a SQLite commit reaches the disk: the journal's and the store's one rule.

Both files are in WAL mode with ``synchronous=FULL`` (set explicitly: a build may default to NORMAL), so a
commit returns only once the WAL is synced: what must survive a power loss, not only a crash of this process,
is synced before the reconciler calls an agent (a step's intent, the row a deploy names). A write that only
records what already happened (a step's outcome, a status after a call) is committed with ``synchronous=NORMAL``
instead: written to the WAL before the call returns, so a killed process loses nothing, and synced with the next
synced commit of the same file (the WAL is one file, appended in order, so a power loss can only lose a tail of
such writes, never one before a synced one). Losing that tail reads as a process killed at that point: the
step shows ``interrupted``, the row its status before the call, and the next run lists the agents afresh. Each
skipped sync was most of the CPU and the wall time of a write: about a millisecond each, several per create.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SYNCED = "PRAGMA synchronous=FULL"
_UNSYNCED = "PRAGMA synchronous=NORMAL"


@contextmanager
def unsynced(conn: sqlite3.Connection) -> Iterator[None]:
    """Commits made inside are written to the WAL, not synced (see the module's text); around the transaction,
    never inside one (SQLite refuses to change the level within a transaction: a write that joins an open one
    keeps that transaction's level)."""
    if _open(conn):
        yield
        return
    conn.execute(_UNSYNCED)
    try:
        yield
    except BaseException:
        if _open(conn):  # the write failed before its commit: none of it stays
            conn.rollback()
        raise
    else:
        if _open(conn):
            conn.commit()
    finally:
        # Back to synced whatever happened: the next write may be one that must reach the disk.
        conn.execute(SYNCED)


def _open(conn: sqlite3.Connection) -> bool:
    # A call, not the attribute inline: the statements inside the block open and close transactions.
    return conn.in_transaction


def sync_wal(database: Path) -> None:
    """Sync the database's WAL file: every commit so far, unsynced ones included, reaches the disk (the WAL
    holds whatever no checkpoint has copied into the database file yet, and a checkpoint syncs what it copies).
    No WAL file: nothing was written since the last connection closed, which checkpoints it all."""
    try:
        fd = os.open(f"{database}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
