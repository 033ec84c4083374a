"""Fixtures shared by every test package: temporary PostgreSQL databases on the real server, and the
reconciler's loggers put back as they were after each test."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(autouse=True)
def _reconciler_logging_restored() -> Iterator[None]:
    """A test that runs the CLI in-process (``setup_logging``) points the ``reconciler`` logger at the stream
    pytest captured for that test, which is closed when the test ends; one that raises a level leaves it for
    every later test. Either would make a later record (from a thread that outlives its test) fail with
    "I/O operation on closed file". Each test gets the loggers back as it found them."""
    root = logging.getLogger("reconciler")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


SLOW_DIRECTORIES = ("e2e",)  # every test here starts CLI processes and simulators: seconds each


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The end-to-end tests are ``slow``: the README's command (``-m 'not slow'`` from pyproject's addopts)
    keeps the suite under five minutes on two cores, and ``.ci/run`` runs ``-m slow`` after it, so CI runs
    every test. Marked before pytest's own ``-m`` selection (``tryfirst``)."""
    tests_root = config.rootpath / "tests"
    for item in items:
        try:
            part = item.path.relative_to(tests_root).parts[0]
        except ValueError:
            continue
        if part in SLOW_DIRECTORIES:
            item.add_marker(pytest.mark.slow)


PG_ADMIN_URL = os.environ.get("RECONCILER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_unavailable_reason() -> str | None:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a hard dependency
        return f"psycopg not importable: {exc}"
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    reason = _pg_unavailable_reason()
    if reason is not None:
        # CI sets RECONCILER_REQUIRE_POSTGRES=1 so that a missing server fails instead of skipping.
        if os.environ.get("RECONCILER_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture
def pg_database_factory(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """Creates fresh, empty databases on the shared server and drops them after the test."""
    import psycopg

    created: list[str] = []

    def make() -> str:
        name = f"rtest_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        base, _, _ = pg_admin_url.rpartition("/")
        return f"{base}/{name}"

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database_factory: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return pg_database_factory()
