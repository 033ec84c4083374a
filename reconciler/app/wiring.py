"""Settings -> adapters. Each function builds one port; callers close what they open."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from reconciler.adapters.clock import SystemClock
from reconciler.adapters.dtma_client import DtmaClient, RequestObserver
from reconciler.adapters.git import GitWorkTree
from reconciler.adapters.journal import Journal
from reconciler.adapters.key_file import read_or_create_key
from reconciler.adapters.mcp_probe import McpProber
from reconciler.errors import ConfigError
from reconciler.ports import Store
from reconciler.settings import Settings

log = logging.getLogger("reconciler")

__all__ = [
    "GitWorkTree",
    "SystemClock",
    "open_dtma",
    "open_journal",
    "open_prober",
    "secret_key",
    "secret_key_path",
]


def secret_key_path(settings: Settings) -> Path:
    return Path(settings.journal_path).parent / "secret.key"


def secret_key(settings: Settings, store: Store | None = None) -> bytes:
    """The HMAC key for secret fingerprints: RECONCILER_SECRET_KEY, else the key file beside the journal.

    The file is made (and where it was written said) only when the database holds no fingerprint yet: a key
    made silently next to another journal would read every stored fingerprint as a changed secret."""
    if settings.secret_key:
        return settings.secret_key.reveal().encode()
    path = secret_key_path(settings)
    if store is not None and not path.exists() and holds_fingerprints(store):
        raise ConfigError(
            f"the database holds secret fingerprints made with a key this run does not have (no {path}): "
            "set RECONCILER_SECRET_KEY to the key that made them, or --journal to the directory holding that "
            "secret.key; no new key was made"
        )
    key, created = read_or_create_key(path)
    if created:
        log.warning(
            "made a new secret key for fingerprints at %s; CI and the daemon must share one key "
            "(RECONCILER_SECRET_KEY, or this file)",
            path,
        )
    return key


def holds_fingerprints(store: Store) -> bool:
    """Whether any managed instance row stores secret fingerprints."""
    return any(i.managed and i.config.get("secret_fingerprints") for i in store.observe_instances())


def open_dtma(settings: Settings, on_request: RequestObserver | None = None) -> DtmaClient:
    """The DTMA client for these settings; keep it across cycles so its connection pool is reused.
    ``on_request`` is told of every request (the daemon passes ``DaemonMetrics.observe_dtma``: the client
    and the metrics never import one another)."""
    return DtmaClient(
        connect_timeout=settings.dtma_connect_timeout,
        read_timeout=settings.dtma_read_timeout,
        call_deadline=settings.dtma_call_deadline,
        deploy_timeout=settings.dtma_deploy_timeout,
        concurrency=settings.dtma_concurrency,
        verify=settings.dtma_verify,
        on_request=on_request,
    )


def open_prober(settings: Settings, secrets: Iterable[str] = ()) -> McpProber:
    """The MCP readiness prober (its event loop thread starts on first use); keep it across cycles, close it
    at the end. ``probe_many``'s ``concurrency`` bounds each call."""
    return McpProber(secrets=secrets)


def open_journal(settings: Settings, secrets: Iterable[str] = ()) -> Journal:
    return Journal(settings.journal_path, secrets=[s for s in secrets if s])
