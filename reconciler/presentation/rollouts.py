"""A plan's rollouts as lines: which server rolls to what, in which waves, on which toolboxes.

Shared by the text and markdown renderers; a wave lists at most ``NAMES_SHOWN`` toolboxes (a fleet-wide bump
over 1,000 toolboxes stays readable), then says how many more.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.rollout import Rollout, Wave
from reconciler.presentation.escape import printable

NAMES_SHOWN = 12
HEADLINE = "Rollouts (each halts at its first step that does not end ok; --no-rollout applies all at once):"


def rollout_title(r: Rollout) -> str:
    image = f" -> {r.image}" if r.image else ""
    return printable(f"{r.server}{image} on {len(r.toolboxes)} toolboxes ({r.spec_hash.rpartition(':')[2][:12]})")


def wave_text(w: Wave) -> str:
    names = [t.environment_name for t in w.toolboxes]
    shown = ", ".join(names[:NAMES_SHOWN])
    more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    label = "first wave" if w.number == 1 else f"then, at most {w.max_in_flight} at a time"
    return printable(f"wave {w.number} ({label}): {shown}{more}")


def rollout_lines(rollouts: Sequence[Rollout]) -> list[str]:
    lines: list[str] = []
    for r in rollouts:
        lines.append(f"  {rollout_title(r)}")
        lines += [f"    {wave_text(w)}" for w in r.waves]
    return lines
