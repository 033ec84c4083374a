"""A saved plan file (``plan --out``): written by ``plan``, read by ``apply`` and ``show``.

It holds the plan as ``plan --format json`` prints it, its scope (``--env``, ``--server``), its basis (what
the plan observed) and the desired state of the environments in scope, with secret references only: ``apply
plan.json`` needs no manifest path and works from any directory or checkout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.plan import Plan
from reconciler.core.scope import PlanScope
from reconciler.errors import ConfigError
from reconciler.model.spec import Desired


@dataclass(frozen=True)
class SavedPlan:
    path: str
    plan: Plan
    scope: PlanScope
    data: dict[str, Any]

    @property
    def savable(self) -> bool:
        return isinstance(self.data.get("basis"), dict)

    def desired(self) -> Desired:
        from reconciler.presentation.plan_json import desired_from_dict

        return desired_from_dict(self.data.get("desired"), str(self.data["basis"].get("manifest_digest", "")))


def looks_like_plan(path: str) -> bool:
    """A ``.json`` file, or any file whose first non-blank character opens a JSON object."""
    if path.endswith(".json"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


def read_plan_file(path: str) -> SavedPlan:
    from reconciler.presentation.plan_json import plan_from_dict, scope_from_dict

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read saved plan {path}: {exc}") from exc
    if not isinstance(data, dict) or "steps" not in data:
        raise ConfigError(f"{path} is not a plan (make one with `reconciler plan --out FILE`)")
    return SavedPlan(path, plan_from_dict(data), scope_from_dict(data.get("scope")), data)


def write_plan_file(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
