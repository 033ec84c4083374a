# ruff: noqa: E501
"""Hand-written broken manifests: each gives exactly these issues, at exactly these places.

Each case is a manifest text and the issues expected, written ``line:column: path: message`` (the file
name is the same for all and checked separately).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ManifestError
from reconciler.model.loader import load_manifests

HEAD = "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\nservers:\n"


def server(*lines: str) -> str:
    """A manifest with one server: name a1, image x:1, transport sse, plus ``lines`` (4-space indent)."""
    body = "".join(f"    {line}\n" for line in lines)
    return HEAD + "  - name: a1\n    image: x:1\n    transport: sse\n" + body


NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit, at least 2 characters"

CASES: list[tuple[str, str, list[str]]] = [
    # --- YAML syntax and unsafe constructs
    ("tab-indent", HEAD + "  - name: a1\n\timage: x\n",
     ["6:1: $: YAML syntax error: found a tab character that violates indentation (while scanning a plain scalar)"]),
    ("unclosed-flow-mapping", HEAD + "  - {name: a1, image: x\n",
     ["6:1: $: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping)"]),
    ("bad-indentation", HEAD + "  - name: a1\n   image: x\n",
     ["6:4: $: YAML syntax error: did not find expected '-' indicator (while parsing a block collection)"]),
    ("python-object-tag", HEAD + "  - !!python/object/apply:os.system [ls]\n",
     ["5:5: servers[0]: unsupported YAML tag python/object/apply:os.system"]),
    ("custom-tag", HEAD + "  - name: !env a1\n    image: x:1\n    transport: stdio\n",
     ["5:11: servers[0].name: unsupported YAML tag !env"]),
    ("binary-tag", HEAD + "  - name: a1\n    image: !!binary aGVsbG8=\n    transport: stdio\n",
     ["6:12: servers[0].image: unsupported YAML tag binary"]),
    ("set-tag", HEAD + "  - !!set {a, b}\n", ["5:5: servers[0]: unsupported YAML tag set"]),
    ("invalid-explicit-int", server("port: !!int eighty"), ["8:11: servers[0].port: 'eighty' is not a valid int"]),
    ("duplicate-key", HEAD + "  - name: a1\n    name: a2\n    image: x:1\n    transport: stdio\n",
     ["6:5: servers[0].name: duplicate key 'name' (first at line 5)"]),
    ("merge-key", "base: &b {image: 'x:1', transport: stdio}\n" + HEAD + "  - name: a1\n    <<: *b\n",
     ["1:1: base: unknown key 'base'; allowed: apiVersion, environment, kind, policy, servers",
      "7:5: servers[0]: merge keys (<<) are not supported; write the keys out"]),
    ("undefined-alias", HEAD + "  - *nothere\n",
     ["5:5: servers[0]: alias *nothere refers to no complete anchor before it"]),
    ("recursive-alias", HEAD + "  - &a [*a]\n",
     ["5:5: servers[0]: expected mapping, got list",
      "5:9: servers[0][0]: alias *a refers to no complete anchor before it"]),
    ("complex-key", HEAD + "  - ? [a, b]\n    : c\n", ["5:7: servers[0]: mapping keys must be plain strings"]),
    ("integer-env-key", server("env:", "  1: x"),
     ["9:7: servers[0].env: mapping key '1' reads as int, not a string (quote it)"]),
    ("integer-of-5000-digits", server("port: " + "9" * 5000),
     ["8:11: servers[0].port: integer is too large (more than 100 digits)"]),
    ("hexadecimal-integer-of-4000-digits", server("port: 0x" + "f" * 4000),
     ["8:11: servers[0].port: integer is too large (more than 100 digits)"]),
    ("control-character", HEAD + "  - name: a\x07b\n", ["5:12: $: YAML error: control characters are not allowed"]),
    # --- control characters through escapes, in every kind of name
    ("environment-with-escape-sequence",
     "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: \"tb\\e[31m\"\nservers: []\n",
     ["3:14: environment: contains a control character (U+001B); a name must be printable"]),
    ("environment-with-bell", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: \"tb\\a\"\nservers: []\n",
     ["3:14: environment: contains a control character (U+0007); a name must be printable"]),
    ("server-name-ending-in-newline", HEAD + "  - name: \"a1\\n\"\n    image: x:1\n    transport: sse\n",
     ["5:11: servers[0].name: contains a control character (U+000A); a name must be printable"]),
    ("server-name-with-carriage-return", HEAD + "  - name: \"a\\r1\"\n    image: x:1\n    transport: sse\n",
     ["5:11: servers[0].name: contains a control character (U+000D); a name must be printable"]),
    ("env-name-with-escape", server("env:", "  \"A\\e\": x"),
     ["9:7: servers[0].env[\"A\\x1b\"]: contains a control character (U+001B); a name must be printable"]),
    ("secret-variable-with-bidi-override", server("env:", "  K: {secretFromEnv: \"K\\u202e\"}"),
     ["9:26: servers[0].env.K.secretFromEnv: contains a control character (U+202E); a value must be printable"]),
    ("capability-ending-in-newline", server("capabilities: [\"tools\\n\"]"),
     ["8:20: servers[0].capabilities[0]: contains a control character (U+000A); a value must be printable"]),
    # --- document shape
    ("root-is-a-list", "- a\n- b\n",
     ["1:1: $: a manifest document must be a mapping with apiVersion, kind, environment and servers"]),
    ("root-is-a-scalar", "hello\n",
     ["1:1: $: a manifest document must be a mapping with apiVersion, kind, environment and servers"]),
    ("only-comments", "# nothing here\n", ["1:1: $: the file holds no manifest document"]),
    ("wrong-api-version", "apiVersion: v1\nkind: Toolbox\nenvironment: tb\nservers: []\n",
     ["1:13: apiVersion: must be 'mcp-reconciler/v1' (got 'v1')"]),
    ("wrong-kind", "apiVersion: mcp-reconciler/v1\nkind: Toolboxes\nenvironment: tb\nservers: []\n",
     ["2:7: kind: must be 'Toolbox' (got 'Toolboxes')"]),
    ("missing-environment", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nservers: []\n",
     ["1:1: $: missing required key 'environment'"]),
    ("numeric-environment", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: 42\nservers: []\n",
     ["3:14: environment: expected string, got integer (quote numbers and booleans)"]),
    ("empty-environment", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: ''\nservers: []\n",
     ["3:14: environment: must not be empty"]),
    ("servers-is-a-mapping", HEAD + "  a: 1\n", ["5:3: servers: expected list, got mapping"]),
    ("policy-typo", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\npolicy:\n  purne: true\n"
     "servers: []\n", ["5:3: policy.purne: unknown key 'purne' (did you mean 'prune'?)"]),
    ("policy-string", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\npolicy:\n  prune: 'yes'\n"
     "servers: []\n", ["5:10: policy.prune: expected boolean, got string"]),
    ("servers-misspelt", "apiVersion: mcp-reconciler/v1\nkind: Toolbox\nenvironment: tb\nserver: []\n",
     ["1:1: $: missing required key 'servers'", "4:1: server: unknown key 'server' (did you mean 'servers'?)"]),
    ("server-is-a-string", HEAD + "  - just-a-string\n", ["5:5: servers[0]: expected mapping, got string"]),
    # --- server fields
    ("missing-image-and-typo", HEAD + "  - name: a1\n    imgae: x:1\n    transport: sse\n",
     ["5:5: servers[0]: missing required key 'image'",
      "6:5: servers[0].imgae: unknown key 'imgae' (did you mean 'image'?)"]),
    ("unknown-transport", HEAD + "  - name: a1\n    image: x:1\n    transport: http\n",
     ["7:16: servers[0].transport: must be one of stdio, sse, streamable-http, websocket (got 'http')"]),
    ("port-as-string", server("port: '8080'"), ["8:11: servers[0].port: expected integer, got string"]),
    ("port-zero", server("port: 0"), ["8:11: servers[0].port: must be at least 1 (got 0)"]),
    ("port-too-high", server("port: 70000"), ["8:11: servers[0].port: must be at most 65535 (got 70000)"]),
    ("port-fraction", server("port: 80.5"), ["8:11: servers[0].port: expected integer, got number"]),
    ("host-port-without-port", server("hostPort: 31000"),
     ["8:15: servers[0].hostPort: 'hostPort' needs 'port' (the container port it maps to)"]),
    ("host-port-of-the-dtma", server("port: 8080", "hostPort: 30000"),
     ["9:15: servers[0].hostPort: 30000 is the DTMA agent's own port"]),
    ("host-port-twice",
     HEAD + "  - {name: a1, image: 'x:1', transport: sse, port: 80, hostPort: 31000}\n"
     "  - {name: a2, image: 'x:1', transport: sse, port: 80, hostPort: 31000}\n",
     ["6:66: servers[1].hostPort: host port 31000 is already used by servers[0] (line 5)"]),
    ("unknown-state", server("state: paused"),
     ["8:12: servers[0].state: must be one of running, stopped (got 'paused')"]),
    ("capabilities", server("capabilities: [tools, tools, Bad Cap]"),
     ["8:19: servers[0].capabilities: has duplicate items",
      "8:34: servers[0].capabilities[2]: does not match ^[a-z][a-zA-Z0-9_-]*$"]),
    ("endpoint-not-a-path", server("endpoint: mcp"),
     ["8:15: servers[0].endpoint: 'mcp' must be an HTTP path starting with '/'"]),
    ("protect-as-string", server("protect: 'no'"), ["8:14: servers[0].protect: expected boolean, got string"]),
    # --- container names
    ("name-one-character", HEAD + "  - name: a\n    image: x:1\n    transport: sse\n",
     [f"5:11: servers[0].name: 'a' is not a valid container name: {NAME_RULE}"]),
    ("name-with-space", HEAD + "  - name: my server\n    image: x:1\n    transport: sse\n",
     [f"5:11: servers[0].name: 'my server' is not a valid container name: {NAME_RULE}"]),
    ("name-leading-dash", HEAD + "  - name: -srv\n    image: x:1\n    transport: sse\n",
     [f"5:11: servers[0].name: '-srv' is not a valid container name: {NAME_RULE}"]),
    ("name-is-a-number", HEAD + "  - name: 123\n    image: x:1\n    transport: sse\n",
     ["5:11: servers[0].name: expected string, got integer (quote numbers and booleans)"]),
    ("duplicate-server-name",
     HEAD + "  - {name: a1, image: 'x:1', transport: sse}\n  - {name: a1, image: 'y:1', transport: sse}\n",
     ["6:12: servers[1].name: duplicate server name 'a1' (first at servers[0], line 5)"]),
    # --- image references
    ("image-uppercase", HEAD + "  - name: a1\n    image: GHCR.io/Org/Tool:1\n    transport: sse\n",
     ["6:12: servers[0].image: 'GHCR.io/Org/Tool:1': repository path 'Org/Tool' must be lowercase"]),
    ("image-short-digest", HEAD + "  - name: a1\n    image: ghcr.io/org/tool@sha256:abc\n    transport: sse\n",
     ["6:12: servers[0].image: 'ghcr.io/org/tool@sha256:abc': "
      "digest must be sha256: followed by 64 lowercase hex digits"]),
    ("image-bad-tag", HEAD + "  - name: a1\n    image: 'ghcr.io/org/tool:.bad'\n    transport: sse\n",
     ["6:12: servers[0].image: 'ghcr.io/org/tool:.bad': tag '.bad' is not valid "
      "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"]),
    ("image-empty", HEAD + "  - name: a1\n    image: ''\n    transport: sse\n",
     ["6:12: servers[0].image: must not be empty"]),
    ("image-double-slash", HEAD + "  - name: a1\n    image: ghcr.io//tool\n    transport: sse\n",
     ["6:12: servers[0].image: 'ghcr.io//tool': repository path has an empty component (check the slashes)"]),
    ("image-bad-registry-port", HEAD + "  - name: a1\n    image: 'my-registry:99999999/tool:1'\n    transport: sse\n",
     ["6:12: servers[0].image: 'my-registry:99999999/tool:1': registry 'my-registry:99999999' "
      "is not a valid host[:port]"]),
    ("image-with-space", HEAD + "  - name: a1\n    image: 'foo:bad tag'\n    transport: sse\n",
     ["6:12: servers[0].image: 'foo:bad tag': image reference must not contain whitespace"]),
    # --- env and secrets
    ("env-as-list", server("env: [A=1]"), ["8:10: servers[0].env: expected mapping, got list"]),
    ("env-boolean", server("env:", "  DEBUG: true"),
     ["9:14: servers[0].env.DEBUG: expected a string or {secretFromEnv: VAR}, got boolean "
      "(quote numbers and booleans)"]),
    ("env-null", server("env:", "  DEBUG:"),
     ["9:13: servers[0].env.DEBUG: expected a string or {secretFromEnv: VAR}, got null"]),
    ("env-date", server("env:", "  SINCE: 2024-01-01"),
     ["9:14: servers[0].env.SINCE: expected a string or {secretFromEnv: VAR}, got date"]),
    ("env-bad-name", server("env:", "  a.b: c"),
     ["9:7: servers[0].env[\"a.b\"]: 'a.b' is not a valid environment variable name"]),
    ("secret-extra-key", server("env:", "  K: {secretFromEnv: K, default: x}"),
     ["9:29: servers[0].env.K.default: unknown key 'default'; allowed: secretFromEnv"]),
    ("secret-misspelt", server("env:", "  K: {secret: K}"),
     ["9:10: servers[0].env.K: missing required key 'secretFromEnv'",
      "9:11: servers[0].env.K.secret: unknown key 'secret' (did you mean 'secretFromEnv'?)"]),
    ("secret-bad-variable", server("env:", "  K: {secretFromEnv: 1A}"),
     ["9:26: servers[0].env.K.secretFromEnv: must be an environment variable name "
      "(letters, digits and '_', not starting with a digit)"]),
    # --- readiness: the request line a probe writes, and its deadline
    ("readiness-timeout-nan", server("port: 8080", "hostPort: 31001", "readiness: {timeout: .nan}"),
     ["10:26: servers[0].readiness.timeout: must be a number of seconds, not NaN"]),
    ("readiness-path-crlf", server("port: 8080", "hostPort: 31001", 'readiness: {type: http, path: "/h\\r\\nX: y"}'),
     ["10:35: servers[0].readiness.path: an HTTP path holds no whitespace, control or non-ASCII character "
      "(found U+000D); percent-encode it"]),
    ("endpoint-with-space", server("endpoint: /m cp"),
     ["8:15: servers[0].endpoint: an HTTP path holds no whitespace, control or non-ASCII character "
      "(found U+0020); percent-encode it"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_broken_manifest_reports_exactly(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert {i.file for i in caught.value.issues} == {str(path)}
    assert [f"{i.line}:{i.column}: {i.path}: {i.message}" for i in caught.value.issues] == expected
    for issue in caught.value.issues:
        assert str(issue) == f"{path}:{issue.line}:{issue.column}: {issue.path}: {issue.message}"


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({name for name, _, _ in CASES}) == len(CASES)


def test_all_issues_of_all_files_come_at_once(tmp_path: Path) -> None:
    for name, text, _ in CASES[:10]:
        (tmp_path / f"{name}.yaml").write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifests([tmp_path])
    assert len({i.file for i in caught.value.issues}) == 10
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.issues) >= 10
