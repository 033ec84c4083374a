"""The spec hash: a stable digest of the fields that need a new container when they change.

Secret values enter only through a keyed HMAC fingerprint, so neither the hash nor the stored config can
reveal them. ``HASH_VERSION`` is stored beside every hash: a future change of the algorithm compares
like with like instead of restarting every server.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Mapping

from reconciler.model.spec import DEFAULT_HOST_IP, SecretRef, ServerSpec

HASH_VERSION = 1
# One encoder for every hash: json.dumps with options builds a new JSONEncoder per call. The output is
# byte for byte that of json.dumps(..., sort_keys=True, separators=(",", ":")).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
SECRET_MARKER = "(sensitive)"


def fingerprint_secret(key: bytes, value: str) -> str:
    """A keyed fingerprint of a secret value: equal values match, nothing about the value leaks."""
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def key_id(key: bytes) -> str:
    """Which key made a fingerprint, stored beside the fingerprints: 8 hex digits of HMAC(key, "key-id"),
    telling keys apart without revealing the key."""
    return hmac.new(key, b"key-id", hashlib.sha256).hexdigest()[:8]


class Fingerprints(dict[str, str]):
    """Secret fingerprints by variable name, with the id of the key that made them."""

    def __init__(self, items: Mapping[str, str] | None = None, *, key_id: str | None = None) -> None:
        super().__init__(items or {})
        self.key_id = key_id


def hashed_fields(spec: ServerSpec, secret_fingerprints: Mapping[str, str]) -> dict[str, object]:
    """The canonical form hashed. ``secret_fingerprints`` maps an env var name to its fingerprint."""
    env: dict[str, str] = {}
    for key, value in spec.env:
        if isinstance(value, SecretRef):
            env[key] = "secret:" + secret_fingerprints.get(value.env_var, "unresolved")
        else:
            env[key] = "plain:" + value
    fields: dict[str, object] = {
        "image": spec.image,
        "transport": spec.transport,
        "endpoint": spec.endpoint,
        "port": spec.port,
        "host_port": spec.host_port,
        "capabilities": sorted(spec.capabilities),
        "env": env,
    }
    # Added after the first release: hashed only when it differs from the default, so the hash of every
    # server that does not name one stays what it was (no replace of every server on upgrade).
    if spec.host_port is not None and spec.effective_host_ip != DEFAULT_HOST_IP:
        fields["host_ip"] = spec.effective_host_ip
    return fields


def spec_hash(spec: ServerSpec, secret_fingerprints: Mapping[str, str]) -> str:
    # The same specs are planned every cycle (the daemon keeps the parsed manifests), so the hash is
    # memoised on the spec and the fingerprints it reads: encoding and hashing 10,000 specs each cycle was
    # a tenth of the steady state's CPU.
    used = tuple(
        (value.env_var, secret_fingerprints.get(value.env_var))
        for _, value in spec.env
        if isinstance(value, SecretRef)
    )
    return _spec_hash(spec, used)


@functools.lru_cache(maxsize=65536)
def _spec_hash(spec: ServerSpec, used: tuple[tuple[str, str | None], ...]) -> str:
    fingerprints = {name: fp for name, fp in used if fp is not None}
    canonical = _CANONICAL.encode(hashed_fields(spec, fingerprints))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
