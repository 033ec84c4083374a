"""One exception tree for the whole project.

Every error knows whether retrying can help (``retryable``) so that the executor and the daemon decide
without inspecting types. Messages are built from identifiers, never from secret values.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    """Root of every error this project raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ManifestIssue:
    """One problem found in a manifest, located as precisely as the source allows; line 0 when there is
    no line to point at (a directory, a missing path)."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"


class ManifestError(ReconcilerError):
    """The manifests are invalid; carries every issue found, not only the first."""

    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column, i.path, i.message))
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid manifest")


class StoreError(ReconcilerError):
    """The database could not be read or written."""


class SchemaMissingError(StoreError):
    """The database is reachable but lacks the reconciler's tables."""


class LockHeldError(StoreError):
    """Another reconciler holds the lock this one needs."""


class JournalError(ReconcilerError):
    """The journal could not be opened, read or written; the message names the file and the fix."""


class DtmaError(ReconcilerError):
    """A call to a toolbox's DTMA agent failed."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status_code = status_code


class DtmaTransportError(DtmaError):
    """Connect/read timeout, refused or dropped connection: the agent may be fine a moment later."""

    retryable = True


class DtmaServerError(DtmaError):
    """The agent answered 5xx."""

    retryable = True


class DtmaClientError(DtmaError):
    """The agent answered 4xx: retrying the same request will not help."""

    retryable = False


class DtmaAuthError(DtmaClientError):
    """401/403: the bearer token is missing, malformed or wrong."""


class DtmaNotFoundError(DtmaClientError):
    """404: the agent does not manage that name (perhaps it restarted and forgot it)."""


class DtmaConflictError(DtmaClientError):
    """409: the name or the host port is already taken on the toolbox."""


class DtmaNameHeldError(DtmaConflictError):
    """409 "Instance with name 'x' already exists.": the agent remembers the name in memory, even when no
    container of that name exists any more (a ``docker rm`` behind its back). Only an agent restart clears it,
    so retrying cannot help."""


class DtmaPortConflictError(DtmaConflictError):
    """409 "Port conflict": another instance the agent manages already publishes that host port."""


class DtmaNameTakenError(DtmaError):
    """Docker's name conflict wrapped in a 500: a container of that name exists that the agent does not
    manage (made by hand, or the agent forgot its containers when it restarted)."""

    retryable = False


class DtmaAlreadyStoppedError(DtmaError):
    """Docker's 304 (bare from the older agent, wrapped in a 500 by the newer): the container was not running.
    The desired effect of a stop holds, so callers read it as success."""

    retryable = False


class DtmaNoSuchContainerError(DtmaError):
    """Docker's 404 (wrapped in a 500 by the newer agent, "No such container" from the older): the agent
    still manages the name but the container is gone (removed behind its back)."""

    retryable = False


class DtmaDeployTimeoutError(DtmaTransportError):
    """A deploy got no answer within its deadline. The agent may still be pulling the image and may yet
    create the container, so the deploy must never be re-sent in the same run: poll the listing instead."""

    retryable = False


class DtmaDockerUnavailableError(DtmaError):
    """The agent answered, but says it cannot reach Docker on its host (``tool_instances: [{"error": ...}]``):
    the toolbox is unobserved, never empty."""

    retryable = True


class DtmaResponseError(DtmaError):
    """The agent answered something this client cannot parse, or too large to read."""

    retryable = False


class PlanError(ReconcilerError):
    """A plan cannot be made or applied as asked (refused by a safety rule, stale saved plan...)."""


class ConfigError(ReconcilerError):
    """Settings or command-line options that do not fit together."""


class DtmaTokenError(DtmaAuthError, ConfigError):
    """The bearer token cannot be sent at all (characters outside Latin-1): a configuration error, and for
    the toolbox an auth failure, so it is unobserved rather than read as empty."""
