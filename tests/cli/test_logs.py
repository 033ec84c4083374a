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


def test_the_format_comes_from_the_flag_else_the_environment_else_text() -> None:
    from reconciler.logs import log_format

    assert log_format(None, {}) == "text"
    assert log_format(None, {"RECONCILER_LOG_FORMAT": "JSON"}) == "json"
    assert log_format("text", {"RECONCILER_LOG_FORMAT": "json"}) == "text"  # the flag wins


def test_a_bad_log_format_in_the_environment_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.cli import main

    monkeypatch.setenv("RECONCILER_LOG_FORMAT", "xml")
    assert main(["validate", "nowhere/"]) == 1
    assert "RECONCILER_LOG_FORMAT='xml' is not a log format (use text or json)" in capsys.readouterr().err


def test_json_lines_carry_the_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(fmt="json", verbosity=0)
    logging.getLogger("reconciler.test").warning(
        "create tb/sa failed", extra={"environment": "tb", "server": "sa", "run_id": 7, "duration_ms": 12}
    )
    line = json.loads(capsys.readouterr().err)
    assert (line["environment"], line["server"], line["run_id"], line["duration_ms"]) == ("tb", "sa", 7, 12)
    assert (line["level"], line["logger"]) == ("warning", "reconciler.test")
    assert line["message"] == "create tb/sa failed"
