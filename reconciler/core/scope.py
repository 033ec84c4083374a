"""What a plan speaks for: the environments and servers it was limited to, and whether the live state was read.

A plan limited by ``--server`` is *partial* (like ``terraform plan -target``); a plan made with
``--no-refresh`` was diffed against the database rows only. Both are said in every format, and a saved plan
carries its scope so that ``apply plan.json`` acts on exactly that scope and ``show`` says the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from reconciler.core.observed import Observed
from reconciler.core.plan import Plan


@dataclass(frozen=True)
class PlanScope:
    environments: tuple[str, ...] | None = None  # --env names, as given; None: every environment declared
    servers: tuple[str, ...] | None = None  # --server names; None: every server
    refreshed: bool = True  # False: --no-refresh, the toolboxes' listings were not read
    addresses: Mapping[str, str] = field(default_factory=dict, compare=False)  # environment id -> address

    @property
    def partial(self) -> bool:
        return self.servers is not None

    def notes(self) -> list[str]:
        """One sentence per way this plan does not speak for everything, for every renderer."""
        out: list[str] = []
        if self.servers is not None:
            out.append(
                "Partial plan: only server(s) " + ", ".join(self.servers) + " (--server); other servers are "
                "neither planned nor checked."
            )
        if not self.refreshed:
            out.append(
                "Live state not read (--no-refresh): planned from the database rows only; this plan cannot be "
                "applied."
            )
        return out


def narrow_to_servers(plan: Plan, servers: Sequence[str] | None) -> Plan:
    """Only the steps and the server notices of ``servers``; environment-wide notices stay (an unreachable
    toolbox still leaves the named servers unobserved)."""
    if servers is None:
        return plan
    wanted = set(servers)
    return replace(
        plan,
        steps=tuple(s for s in plan.steps if s.server in wanted),
        notices=tuple(n for n in plan.notices if n.server is None or n.server in wanted),
        health=tuple(h for h in plan.health if h.server in wanted),
    )


def addresses_of(observed: Observed | None, environment_ids: Sequence[str]) -> dict[str, str]:
    """The toolboxes' addresses a saved plan keeps, so that ``show`` names them as ``plan`` did."""
    if observed is None:
        return {}
    wanted = set(environment_ids)
    return {e.id: e.address for e in observed.recorded.environments if e.address and e.id in wanted}
