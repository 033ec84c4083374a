"""One contract suite, two backends: every test taking ``backend`` runs on a fresh SQLite file and on a fresh
PostgreSQL database of the real server. ``Backend.raw`` reaches under the store (to build variant schemas,
bulk rows or values Agentopia writes that the store never would)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.app.stores import open_store


@dataclass
class Backend:
    kind: str
    url: str
    path: Path | None = None
    opened: list[Any] = field(default_factory=list)

    def open(self, **kwargs: Any) -> Any:
        store = open_store(self.url, **kwargs)
        self.opened.append(store)
        return store

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
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return Backend("postgres", factory())


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
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
