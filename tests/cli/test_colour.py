"""Colour only on a terminal, and off with --no-color, NO_COLOR set and non-empty, or TERM=dumb."""

from __future__ import annotations

import pytest

from reconciler.cli.plan_cmd import use_color


class Tty:
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [
        ({}, False, True),
        ({"NO_COLOR": ""}, False, True),  # set but empty: the convention says colour stays
        ({"NO_COLOR": "1"}, False, False),
        ({"TERM": "dumb"}, False, False),
        ({"TERM": "xterm-256color"}, True, False),
    ],
)
def test_colour_conventions(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flag: bool, expected: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert use_color(Tty(), flag) is expected


def test_no_colour_off_a_terminal() -> None:
    assert use_color(object()) is False
