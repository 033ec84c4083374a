"""protect: stored by a database-only step and obeyed, end to end through plan and apply."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.conftest import World, all_containers, kinds_of, server, steps_of


def test_protect_added_after_creation_keeps_the_server_and_removing_it_lets_prune_delete(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1)
    keep, other = server("vault"), server("fetch")
    w.write({"tb0": [keep, other]}, prune=True)
    assert w.cli("apply", str(w.manifests)).returncode == 0

    # protect added: one database-only step, no call to the agent
    w.write({"tb0": [{**keep, "protect": True}, other]}, prune=True)
    assert steps_of(w.plan_json()) == [("tb0", "vault", "sync-config")]
    calls_before = w.sim.counters(0)
    done = w.cli("apply", str(w.manifests))
    assert done.returncode == 0, done.stdout + done.stderr
    writes = {k: v for k, v in w.sim.counters(0).items() if not k.startswith("GET ")}
    assert writes == {k: v for k, v in calls_before.items() if not k.startswith("GET ")}
    assert steps_of(w.plan_json()) == []

    # removed from the manifest while protected: kept, and the plan says why
    w.write({"tb0": [other]}, prune=True)
    plan = w.plan_json()
    assert steps_of(plan) == [] and ("tb0", "vault", "protected") in kinds_of(plan)
    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert all_containers(w, 0)["vault"]["state"] == "running"

    # a protected server is not replaced either: the change is shown as blocked
    # (a declared server that cannot be reconciled: the plan is incomplete, apply does not claim convergence)
    w.write({"tb0": [{**keep, "protect": True, "image": "ghcr.io/acme/vault:2.0.0"}, other]}, prune=True)
    plan = w.plan_json(code=1)
    assert steps_of(plan) == []
    [blocked] = [n for n in plan["notices"] if n["server"] == "vault"]
    assert blocked["kind"] == "protected" and "blocked a replace" in blocked["message"]
    assert w.cli("apply", str(w.manifests)).returncode == 1

    # protect removed (stored by apply), then the server removed: deleted
    w.write({"tb0": [keep, other]}, prune=True)
    assert steps_of(w.plan_json()) == [("tb0", "vault", "sync-config")]
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [other]}, prune=True)
    assert steps_of(w.plan_json()) == [("tb0", "vault", "delete")]
    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert "vault" not in all_containers(w, 0)


def test_a_server_created_protected_can_be_unprotected_through_the_manifest(
    world_factory: Callable[..., World],
) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("vault", protect=True), server("fetch")]}, prune=True)
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [server("vault"), server("fetch")]}, prune=True)
    assert steps_of(w.plan_json()) == [("tb0", "vault", "sync-config")]
    assert w.cli("apply", str(w.manifests)).returncode == 0
    w.write({"tb0": [server("fetch")]}, prune=True)
    assert w.cli("apply", str(w.manifests)).returncode == 0
    assert "vault" not in all_containers(w, 0)
