"""What the user declared: manifests parsed into frozen dataclasses. Pure: no I/O beyond reading files."""

from reconciler.model.spec import (
    Desired,
    EnvironmentPolicy,
    EnvironmentSpec,
    SecretRef,
    ServerSpec,
    SourceRef,
)

__all__ = ["Desired", "EnvironmentPolicy", "EnvironmentSpec", "SecretRef", "ServerSpec", "SourceRef"]
