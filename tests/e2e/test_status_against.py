"""``status PATH...`` compares the manifests with the rows and the live listings; ``status`` alone says that
its desired state is the last applied one."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.conftest import World, server


@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)  # reads only: the stores are tested on both
def test_status_against_the_manifests_names_what_differs(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    assert w.cli("apply", str(w.manifests)).returncode == 0
    # git moves on: a new image for a, b dropped, c added
    w.write({"tb0": [server("srv-a", image="ghcr.io/acme/srv-a:2.0.0"), server("srv-c")]}, prune=True)

    done = w.cli("status", str(w.manifests), "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {r["server"]: r for r in json.loads(done.stdout)}
    assert {n: r["differs"] for n, r in rows.items()} == {
        "srv-a": ["image", "spec"], "srv-b": ["not-declared"], "srv-c": ["not-recorded", "not-deployed"],
    }  # fmt: skip
    assert rows["srv-a"]["planned"].startswith("replace: ") and rows["srv-c"]["planned"].startswith("create: ")
    assert rows["srv-a"]["desired_image"] == "ghcr.io/acme/srv-a:2.0.0"
    assert rows["srv-a"]["live_image"] == rows["srv-a"]["recorded_image"] == "ghcr.io/acme/srv-a:1.0.0"
    assert {r["desired_from"] for r in rows.values()} == {"manifests"}
    text = w.cli("status", str(w.manifests)).stdout
    assert "tb0/srv-a: desired=running recorded=running live=running differs=image,spec" in text
    assert "3 of 3 servers differ from the manifests" in text

    # without paths, it says plainly what "desired" is
    done = w.cli("status")
    assert (
        done.returncode == 0 and "desired = the state recorded at the last apply, not what git says" in done.stdout
    )
    assert {r["desired_from"] for r in json.loads(w.cli("status", "--format", "json").stdout)} == {"recorded"}

    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert (
        w.cli("status", str(w.manifests))
        .stdout.rstrip()
        .endswith("All 2 declared servers match the manifests (declared, recorded and live).")
    )
    # A container the manifests do not name (made by hand, no row) is not counted among those that match.
    w.sim.admin(0, "POST", "/__sim/seed", {"containers": [{"name": "by-hand", "image": "ghcr.io/acme/x:1.0.0"}]})
    last = w.cli("status", str(w.manifests)).stdout.rstrip().splitlines()[-1]
    assert last == (
        "All 2 declared servers match the manifests (declared, recorded and live). 1 other server is recorded "
        "or running but not declared, and left alone (tb0/by-hand)."
    )
