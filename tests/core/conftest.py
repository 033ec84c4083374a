"""Golden-case options: expected plans are rewritten only when asked explicitly."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/core/golden/*/expected-plan.json from the current planner (review the diff!)",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return (
        bool(request.config.getoption("--update-goldens", default=False))
        or os.environ.get("UPDATE_GOLDENS") == "1"
    )
