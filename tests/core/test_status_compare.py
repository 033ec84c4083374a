"""``status PATH...`` comparisons (pure): nothing is claimed about what was not observed or not compared."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    Observed,
    RecordedEnvironment,
    RecordedState,
    Unreachable,
)
from reconciler.core.plan import Policy
from reconciler.core.planner import plan
from reconciler.core.status_compare import MARKS, compare
from reconciler.model.spec import Desired, EnvironmentSpec, SecretRef, ServerSpec
from reconciler.model.spec_hash import Fingerprints, spec_hash
from reconciler.model.stored import stored_config
from tests.core.golden_io import instance_from_config

NOW = datetime(2026, 11, 24, tzinfo=UTC)
FPS = Fingerprints({"V": "hmac-sha256:1"}, key_id="k")
SECRET = ServerSpec("vault", "v:1", "stdio", env=(("T", SecretRef("V")),))
PLAIN = ServerSpec("time", "t:1", "stdio")


def _world(live: LiveListing | Unreachable) -> tuple[Desired, Observed]:
    env = RecordedEnvironment("e1", "tb", "10.0.0.1", "active")
    rows = tuple(
        instance_from_config(f"i-{s.name}", "e1", s.name, "running", stored_config(s, spec_hash(s, FPS), FPS))
        for s in (SECRET, PLAIN)
    )
    desired = Desired((EnvironmentSpec("tb", (SECRET, PLAIN)), EnvironmentSpec("missing", (PLAIN,))))
    return desired, Observed(RecordedState((env,), rows), {"e1": live})


def test_an_unreachable_toolbox_is_unobserved_and_an_unset_secret_leaves_the_spec_uncompared() -> None:
    desired, observed = _world(Unreachable("e1", "connect timeout"))
    fps = Fingerprints({}, key_id="k")  # V is not set here
    rows = {(r.environment, r.server): r for r in compare(desired, observed, plan(desired, observed, Policy(),
                                                                                   NOW, fps), fps)}  # fmt: skip
    assert rows["tb", "vault"].differs == ("spec?", "unobserved")
    assert rows["tb", "time"].differs == ("unobserved",) and rows["tb", "time"].live.startswith("unreachable: ")
    assert rows["missing", "time"].differs == ("unknown-environment",)
    assert all(m in MARKS for r in rows.values() for m in r.differs)


def test_a_toolbox_that_matches_has_no_marks() -> None:
    live = LiveListing(
        "e1", (LiveContainer("vault", "running", "v:1"), LiveContainer("time", "running", "t:1")), "c"
    )
    desired, observed = _world(live)
    desired = Desired(desired.environments[:1])
    result = compare(desired, observed, plan(desired, observed, Policy(), NOW, FPS), FPS)
    assert [(r.server, r.differs, r.planned) for r in result] == [("time", (), None), ("vault", (), None)]
