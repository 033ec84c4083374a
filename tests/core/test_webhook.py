"""GitHub's X-Hub-Signature-256, checked against GitHub's documented example."""

from __future__ import annotations

from reconciler.core.webhook import Signature, check_signature, sign


def test_githubs_documented_example_is_valid() -> None:
    # From GitHub's "Validating webhook deliveries": secret "It's a Secret to Everybody", body "Hello, World!".
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"It's a Secret to Everybody", b"Hello, World!") == header
    assert check_signature(b"It's a Secret to Everybody", b"Hello, World!", header) is Signature.VALID
    assert check_signature(b"It's a Secret to Everybody", b"Hello, World!", header.upper()) is Signature.VALID


def test_missing_wrong_and_malformed_signatures() -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = sign(b"s3cret", body)
    assert check_signature(b"s3cret", body, None) is Signature.MISSING
    assert check_signature(b"s3cret", body, "") is Signature.MISSING
    assert check_signature(b"other", body, good) is Signature.WRONG
    assert check_signature(b"s3cret", body + b" ", good) is Signature.WRONG
    assert check_signature(b"s3cret", body, good.replace("sha256=", "sha1=")) is Signature.WRONG
    assert check_signature(b"s3cret", body, "sha256=zz\u00e9") is Signature.WRONG
