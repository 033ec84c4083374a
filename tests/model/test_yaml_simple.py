"""The line-by-line reader of the simple YAML subset must read exactly what the event path reads.

``parse_yaml`` reads a file written in the simple subset (block mappings and lists, one key or item per line,
one-line scalars and flow collections) line by line, and every other file from libyaml's events. Whenever the
line reader accepts a text, its documents (data, types, every position, the document start) and its problems
(it reports only keys that read as another type, such as a CI workflow's `on:`) must equal the event path's;
the loader's results and errors must not depend on which path read a file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import ManifestError
from reconciler.model import yaml_events, yaml_lines
from reconciler.model.loader import load_manifests
from reconciler.model.spec import Desired
from reconciler.model.yaml_lines import ParsedFile, YamlDocument

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SEEDS = [p.read_text() for p in EXAMPLES]
REPO_YAML = sorted(
    p for p in ROOT.rglob("*.y*ml") if ".git" not in p.parts and ".venv" not in p.parts and p.is_file()
)
BENCH_STYLE = "apiVersion: mcp-reconciler/v1\nenvironment: tb0001\nkind: Toolbox\nservers:\n" + "".join(
    f"- name: s{i:03d}\n  image: ghcr.io/acme/mcp-s{i:03d}:1.0.0\n  transport: sse\n  endpoint: /sse\n"
    "  port: 8080\n  capabilities:\n  - tools\n"
    for i in range(3)
)


def _events(text: str) -> ParsedFile:
    """The event path alone."""
    builder = yaml_events._Builder()
    loader = yaml_events._Loader(text)
    try:
        builder.run(loader)
    except yaml_events._Stop:
        pass
    except yaml.YAMLError:
        builder.issue((1, 1), (), "error")  # never equal to a result of the line reader
    finally:
        loader.dispose()
    return yaml_lines.ParsedFile(builder.documents, builder.issues)


def _canonical(document: YamlDocument) -> tuple[Any, ...]:
    """Every value with its type and every recorded position, in document order."""
    out: list[Any] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, dict):
            out.append((path, "map", list(document.positions._maps[id(value)].items())))
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list):
            out.append((path, "seq", document.positions._seqs[id(value)]))
            for index, item in enumerate(value):
                walk(item, (*path, index))
        else:
            out.append((path, type(value).__name__, value))

    walk(document.data, ())
    return (document.start, out, document.invalid)


def assert_same_as_events(text: str) -> bool:
    """True when the line reader took ``text`` (and then read it as the event path does)."""
    simple = yaml_lines._parse_simple(text)
    if simple is None:
        return False
    events = _events(text)
    assert simple.issues == events.issues, text
    assert [_canonical(d) for d in simple.documents] == [_canonical(d) for d in events.documents], text
    return True


def test_the_resolver_table_is_pyyaml_s() -> None:
    """The line reader resolves plain scalars with a copy of PyYAML's implicit resolvers and booleans."""
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    def table(resolvers: dict[Any, list[tuple[str, Any]]]) -> dict[Any, list[tuple[str, str, int]]]:
        return {k: [(tag, p.pattern, p.flags) for tag, p in v] for k, v in resolvers.items()}

    assert table(yaml_lines._RESOLVERS) == table(Resolver.yaml_implicit_resolvers)
    assert SafeConstructor.bool_values == yaml_lines._BOOL_VALUES
    resolver = Resolver()
    for text in ["", "~", "null", "NULL", "Null", "nULL", "yes", "Off", "oN", "y", "n", "1", "-1", "+1", "0x1F",
                 "0o17", "017", "0b101", "1_000", "1:30", "1.5", "1e3", "1.0e+3", ".inf", "-.Inf", ".NaN",
                 "2024-01-01", "2024-1-1 10:00:00", "<<", "=", "!", "&", "*", "a", "8080", "g:1"]:  # fmt: skip
        assert yaml_lines._plain_tag(text) == resolver.resolve(yaml.ScalarNode, text, (True, False)), text
        yaml_lines._RESOLVED.pop(text, None)


def test_the_examples_and_benchmark_manifests_take_the_line_reader() -> None:
    for text in [*SEEDS, BENCH_STYLE, yaml.safe_dump(yaml.safe_load(SEEDS[0]), sort_keys=False)]:
        assert assert_same_as_events(text)


