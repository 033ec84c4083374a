"""``reconciler db``: create the schema, and register toolboxes where Agentopia does not (the embedded
SQLite database, or a PostgreSQL database the reconciler created)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.core.observed import ENVIRONMENT_STATUSES
from reconciler.errors import StoreError

EXAMPLE = """examples:
  reconciler db migrate                                   # creates .reconciler/state.db
  reconciler db add-environment research-toolbox --address 10.0.0.5
  reconciler db environments --format json
  reconciler db remove-environment research-toolbox
  reconciler db migrate --database postgresql://reconciler@127.0.0.1/reconciler_test
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "db",
        help="create the schema; register toolboxes in a database the reconciler owns",
        description="Apply the numbered migrations, or add, list and remove toolboxes (environments) in the "
        "embedded SQLite database or a PostgreSQL database the reconciler created. On Agentopia's own "
        "database, migrate needs --force and the toolbox commands refuse: Agentopia provisions toolboxes.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)

    migrate = sub.add_parser("migrate", help="create or upgrade the schema (twice is a no-op)")
    migrate.add_argument(
        "--force",
        action="store_true",
        help="apply the migrations even to a database with Agentopia tables the reconciler did not create",
    )
    migrate.set_defaults(handler=run_migrate)

    add = sub.add_parser("add-environment", help="register a toolbox (its DTMA listens on ADDRESS:DTMA_PORT)")
    add.add_argument("name", metavar="NAME", help="account_tool_environments.name, as manifests refer to it")
    add.add_argument("--address", required=True, metavar="IP", help="the toolbox's public IP address")
    add.add_argument("--status", default="active", choices=ENVIRONMENT_STATUSES, metavar="STATUS",
                     help="environment status (default active; only active toolboxes are reconciled)")  # fmt: skip
    add.add_argument("--id", dest="environment_id", metavar="UUID", help="the row id (default: a new UUID)")
    add.add_argument("--user-id", metavar="UUID", help="owner user id (default the nil UUID)")
    add.set_defaults(handler=run_add)

    envs = sub.add_parser("environments", help="list the registered toolboxes")
    envs.add_argument("--format", choices=("text", "json"), default="text")
    envs.set_defaults(handler=run_list)

    remove = sub.add_parser(
        "remove-environment", help="unregister a toolbox and its instance rows (containers are not touched)"
    )
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=run_remove)

    for parser in (migrate, add, envs, remove):
        parser.add_argument(
            "--database",
            metavar="URL",
            help="sqlite:///PATH or postgresql://... (default $RECONCILER_DATABASE_URL, "
            "else sqlite:///.reconciler/state.db)",
        )


def database_url(args: argparse.Namespace) -> str:
    from reconciler.settings import from_environ

    url: str = args.database or from_environ().database_url
    return url


@contextmanager
def _database_path(url: str) -> Iterator[None]:
    """A file-system failure on the SQLite database's path becomes one line naming the path and the fix."""
    try:
        yield
    except OSError as exc:
        if not url.startswith("sqlite:///"):
            raise
        path = Path(url.removeprefix("sqlite:///"))
        fix = "choose another path with --database (RECONCILER_DATABASE_URL)"
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise StoreError(
                f"cannot create the directory of SQLite database {path}: {blocker} is a file, not a directory; "
                + fix
            ) from None
        raise StoreError(
            f"cannot create SQLite database {path} ({exc.strerror or exc}): make its directory writable by this "
            f"user, or {fix}"
        ) from None


def run_migrate(args: argparse.Namespace) -> int:
    from reconciler.adapters.store_rows import mask
    from reconciler.app.stores import migrate_database

    url = database_url(args)
    with _database_path(url):
        result = migrate_database(url, force=args.force)
    if result.applied:
        versions = ", ".join(f"{v:04d}" for v in result.applied)
        print(f"applied migration(s) {versions} to {mask(url)}; schema version {result.current}")
    else:
        print(f"{mask(url)} is up to date (schema version {result.current})")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from reconciler.app.stores import open_store
    from reconciler.errors import ConfigError
    from reconciler.model.semantic import control_character

    found = control_character(args.name)
    if found is not None:
        raise ConfigError(
            f"environment name {args.name!r} holds a control character ({found}); use printable text"
        )

    url = database_url(args)
    with _database_path(url):
        store = open_store(url)
    try:
        row = store.add_environment(
            args.name, args.address, status=args.status, environment_id=args.environment_id, user_id=args.user_id
        )
    finally:
        store.close()
    print(f"added environment {row.name} (id {row.id}) at {row.address}, status {row.status}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from reconciler.app.stores import open_store

    url = database_url(args)
    with _database_path(url):
        store = open_store(url)
    try:
        envs = store.list_environments()
    finally:
        store.close()
    if args.format == "json":
        data = [{"id": e.id, "name": e.name, "address": e.address, "status": e.status} for e in envs]
        json.dump(data, sys.stdout, indent=2)
        print()
        return 0
    if not envs:
        print("no environments registered (add one with `reconciler db add-environment NAME --address IP`)")
        return 0
    width = max(len("NAME"), *(len(e.name) for e in envs))
    print(f"{'NAME':<{width}}  {'ADDRESS':<15}  {'STATUS':<12}  ID")
    for e in envs:
        print(f"{e.name:<{width}}  {e.address or '-':<15}  {e.status:<12}  {e.id}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from reconciler.app.stores import open_store

    url = database_url(args)
    with _database_path(url):
        store = open_store(url)
    try:
        removed = store.remove_environment(args.name)
    finally:
        store.close()
    print(
        f"removed environment {args.name} and {removed} instance row(s); containers on the toolbox were not "
        "touched"
    )
    return 0
