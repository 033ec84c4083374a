"""Progress lines for a long apply, in every mode (a terminal, a CI log, JSON lines): the start and the end
of each step, and the elapsed time every 10 s for a step still running (a deploy can pull for minutes).

The clock is passed in, and ``tick()`` is called from outside (the CLI's ticker thread, or a test), so that
nothing here sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.plan import Step
from reconciler.presentation.escape import printable

EVERY = 10.0  # seconds between two "still running" lines for one step


@dataclass
class _Running:
    step: Step
    started: float
    said: float


class Progress:
    def __init__(self, write: Callable[[str], None], clock: Callable[[], float], *, json_lines: bool = False,
                 every: float = EVERY) -> None:  # fmt: skip
        self._write, self._clock, self._json, self._every = write, clock, json_lines, every
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        # Steps on one toolbox run in parallel (deploy concurrency): one line must never be written into another.
        self._write_lock = threading.Lock()

    def _emit(self, event: str, step: Step, elapsed: float | None, **extra: object) -> None:
        where = f"{step.environment_name}/{step.server}"
        if self._json:
            line: dict[str, object] = {"event": event, "environment": step.environment_name,
                                       "server": step.server, "action": step.action.value, **extra}  # fmt: skip
            if elapsed is not None:
                line["elapsed"] = round(elapsed, 1)
            text = json.dumps(line, sort_keys=True)
        else:
            took = f" after {elapsed:.0f}s" if elapsed is not None else ""
            tail = f": {extra['message']}" if extra.get("message") else ""
            label = {"start": "start", "running": "still running", "end": str(extra.get("outcome", "done"))}[event]
            text = printable(f"[{label}{took}] {step.action.value} {where}{tail}")
        with self._write_lock:
            self._write(text)

    def start(self, step: Step) -> None:
        now = self._clock()
        with self._lock:
            self._running[id(step)] = _Running(step, now, now)
        self._emit("start", step, None)

    def end(self, step: Step, outcome: str, message: str | None = None, run_id: int | None = None) -> None:
        """``run_id``: the journal run, shown in JSON lines (as the daemon's step log lines show it)."""
        now = self._clock()
        with self._lock:
            running = self._running.pop(id(step), None)
        elapsed = now - running.started if running is not None else None
        extra: dict[str, object] = {"outcome": outcome, "message": message or ""}
        if self._json and run_id is not None:
            extra["run_id"] = run_id
        if self._json and elapsed is not None:
            extra["duration_ms"] = round(elapsed * 1000)
        self._emit("end", step, elapsed, **extra)

    def tick(self) -> None:
        """Say, for each step running for another ``every`` seconds, how long it has been running."""
        now = self._clock()
        due: list[tuple[Step, float]] = []
        with self._lock:
            for r in self._running.values():
                if now - r.said >= self._every:
                    r.said = now
                    due.append((r.step, now - r.started))
        for step, elapsed in due:
            self._emit("running", step, elapsed)
