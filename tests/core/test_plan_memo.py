"""``plan_reusing``: a toolbox whose inputs are those of the last plan keeps its part; a change in any input
the planner reads plans it again, so the result is always the plan ``plan`` gives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.health import ProbeResult
from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    Observed,
    RecordedEnvironment,
    RecordedInstance,
    RecordedState,
    ServerHealth,
)
from reconciler.core.plan import BLOCKED_KEY, Action, NoticeKind, Plan, Policy
from reconciler.core.planner import (
    ENVIRONMENT_FIELDS_READ,
    INSTANCE_FIELDS_READ,
    PlanMemo,
    plan,
    plan_reusing,
)
from reconciler.model.spec import Desired, EnvironmentPolicy, EnvironmentSpec, SecretRef, ServerSpec, SourceRef
from reconciler.model.spec_hash import Fingerprints, spec_hash
from reconciler.model.stored import stored_config
from reconciler.presentation.plan_json import plan_to_dict
from tests.core.golden_io import instance_from_config, load_case

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
E1, E2 = "11111111-0000-0000-0000-000000000001", "11111111-0000-0000-0000-000000000002"
FPS = Fingerprints({"TOKEN": "hmac-sha256:aaaa"}, key_id="k1")
GOLDEN = Path(__file__).parent / "golden"


def spec(name: str, line: int, **kw: Any) -> ServerSpec:
    base: dict[str, Any] = {
        "image": f"ghcr.io/acme/{name}:1",
        "transport": "sse",
        "endpoint": "/sse",
        "port": 8080,
    }
    return ServerSpec(name=name, source=SourceRef("tb.yaml", line), **{**base, **kw})


def row(env_id: str, server: ServerSpec, status: str = "running", **config: Any) -> RecordedInstance:
    stored = {**stored_config(server, spec_hash(server, FPS), FPS), **config}
    return instance_from_config(f"{env_id[:8]}-{server.name}", env_id, server.name, status, stored)


@dataclass
class World:
    """Inputs of one plan: two toolboxes, each with a converged server, a server stopped on purpose that is
    wanted running (a start), a server whose secret is fingerprinted, and a managed row no longer declared."""

    desired: Desired
    observed: Observed
    policy: Policy = field(default_factory=Policy)
    now: datetime = NOW
    fps: Fingerprints = field(default_factory=lambda: FPS)

    def plan(self) -> Plan:
        return plan(self.desired, self.observed, self.policy, self.now, self.fps)

    def reusing(self, memo: PlanMemo) -> tuple[Plan, PlanMemo]:
        return plan_reusing(self.desired, self.observed, self.policy, self.now, self.fps, memo=memo)


def world() -> World:
    envs, rows, live = [], [], {}
    specs = []
    for k, env_id in enumerate((E1, E2)):
        servers = (
            spec("ok", 10),
            spec("paused", 20),
            spec("keyed", 30, env=(("API_KEY", SecretRef("TOKEN")),)),
        )
        specs.append(EnvironmentSpec(f"tb{k}", servers, source=SourceRef(f"tb{k}.yaml", 1)))
        envs.append(RecordedEnvironment(env_id, f"tb{k}", f"127.0.0.{k + 2}", "active"))
        gone = spec("gone", 40)
        rows += [row(env_id, servers[0]), row(env_id, servers[1], "stopped", desired_state="stopped")]
        rows += [row(env_id, servers[2]), row(env_id, gone)]
        live[env_id] = LiveListing(
            env_id,
            (
                LiveContainer("ok", "running", servers[0].image, f"{env_id[:8]}-ok"),
                LiveContainer("paused", "exited", servers[1].image, f"{env_id[:8]}-paused"),
                LiveContainer("keyed", "running", servers[2].image, f"{env_id[:8]}-keyed"),
                LiveContainer("gone", "running", gone.image, f"{env_id[:8]}-gone"),
            ),
            "c",
        )
    return World(Desired(tuple(specs), digest="d1"), Observed(RecordedState(tuple(envs), tuple(rows)), live))


def same(a: Plan, b: Plan) -> bool:
    return a == b and plan_to_dict(a) == plan_to_dict(b)


def with_rows(w: World, change: Callable[[RecordedInstance], RecordedInstance | None]) -> World:
    rows = tuple(r for r in (change(r) for r in w.observed.recorded.instances) if r is not None)
    return replace(w, observed=replace(w.observed, recorded=replace(w.observed.recorded, instances=rows)))


def with_live(w: World, env_id: str, containers: tuple[LiveContainer, ...]) -> World:
    live = {**w.observed.live, env_id: LiveListing(env_id, containers, "c")}
    return replace(w, observed=replace(w.observed, live=live))


def with_spec(w: World, index: int, new: EnvironmentSpec) -> World:
    envs = list(w.desired.environments)
    envs[index] = new
    return replace(w, desired=replace(w.desired, environments=tuple(envs)))


def one_row(name: str, env_id: str, change: Callable[[RecordedInstance], RecordedInstance]) -> Callable[..., Any]:
    return lambda r: change(r) if (r.name, r.environment_id) == (name, env_id) else r


def test_an_unchanged_fleet_reuses_every_part_and_gives_the_same_plan() -> None:
    w = world()
    first, memo = w.reusing(PlanMemo())
    assert same(first, w.plan()) and {s.action for s in first.steps} == {Action.START}
    assert set(memo.environments) == {E1, E2}
    again, memo2 = w.reusing(memo)
    assert same(again, first)
    assert all(a is b for a, b in zip(again.steps, first.steps, strict=True))  # reused, not planned again
    # Fresh objects with the same values (the store decoded the rows again, the agent listed again) too.
    copied = with_rows(w, lambda r: replace(r, config=dict(r.config)))
    copied = with_live(copied, E1, tuple(replace(c) for c in w.observed.live[E1].containers))  # type: ignore[union-attr]
    third, _ = copied.reusing(memo2)
    assert same(third, first) and third.steps[0] is first.steps[0]


def _changes() -> dict[str, Callable[[World], World]]:
    """Each input the planner reads, changed on the first toolbox only."""

    def restamped(w: World) -> World:  # what the planner does not read: kept, and still the same plan
        at = NOW + timedelta(hours=1)
        return with_rows(w, lambda r: replace(r, last_heartbeat_from_dtma=at, error_message="old news"))

    def state(w: World) -> World:
        listing = w.observed.live[E1]
        assert isinstance(listing, LiveListing)
        return with_live(
            w, E1, tuple(replace(c, state="exited") if c.name == "ok" else c for c in listing.containers)
        )

    def image(w: World) -> World:
        listing = w.observed.live[E1]
        assert isinstance(listing, LiveListing)
        return with_live(
            w, E1, tuple(replace(c, image="x:2") if c.name == "ok" else c for c in listing.containers)
        )

    def status(w: World) -> World:
        return with_rows(w, one_row("ok", E1, lambda r: replace(r, status="error")))

    def config_only(w: World) -> World:  # the config is left out of a row's equality: still read
        return with_rows(
            w, one_row("paused", E1, lambda r: replace(r, config={**r.config, "desired_state": "running"}))
        )

    def row_gone(w: World) -> World:
        return with_rows(w, lambda r: None if (r.name, r.environment_id) == ("gone", E1) else r)

    def env_status(w: World) -> World:
        envs = tuple(replace(e, status="inactive") if e.id == E1 else e for e in w.observed.recorded.environments)
        return replace(w, observed=replace(w.observed, recorded=replace(w.observed.recorded, environments=envs)))

    def env_name(w: World) -> World:
        envs = tuple(replace(e, name="tb0-new") if e.id == E1 else e for e in w.observed.recorded.environments)
        w = replace(w, observed=replace(w.observed, recorded=replace(w.observed.recorded, environments=envs)))
        return with_spec(w, 0, replace(w.desired.environments[0], environment="tb0-new"))

    def server_image(w: World) -> World:
        old = w.desired.environments[0]
        return with_spec(w, 0, replace(old, servers=(replace(old.servers[0], image="ghcr.io/acme/ok:2"),
                                                      *old.servers[1:])))  # fmt: skip

    def server_line(w: World) -> World:  # equal servers from other manifest lines: the steps name the new ones
        old = w.desired.environments[0]
        moved = tuple(replace(s, source=SourceRef("tb.yaml", s.source.line + 100)) for s in old.servers)
        return with_spec(w, 0, replace(old, servers=moved))

    def prune(w: World) -> World:  # --prune: a new spec around the same servers
        old = w.desired.environments[0]
        return with_spec(w, 0, replace(old, policy=EnvironmentPolicy(prune=True)))

    def document_line(w: World) -> World:  # the prune's delete step names the document's line
        old = w.desired.environments[0]
        return with_spec(w, 0, replace(old, source=SourceRef("tb0.yaml", 99)))

    def policy(w: World) -> World:
        old = w.desired.environments[0]
        w = with_spec(w, 0, replace(old, servers=(*old.servers, spec("twin", 50, image=old.servers[0].image))))
        return replace(w, policy=Policy(one_instance_per_image=not w.policy.one_instance_per_image))

    def fingerprint(w: World) -> World:
        return replace(w, fps=Fingerprints({"TOKEN": "hmac-sha256:bbbb"}, key_id="k1"))

    def key(w: World) -> World:
        return replace(w, fps=Fingerprints(dict(FPS), key_id="k2"))

    def health(w: World) -> World:
        probe = ServerHealth("mcp", ProbeResult(False, "connection refused"), NOW, failures=1, threshold=3)
        return replace(w, observed=replace(w.observed, health={(E1, "ok"): probe}))

    return {
        "restamped": restamped, "state": state, "image": image, "status": status, "config_only": config_only,
        "row_gone": row_gone, "env_status": env_status, "env_name": env_name, "server_image": server_image,
        "server_line": server_line, "prune": prune, "document_line": document_line, "policy": policy,
        "fingerprint": fingerprint, "key": key, "health": health,
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(_changes()))
def test_a_change_in_any_input_plans_again_what_it_changes(name: str) -> None:
    base = world()
    if name == "document_line":  # a line only a prune's delete step names: the memo is of a pruning toolbox
        base = with_spec(base, 0, replace(base.desired.environments[0], policy=EnvironmentPolicy(prune=True)))
    before, memo = base.reusing(PlanMemo())
    changed = _changes()[name](base)
    got, _ = changed.reusing(memo)
    want = changed.plan()
    assert same(got, want)
    if name == "restamped":
        assert same(got, before) and got.steps[0] is before.steps[0]
    else:
        assert not same(want, before), "the change should matter to the plan"
    if name not in ("policy", "fingerprint", "key"):  # a run-wide input plans every toolbox again
        # The other toolbox was not touched: its part is the one kept (the same objects).
        mine = [s for s in got.steps if s.environment_id == E2]
        kept = [s for s in before.steps if s.environment_id == E2]
        assert mine and all(a is b for a, b in zip(mine, kept, strict=True))


def test_a_block_mark_makes_the_part_depend_on_the_time_so_it_is_not_kept() -> None:
    since = NOW.isoformat()
    mark = {"reason": "deploy-pending", "since": since, "message": "the deploy timed out"}
    w = world()
    listing = w.observed.live[E1]
    assert isinstance(listing, LiveListing)
    w = with_live(w, E1, tuple(c for c in listing.containers if c.name != "ok"))  # not listed: a create
    w = with_rows(w, one_row("ok", E1, lambda r: replace(r, config={**r.config, BLOCKED_KEY: mark})))
    held, memo = w.reusing(PlanMemo())
    assert any(n.kind is NoticeKind.PENDING for n in held.notices) and set(memo.environments) == {E2}
    later = replace(w, now=NOW + timedelta(seconds=Policy().blocked_retry_after + 1))
    got, _ = later.reusing(memo)
    assert same(got, later.plan()) and any(s.action is Action.CREATE for s in got.steps)


def test_every_row_field_is_either_read_or_known_to_be_unread() -> None:
    # A field added to the recorded rows must be put in *_FIELDS_READ (or knowingly left out, here).
    assert {f.name for f in fields(RecordedEnvironment)} == {
        *ENVIRONMENT_FIELDS_READ, "address", "last_heartbeat_at", "dtma_token"
    }  # fmt: skip
    assert {f.name for f in fields(RecordedInstance)} == {
        *INSTANCE_FIELDS_READ, "error_message", "last_heartbeat_from_dtma"
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_golden_cases_planned_twice_give_their_plan(case: str) -> None:
    desired, observed, policy, now, fps = load_case(GOLDEN / case)
    first, memo = plan_reusing(desired, observed, policy, now, fps, memo=PlanMemo())
    again, _ = plan_reusing(desired, observed, policy, now, fps, memo=memo)
    want = plan(desired, observed, policy, now, fps)
    assert same(first, want) and same(again, want)
