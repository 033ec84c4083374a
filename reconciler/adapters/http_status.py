"""``--listen``: /healthz, /readyz and /metrics over stdlib http.server, in a background thread.

Loopback only unless the operator allows another address explicitly: the endpoints carry no secrets, but
they describe the fleet.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


def parse_listen(listen: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port); a non-loopback host is refused
    unless ``allow_remote``."""
    text = listen.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:9464") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--listen {listen!r}: port must be 0..65535")
    if not allow_remote:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConfigError(
                f"--listen {listen!r} is not a loopback address; add --allow-remote-listen to serve "
                "health and metrics beyond this host"
            )
    return host, port


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class StatusServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[], bytes],
        metrics_type: str,
    ) -> None:
        outer = self
        self._ready, self._metrics, self._metrics_type = ready, metrics, metrics_type

        class Handler(BaseHTTPRequestHandler):
            server_version = "mcp-reconciler"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ok, why = outer._ready()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
                elif path == "/metrics":
                    self._send(200, outer._metrics(), outer._metrics_type)
                else:
                    self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server_class = _Server6 if ":" in host else ThreadingHTTPServer
        try:
            self._server = server_class((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"

    def start(self) -> StatusServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-status", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
