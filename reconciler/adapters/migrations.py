"""The numbered DDL migrations shipped in ``state/<backend>/NNNN_name.sql``, and the facts both stores
use to tell a database the reconciler created from Agentopia's own. Pure: reads files, opens no database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.resources import data_dir

AGENTOPIA_TABLES: tuple[str, ...] = ("account_tool_environments", "tool_catalog", "account_tool_instances")
MIGRATIONS_TABLE = "schema_migrations"
META_TABLE = "mcp_reconciler_meta"
SUSPENSIONS_TABLE = "mcp_reconciler_suspensions"  # 0003: `reconciler suspend`
REPLICAS_TABLE = "mcp_reconciler_replicas"  # 0004: daemon replicas' heartbeats
LEASES_TABLE = "mcp_reconciler_leases"  # 0004: which replica owns which environment
CREATED_BY_KEY = "created_by"
CREATED_BY_VALUE = "mcp-reconciler"

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(backend: str, directory: Path | None = None) -> tuple[Migration, ...]:
    """The migrations of ``sqlite`` or ``postgres``, in order. Version numbers must be unique."""
    folder = directory if directory is not None else data_dir("state") / backend
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"{path}: migration version {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return tuple(found[v] for v in sorted(found))


def migrate_command(masked_url: str) -> str:
    """What an error tells the user to run."""
    return f"reconciler db migrate --database {masked_url}"


@dataclass(frozen=True)
class MigrationResult:
    applied: tuple[int, ...]  # versions applied by this run (empty: already up to date)
    current: int  # highest version now recorded
    created: bool  # this run created the schema on an empty database
