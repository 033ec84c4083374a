"""Checks the schema cannot express, within one manifest document.

They read the raw document defensively (a value of the wrong type is the schema's to report), so they
run even on documents with schema errors and every problem is reported in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.model.image_ref import image_reference_problem
from reconciler.model.schema_check import SchemaIssue

DTMA_PORT = 30000
"""The DTMA agent's own port on every toolbox."""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check_servers(document: Any, line_of: Callable[[tuple[str | int, ...]], int]) -> list[SchemaIssue]:
    """Duplicate names and host ports, the DTMA's port, image references.

    ``line_of`` gives the line of a path, to name where the first of two duplicates is.
    """
    if not isinstance(document, dict):
        return []
    servers = document.get("servers")
    if not isinstance(servers, list):
        return []
    issues: list[SchemaIssue] = []
    names: dict[str, int] = {}
    host_ports: dict[int, int] = {}
    for index, server in enumerate(servers):
        if not isinstance(server, dict):
            continue
        name = server.get("name")
        if isinstance(name, str):
            first = names.setdefault(name, index)
            if first != index:
                line = line_of(("servers", first, "name"))
                issues.append(
                    SchemaIssue(
                        ("servers", index, "name"),
                        f"duplicate server name {name!r} (first at servers[{first}], line {line})",
                    )
                )
        image = server.get("image")
        if isinstance(image, str) and image:
            problem = image_reference_problem(image)
            if problem is not None:
                issues.append(SchemaIssue(("servers", index, "image"), f"{image!r}: {problem}"))
        host_port = _int(server.get("hostPort"))
        if host_port is not None:
            if host_port == DTMA_PORT:
                issues.append(
                    SchemaIssue(("servers", index, "hostPort"), f"{DTMA_PORT} is the DTMA agent's own port")
                )
            else:
                first = host_ports.setdefault(host_port, index)
                if first != index:
                    line = line_of(("servers", first, "hostPort"))
                    issues.append(
                        SchemaIssue(
                            ("servers", index, "hostPort"),
                            f"host port {host_port} is already used by servers[{first}] (line {line})",
                        )
                    )
    return issues
