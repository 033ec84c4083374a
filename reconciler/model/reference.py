"""The manifest field reference, generated from the schema's descriptions.

The README embeds the output of ``manifest_reference_markdown()``, and a test checks it is still there
verbatim, so the documentation and the schema cannot drift apart. Regenerate with
``python -c "from reconciler.model.reference import manifest_reference_markdown as m; print(m(), end='')"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.model.schema_check import manifest_schema


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = root["$defs"][ref[len("#/$defs/") :]]
        return resolved
    return schema


def _type(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    schema = _resolve(schema, root)
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), root)}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return "map of name to " + _type(schema["additionalProperties"], root)
    if isinstance(kind, list):
        return " or ".join("mapping" if k == "object" else k for k in kind)
    if kind == "object":
        return "mapping"
    text = str(kind or "any")
    if "minimum" in schema and "maximum" in schema:
        text += f" {schema['minimum']}..{schema['maximum']}"
    return text


def _rows(schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, ...]]:
    schema = _resolve(schema, root)
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        field = f"{prefix}{name}"
        resolved = _resolve(sub, root)
        default = resolved.get("default")
        needed = "yes" if name in required else ("no" if default is None else f"no (`{str(default).lower()}`)")
        description = str(resolved.get("description", "")).replace("|", "\\|")
        yield (f"`{field}`", _type(sub, root), needed, description)
        if resolved.get("type") == "object" and "properties" in resolved:
            yield from _rows(resolved, root, f"{field}.")
        elif resolved.get("type") == "array":
            yield from _rows(resolved.get("items", {}), root, f"{field}[].")
        elif isinstance(resolved.get("additionalProperties"), dict):
            yield from _rows(resolved["additionalProperties"], root, f"{field}.NAME.")


def manifest_reference_markdown() -> str:
    """A markdown table of every manifest field: type, whether it is required, and what it means."""
    root = manifest_schema()
    lines = [
        "| field | type | required | meaning |",
        "|---|---|---|---|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in _rows(root, root, ""))
    return "\n".join(lines) + "\n"
