"""Progress lines: start and end of each step, elapsed time every 10 s for a step still running (an injected
clock; nothing sleeps)."""

from __future__ import annotations

import json
import threading

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


def test_lines_of_steps_running_in_parallel_are_written_one_at_a_time() -> None:
    """Two steps starting together (creates on one toolbox overlap): the writer is never entered twice at once.
    The writer waits for a second writer at a barrier: it only passes if two lines are being written together."""
    meeting = threading.Barrier(2, timeout=0.2)
    overlapped: list[bool] = []

    def write(_: str) -> None:
        try:
            meeting.wait()
            overlapped.append(True)
        except threading.BrokenBarrierError:
            overlapped.append(False)

    progress = Progress(write, FakeClock(), json_lines=True)
    steps = [Step("e", "tb0", f"srv-{i}", Action.CREATE, "declared, not deployed") for i in range(2)]
    threads = [threading.Thread(target=progress.start, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlapped == [False, False]
