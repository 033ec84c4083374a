"""What a saved plan was based on, and the check that it still holds before ``apply plan.json``.

The basis is the manifests' digest, the store's fingerprint of each environment the plan touches and a
fingerprint of each toolbox's listing. Any change means the plan no longer describes the world: refuse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.observed import LiveState, Observed, Unreachable
from reconciler.errors import PlanError
from reconciler.ports import Store


@dataclass(frozen=True)
class Basis:
    manifest_digest: str
    stores: Mapping[str, str] = field(default_factory=dict)  # environment id -> store fingerprint
    listings: Mapping[str, str] = field(default_factory=dict)  # environment id -> listing fingerprint

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_digest": self.manifest_digest,
            "database": dict(sorted(self.stores.items())),
            "listings": dict(sorted(self.listings.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Basis:
        try:
            return cls(
                manifest_digest=str(data["manifest_digest"]),
                stores={str(k): str(v) for k, v in dict(data.get("database", {})).items()},
                listings={str(k): str(v) for k, v in dict(data.get("listings", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"saved plan has no valid basis ({exc}); make a new plan") from exc


def listing_fingerprint(live: LiveState) -> str:
    """A digest of what a listing showed: names, states, images and instance ids, in name order."""
    if isinstance(live, Unreachable):
        return "unreachable"
    items = sorted((c.name, c.state, c.image or "", c.instance_id or "") for c in live.containers)
    return "sha256:" + hashlib.sha256(json.dumps(items).encode()).hexdigest()


def basis_of(manifest_digest: str, store: Store, observed: Observed, environment_ids: Collection[str]) -> Basis:
    ids = sorted(environment_ids)
    return Basis(
        manifest_digest=manifest_digest,
        stores={e: store.fingerprint(e) for e in ids},
        listings={e: listing_fingerprint(observed.live[e]) for e in ids if e in observed.live},
    )


def changes_since(saved: Basis, current: Basis) -> list[str]:
    """What differs, each named, in a stable order."""
    out: list[str] = []
    if saved.manifest_digest != current.manifest_digest:
        out.append("the manifests changed")
    for env in sorted(set(saved.stores) | set(current.stores)):
        if saved.stores.get(env) != current.stores.get(env):
            out.append(f"database rows of environment {env} changed")
    for env in sorted(set(saved.listings) | set(current.listings)):
        if saved.listings.get(env) != current.listings.get(env):
            out.append(f"containers listed on environment {env} changed")
    return out


def check_basis(saved: Basis, current: Basis) -> None:
    """Raise PlanError naming every change; the caller then applies nothing."""
    changed = changes_since(saved, current)
    if changed:
        raise PlanError("saved plan is stale, nothing applied: " + "; ".join(changed) + ". Run plan again.")
