"""Run a plan's rollouts in waves through the executor; the decisions are ``core.rollout``'s.

Each round hands the executor the whole chains (every step, in plan order) of the toolboxes that may start
now: first the toolboxes outside any rollout and the first waves, then the toolboxes whose rollouts' first
waves have finished, at most the later wave's ``max_in_flight`` at a time. A toolbox's order is kept because
its chain is never split across rounds. A rollout step that does not end ``ok`` halts its rollout at once:
the steps of it not yet started are journalled ``skipped`` with the reason (their toolboxes keep the version
they run); a toolbox's other steps run as before.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from reconciler.core.plan import Step
from reconciler.core.rollout import Progress, Rollout, RolloutIndex, held_back, record
from reconciler.runtime.execute import Executor
from reconciler.runtime.step_results import ApplyResult, StepResult


def apply_in_waves(executor: Executor, steps: Sequence[Step], rollouts: Sequence[Rollout]) -> ApplyResult:
    if not rollouts:
        return executor.apply(steps)
    index = RolloutIndex(rollouts)
    lock = threading.Lock()
    progress = Progress()

    def observe(result: StepResult) -> None:
        nonlocal progress
        with lock:
            progress = record(progress, index, result.step, result.outcome, result.message)

    def hold(step: Step) -> str | None:
        with lock:
            return held_back(progress, index, step)

    waiting = list(dict.fromkeys(s.environment_id for s in steps))
    results: list[StepResult] = []
    while waiting:
        with lock:
            now = index.ready(progress, waiting)
        # Cannot happen (one global order of toolboxes), but a run must never spin: take the first waiting.
        start = set(now or waiting[:1])
        batch = [s for s in steps if s.environment_id in start]
        done = executor.apply(batch, concurrency=index.in_flight(start), hold=hold, observe=observe)
        results += done.results
        waiting = [e for e in waiting if e not in start]
    order = {id(s): i for i, s in enumerate(steps)}
    results.sort(key=lambda r: order.get(id(r.step), 0))
    return ApplyResult(tuple(results), halts=tuple(progress.halts[k] for k in sorted(progress.halts)))
