"""``reconciler import``: write the manifest of what an environment runs (like ``terraform import``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLE = """example:
  reconciler import --env research-toolbox                   (the manifest on stdout)
  reconciler import --env research-toolbox --out manifests/  (writes manifests/research-toolbox.yaml)
  reconciler plan manifests/ --adopt                         (then: adopt what runs, nothing recreated)

Secret-looking env values (a key with TOKEN, KEY, SECRET, PASSWORD, ... in its name, or a value the row stores
as a fingerprint) are never written: they become {secretFromEnv: VAR}, and the variables to set are listed on
stderr. An unreachable toolbox is refused (exit 1), never written as empty.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import",
        help="write a manifest for what an environment runs",
        description="Read an environment's instance rows and its agent's live listing and write the manifest "
        "that declares it: one server per container (image, ports, state; env, transport, endpoint and "
        "capabilities from the rows where recorded). Planning it changes nothing but adopt steps.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", required=True, metavar="NAME", help="the environment (toolbox) by name or id")
    p.add_argument("--out", metavar="DIR", help="write DIR/NAME.yaml instead of printing the manifest")
    p.add_argument("--force", action="store_true", help="with --out: overwrite an existing file")
    p.add_argument("--database", metavar="URL", help="database URL (default $RECONCILER_DATABASE_URL)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reconciler.app.import_fleet import import_manifest
    from reconciler.cli.plan_cmd import settings_from
    from reconciler.errors import ConfigError
    from reconciler.presentation.escape import printable

    target: Path | None = None
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: not a directory")
    elif args.force:
        raise ConfigError("--force only applies with --out DIR")
    result = import_manifest(settings_from(args), args.env)
    if args.out:
        target = Path(args.out) / f"{result.environment}.yaml"
        if target.exists() and not args.force:
            raise ConfigError(f"{target} exists; nothing written (--force overwrites it)")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(result.text, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--out {args.out}: cannot write {target}: {e.strerror or e}") from None
    else:
        sys.stdout.write(result.text)
    for note in result.notes:
        print(printable(f"note: {note}"), file=sys.stderr)
    if result.secret_vars:
        print("Set these variables before plan/apply (their values were not written):", file=sys.stderr)
        for var, what in result.secret_vars:
            print(printable(f"  {var}  ({what})"), file=sys.stderr)
    where = f"wrote {target}" if target is not None else "manifest above"
    print(printable(f"import: {result.servers} server(s) of {result.environment}; {where}"), file=sys.stderr)
    return 0
