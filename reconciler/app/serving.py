"""``--listen``: the daemon's probes, metrics, status page and git webhook served over HTTP (the server is an
adapter)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reconciler.adapters.http_status import StatusServer, parse_listen
from reconciler.adapters.metrics import CONTENT_TYPE
from reconciler.app import hooks
from reconciler.app.status_site import SiteSources, journal_reader

if TYPE_CHECKING:
    from reconciler.app.daemon import Daemon

log = logging.getLogger("reconciler.daemon")


def serve(daemon: Daemon) -> StatusServer:
    """Start serving the status page (/, /api/status, /api/runs), /healthz, /readyz, /metrics and
    ``POST /hooks/git`` (reconcile now) for ``daemon`` on its ``--listen`` address."""
    listen = daemon.config.listen or ""
    host, port = parse_listen(listen, allow_remote=daemon.config.allow_remote_listen)
    pages = None
    if daemon.site is not None:
        pages = daemon.site(
            SiteSources(
                fleet=lambda: daemon.fleet,
                ready=daemon.readiness,
                now=daemon.clock.now,
                runs=journal_reader(daemon.settings.journal_path),
                refresh=max(5, min(60, round(daemon.config.interval))),
            )
        )
    server = StatusServer(
        host,
        port,
        ready=daemon.readiness,
        metrics=daemon.metrics.render,
        metrics_type=CONTENT_TYPE,
        pages=pages,
        posts={hooks.PATH: hooks.GitHook(daemon.settings.webhook_secret, daemon.request_cycle)},
    ).start()
    daemon.http_address = server.address
    if pages is not None:
        log.info("status page on http://%s/ (also /api/status, /healthz, /readyz, /metrics)", server.address)
    else:
        log.info("serving /healthz, /readyz and /metrics on http://%s", server.address)
    if daemon.settings.webhook_secret:
        log.info("git webhook on http://%s%s", server.address, hooks.PATH)
    if daemon.on_serving is not None:
        daemon.on_serving(server.address)
    return server
