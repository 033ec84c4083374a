"""Checks a manifest document against ``schemas/manifest.v1.schema.json``.

Messages are rewritten from jsonschema's into short ones that name the field (``unknown key 'imgae'
(did you mean 'image'?)``), and never repeat a value found under ``env`` (it may be a pasted secret).

jsonschema costs about 110 µs per server (and 100 ms to import); jsonschema-rs answers "valid" in under
1 µs per server, so jsonschema is imported and run only on documents jsonschema-rs rejects, to find and
word every error. A test checks that jsonschema-rs never accepts what jsonschema refuses.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from reconciler.model.json_path import JsonPath
from reconciler.resources import schema_path

SCHEMA_FILE = "manifest.v1.schema.json"


@cache
def manifest_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(SCHEMA_FILE).read_text(encoding="utf-8"))
    return schema


if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError


@cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(manifest_schema())


@dataclass(frozen=True)
class SchemaIssue:
    path: JsonPath
    message: str
    at_key: bool = False
    """Locate at the key rather than at the value (unknown keys, bad names)."""


def check_document(data: Any) -> list[SchemaIssue]:
    if _fast_valid(data):
        return []
    issues: dict[SchemaIssue, None] = {}  # ordered set: jsonschema repeats some errors (one per missing key)
    for error in _validator().iter_errors(data):
        issues.update(dict.fromkeys(_translate(error)))
    return list(issues)


# ---------------------------------------------------------------------------------------------- fast path


@cache
def _fast_validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(manifest_schema())


def _fast_valid(document: Any) -> bool:
    """jsonschema-rs's verdict; False (ask jsonschema) for values it cannot convert (dates, bytes, int keys,
    lone surrogates). Its regular expressions follow ECMA 262, where ``$`` never matches before a final
    newline as Python's does, so it is at most stricter than jsonschema, never looser."""
    try:
        return bool(_fast_validator().is_valid(document))
    except (ValueError, UnicodeError, TypeError):
        return False


# ------------------------------------------------------------------------------------------ messages

_TYPE_NAMES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    dict: "mapping",
    list: "list",
    type(None): "null",
}

_PATTERN_MESSAGES = {
    "name": "is not a valid container name: letters, digits, '_', '.' and '-', "
    "starting with a letter or digit, at least 2 characters",
    "endpoint": "must be an HTTP path starting with '/'",
    "secretFromEnv": "must be an environment variable name (letters, digits and '_', not starting with a digit)",
}


def _type_name(value: Any) -> str:
    for python_type, name in _TYPE_NAMES.items():
        if type(value) is python_type:
            return name
    return type(value).__name__


def _sensitive(path: JsonPath) -> bool:
    return "env" in path[:3]


def _show(value: Any, path: JsonPath) -> str:
    if _sensitive(path):
        return "(value hidden)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _translate(error: ValidationError) -> Iterator[SchemaIssue]:
    path: JsonPath = tuple(error.absolute_path)
    kind = str(error.validator)
    arg: Any = error.validator_value
    schema: Any = error.schema
    value = error.instance
    if kind == "additionalProperties" and isinstance(value, dict):
        known = sorted(schema.get("properties", {}))
        for key in value:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(known)}"
            yield SchemaIssue((*path, key), f"unknown key {key!r}{hint}", at_key=True)
        return
    if kind == "required":
        missing = [k for k in arg if isinstance(value, dict) and k not in value]
        for key in missing:
            yield SchemaIssue(path, f"missing required key {key!r}")
        return
    if kind == "dependentRequired" and isinstance(value, dict):
        for key, deps in arg.items():
            if key in value:
                for dep in deps:
                    if dep not in value:
                        yield SchemaIssue((*path, key), f"{key!r} needs {dep!r} (the container port it maps to)")
        return
    if "propertyNames" in error.relative_schema_path:
        # A key failed: error.instance is the key, and the path is the mapping's.
        yield SchemaIssue((*path, str(value)), f"{str(value)!r} is not a valid environment variable name", True)
        return
    yield SchemaIssue(path, _message(kind, arg, value, path))


def _message(kind: str, arg: Any, value: Any, path: JsonPath) -> str:
    last = path[-1] if path else ""
    if kind == "type":
        wanted = " or ".join(
            str(_TYPE_NAMES_BY_SCHEMA.get(t, t)) for t in (arg if isinstance(arg, list) else [arg])
        )
        hint = ""
        if isinstance(value, bool | int | float) and "string" in (arg if isinstance(arg, list) else [arg]):
            hint = " (quote numbers and booleans)"
        if len(path) == 4 and path[2] == "env":
            wanted = "a string or {secretFromEnv: VAR}"
        return f"expected {wanted}, got {_type_name(value)}{hint}"
    if kind == "const":
        return f"must be {arg!r} (got {_show(value, path)})"
    if kind == "enum":
        return f"must be one of {', '.join(map(str, arg))} (got {_show(value, path)})"
    if kind == "minimum":
        return f"must be at least {arg} (got {_show(value, path)})"
    if kind == "exclusiveMinimum":
        return f"must be greater than {arg} (got {_show(value, path)})"
    if kind == "maximum":
        return f"must be at most {arg} (got {_show(value, path)})"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"is longer than {arg} characters"
    if kind == "pattern":
        reason = _PATTERN_MESSAGES.get(str(last))
        if reason is None:
            return f"does not match {arg}"
        return f"{_show(value, path)} {reason}" if not _sensitive(path) else reason
    if kind == "uniqueItems":
        return "has duplicate items"
    return f"{_show(value, path)} breaks the schema's {kind!r} rule"


_TYPE_NAMES_BY_SCHEMA = {"object": "mapping", "array": "list"}
