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


class Redactor:
    """The forms of a fixed set of secret values, worked out once: the executor cleans every step's text with
    the same values (the secrets and every toolbox's token: a hundred toolboxes sharing one token made the
    per-call work most of a create's redaction)."""

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in secrets:
            if len(value) < 4:  # a one-character "secret" would blank every message; such values are not secrets
                continue
            forms.add(value)
            forms.add(json.dumps(value)[1:-1])  # as it appears inside an echoed JSON body
            forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
        # Longest first, so a value that contains another is replaced whole.
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, REDACTED)
        return text

    def agent_text(self, text: str, limit: int = MAX_AGENT_TEXT) -> str:
        """``text`` redacted, then cut to ``limit`` characters (redacting first, so a cut never leaves half a
        secret behind)."""
        clean = self.redact(text) if text else text
        if len(clean) > limit:
            clean = clean[: limit - 1] + "…"
        return clean


def redact(text: str, secrets: Iterable[str]) -> str:
    return Redactor(secrets).redact(text)


def agent_text(text: str, secrets: Iterable[str], limit: int = MAX_AGENT_TEXT) -> str:
    """``text`` redacted of every secret, then cut to ``limit`` characters (redacting first, so a cut never
    leaves half a secret behind)."""
    return Redactor(secrets).agent_text(text, limit)
