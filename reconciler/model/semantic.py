"""Checks the schema cannot express, within one manifest document.

They read the raw document defensively (a value of the wrong type is the schema's to report), so they
run even on documents with schema errors and every problem is reported in one go.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from reconciler.model.image_ref import image_reference_problem
from reconciler.model.schema_check import SchemaIssue
from reconciler.model.spec import EVERY_INTERFACE, MCP_PROBE_TRANSPORTS

_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control and format characters, line separators: in a name printed by a renderer or a log they could
forge lines or colours (``ESC[31m``, CR, a bidi override)."""

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
        issues.extend(_readiness_issues(server, index))
        issues.extend(_http_path_issues(server, index))
    return issues


def _http_path_issues(server: dict[str, Any], index: int) -> list[SchemaIssue]:
    """``endpoint`` and ``readiness.path`` go verbatim into a probe's HTTP request line, so they must be one
    printable ASCII token (a space or CR/LF would split the request); a timeout must be a finite number."""
    issues: list[SchemaIssue] = []
    readiness = server.get("readiness")
    readiness = readiness if isinstance(readiness, dict) else {}
    for where, value in ((("servers", index, "endpoint"), server.get("endpoint")),
                         (("servers", index, "readiness", "path"), readiness.get("path"))):  # fmt: skip
        if not isinstance(value, str) or (value.isascii() and value.isprintable() and " " not in value):
            continue  # only "!" to "~"
        bad = next((c for c in value if not ("!" <= c <= "~")), None)
        if bad is not None:
            issues.append(
                SchemaIssue(where, f"an HTTP path holds no whitespace, control or non-ASCII character (found "
                            f"U+{ord(bad):04X}); percent-encode it")
            )  # fmt: skip
    timeout = readiness.get("timeout")
    if isinstance(timeout, float) and math.isnan(timeout):  # passes every bound the schema sets
        issues.append(
            SchemaIssue(("servers", index, "readiness", "timeout"), "must be a number of seconds, not NaN")
        )
    return issues


def _readiness_type(server: dict[str, Any]) -> str:
    """As ``ServerSpec.readiness_type``, read from the raw server defensively."""
    readiness = server.get("readiness")
    declared = readiness.get("type") if isinstance(readiness, dict) else None
    if isinstance(declared, str):
        return declared
    host_ip, transport = server.get("hostIp"), server.get("transport")
    every_interface = host_ip is None or (isinstance(host_ip, str) and host_ip in EVERY_INTERFACE)
    network = isinstance(transport, str) and transport in MCP_PROBE_TRANSPORTS
    return "mcp" if network and every_interface and _int(server.get("hostPort")) is not None else "none"


def _readiness_issues(server: dict[str, Any], index: int) -> list[SchemaIssue]:
    """A readiness the server cannot have: a network probe needs a published hostPort, the MCP handshake a
    network transport; pinned tools need the MCP handshake; a restart on unhealthy needs a probe."""
    issues: list[SchemaIssue] = []
    kind = _readiness_type(server)
    where = ("servers", index, "readiness", "type")
    if kind in ("mcp", "http") and _int(server.get("hostPort")) is None:
        issues.append(
            SchemaIssue(where, f"readiness {kind} needs hostPort: the probe reaches the server at the toolbox's "
                        "address and its published port")
        )  # fmt: skip
    if kind == "mcp" and server.get("transport") == "stdio":
        issues.append(
            SchemaIssue(where, "a stdio server has no network endpoint to probe: its health is its container "
                        "state (readiness type none, the default)")
        )  # fmt: skip
    if "tools" in server and kind != "mcp":
        issues.append(
            SchemaIssue(("servers", index, "tools"), f"pinned tools are checked by the MCP handshake; this "
                        f"server's readiness is {kind} (declare readiness type mcp)")
        )  # fmt: skip
    if server.get("onUnhealthy") == "restart" and kind == "none":
        issues.append(
            SchemaIssue(("servers", index, "onUnhealthy"), "onUnhealthy: restart needs a readiness probe "
                        "(mcp or http); with readiness none a server is never found unhealthy")
        )  # fmt: skip
    return issues


def control_character(text: str) -> str | None:
    """The first control or format character of ``text`` as ``U+XXXX``, or None."""
    if text.isprintable():  # every category in _UNPRINTABLE is unprintable to str.isprintable
        return None
    for c in text:
        if unicodedata.category(c) in _UNPRINTABLE:
            return f"U+{ord(c):04X}"
    return None


def _names(document: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any, bool]]:
    """(path, value, is a key) of every name in the document: the environment, server names, env variable
    names, secretFromEnv references and capabilities."""
    yield ("environment",), document.get("environment"), False
    servers = document.get("servers")
    for index, server in enumerate(servers if isinstance(servers, list) else ()):
        if not isinstance(server, dict):
            continue
        yield ("servers", index, "name"), server.get("name"), False
        env = server.get("env")
        for key, value in env.items() if isinstance(env, dict) else ():
            yield ("servers", index, "env", key), key, True
            if isinstance(value, dict):
                yield ("servers", index, "env", key, "secretFromEnv"), value.get("secretFromEnv"), False
        capabilities = server.get("capabilities")
        for position, capability in enumerate(capabilities if isinstance(capabilities, list) else ()):
            yield ("servers", index, "capabilities", position), capability, False
        tools = server.get("tools")
        for position, tool in enumerate(tools if isinstance(tools, list) else ()):
            yield ("servers", index, "tools", position), tool, False


def check_names(document: Any) -> list[SchemaIssue]:
    """Names holding a control character, which a pattern may miss (Python's ``$`` matches before a final
    newline) or word vaguely."""
    if not isinstance(document, dict):
        return []
    issues = []
    for path, value, is_key in _names(document):
        found = control_character(value) if isinstance(value, str) else None
        if found is not None:
            what = "name" if is_key or path[-1] in ("environment", "name") else "value"
            issues.append(
                SchemaIssue(path, f"contains a control character ({found}); a {what} must be printable", is_key)
            )
    return issues
