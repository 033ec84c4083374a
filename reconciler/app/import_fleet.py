"""``reconciler import``: the manifest of what one environment runs, from its rows and its live listing."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.app.stores import open_store
from reconciler.app.wiring import open_dtma
from reconciler.core.imported import import_environment
from reconciler.core.observed import RecordedEnvironment, Unreachable
from reconciler.errors import ConfigError, DtmaError
from reconciler.model.loader import environment_key
from reconciler.model.manifest_writer import manifest_text
from reconciler.runtime.observe import target_for
from reconciler.settings import Settings


@dataclass(frozen=True)
class ImportedManifest:
    environment: str
    text: str  # the manifest, with no secret value in it
    secret_vars: tuple[tuple[str, str], ...]  # (variable to set, what it feeds)
    notes: tuple[str, ...]
    servers: int


def import_manifest(settings: Settings, environment: str) -> ImportedManifest:
    """The manifest for ``environment`` (a name or id). Raises ConfigError when the environment is unknown, not
    reachable (its listing failed: an empty manifest is never written for a toolbox that was not seen) or runs
    nothing; StoreError when the database cannot be read."""
    store = open_store(settings.database_url)
    try:
        env = _find(store.observe_environments(), environment)
        target = target_for(env, settings)
        if isinstance(target, Unreachable):
            raise ConfigError(f"cannot import {environment}: {target.reason}; nothing written")
        label = target.label
        dtma = open_dtma(settings)
        try:
            listing = dtma.list(target)
        except DtmaError as exc:
            raise ConfigError(
                f"cannot import {label}: its DTMA agent could not be listed ({exc}); nothing written (an "
                "unreachable toolbox is never read as empty)"
            ) from exc
        finally:
            dtma.close()
        rows = store.observe_instances()
        mcp_columns = store.recorded_mcp(env.id)
    finally:
        store.close()
    imported = import_environment(env, rows, listing, mcp_columns)
    if not imported.spec.servers:
        if imported.notes:  # containers run, but none could be written: say why rather than "nothing runs"
            raise ConfigError(
                f"no container on {label} could be imported: {'; '.join(imported.notes)}; nothing written"
            )
        raise ConfigError(f"nothing runs on {label} (its agent lists no container to import); nothing written")
    comments = [
        f"Imported by `reconciler import --env {environment}` from the database rows and the live listing.",
        "Review it before committing: transport, endpoint and env come from the rows where they are recorded.",
    ]
    if imported.secret_vars:
        names = ", ".join(var for var, _ in imported.secret_vars)
        comments.append(f"Secret values are not written: set {names} before plan/apply.")
    return ImportedManifest(
        environment=env.name or env.id,
        text=manifest_text(imported.spec, comments),
        secret_vars=imported.secret_vars,
        notes=imported.notes,
        servers=len(imported.spec.servers),
    )


def _find(environments: tuple[RecordedEnvironment, ...], wanted: str) -> RecordedEnvironment:
    key = environment_key(wanted)
    for env in sorted(environments, key=lambda e: e.id):
        if environment_key(env.id) == key or env.name == wanted:
            return env
    known = ", ".join(sorted(e.name or e.id for e in environments)) or "none"
    raise ConfigError(f"--env {wanted} is not an environment in the database (known: {known})")
