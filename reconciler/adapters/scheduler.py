"""The daemon's timer: APScheduler 3.x (the only module that imports it).

Each job runs at an interval with jitter, one instance at a time (``max_instances=1``), and runs that were
missed while the previous one ran are merged into one (``coalesce``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


def interval_trigger(seconds: float, jitter: float) -> IntervalTrigger:
    """Every ``seconds``, each run delayed by up to ``jitter`` seconds (APScheduler adds 0..jitter)."""
    return IntervalTrigger(seconds=seconds, jitter=jitter or None, timezone=UTC)


class Scheduler:
    """A background scheduler whose jobs run on its own worker threads."""

    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"max_instances": 1, "coalesce": True},
            executors={"default": {"type": "threadpool", "max_workers": 2}},
        )

    def every(
        self,
        name: str,
        fn: Callable[[], object],
        *,
        seconds: float,
        jitter: float = 0.0,
        first: datetime | None = None,
    ) -> None:
        """Run ``fn`` every ``seconds`` (+ up to ``jitter``); the first run at ``first`` (default: now)."""
        self._scheduler.add_job(
            fn,
            trigger=interval_trigger(seconds, jitter),
            id=name,
            name=name,
            next_run_time=first or datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
        )

    def wake(self, name: str, delay: float = 0.0) -> bool:
        """Run job ``name`` in ``delay`` seconds rather than at its next time; its interval then counts from
        that run. False when there is no such job (the scheduler was shut down)."""
        try:
            self._scheduler.modify_job(name, next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        except JobLookupError:
            return False
        return True

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop scheduling new runs; a run in progress is not waited for (the daemon bounds that itself)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)
