"""Delivering notifications: an HTTP POST per message and receiver, from a background thread.

``send`` only puts the message on a bounded queue, so a receiver that is down, slow or never answers costs a
cycle nothing; the worker posts with a short timeout. A failed delivery (an error, a timeout, a non-2xx
answer, or a full queue) is reported through ``on_failure`` (the daemon counts it in
``reconciler_notification_failures_total``) and logged with the receiver's scheme and host only: a Slack
webhook URL carries its secret in the path.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from reconciler.core.notify import Event, message
from reconciler.errors import ConfigError

log = logging.getLogger("reconciler.notify")

DEFAULT_TIMEOUT = 5.0  # seconds per POST: a receiver slower than this is counted as failed
QUEUE_SIZE = 256  # messages waiting; beyond that new ones are dropped (and counted), never waited for
SLACK_PREFIX = "slack+"


@dataclass(frozen=True)
class Target:
    """One receiver: its URL (a secret: never logged) and the body format it takes."""

    url: str = field(repr=False)
    format: str = "json"  # "json" (generic webhook) or "slack"

    @property
    def shown(self) -> str:
        """``https://hooks.slack.com``: what logs may say about the receiver."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def parse_target(text: str) -> Target:
    """``https://...`` (generic JSON) or ``slack+https://...`` (Slack-compatible ``{"text": ...}``)."""
    raw = text.strip()
    fmt = "json"
    if raw.startswith(SLACK_PREFIX):
        fmt, raw = "slack", raw[len(SLACK_PREFIX) :]
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  # raises ValueError for a port out of range, here rather than at delivery
    except ValueError as e:  # the value is never shown: a Slack URL's path is its secret
        raise ConfigError(
            f"--notify/RECONCILER_NOTIFY: a value is not a valid URL ({e}); expected https://HOST/PATH"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "a value"
        raise ConfigError(
            f"--notify/RECONCILER_NOTIFY: {shown} is not an http(s) URL; expected https://HOST/PATH, or "
            "slack+https://hooks.slack.com/services/... for the Slack format"
        )
    return Target(raw, fmt)


@dataclass(frozen=True)
class _Message:
    event: Event
    now: datetime


class Notifier:
    def __init__(
        self,
        targets: Sequence[Target],
        *,
        on_failure: Callable[[str], None] = lambda reason: None,
        timeout: float = DEFAULT_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.targets = tuple(targets)
        self._on_failure, self._timeout = on_failure, timeout
        self._queue: queue.Queue[_Message | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    def send(self, event: Event, now: datetime) -> None:
        """Queue ``event`` for every receiver; never blocks."""
        try:
            self._queue.put_nowait(_Message(event, now))
        except queue.Full:
            log.warning("notification dropped: %d already wait for a slow receiver (%s)", self._queue.qsize(),
                        event.kind)  # fmt: skip
            self._on_failure("queue-full")

    def close(self, timeout: float = 1.0) -> None:
        """Stop after the queued messages, waiting at most ``timeout``: a hung receiver never holds up exit
        (the worker is a daemon thread)."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            for target in self.targets:
                self._post(target, item)

    def _post(self, target: Target, item: _Message) -> None:
        body = json.dumps(message(item.event, target.format, item.now)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "mcp-reconciler"}
        # parse_target admits http(s) URLs only, so urlopen never opens a file: or custom scheme here.
        request = urllib.request.Request(target.url, data=body, method="POST", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310
                answer.read(4096)
            return
        except urllib.error.HTTPError as exc:
            reason, detail = "http-status", f"answered {exc.code}"
        except TimeoutError:
            reason, detail = "timeout", f"no answer within {self._timeout:g}s"
        except (urllib.error.URLError, OSError) as exc:
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            reason = "timeout" if isinstance(cause, TimeoutError) else "connection"
            detail = type(cause).__name__ if not isinstance(cause, str) else "unreachable"
        log.warning("notification %s to %s failed: %s", item.event.kind, target.shown, detail)
        self._on_failure(reason)
