"""``secretFromEnv`` references -> values, at plan/apply time only, and their keyed fingerprints.

Values never enter a message: a missing variable is reported by name, at the line that asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.errors import ManifestError, ManifestIssue
from reconciler.model.spec import Desired
from reconciler.model.spec_hash import Fingerprints, fingerprint_secret, key_id


def resolve_secrets(desired: Desired, environ: Mapping[str, str]) -> dict[str, str]:
    """Every referenced variable name -> its value; ``ManifestError`` naming each one that is not set."""
    values: dict[str, str] = {}
    issues: list[ManifestIssue] = []
    for environment in desired.environments:
        for index, server in enumerate(environment.servers):
            for key, ref in server.secret_refs:
                value = environ.get(ref.env_var)
                if value is not None:
                    values[ref.env_var] = value
                    continue
                source = ref.source if ref.source.line else server.source
                issues.append(
                    ManifestIssue(
                        source.file,
                        source.line,
                        source.column,
                        f"servers[{index}].env.{key}.secretFromEnv",
                        f"environment variable {ref.env_var} is not set (server {server.name!r} "
                        f"of environment {environment.environment!r} needs it)",
                    )
                )
    if issues:
        raise ManifestError(issues)
    return values


def secret_fingerprints(values: Mapping[str, str], key: bytes) -> Fingerprints:
    """Variable name -> keyed fingerprint of its value (what the spec hash and the plan may show), with the
    key's id (stored beside them, so that fingerprints made with another key are told apart)."""
    return Fingerprints(
        {name: fingerprint_secret(key, value) for name, value in values.items()}, key_id=key_id(key)
    )
