"""Safety rules that turn some planned destructive steps into REFUSED notices.

They come from the anchors' worst incidents: mass prunes (Argo CD, docker compose) and a protect flag
that stops working once it is removed from the manifest (Terraform's prevent_destroy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.core.plan import Action, Notice, NoticeKind, Policy, Step

MASS_ACTIONS = (Action.DELETE, Action.REPLACE)


def refuse_empty(env_id: str, env_name: str, managed: int, steps: list[Step]) -> tuple[list[Step], Notice]:
    """An empty desired set for a toolbox with managed servers: keep everything but deletes."""
    kept = [s for s in steps if s.action is not Action.DELETE]
    notice = Notice(
        env_id,
        env_name,
        None,
        NoticeKind.REFUSED,
        f"the manifest declares no servers for {env_name} but it has {managed} managed server(s); "
        "nothing is deleted unless the environment sets policy.allowEmpty: true",
    )
    return kept, notice


def guard_mass_delete(
    steps_by_env: Mapping[str, list[Step]],
    managed_by_env: Mapping[str, int],
    names: Mapping[str, str],
    policy: Policy,
) -> tuple[dict[str, list[Step]], list[Notice]]:
    """Refuse deletes and replaces beyond the per-environment fraction or the run-wide total."""
    out = {env: list(steps) for env, steps in steps_by_env.items()}
    notices: list[Notice] = []
    if policy.allow_mass_delete:
        return out, notices
    for env, steps in steps_by_env.items():
        count = _count(steps)
        managed = managed_by_env.get(env, 0)
        if count and managed >= policy.mass_delete_min_servers and count > policy.mass_delete_fraction * managed:
            out[env] = _drop_mass(steps)
            notices.append(
                Notice(
                    env,
                    names[env],
                    None,
                    NoticeKind.REFUSED,
                    f"{count} of {managed} managed servers on {names[env]} would be deleted or replaced "
                    f"(limit {policy.mass_delete_fraction:g} of them); pass --allow-mass-delete REASON to proceed",
                )
            )
    total = sum(_count(s) for s in out.values())
    if total > policy.mass_delete_max_total:
        for env in sorted(out, key=lambda e: names[e]):
            count = _count(out[env])
            if count:
                out[env] = _drop_mass(out[env])
                notices.append(
                    Notice(
                        env,
                        names[env],
                        None,
                        NoticeKind.REFUSED,
                        f"{count} delete/replace step(s) on {names[env]} refused: the run would delete or "
                        f"replace {total} servers in all (limit {policy.mass_delete_max_total}); "
                        "pass --allow-mass-delete REASON to proceed",
                    )
                )
    return out, notices


def _count(steps: Sequence[Step]) -> int:
    return sum(1 for s in steps if s.action in MASS_ACTIONS)


def _drop_mass(steps: Sequence[Step]) -> list[Step]:
    return [s for s in steps if s.action not in MASS_ACTIONS]
