"""Saved-plan basis and observation (unreachable is never empty)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.adapters.sqlite_store import SqliteStore
from reconciler.core.observed import (
    LiveContainer,
    LiveListing,
    Observed,
    RecordedEnvironment,
    Unreachable,
)
from reconciler.errors import ConfigError, PlanError
from reconciler.model.secrets import Secret
from reconciler.runtime.observe import observe, target_for
from reconciler.runtime.saved_plan import Basis, check_basis, listing_fingerprint
from reconciler.settings import Settings, from_environ
from tests.sim_helpers import running_simulator


def test_basis_round_trips_and_any_change_is_refused_by_name() -> None:
    saved = Basis("sha256:m", {"e1": "db1"}, {"e1": "l1"})
    assert Basis.from_dict(saved.to_dict()) == saved
    check_basis(saved, Basis("sha256:m", {"e1": "db1"}, {"e1": "l1"}))
    with pytest.raises(
        PlanError, match=r"manifests changed.*database rows of environment e1.*listed on environment e1"
    ):
        check_basis(saved, Basis("sha256:n", {"e1": "db2"}, {"e1": "l2"}))


def test_listing_fingerprint_sees_state_changes_only() -> None:
    a = LiveListing("e", (LiveContainer("x", "running", "img", "i"), LiveContainer("y", "exited")), "a")
    b = LiveListing("e", (LiveContainer("y", "exited"), LiveContainer("x", "running", "img", "i")), "c")
    c = LiveListing("e", (LiveContainer("x", "exited", "img", "i"), LiveContainer("y", "exited")), "a")
    assert listing_fingerprint(a) == listing_fingerprint(b) != listing_fingerprint(c)
    assert listing_fingerprint(Unreachable("e", "down")) != listing_fingerprint(LiveListing("e", (), "a"))


def test_inactive_or_failing_toolboxes_are_unreachable_never_empty(tmp_path: Path) -> None:
    with running_simulator(toolboxes=3, per="address", host="127.0.42.1") as sim:
        port = int(sim.addresses[0].rsplit(":", 1)[1])
        store = SqliteStore(tmp_path / "state.db", create=True)
        ids = [
            store.add_environment(name, sim.addresses[i].rsplit(":", 1)[0], status=status).id
            for i, (name, status) in enumerate(
                [("one", "active"), ("two", "error_provisioning"), ("three", "active")]
            )
        ]
        sim.sim.set_faults(2, drop=True)  # the agent on "three" drops every connection
        dtma = DtmaClient(retry=RetryPolicy(attempts=1), connect_timeout=1, read_timeout=2)
        try:
            seen: Observed = observe(store, dtma, Settings(dtma_token=Secret(sim.token), dtma_port=port))
        finally:
            dtma.close()
            store.close()
    one, two, three = (seen.live[i] for i in ids)
    assert isinstance(one, LiveListing) and one.containers == ()
    assert isinstance(two, Unreachable) and "not active" in two.reason
    assert isinstance(three, Unreachable)
    assert "GET /status" not in sim.counters(1)  # an inactive toolbox is not even asked


def test_agents_are_called_with_the_backend_key_and_the_row_token_only_by_opt_in() -> None:
    # The row's dtma_bearer_token is the agent's token toward the backend, not the backend's toward the agent.
    env = RecordedEnvironment("e", "n", "10.0.0.5", "active", dtma_token=Secret("own"))
    target = target_for(env, Settings(dtma_token=Secret("global"), dtma_port=30000))
    assert not isinstance(target, Unreachable)
    assert (target.base_url, target.token.reveal()) == ("http://10.0.0.5:30000", "global")
    opted = target_for(env, Settings(dtma_token=Secret("global"), dtma_token_source="row"))
    assert not isinstance(opted, Unreachable) and opted.token.reveal() == "own"
    rowless = env.__class__("e", "n", "10.0.0.5", "active")
    fallback = target_for(rowless, Settings(dtma_token=Secret("global"), dtma_token_source="row"))
    assert not isinstance(fallback, Unreachable) and fallback.token.reveal() == "global"
    assert isinstance(target_for(rowless, Settings()), Unreachable)
    assert isinstance(target_for(env, Settings()), Unreachable)  # a row token alone is not used by default


def test_the_token_source_setting_is_checked() -> None:
    assert from_environ({}).dtma_token_source == "backend-key"
    assert from_environ({"RECONCILER_DTMA_TOKEN_SOURCE": "row"}).dtma_token_source == "row"
    with pytest.raises(ConfigError, match="RECONCILER_DTMA_TOKEN_SOURCE='rows' must be backend-key or row"):
        from_environ({"RECONCILER_DTMA_TOKEN_SOURCE": "rows"})
