"""The spec hash is stored beside every managed container: its bytes must never change by accident."""

from __future__ import annotations

import hashlib
import json

from reconciler.model.spec import SecretRef, ServerSpec
from reconciler.model.spec_hash import hashed_fields, spec_hash

SPEC = ServerSpec(
    name="context7",
    image="ghcr.io/upstash/context7-mcp:1.0.6",
    transport="sse",
    endpoint="/sse",
    port=8080,
    host_port=31001,
    capabilities=("tools", "prompts"),
    env=(("LOG_LEVEL", "info"), ("API_KEY", SecretRef("CTX_KEY")), ("NOTE", "café ☕")),
)
PRINTS = {"CTX_KEY": "hmac-sha256:0123456789abcdef0123456789abcdef"}


def test_the_hash_is_the_sha256_of_the_sorted_compact_json_of_the_hashed_fields() -> None:
    canonical = json.dumps(hashed_fields(SPEC, PRINTS), sort_keys=True, separators=(",", ":"))
    assert spec_hash(SPEC, PRINTS) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_the_hash_of_a_known_spec_is_pinned() -> None:
    assert spec_hash(SPEC, PRINTS) == PINNED
    assert spec_hash(SPEC, {}) != PINNED  # the secret's fingerprint takes part


PINNED = "sha256:b90a52718aa9a501dcc0a23fdda7397e6f14095b99518ef5e72f3f040dbcbe57"
