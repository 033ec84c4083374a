"""Logging setup for the entry point. The library only logs; this decides how lines look.

With ``--log-format json`` (or ``RECONCILER_LOG_FORMAT=json``) each record is one JSON object: ``time``,
``level``, ``logger``, ``message``, and the fields the code passed with ``extra=`` where it logs steps and
cycles (``environment``, ``server``, ``action``, ``outcome``, ``run_id``, ``duration_ms``; see
``LOG_FIELDS``), so a log pipeline can filter on them. Those fields are names, outcomes and numbers, never
free text: a secret can reach a line only through its message, and messages are redacted where they are
made (an agent's text is cleaned before anything logs it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import ConfigError

_RESERVED = set(vars(logging.makeLogRecord({})))
FORMATS = ("text", "json")
LOG_FORMAT_ENV = "RECONCILER_LOG_FORMAT"
LOG_FIELDS = ("environment", "server", "action", "outcome", "run_id", "duration_ms")


def log_format(flag: str | None, environ: Mapping[str, str]) -> str:
    """``--log-format`` when given, else ``RECONCILER_LOG_FORMAT`` (for services), else ``text``."""
    if flag is not None:
        return flag
    value = environ.get(LOG_FORMAT_ENV, "").strip().lower()
    if not value:
        return "text"
    if value not in FORMATS:
        raise ConfigError(f"{LOG_FORMAT_ENV}={value!r} is not a log format (use text or json)")
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, sort_keys=True)


class TextFormatter(logging.Formatter):
    """One line per record: control characters in the message (a name from a manifest, an agent's answer)
    are shown as escapes, so they cannot recolour the terminal or forge a log line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from reconciler.presentation.escape import printable

        record.message = printable(record.message)
        return super().formatMessage(record)


def setup_logging(fmt: str = "text", verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
