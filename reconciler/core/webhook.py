"""GitHub's webhook signature (``X-Hub-Signature-256: sha256=HEX``, an HMAC-SHA256 of the raw body keyed by
the hook's secret), checked in constant time. Pure."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

PREFIX = "sha256="


class Signature(StrEnum):
    MISSING = "missing"  # no header: the sender did not sign (401)
    WRONG = "wrong"  # a header that is not ours: another secret, a changed body, or not a signature (403)
    VALID = "valid"


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub sends for ``body`` (tests and the docs' curl example use it)."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_signature(secret: bytes, body: bytes, header: str | None) -> Signature:
    if not header:
        return Signature.MISSING
    expected = sign(secret, body)
    # compare_digest on bytes of equal meaning: a malformed header costs the same as a wrong one.
    if hmac.compare_digest(header.strip().lower().encode("ascii", "replace"), expected.encode("ascii")):
        return Signature.VALID
    return Signature.WRONG
