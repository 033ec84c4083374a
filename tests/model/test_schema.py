"""The schema itself, the fast path's agreement with jsonschema, and the generated field reference."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.model.json_path import format_path
from reconciler.model.reference import manifest_reference_markdown
from reconciler.model.schema_check import _fast_valid, check_document, manifest_schema


def test_schema_is_valid_draft_2020_12() -> None:
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def _objects(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [schema] if "properties" in schema else []
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            found.extend(_objects(sub))
    return found


def test_every_object_refuses_unknown_keys_and_every_property_is_described() -> None:
    objects = _objects(manifest_schema())
    assert len(objects) >= 4  # document, policy, server, env value
    for obj in objects:
        assert obj.get("additionalProperties") is False, obj.get("description")
        for name, prop in obj["properties"].items():
            assert len(prop.get("description", "")) > 10, name


def test_reference_lists_every_property_with_its_description() -> None:
    reference = manifest_reference_markdown()
    schema = manifest_schema()
    for obj in _objects(schema):
        for name, prop in obj["properties"].items():
            assert f"{name}`" in reference
            assert prop["description"].replace("|", "\\|") in reference
    assert reference.startswith("| field | type | required | meaning |\n|---|---|---|---|\n")
    assert "| `servers[].hostPort` | integer 1..65535 | no |" in reference
    assert "| `servers[].transport` | `stdio` \\| `sse` \\| `streamable-http` \\| `websocket` | yes |" in reference


def test_json_paths_are_written_as_in_messages() -> None:
    assert format_path(()) == "$"
    assert format_path(("servers", 2, "env", "API_KEY")) == "servers[2].env.API_KEY"
    assert format_path(("servers", 0, "env", "a.b")) == 'servers[0].env["a.b"]'
    assert format_path(("servers", 0, "env", 'q"\n')) == 'servers[0].env["q\\"\\x0a"]'


# --- the fast path never says "valid" where jsonschema would not, and check_document agrees with it

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=70000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "ab", "a b", "/mcp", "mcp", "stdio", "sse", "running", "stopped", "tools", "x:1"]),
    st.text(max_size=8),
)
_anything = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def server_like(draw: st.DrawFn) -> dict[str, Any]:
    server: dict[str, Any] = {
        "name": draw(st.sampled_from(["ctx", "a", "my srv", "fetch-1", "ab\n", "é1"])),
        "image": draw(st.sampled_from(["mcp/x:1", "", "X"])),
        "transport": draw(st.sampled_from(["stdio", "sse", "http"])),
    }
    optional = {
        "endpoint": st.sampled_from(["/mcp", "mcp"]),
        "port": st.one_of(st.integers(-1, 70000), st.floats(0, 70000), st.booleans()),
        "hostPort": st.integers(29999, 30001),
        "capabilities": st.lists(st.sampled_from(["tools", "resources", "Bad", 3]), max_size=3),
        "state": st.sampled_from(["running", "stopped", "paused"]),
        "protect": st.one_of(st.booleans(), st.just("no")),
        "env": st.dictionaries(
            st.sampled_from(["A", "B_1", "1X", "a.b"]),
            st.one_of(
                st.text(max_size=4),
                st.integers(),
                st.fixed_dictionaries({"secretFromEnv": st.sampled_from(["TOKEN", "1A", 5])}),
                st.dictionaries(st.sampled_from(["secretFromEnv", "other"]), st.text(max_size=3), max_size=2),
            ),
            max_size=3,
        ),
        "extra": _anything,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            server[key] = draw(strategy)
    for key in draw(st.lists(st.sampled_from(["name", "image", "transport"]), max_size=1)):
        server.pop(key, None)
    return server


@st.composite
def document_like(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_anything)
    doc: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from(["mcp-reconciler/v1", "v1"])),
        "kind": "Toolbox",
        "environment": draw(st.sampled_from(["tb", "", 5])),
        "servers": draw(st.lists(server_like(), max_size=3)),
    }
    if draw(st.booleans()):
        doc["policy"] = draw(
            st.dictionaries(
                st.sampled_from(["prune", "allowEmpty", "purne"]), st.booleans() | _scalars, max_size=2
            )
        )
    if draw(st.integers(0, 4)) == 0:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document_like())
def test_fast_path_agrees_with_jsonschema(document: Any) -> None:
    errors = list(Draft202012Validator(manifest_schema()).iter_errors(document))
    if _fast_valid(document):
        assert errors == []
    assert (check_document(document) == []) == (errors == [])