@pytest.mark.parametrize("path", REPO_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_in_the_repository(path: Path) -> None:
    assert_same_as_events(path.read_text(encoding="utf-8-sig"))


# Each of these is read by the event path (it is outside the subset, or the subset reader must agree with it).
TRICKY = [
    "",
    "\n\n# only a comment\n",
    "---\n",
    "---\n---\n",
    "a: 1\n---\nb: 2\n",
    "--- # c\na: b\n...\n",
    "a: b\n  c\n",
    "a: b\n  c: d\n",
    "a:\nb: c\n",
    "a:\n",
    "- a\n- b\n",
    "a: [x, 'y', \"z\"]\nb: {k: v, l: 'w'}\nc: []\nd: {}\n",
    "a: {k: v, k: w}\n",
    "a: 1\na: 2\n",
    "true: x\n",
    "a: yes\nb: ~\nc: 1.5\nd: 0x1F\ne: 007\nf: 2024-01-01\ng: .inf\nh: =\n",
    "a: b:\n",
    "a: b: c\n",
    "a: b #c\n",
    "a: b#c\n",
    "a: 'it''s'\n",
    'a: "x\\ty"\n',
    "a: |\n  text\n",
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "a:\n- b\n- c\n",
    "a:\n  - b\n  - c\nd: e\n",
    "a:\n  - b\n   - c\n",
    "a:\n- b\nc: d\n",
    "- a: 1\n  b: 2\n- c: 3\n",
    "-  a: 1\n   b: 2\n",
    "- a:\n  - x\n  b: 1\n",
    "- a:\n  - x\n- b\n",
    "- a:\n- b\n",
    "- - a\n",
    "-\n  a: 1\n",
    "  a: 1\n  b: 2\n",
    "  a: 1\nb: 2\n",
    "a:\n    b: 1\n    c:\n      d: [e]\n",
    "a: 1 \nb: 2   # c\n",
    "a:   x   y  \n",
    "a: x  #  c\n",
    "a: '#x'\n",
    "key with space: 1\n",
    "a: b\r\nc: d\r\n",
    "a:\tb\n",
    "a: é\n",
    "a: " + "9" * 120 + "\n",
    "a: 1_000\n",
    "a: -1\n",
    "a: [a b]\n",
    "a: [a, ]\n",
    "a: {k:v}\n",
    "? a\n: b\n",
    "%YAML 1.1\n---\na: 1\n",
    "a: b\n...\n",
    "---a: 1\n",
    "a: ---\n",
    "a: ...\n",
    "a:\n  ...\n",
    "a:\n\n  # comment\n\n  b: 1\n",
    "a: x\n# c\n  y\n",
    "a: /sse\nb: ghcr.io/x/y:1.0@sha256:abc\nc: http://h:1/p?q=1&r=2\n",
    "a: x:y\nb: x::\nc: ':'\n",
    "a: [tools, resources, prompts]\n",
    "env:\n  A: { secretFromEnv: B }\n",
    "a: |\n  x\n  y\nb: 1\n",
    "a: |\n  x\n\n  y\n\n\nb: 1\n",
    "a: |\n\n  x\n",
    "a: |\n  x\n    y\n  z\n",
    "a: |\n    x\n  y\n",
    "a: |\nb: 1\n",
    "a: |\n  x",
    "a: | # c\n  x\n",
    "a: |-\n  x\n",
    "a: >\n  x\n",
    "- |\n  x\n",
    "a: |\n  x\n# c\nb: 1\n",
    "a: |\n  # not a comment\n  x\n",
    "a: |\n   \n  x\n",
    "a: |\n  x\n   \n  y\n",
    "a: |\n  x\n  \n",
    "a: |\n  x: y\n  - z\n  {\n  'q\n---\nb: |\n  w\n",
    "- a: |\n    x\n  b: 1\n",
    "a: x|y\nb: |\n  z\n",
    "on:\n  push:\n    branches: [main]\njobs: {}\n",
    "a:\n  - b: 1\n    on: x\n    yes:\n      on: |\n        t\n      off: [1]\n    c: 2\n",
    "on: 99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999\n",
    "on: {true: 1}\n",
    "null: 1\nNo:\n- x\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts(text: str) -> None:
    assert_same_as_events(text)


KEYS = ["name", "a", "env", "true", "x-y", "b_c", "servers", "8080"]
VALUES = ["v", "8080", "007", "'q'", '"d"', "[a, b]", "{k: v}", "~", "a b", "a: b", "x #c", "-", "|", "yes",
          "1.5", "", "''", "[]", "{}", "a:b", "*x", "&x y", "!t x"]  # fmt: skip


@st.composite
def _lines(draw: st.DrawFn) -> str:
    """Lines close to the subset with random indentation: most are outside it or wrongly indented."""
    out = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            out.append(draw(st.sampled_from(["", "# c", "---", "  # c"])))
            continue
        indent = " " * draw(st.integers(0, 6))
        dash = draw(st.sampled_from(["", "", "- ", "-  "]))
        key = draw(st.sampled_from(["", *KEYS]))
        value = draw(st.sampled_from(VALUES))
        comment = draw(st.sampled_from(["", "", " # c"]))
        body = f"{key}: {value}" if key and value else f"{key}:" if key else value
        out.append(f"{indent}{dash}{body}{comment}")
    return "\n".join(out) + draw(st.sampled_from(["\n", ""]))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines())
def test_random_lines(text: str) -> None:
    assert_same_as_events(text)


SCALARS = ["v", "8080", "0", "007", "true", "~", "1.5", "'q'", '"d"', "a b", "x:y", "/sse", "[a, 'b']", "{k: v}",
           "[]", "{}", "2024-01-01", "ghcr.io/a/b:1.0"]  # fmt: skip


@st.composite
def _documents(draw: st.DrawFn) -> str:
    """Nested mappings and lists in the subset, in random indentation and styles, with comments and blank
    lines between: most are read by the line reader."""
    out: list[str] = []
    names = st.sampled_from(["a", "b", "name", "env", "x-y", "c_d", "servers", "true"])

    def filler() -> None:
        out.extend(draw(st.lists(st.sampled_from(["", "# c", "   # c", "  "]), max_size=1)))

    def mapping(indent: int, depth: int, lead: str | None = None) -> None:
        """Keys at ``indent``; the first line starts with ``lead`` (a list item's dash) when given."""
        for key in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
            start = " " * indent if lead is None else lead
            lead = None
            kind = draw(st.integers(0, 6)) if depth < 3 else 0
            if kind == 6:
                out.append(f"{start}{key}: |{draw(st.sampled_from(['', ' # c']))}")
                inner = " " * (indent + draw(st.integers(1, 3)))
                for _ in range(draw(st.integers(0, 3))):
                    out.append(draw(st.sampled_from(["", inner, inner + "x: y", inner + "  - {z", inner + "# t"])))
            elif kind <= 2:
                out.append(f"{start}{key}: {draw(st.sampled_from(SCALARS))}{draw(st.sampled_from(['', ' # c']))}")
            elif kind == 3:
                out.append(f"{start}{key}:")
                filler()
                mapping(indent + draw(st.integers(1, 4)), depth + 1)
            else:
                out.append(f"{start}{key}:{draw(st.sampled_from(['', ' # c']))}")
                sequence(indent + draw(st.sampled_from([0, 2, 4])), depth + 1)
            filler()

    def sequence(indent: int, depth: int) -> None:
        for _ in range(draw(st.integers(1, 3))):
            gap = draw(st.sampled_from([" ", " ", "   "]))
            if draw(st.booleans()) and depth < 3:
                mapping(indent + 1 + len(gap), depth + 1, lead=" " * indent + "-" + gap)
            else:
                out.append(" " * indent + "-" + gap + draw(st.sampled_from(SCALARS)))
            filler()

    if draw(st.booleans()):
        out.append("---")
    mapping(0, 0)
    return "\n".join(out) + "\n"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_random_documents(text: str) -> None:
    assert_same_as_events(text)


BITS = [": ", "- ", "\n", "  ", " ", "{", "}", "[", "]", ",", "'", '"', "#", " #", "---\n", ":", "~", "-", "&a ",
        "*a", "!", "|", "true", "0", "007", "\t", "\r", "é", "...", ": |\n  ", "|\n"]  # fmt: skip


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([*SEEDS, BENCH_STYLE]),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 4), st.sampled_from(BITS) | st.text(max_size=2)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_manifests(seed: str, edits: list[tuple[int, int, str]]) -> None:
    text = seed
    for position, cut, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + cut :]
    assert_same_as_events(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*SEEDS, BENCH_STYLE]), st.data())
