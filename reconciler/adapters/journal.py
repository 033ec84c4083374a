"""The journal: what each plan/apply run did, step by step (DESIGN section 8), in SQLite via sqlite-utils.

A step's intent row is committed before the DTMA call and its outcome after, so a process killed in
between leaves a row without outcome. Such rows are marked ``interrupted`` when the next run opens the
journal, and are shown as interrupted when read.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

INTERRUPTED = "interrupted"
OUTCOMES = ("ok", "failed", "skipped", INTERRUPTED, "pending")  # "pending": a deploy sent, not yet confirmed


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

    def __init__(self, path: str | Path, *, secrets: Iterable[str] = ()) -> None:
        import threading

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite_utils.Database(sqlite3.connect(str(self.path), check_same_thread=False, timeout=10))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = tuple(secrets)
        self._ensure_schema()

    def add_secrets(self, values: Iterable[str]) -> None:
        self._secrets = (*self._secrets, *(v for v in values if v))

    def _ensure_schema(self) -> None:
        with self._lock:
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
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            self._db.execute(
                "UPDATE runs SET finished = ?, outcome = ? WHERE id = ?", [_iso(now), outcome, run_id]
            )
            self._db.conn.commit()

    def interrupt_run(self, run_id: int, now: datetime, outcome: str = INTERRUPTED) -> int:
        """Close a run of this process cut short on purpose (a second stop signal): its open steps become
        ``interrupted``. Returns how many steps."""
        with self._lock:
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
        with self._lock:
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
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown step outcome {outcome!r}")
        with self._lock:
            self._db.execute(
                "UPDATE steps SET outcome = ?, outcome_at = ?, error = ?, status_code = ?, "
                "attempt = COALESCE(?, attempt) WHERE id = ?",
                [outcome, _iso(now), redact(error, self._secrets), status_code, attempt, step_id],
            )
            self._db.conn.commit()

    def prune(self, now: datetime, *, max_age: timedelta | None = None, keep_runs: int | None = None) -> int:
        """Retention: drop runs older than ``max_age`` and all but the newest ``keep_runs``; returns how many."""
        with self._lock:
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
        where, params = ["1=1"], []
        if since is not None:
            where.append("started >= ?")
            params.append(_iso(since))
        if run_id is not None:
            where.append("id = ?")
            params.append(str(run_id))
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
        where, params = ["1=1"], []
        for column, value in (("run_id", run_id), ("environment", environment), ("server", server)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("intent_at >= ?")
            params.append(_iso(since))
        rows = self._db.execute(
            "SELECT id, run_id, environment, server, action, reason, intent_at, outcome_at, outcome, attempt, "
            f"error, status_code FROM steps WHERE {' AND '.join(where)} ORDER BY id",
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
        self._db.close()


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
