"""Text that comes from an agent, made safe to print, log, store and journal.

An agent's error text can echo what it was sent (a 500 that repeats the request body carries the secret
environment values of a deploy). Every such text goes through ``agent_text`` before it leaves the executor:
each secret value in scope is replaced (raw, and as JSON would escape it), and the text is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

REDACTED = "[redacted]"
MAX_AGENT_TEXT = 500  # characters kept of an agent's text; Docker errors fit, echoed bodies do not


def redact(text: str, secrets: Iterable[str]) -> str:
    forms: set[str] = set()
    for value in secrets:
        if len(value) < 4:  # a one-character "secret" would blank every message; such values are not secrets
            continue
        forms.add(value)
        forms.add(json.dumps(value)[1:-1])  # as it appears inside an echoed JSON body
        forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def agent_text(text: str, secrets: Iterable[str], limit: int = MAX_AGENT_TEXT) -> str:
    """``text`` redacted of every secret, then cut to ``limit`` characters (redacting first, so a cut never
    leaves half a secret behind)."""
    clean = redact(text, secrets)
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return clean
