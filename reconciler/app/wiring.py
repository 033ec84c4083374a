"""Settings -> adapters. Each function builds one port; callers close what they open."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reconciler.adapters.clock import SystemClock
from reconciler.adapters.dtma_client import DtmaClient
from reconciler.adapters.git import GitWorkTree
from reconciler.adapters.journal import Journal
from reconciler.adapters.key_file import read_or_create_key
from reconciler.settings import Settings

__all__ = ["GitWorkTree", "SystemClock", "open_dtma", "open_journal", "secret_key", "secret_key_path"]


def secret_key_path(settings: Settings) -> Path:
    return Path(settings.journal_path).parent / "secret.key"


def secret_key(settings: Settings) -> bytes:
    """The HMAC key for secret fingerprints: RECONCILER_SECRET_KEY, else a key file made once beside the
    journal."""
    if settings.secret_key:
        return settings.secret_key.reveal().encode()
    key, _ = read_or_create_key(secret_key_path(settings))
    return key


def open_dtma(settings: Settings) -> DtmaClient:
    """The DTMA client for these settings; keep it across cycles so its connection pool is reused."""
    return DtmaClient(
        connect_timeout=settings.dtma_connect_timeout,
        read_timeout=settings.dtma_read_timeout,
        call_deadline=settings.dtma_call_deadline,
        deploy_timeout=settings.dtma_deploy_timeout,
        concurrency=settings.dtma_concurrency,
        verify=settings.dtma_verify,
    )


def open_journal(settings: Settings, secrets: Iterable[str] = ()) -> Journal:
    return Journal(settings.journal_path, secrets=[s for s in secrets if s])
