"""Control characters from manifests, rows or agents are shown, never obeyed.

A name or value holding ESC, a bell, CR/LF or a bidirectional override would otherwise recolour the
terminal, forge output lines (a fake "No changes." or a fake annotation) or reorder what a reviewer reads.
Each becomes a visible escape: ``\\x1b``, ``\\n``, ``\\u202e``.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidirectional controls.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``str(text)`` with every control character replaced by a visible escape."""
    s = str(text)
    return _UNSAFE.sub(_visible, s) if _UNSAFE.search(s) else s
