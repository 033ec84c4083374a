"""Text log lines show control characters as escapes: a value cannot recolour the terminal or forge a line."""

from __future__ import annotations

import json
import logging

import pytest

from reconciler.logs import setup_logging


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_logged_value_cannot_forge_a_log_line(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(fmt=fmt, verbosity=0)
    logging.getLogger("reconciler.test").warning("agent said %s", "no\x1b[31m\a\r\n2026-01-01 ERROR forged")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\x1b" not in err and "\a" not in err and "\r" not in err
    if fmt == "text":
        assert err.rstrip("\n").endswith("agent said no\\x1b[31m\\x07\\r\\n2026-01-01 ERROR forged")
    else:
        assert json.loads(err)["message"] == "agent said no\x1b[31m\a\r\n2026-01-01 ERROR forged"
