"""``POST /hooks/git``: a GitHub-style push webhook that asks the daemon for a cycle now.

What each request meets, in order (the body is read only once the headers pass):

| request | answer |
|---|---|
| no secret configured (``RECONCILER_WEBHOOK_SECRET``) | 403: the route is off, and says how to turn it on |
| no ``X-Hub-Signature-256`` | 401 |
| no ``Content-Length``, or a body over ``MAX_BODY`` | 411 / 413, body unread |
| a signature that does not match the body | 403 |
| no ``X-GitHub-Delivery`` | 400 |
| a delivery id or signature seen among the last ``MEMORY`` | 200 "duplicate", no cycle |
| ``X-GitHub-Event: ping`` (sent when the hook is made) | 200 "pong", no cycle |
| anything else, signed | 202, one cycle (with ``--git-pull``, a pull first), coalesced with any pending |

GitHub signs the body only, not the delivery id, so a replayed body under a new id is caught by its
signature: a push's body is unique, and remembering both keeps a captured request from triggering twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from reconciler.adapters import pid_file
from reconciler.adapters.http_status import Posted
from reconciler.core.webhook import Signature, check_signature
from reconciler.model.secrets import Secret
from reconciler.settings import Settings

log = logging.getLogger("reconciler.daemon")

PATH = "/hooks/git"
MAX_BODY = 1024 * 1024  # bytes; a push event with its commit list fits, a flood does not
MEMORY = 1024  # recent deliveries remembered against replays


class RecentDeliveries:
    """The last ``size`` keys seen, oldest forgotten first. Thread-safe (the listener serves in threads)."""

    def __init__(self, size: int = MEMORY) -> None:
        self._size, self._seen, self._lock = size, OrderedDict[str, None](), threading.Lock()

    def first_time(self, *keys: str) -> bool:
        """Remember ``keys``; True when none of them was seen before."""
        with self._lock:
            fresh = not any(k in self._seen for k in keys)
            for key in keys:
                self._seen[key] = None
                self._seen.move_to_end(key)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return fresh


class GitHook:
    """The route's handler; ``trigger(why)`` asks the daemon for a cycle and says what it did."""

    def __init__(self, secret: Secret | None, trigger: Callable[[str], str], *, max_body: int = MAX_BODY) -> None:
        self._secret = secret.reveal().encode() if secret else None
        self._trigger, self._max_body = trigger, max_body
        self._recent = RecentDeliveries()

    def __call__(self, request: Posted) -> tuple[int, bytes]:
        if self._secret is None:
            return 403, b"webhook receiver is off: set RECONCILER_WEBHOOK_SECRET on the daemon\n"
        header = request.header("X-Hub-Signature-256")
        if not header:
            return 401, b"unsigned: X-Hub-Signature-256 is required\n"
        if request.length is None:
            return 411, b"Content-Length is required\n"
        if request.length > self._max_body:
            return 413, f"body over {self._max_body} bytes\n".encode()
        body = request.read()
        if len(body) != request.length or check_signature(self._secret, body, header) is not Signature.VALID:
            log.warning("webhook refused: the signature does not match the body (another secret?)")
            return 403, b"signature does not match\n"
        delivery = (request.header("X-GitHub-Delivery") or "").strip()
        if not delivery:
            return 400, b"X-GitHub-Delivery is required\n"
        if not self._recent.first_time("id:" + delivery[:100], "sig:" + header.strip().lower()):
            log.info("webhook delivery %s seen before: no cycle", delivery[:100])
            return 200, b"duplicate delivery: no cycle\n"
        event = (request.header("X-GitHub-Event") or "").strip()[:50]
        if event == "ping":
            return 200, b"pong\n"
        what = self._trigger(f"webhook {event or 'event'} {delivery[:100]}")
        return 202, f"{what}\n".encode()


def poke_daemon(settings: Settings, pid_path: str | None = None) -> int:
    """``reconcile-now``: SIGHUP to the daemon holding the pid file (by default beside the journal)."""
    return pid_file.poke(Path(pid_path) if pid_path else pid_file.beside(settings.journal_path))
