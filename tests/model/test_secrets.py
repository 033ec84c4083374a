"""Resolving secretFromEnv references at plan/apply time, and their fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ManifestError
from reconciler.model.loader import load_manifests, resolve_secrets, secret_fingerprints
from reconciler.model.spec_hash import fingerprint_secret

CANARY = "CANARY-9f8e7d6c5b4a"

MANIFEST = """\
apiVersion: mcp-reconciler/v1
kind: Toolbox
environment: coding
servers:
  - name: github
    image: ghcr.io/github/github-mcp-server:v0.13.0
    transport: stdio
    env:
      PLAIN: visible
      GITHUB_PERSONAL_ACCESS_TOKEN: { secretFromEnv: GITHUB_TOKEN }
      SAME_TOKEN_AGAIN: { secretFromEnv: GITHUB_TOKEN }
  - name: search
    image: mcp/search:1
    transport: stdio
    env:
      KEY: {secretFromEnv: SEARCH_KEY}
"""


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "coding.yaml"
    path.write_text(MANIFEST)
    return path


def test_every_referenced_variable_is_resolved(manifest: Path) -> None:
    desired = load_manifests([manifest])
    values = resolve_secrets(desired, {"GITHUB_TOKEN": CANARY, "SEARCH_KEY": "", "UNRELATED": "x"})
    assert values == {"GITHUB_TOKEN": CANARY, "SEARCH_KEY": ""}


def test_each_missing_variable_is_reported_at_its_line_without_values(manifest: Path) -> None:
    desired = load_manifests([manifest])
    with pytest.raises(ManifestError) as caught:
        resolve_secrets(desired, {"SEARCH_KEY": CANARY})
    assert [str(i) for i in caught.value.issues] == [
        f"{manifest}:10:39: servers[0].env.GITHUB_PERSONAL_ACCESS_TOKEN.secretFromEnv: environment variable "
        "GITHUB_TOKEN is not set (server 'github' of environment 'coding' needs it)",
        f"{manifest}:11:27: servers[0].env.SAME_TOKEN_AGAIN.secretFromEnv: environment variable "
        "GITHUB_TOKEN is not set (server 'github' of environment 'coding' needs it)",
    ]
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(desired)


def test_fingerprints_are_keyed_and_hide_the_value() -> None:
    fps = secret_fingerprints({"GITHUB_TOKEN": CANARY, "OTHER": CANARY}, b"key-1")
    assert fps == {
        "GITHUB_TOKEN": fingerprint_secret(b"key-1", CANARY),
        "OTHER": fingerprint_secret(b"key-1", CANARY),
    }
    assert CANARY not in repr(fps)
    assert secret_fingerprints({"GITHUB_TOKEN": CANARY}, b"key-2")["GITHUB_TOKEN"] != fps["GITHUB_TOKEN"]


def test_manifests_without_secrets_need_no_environment(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.split("    env:", maxsplit=1)[0])
    assert resolve_secrets(load_manifests([path]), {}) == {}
