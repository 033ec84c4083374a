"""One contract suite, three backends: every test taking ``backend`` runs on a fresh SQLite file, on a fresh
PostgreSQL database of the real server, and on the in-memory store. ``Backend.values``, ``insert`` and
``set`` reach under the store on all three (to read columns the store does not return, or write values
Agentopia writes that the store never would); ``Backend.raw`` runs SQL (SQLite and PostgreSQL only)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.memory_store import MemoryDatabase, MemoryStore
from reconciler.app.stores import open_store

JSON_COLUMNS = frozenset({
    "base_config_override_json", "port_mapping_json", "version_info", "default_config_template",
    "mcp_server_capabilities", "mcp_discovery_metadata", "config_values",
})  # fmt: skip


@dataclass
class Backend:
    kind: str
    url: str
    path: Path | None = None
    opened: list[Any] = field(default_factory=list)
    memory: MemoryDatabase = field(default_factory=MemoryDatabase)

    @property
    def sql(self) -> bool:
        return self.kind != "memory"

    def open(self, **kwargs: Any) -> Any:
        store = MemoryStore(self.memory) if self.kind == "memory" else open_store(self.url, **kwargs)
        self.opened.append(store)
        return store

    def values(self, table: str, row_id: str, *columns: str) -> tuple[Any, ...]:
        """Columns of one row, JSON decoded and booleans as bool, whatever the backend."""
        if self.kind == "memory":
            row = self.memory.table(table)[row_id]
            found: Sequence[Any] = [row.get(c) for c in columns]
        else:
            [found] = self.raw(f"SELECT {', '.join(columns)} FROM {table} WHERE id = ?", [row_id])
        out = []
        for column, value in zip(columns, found, strict=True):
            if column in JSON_COLUMNS and isinstance(value, str):
                value = json.loads(value)
            if column == "is_public" and value is not None:
                value = bool(value)
            out.append(value)
        return tuple(out)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rows written as another program would (JSON values as Python values)."""
        if not rows:
            return
        if self.kind == "memory":
            for row in rows:
                self.memory.table(table)[str(row["id"])] = dict(row)
            return
        columns = list(rows[0])
        many = [
            [json.dumps(r[c]) if c in JSON_COLUMNS and r[c] is not None else r[c] for c in columns] for r in rows
        ]
        self.raw(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", many=many
        )

    def set(self, table: str, row_id: str, column: str, value: Any) -> None:
        if self.kind == "memory":
            self.memory.table(table)[row_id][column] = value
            return
        self.raw(f"UPDATE {table} SET {column} = ? WHERE id = ?", [value, row_id])

    def count(self, table: str) -> int:
        if self.kind == "memory":
            return len(self.memory.table(table))
        return int(self.raw(f"SELECT count(*) FROM {table}")[0][0])

    def _pg(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def raw(
        self, sql: str, params: Sequence[Any] = (), *, many: Sequence[Sequence[Any]] | None = None
    ) -> list[Any]:
        """Run SQL (``?`` placeholders) on a separate connection, committed; returns the rows as tuples."""
        if self.kind == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path)
            try:
                conn.execute("PRAGMA ignore_check_constraints=ON")
                if many is not None:
                    conn.executemany(sql, many)
                    conn.commit()
                    return []
                cur = conn.execute(sql, params)
                rows = cur.fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as pg:
            if many is not None:
                with pg.cursor() as cur:
                    cur.executemany(self._pg(sql), many)
                return []
            cur = pg.execute(self._pg(sql), params or None)
            return cur.fetchall() if cur.description else []

    def all_text(self) -> str:
        """Every text and JSON value of every table, joined: where a leaked secret would show."""
        chunks: list[str] = []
        if self.kind == "memory":
            for table in (self.memory.environments, self.memory.catalog, self.memory.instances):
                chunks.extend(json.dumps(row, default=str) for row in table.values())
            return "\n".join(chunks)
        if self.kind == "sqlite":
            tables = [r[0] for r in self.raw("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in self.raw(f'SELECT * FROM "{table}"'):
                    chunks.extend(str(v) for v in row if v is not None)
            return "\n".join(chunks)
        columns = self.raw(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'jsonb', 'json', 'character varying', 'USER-DEFINED', 'inet')"
        )
        for table, column in columns:
            for (value,) in self.raw(f'SELECT "{column}"::text FROM "{table}"'):
                if value is not None:
                    chunks.append(value)
        return "\n".join(chunks)


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        return Backend("sqlite", f"sqlite:///{path}", path)
    if request.param == "memory":
        return Backend("memory", "memory://")
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return Backend("postgres", factory())


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"]


SQL_BACKENDS = BACKENDS[:2]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = _backend(request, tmp_path)
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture(params=SQL_BACKENDS)
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """SQLite and PostgreSQL only: for what only a database has (migrations, the CLI's --database)."""
    b = _backend(request, tmp_path)
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture
def pg_backend(pg_database_factory: Callable[[], str]) -> Iterator[Backend]:
    b = Backend("postgres", pg_database_factory())
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> Any:
    """A migrated store on a fresh database."""
    return backend.open(create=True)
