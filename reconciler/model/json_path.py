"""JSON paths as tuples of keys and indices, and how they are written in messages: ``servers[2].env.API_KEY``."""

from __future__ import annotations

import re
from collections.abc import Iterable

JsonPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_path(path: Iterable[str | int]) -> str:
    """``$`` for the document itself; keys that are not identifiers are quoted (``env["A.B"]``)."""
    out: list[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            out.append(f".{step}" if out else step)
        else:
            out.append(f"[{_quote(step)}]")
    return "".join(out) or "$"


def _quote(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped) + '"'
