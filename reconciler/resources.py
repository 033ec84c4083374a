"""Finds the data shipped beside the code: schemas/, state/ and examples/, in a source tree or an installed
wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``schemas``, ``state`` or ``examples``: inside the wheel (reconciler/_data/NAME) or at the top of the
    source tree."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ directory shipped with mcp-reconciler")


def schema_path(filename: str) -> Path:
    return data_dir("schemas") / filename
