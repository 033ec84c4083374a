"""Builds the store a database URL names: ``sqlite:///path`` (the embedded default) or ``postgresql://...``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.adapters.migrations import MigrationResult
from reconciler.adapters.store_rows import mask
from reconciler.errors import ConfigError
from reconciler.settings import DEFAULT_DATABASE_URL

if TYPE_CHECKING:
    from reconciler.adapters.postgres_store import PostgresStore
    from reconciler.adapters.sqlite_store import SqliteStore
    from reconciler.ports import Store

    AnyStore = SqliteStore | PostgresStore

    # mypy proves here that both adapters implement the Store protocol exactly.
    def _sqlite_is_a_store(store: SqliteStore) -> Store:
        return store

    def _postgres_is_a_store(store: PostgresStore) -> Store:
        return store


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class DatabaseUrl:
    kind: str  # "sqlite" or "postgres"
    target: str  # the file path, or the URL psycopg takes


def parse_database_url(url: str) -> DatabaseUrl:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``postgresql://user@host/db``."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ConfigError(f"database URL {url!r} names no file (try {DEFAULT_DATABASE_URL})")
        return DatabaseUrl("sqlite", path)
    if url.startswith(_POSTGRES_SCHEMES):
        return DatabaseUrl("postgres", url)
    raise ConfigError(f"unsupported database URL {mask(url)!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")


def open_store(url: str, *, create: bool = False) -> AnyStore:
    """The store for ``url``. ``create`` applies the migrations first (creating a SQLite file and its
    directory); without it a missing schema raises SchemaMissingError naming the command to run."""
    parsed = parse_database_url(url)
    if parsed.kind == "sqlite":
        from reconciler.adapters.sqlite_store import SqliteStore

        return SqliteStore(Path(parsed.target), create=create)
    from reconciler.adapters.postgres_store import PostgresStore

    return PostgresStore(parsed.target, create=create)


def open_unchecked(url: str) -> AnyStore:
    """The store for ``url`` without requiring the schema (creating an empty SQLite file if needed)."""
    parsed = parse_database_url(url)
    if parsed.kind == "sqlite":
        from reconciler.adapters.sqlite_store import SqliteStore

        return SqliteStore(Path(parsed.target), check_schema=False)
    from reconciler.adapters.postgres_store import PostgresStore

    return PostgresStore(parsed.target, check_schema=False)


def migrate_database(url: str, *, force: bool = False) -> MigrationResult:
    """``reconciler db migrate``: apply pending migrations. A database with Agentopia's tables that the
    reconciler did not create is refused unless ``force``. Applying twice is a no-op."""
    store = open_unchecked(url)
    try:
        return store.migrate(force=force)
    finally:
        store.close()
