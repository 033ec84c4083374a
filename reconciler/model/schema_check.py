"""Checks a manifest document against ``schemas/manifest.v1.schema.json``.

Messages are rewritten from jsonschema's into short ones that name the field (``unknown key 'imgae'
(did you mean 'image'?)``), and never repeat a value found under ``env`` (it may be a pasted secret).

jsonschema costs about 70 µs per server; a small interpreter of the keywords this schema uses answers
"valid" for the common case several times faster, and jsonschema runs only on documents it doubts. The
interpreter is conservative: an unknown keyword or an unusual value sends the document to jsonschema,
and a test checks both always agree.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from reconciler.model.json_path import JsonPath
from reconciler.resources import schema_path

SCHEMA_FILE = "manifest.v1.schema.json"

_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})


@cache
def manifest_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(SCHEMA_FILE).read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(manifest_schema())


@dataclass(frozen=True)
class SchemaIssue:
    path: JsonPath
    message: str
    at_key: bool = False
    """Locate at the key rather than at the value (unknown keys, bad names)."""


def check_document(data: Any) -> list[SchemaIssue]:
    if _manifest_check()(data):
        return []
    issues: dict[SchemaIssue, None] = {}  # ordered set: jsonschema repeats some errors (one per missing key)
    for error in _validator().iter_errors(data):
        issues.update(dict.fromkeys(_translate(error)))
    return list(issues)


# ---------------------------------------------------------------------------------------------- fast path

Check = Callable[[Any], bool]


class _Unsure(Exception):
    """The schema uses something the fast path does not interpret: always ask jsonschema."""


def _fast_valid(schema: Mapping[str, Any], value: Any) -> bool:
    return _compiled(json.dumps(schema, sort_keys=True))(value)


@cache
def _manifest_check() -> Check:
    """The compiled fast check of the manifest schema (serialising the schema per document cost ~70 us)."""
    return _compiled(json.dumps(manifest_schema(), sort_keys=True))


@cache
def _compiled(schema_json: str) -> Check:
    schema = json.loads(schema_json)
    try:
        return _Compiler(schema).compile(schema)
    except _Unsure:
        return lambda value: False


_TYPE_CHECKS: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    # jsonschema also takes 8080.0 as an integer: the fast path says "unsure" (False) and lets it decide.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
}

_OBJECT_KEYWORDS = frozenset(
    {"properties", "required", "additionalProperties", "propertyNames", "dependentRequired"}
)


class _Compiler:
    """Turns the schema into nested closures once; each answers True only when jsonschema would."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root
        self._defs: dict[str, Check] = {}

    def compile(self, schema: Mapping[str, Any]) -> Check:
        checks: list[Check] = []
        for keyword, arg in schema.items():
            if keyword in _ANNOTATIONS or keyword in _OBJECT_KEYWORDS:
                continue
            checks.append(self._keyword(keyword, arg))
        if _OBJECT_KEYWORDS & schema.keys():
            checks.append(self._object(schema))
        return _all_of(checks)

    def _keyword(self, keyword: str, arg: Any) -> Check:
        if keyword == "$ref":
            if not isinstance(arg, str) or not arg.startswith("#/$defs/"):
                raise _Unsure
            name = arg[len("#/$defs/") :]
            if name not in self._defs:
                self._defs[name] = lambda value: False  # placeholder while compiling a recursive ref
                self._defs[name] = self.compile(self._root["$defs"][name])
            # A recursive reference would see the conservative placeholder; this schema has none.
            return self._defs[name]
        if keyword == "type":
            names = arg if isinstance(arg, list) else [arg]
            if any(n not in _TYPE_CHECKS for n in names):
                raise _Unsure
            type_checks = [_TYPE_CHECKS[n] for n in names]
            if len(type_checks) == 1:
                return type_checks[0]
            return lambda value: any(check(value) for check in type_checks)
        if keyword in ("const", "enum"):
            allowed = frozenset([arg] if keyword == "const" else arg)
            if not all(isinstance(a, str) for a in allowed):
                raise _Unsure
            return lambda value: isinstance(value, str) and value in allowed
        if keyword == "minLength":
            return lambda value: not isinstance(value, str) or len(value) >= arg
        if keyword == "maxLength":
            return lambda value: not isinstance(value, str) or len(value) <= arg
        if keyword == "pattern":
            search = re.compile(arg).search
            return lambda value: not isinstance(value, str) or search(value) is not None
        if keyword == "minimum":
            return lambda value: not _is_int(value) or value >= arg
        if keyword == "maximum":
            return lambda value: not _is_int(value) or value <= arg
        if keyword == "items":
            item = self.compile(arg)

            def items(value: Any) -> bool:
                if not isinstance(value, list):
                    return True
                for v in value:  # noqa: SIM110 (a loop: all() over a generator costs more here)
                    if not item(v):
                        return False
                return True

            return items
        if keyword == "uniqueItems":
            # Only lists of strings are judged here (jsonschema's equality has subtleties for others).
            return lambda value: (
                not arg
                or not isinstance(value, list)
                or (all(isinstance(v, str) for v in value) and len(set(value)) == len(value))
            )
        raise _Unsure

    def _object(self, schema: Mapping[str, Any]) -> Check:
        properties = {k: self.compile(v) for k, v in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        additional_arg = schema.get("additionalProperties", True)
        additional: Check | None = None
        if additional_arg is False:
            additional = None
        elif additional_arg is True:
            additional = _always
        else:
            additional = self.compile(additional_arg)
        names = self.compile(schema["propertyNames"]) if "propertyNames" in schema else _always
        dependent = dict(schema.get("dependentRequired", {}))
        if "patternProperties" in schema:
            raise _Unsure
        check_names = names is not _always

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for key, item in value.items():
                sub = properties.get(key)
                if sub is None:
                    if additional is None or not additional(item):
                        return False
                elif not sub(item):
                    return False
                if check_names and not names(key):
                    return False
            for key in required:
                if key not in value:
                    return False
            return not dependent or all(
                all(d in value for d in deps) for key, deps in dependent.items() if key in value
            )

        return check


def _always(value: Any) -> bool:
    return True


def _all_of(checks: list[Check]) -> Check:
    """True when every check is (a loop, not all() over a generator: this runs ~100k times per 1,000 files)."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)

    def check(value: Any) -> bool:
        for one in checks:  # noqa: SIM110 (a loop: all() over a generator costs more here)
            if not one(value):
                return False
        return True

    return check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
