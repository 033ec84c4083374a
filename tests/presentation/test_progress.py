"""Progress lines: start and end of each step, elapsed time every 10 s for a step still running (an injected
clock; nothing sleeps)."""

from __future__ import annotations

import json

from reconciler.core.plan import Action, Step
from reconciler.presentation.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_long_step_says_it_is_still_running_every_ten_seconds() -> None:
    lines: list[str] = []
    clock = FakeClock()
    progress = Progress(lines.append, clock)
    step = Step("e", "tb0", "srv-a", Action.CREATE, "declared, not deployed")
    progress.start(step)
    for t in (5, 9.9, 10, 15, 20, 23):
        clock.now = 100 + t
        progress.tick()
    progress.end(step, "ok")
    clock.now = 200
    progress.tick()  # a finished step says nothing more
    assert lines == [
        "[start] create tb0/srv-a",
        "[still running after 10s] create tb0/srv-a",
        "[still running after 20s] create tb0/srv-a",
        "[ok after 23s] create tb0/srv-a",
    ]


def test_json_lines_carry_the_same_events() -> None:
    lines: list[str] = []
    clock = FakeClock()
    progress = Progress(lines.append, clock, json_lines=True)
    step = Step("e", "tb0", "srv-\x1b[31m", Action.STOP, "r")
    progress.start(step)
    clock.now += 12
    progress.tick()
    progress.end(step, "failed", "boom", run_id=9)
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["start", "running", "end"]
    assert events[1]["elapsed"] == 12 and events[2]["outcome"] == "failed" and events[2]["message"] == "boom"
    # The fields the daemon's JSON step lines carry, so one log filter serves both.
    assert (events[2]["environment"], events[2]["run_id"], events[2]["duration_ms"]) == ("tb0", 9, 12000)


def test_text_lines_show_control_characters_never_obey_them() -> None:
    lines: list[str] = []
    progress = Progress(lines.append, FakeClock())
    progress.start(Step("e", "tb0", "srv-\x1b[31m", Action.STOP, "r"))
    assert lines == ["[start] stop tb0/srv-\\x1b[31m"]
