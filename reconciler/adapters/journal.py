"""The journal: what each plan/apply run did, step by step, in SQLite via sqlite-utils (docs/architecture.md).

A step's intent row is committed before the DTMA call and its outcome after, so a process killed in
between leaves a row without outcome. Such rows are marked ``interrupted`` when the next run opens the
journal, and are shown as interrupted when read.

Every SQLite or file-system failure (a read-only, damaged, locked or full journal, a path that cannot be
created) becomes one ``JournalError`` naming the file and the fix. Writes are committed one at a time, so a
failed write leaves the journal as it was and the next run goes on once the cause is gone. A journal opened
``read_only`` never writes, so ``reconciler journal`` works on a journal it cannot modify.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlite_utils

from reconciler.adapters.sqlite_sync import SYNCED, unsynced
from reconciler.errors import JournalError
from reconciler.state_dir import make_state_dir

INTERRUPTED = "interrupted"
# "pending": a deploy sent, not yet confirmed; "unready": applied, but the server did not pass its readiness
OUTCOMES = ("ok", "failed", "skipped", INTERRUPTED, "pending", "unready")
BUSY_TIMEOUT_SECONDS = 5.0
"""How long a write waits for another process holding the journal before giving up."""
_NEARLY_FULL_BYTES = 1 << 20
_ELSEWHERE = "or point --journal (RECONCILER_JOURNAL) at another path"


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    started: str
    finished: str | None
    outcome: str | None
    manifest_digest: str | None
    git_commit: str | None
    host: str | None
    pid: int | None
    note: str | None


@dataclass(frozen=True)
class StepRecord:
    id: int
    run_id: int
    environment: str
    server: str
    action: str
    reason: str
    intent_at: str
    outcome_at: str | None
    outcome: str | None
    attempt: int
    error: str | None
    status_code: int | None


def redact(text: str | None, secrets: Iterable[str]) -> str | None:
    """The text with every secret value replaced by ``***`` (longest first, so overlaps are covered)."""
    if text is None:
        return None
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


class Journal:
    """One SQLite file. Safe to use from several threads: every write takes the instance's lock."""

    def __init__(
        self,
        path: str | Path,
        *,
        secrets: Iterable[str] = (),
        read_only: bool = False,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = tuple(secrets)
        self._tables = True
        if read_only:
            self._db = self._open_read_only()
            return
        try:
            make_state_dir(self.path.parent)
        except OSError as exc:
            raise _directory_error(self.path, exc) from None
        try:
            with self._guard():
                conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=busy_timeout)
                self._db = sqlite_utils.Database(conn)
                self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(SYNCED)  # intents reach the disk before the call (adapters/sqlite_sync)
                self._ensure_schema()
        except JournalError:
            self.close()
            raise

    def _open_read_only(self) -> sqlite_utils.Database:
        """Opened with ``mode=ro``; a WAL journal in a directory this user cannot write (SQLite cannot make
        its shared-memory file there) is read as immutable: no process of this user can be writing it."""
        uri = "file:" + quote(str(self.path.absolute()))
        last: sqlite3.Error | None = None
        for options in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = None
            try:
                conn = sqlite3.connect(
                    uri + options, uri=True, check_same_thread=False, timeout=self._busy_timeout
                )
                db = sqlite_utils.Database(conn)
                self._tables = {"runs", "steps"} <= set(db.table_names())
                return db
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                last = exc
                if _primary_code(exc) != sqlite3.SQLITE_READONLY:
                    break
        assert last is not None
        raise _sqlite_error(self.path, last, self._busy_timeout) from None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        if self.read_only:
            raise JournalError(f"journal {self.path} was opened read-only: it cannot be written")
        with self._lock, self._guard():
            yield

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite failures become one JournalError; a failed write is rolled back, leaving the file as it was."""
        try:
            yield
        except sqlite3.Error as exc:
            db = getattr(self, "_db", None)
            if db is not None:
                with suppress(sqlite3.Error):
                    db.conn.rollback()
            raise _sqlite_error(self.path, exc, self._busy_timeout) from None

    def add_secrets(self, values: Iterable[str]) -> None:
        self._secrets = (*self._secrets, *(v for v in values if v))

    def _ensure_schema(self) -> None:
        with self._writing():
            if "runs" not in self._db.table_names():
                self._db["runs"].create(  # type: ignore[union-attr]
                    {
                        "id": int,
                        "kind": str,
                        "started": str,
                        "finished": str,
                        "outcome": str,
                        "manifest_digest": str,
                        "git_commit": str,
                        "host": str,
                        "pid": int,
                        "note": str,
                    },
                    pk="id",
                )
            if "steps" not in self._db.table_names():
                self._db["steps"].create(  # type: ignore[union-attr]
                    {
                        "id": int,
                        "run_id": int,
                        "environment": str,
                        "server": str,
                        "action": str,
                        "reason": str,
                        "intent_at": str,
                        "outcome_at": str,
                        "outcome": str,
                        "attempt": int,
                        "error": str,
                        "status_code": int,
                    },
                    pk="id",
                    foreign_keys=[("run_id", "runs", "id")],
                )
                self._db["steps"].create_index(["run_id"])  # type: ignore[union-attr]
            self._db.conn.commit()

    # -- writing ---------------------------------------------------------------------------------

    def _running_runs(self) -> set[int]:
        """Open runs whose process still lives on this host (this process's own included)."""
        here = socket.gethostname()
        alive: set[int] = set()
        for run_id, host, pid in self._db.execute("SELECT id, host, pid FROM runs WHERE finished IS NULL"):
            if host == here and pid is not None and _pid_alive(int(pid)):
                alive.add(int(run_id))
        return alive

    def mark_interrupted(self, now: datetime) -> int:
        """Close every step and run left open by a process that died; returns how many steps."""
        with self._writing():
            alive = sorted(self._running_runs())
            marks = ",".join("?" * len(alive)) or "-1"  # NOT IN (NULL) would match nothing
            cur = self._db.execute(
                f"UPDATE steps SET outcome = ?, outcome_at = ? WHERE outcome IS NULL AND run_id NOT IN ({marks})",
                [INTERRUPTED, _iso(now), *alive],
            )
            count = cur.rowcount
            self._db.execute(
                f"UPDATE runs SET outcome = ?, finished = ? WHERE finished IS NULL AND id NOT IN ({marks})",
                [INTERRUPTED, _iso(now), *alive],
            )
            self._db.conn.commit()
            return int(count)

    def start_run(
        self,
        kind: str,
        now: datetime,
        *,
        manifest_digest: str | None = None,
        git_commit: str | None = None,
        note: str | None = None,
    ) -> int:
        self.mark_interrupted(now)
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO runs (kind, started, manifest_digest, git_commit, host, pid, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    kind,
                    _iso(now),
                    manifest_digest,
                    git_commit,
                    socket.gethostname(),
                    os.getpid(),
                    redact(note, self._secrets),
                ],
            )
            self._db.conn.commit()
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, now: datetime, outcome: str) -> None:
        with self._writing():
            self._db.execute(
                "UPDATE runs SET finished = ?, outcome = ? WHERE id = ?", [_iso(now), outcome, run_id]
            )
            self._db.conn.commit()

    def interrupt_run(self, run_id: int, now: datetime, outcome: str = INTERRUPTED) -> int:
        """Close a run of this process cut short on purpose (a second stop signal): its open steps become
        ``interrupted``. Returns how many steps."""
        with self._writing():
            cur = self._db.execute(
                "UPDATE steps SET outcome = ?, outcome_at = ? WHERE outcome IS NULL AND run_id = ?",
                [INTERRUPTED, _iso(now), run_id],
            )
            self._db.execute(
                "UPDATE runs SET outcome = ?, finished = ? WHERE id = ? AND finished IS NULL",
                [outcome, _iso(now), run_id],
            )
            self._db.conn.commit()
            return int(cur.rowcount)

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
    ) -> int:
        """Record that a step is about to act; committed before the caller touches the DTMA."""
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO steps (run_id, environment, server, action, reason, intent_at, attempt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [run_id, environment, server, action, redact(reason, self._secrets), _iso(now), attempt],
            )
            self._db.conn.commit()
            return int(cur.lastrowid or 0)

    def outcome(
        self,
        step_id: int,
        now: datetime,
        outcome: str,
        *,
        error: str | None = None,
        status_code: int | None = None,
        attempt: int | None = None,
    ) -> None:
        """Record how a step ended: committed (a killed process loses nothing) but not synced on its own; the
        next intent or the run's end syncs it (adapters/sqlite_sync)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown step outcome {outcome!r}")
        with self._writing(), unsynced(self._db.conn):
            self._db.execute(
                "UPDATE steps SET outcome = ?, outcome_at = ?, error = ?, status_code = ?, "
                "attempt = COALESCE(?, attempt) WHERE id = ?",
                [outcome, _iso(now), redact(error, self._secrets), status_code, attempt, step_id],
            )
            self._db.conn.commit()

    def prune(self, now: datetime, *, max_age: timedelta | None = None, keep_runs: int | None = None) -> int:
        """Retention: drop runs older than ``max_age`` and all but the newest ``keep_runs``; returns how many."""
        with self._writing():
            ids: set[int] = set()
            if max_age is not None:
                cutoff = _iso(now - max_age)
                ids |= {int(r[0]) for r in self._db.execute("SELECT id FROM runs WHERE started < ?", [cutoff])}
            if keep_runs is not None:
                ids |= {
                    int(r[0])
                    for r in self._db.execute(
                        "SELECT id FROM runs ORDER BY id DESC LIMIT -1 OFFSET ?", [keep_runs]
                    )
                }
            for chunk in _chunks(sorted(ids), 500):
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"DELETE FROM steps WHERE run_id IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)
            self._db.conn.commit()
            return len(ids)

    # -- reading ---------------------------------------------------------------------------------

    def runs(
        self, *, since: datetime | None = None, run_id: int | None = None, limit: int = 50
    ) -> list[RunRecord]:
        if not self._tables:
            return []  # an empty file: no run was ever journalled
        where, params = ["1=1"], []
        if since is not None:
            where.append("started >= ?")
            params.append(_iso(since))
        if run_id is not None:
            where.append("id = ?")
            params.append(str(run_id))
        with self._guard():
            rows = self._db.execute(
                f"SELECT id, kind, started, finished, outcome, manifest_digest, git_commit, host, pid, note "
                f"FROM runs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [RunRecord(*row) for row in rows]

    def steps(
        self,
        *,
        run_id: int | None = None,
        environment: str | None = None,
        server: str | None = None,
        since: datetime | None = None,
    ) -> list[StepRecord]:
        if not self._tables:
            return []
        where, params = ["1=1"], []
        for column, value in (("run_id", run_id), ("environment", environment), ("server", server)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("intent_at >= ?")
            params.append(_iso(since))
        with self._guard():
            rows = self._db.execute(
                "SELECT id, run_id, environment, server, action, reason, intent_at, outcome_at, outcome, "
                f"attempt, error, status_code FROM steps WHERE {' AND '.join(where)} ORDER BY id",
                params,
            ).fetchall()
            # A step with no outcome whose process is gone is one a crash cut short.
            live_runs = self._running_runs()
        out = []
        for row in rows:
            rec = StepRecord(*row)
            if rec.outcome is None and rec.run_id not in live_runs:
                rec = replace(rec, outcome=INTERRUPTED)
            out.append(rec)
        return out

    def close(self) -> None:
        db = getattr(self, "_db", None)  # absent when opening failed before the connection
        if db is not None:
            with suppress(sqlite3.Error):
                db.close()


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _sqlite_error(path: Path, exc: sqlite3.Error, busy_timeout: float) -> JournalError:
    """One line naming the journal, what is wrong with it and what to do."""
    code = _primary_code(exc)
    text = str(exc)
    if code == sqlite3.SQLITE_READONLY or "readonly" in text:
        return JournalError(
            f"journal {path} is read-only for this user ({text}): make the file and its directory writable, "
            + _ELSEWHERE
        )
    if code == sqlite3.SQLITE_CANTOPEN:
        return JournalError(
            f"cannot open journal {path} ({text}): check that its directory exists and is writable, " + _ELSEWHERE
        )
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return JournalError(
            f"journal {path} is damaged ({text}): move it aside (mv {path} {path}.damaged) and the next run "
            "starts a new journal"
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return JournalError(
            f"journal {path} is locked by another process (waited {busy_timeout:g} s): let that run finish "
            "or stop it, then run again"
        )
    # A full disk may surface as an I/O error (the shared-memory file cannot grow): ask the file system.
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _nearly_full(path.parent)):
        return JournalError(
            f"journal {path}: the disk is full ({text}): free space on {path.parent}; the next run goes on "
            "with the same journal"
        )
    return JournalError(f"journal {path}: {text}")


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def _directory_error(path: Path, exc: OSError) -> JournalError:
    """The journal's directory could not be created: a file in the way, no permission, no such place."""
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return JournalError(
            f"cannot create the directory of journal {path}: {blocker} is a file, not a directory; " + _ELSEWHERE
        )
    return JournalError(
        f"cannot create the directory of journal {path} ({exc.strerror or exc}): create it with write "
        "permission for this user, " + _ELSEWHERE
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def as_dict(record: RunRecord | StepRecord) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(record)
