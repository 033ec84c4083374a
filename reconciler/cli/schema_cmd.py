"""``reconciler schema manifest|plan``: print a JSON Schema shipped with the program (for editors and CI)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXAMPLE = """example:
  reconciler schema manifest > .reconciler/manifest.schema.json
  # then, first line of a manifest:  # yaml-language-server: $schema=../.reconciler/manifest.schema.json
  reconciler schema plan > plan.schema.json
"""

SCHEMAS = {"manifest": "manifest.v1.schema.json", "plan": "plan.v1.schema.json"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of manifests or of plans",
        description="Print a JSON Schema (2020-12) shipped with this reconciler: `manifest` for editors "
        "(yaml-language-server) and linters, `plan` for tools reading `plan --format json` or saved plans.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("which", choices=tuple(SCHEMAS), help="which schema")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.resources import schema_path

    sys.stdout.write(schema_path(SCHEMAS[args.which]).read_text(encoding="utf-8"))
    return 0
