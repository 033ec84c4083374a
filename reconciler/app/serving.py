"""``--listen``: the daemon's probes and metrics served over HTTP (the server is an adapter)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reconciler.adapters.http_status import StatusServer, parse_listen
from reconciler.adapters.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from reconciler.app.daemon import Daemon

log = logging.getLogger("reconciler.daemon")


def serve(daemon: Daemon) -> StatusServer:
    """Start serving /healthz, /readyz and /metrics for ``daemon`` on its ``--listen`` address."""
    listen = daemon.config.listen or ""
    host, port = parse_listen(listen, allow_remote=daemon.config.allow_remote_listen)
    server = StatusServer(
        host, port, ready=daemon.readiness, metrics=daemon.metrics.render, metrics_type=CONTENT_TYPE
    ).start()
    daemon.http_address = server.address
    log.info("serving /healthz, /readyz and /metrics on http://%s", server.address)
    return server
