"""Whatever the bytes, loading ends in a Desired or a ManifestError: never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import ManifestError
from reconciler.model.loader import load_manifests
from reconciler.model.spec import Desired

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEEDS = [p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))]
YAML_BITS = [": ", "- ", "\n", "  ", "{", "}", "[", "]", ",", "&a ", "*a", "!!", "!!python/object:os.system ",
             "? ", "<<: ", "'", '"', "#", "---\n", "...\n", "|\n", ">\n", "%YAML 1.1\n", "\t", "\x00", "\x85",
             "30000", "0x1F", "1e3", "~", "yes", ".inf", "2024-01-01", "é", "\ud7ff"]  # fmt: skip


def load_text(text: str | bytes) -> Desired | ManifestError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        try:
            return load_manifests([path])
        except ManifestError as exc:
            for issue in exc.issues:
                assert issue.file == str(path)
                assert issue.line >= 1 and issue.column >= 1
                assert "\n" not in str(issue)
            return exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=5), max_size=40).map("".join))
def test_random_yaml_like_text(text: str) -> None:
    assert isinstance(load_text(text), Desired | ManifestError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.sampled_from(YAML_BITS) | st.text(max_size=3)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_example_manifests(seed: str, edits: list[tuple[int, int, str]]) -> None:
    text = seed
    for position, cut, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + cut :]
    assert isinstance(load_text(text), Desired | ManifestError)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    assert isinstance(load_text(data), Desired | ManifestError)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_example_with_a_field_replaced_by_any_value(seed: str, data: st.DataObject) -> None:
    documents = list(yaml.safe_load_all(seed))
    document = documents[0]
    servers = document["servers"]
    target = data.draw(st.sampled_from([document, *servers, *(s.get("env", {}) for s in servers)]))
    key = data.draw(st.sampled_from([*sorted(target), "unknownKey"]))
    target[key] = data.draw(_values)
    result = load_text(yaml.safe_dump_all(documents, sort_keys=False))
    assert isinstance(result, Desired | ManifestError)