def test_reindented_manifests(seed: str, data: st.DataObject) -> None:
    lines = seed.split("\n")
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(lines) - 1))
        lines[at] = " " * data.draw(st.integers(0, 8)) + lines[at].lstrip(" ")
    assert_same_as_events("\n".join(lines))


def _load(text: str, tmp: Path) -> Desired | list[str]:
    path = tmp / "m.yaml"
    path.write_text(text)
    try:
        return load_manifests([path])
    except ManifestError as exc:
        return [str(i) for i in exc.issues]


@pytest.mark.parametrize(
    "text",
    [
        *SEEDS,
        BENCH_STYLE,
        BENCH_STYLE.replace("s001", "s000"),  # a duplicate name: "first at ... line N"
        BENCH_STYLE.replace("port: 8080", "port: 30000").replace("port:", "hostPort:"),
        BENCH_STYLE.replace("transport: sse", "transport: tcp", 1),
        BENCH_STYLE.replace("endpoint: /sse", "endpoint: /a b", 1),
        BENCH_STYLE + "  unknown: 1\n",
        BENCH_STYLE.replace("kind: Toolbox", "kind: [Toolbox]"),
        SEEDS[0].replace("GITHUB_TOKEN }", "'' }"),
        SEEDS[0] + "---\n" + SEEDS[0],  # the environment declared twice
    ],
)
def test_load_manifests_is_the_same_through_either_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results, positions in specs and every error message, with the line reader and without it."""
    with tempfile.TemporaryDirectory() as tmp:
        fast = _load(text, Path(tmp))
        monkeypatch.setattr(yaml_lines, "_parse_simple", lambda text: None)
        slow = _load(text, Path(tmp))
    assert fast == slow
    if isinstance(fast, Desired) and isinstance(slow, Desired):
        for mine, theirs in zip(fast.environments, slow.environments, strict=True):
            assert mine.source == theirs.source
            assert [s.source for s in mine.servers] == [s.source for s in theirs.servers]
            assert [v.source for s in mine.servers for _, v in s.secret_refs] == [
                v.source for s in theirs.servers for _, v in s.secret_refs
            ]
