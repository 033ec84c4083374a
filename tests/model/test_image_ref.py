"""Docker image references: what ``docker pull`` accepts, and why the rest is refused."""

from __future__ import annotations

import pytest

from reconciler.model.image_ref import image_reference_problem

DIGEST = "sha256:" + "0123456789abcdef" * 4

VALID = [
    "alpine",
    "mcp/fetch",
    "mcp/fetch:latest",
    "docker.io/mcp/fetch:1.0.2",
    "ghcr.io/upstash/context7-mcp:1.0.6",
    "localhost/tool",
    "localhost:5000/tool:dev",
    "registry.example.com:443/team/sub-team/tool_name:v1.2.3-rc.1",
    f"ghcr.io/org/tool@{DIGEST}",
    f"ghcr.io/org/tool:1.0@{DIGEST}",
    "a__b/c.d/e--f",
    "[::1]:5000/tool:1",
    "tool:" + "t" * 128,
]

INVALID = [
    ("", "image reference is empty"),
    (" alpine", "image reference must not contain whitespace"),
    ("Alpine", "repository path 'Alpine' must be lowercase"),
    ("ghcr.io/Org/tool", "repository path 'Org/tool' must be lowercase"),
    ("tool:", "tag '' is not valid"),
    ("tool:-x", "tag '-x' is not valid"),
    ("tool:" + "t" * 129, "is not valid"),
    ("tool@sha256:ABC", "digest must be sha256: followed by 64 lowercase hex digits"),
    ("tool@md5:" + "0" * 32, "digest must be sha256"),
    ("/tool", "repository path has an empty component"),
    ("tool/", "repository path has an empty component"),
    ("-tool", "repository path component '-tool' is not valid"),
    ("to..ol", "repository path component 'to..ol' is not valid"),
    ("bad_host.example.com/tool", "registry 'bad_host.example.com' is not a valid host[:port]"),
    ("example.com:123456/tool", "registry 'example.com:123456' is not a valid host[:port]"),
    (":tag", "image reference has no repository name"),
    ("x/" + "a" * 260, "repository name is longer than 255 characters"),
]


@pytest.mark.parametrize("reference", VALID)
def test_valid_references(reference: str) -> None:
    assert image_reference_problem(reference) is None


@pytest.mark.parametrize(("reference", "problem"), INVALID)
def test_invalid_references_say_what_is_wrong(reference: str, problem: str) -> None:
    found = image_reference_problem(reference)
    assert found is not None
    assert problem in found
