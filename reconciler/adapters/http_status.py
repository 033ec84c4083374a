"""``--listen``: /healthz, /readyz, /metrics and the status page over stdlib http.server, in a background
thread.

Loopback only unless the operator allows another address explicitly: the endpoints carry no secrets, but
they describe the fleet. GET and HEAD are served; POST only on the routes the app registers (``posts``: the
git webhook), which judge each request themselves; every other method or path is refused with 405.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from reconciler.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
TEXT = "text/plain; charset=utf-8"
# The page has inline CSS and SVG and nothing else: no script runs, even one that slipped past escaping.
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

# A page handler: (path, query) -> (status, body, content type), or None when the path is not its own.
Pages = Callable[[str, dict[str, list[str]]], tuple[int, bytes, str] | None]
BODY_TIMEOUT = 10.0  # seconds a client may take to send its request: a slow sender cannot hold a thread long


@dataclass(frozen=True)
class Posted:
    """A POST as its route sees it: headers first, the body read only when the route asks (so a request it
    refuses on its headers, or whose declared length is too large, is never read)."""

    header: Callable[[str], str | None]  # case-insensitive
    length: int | None  # Content-Length, None when absent or not a number
    read: Callable[[], bytes]  # exactly ``length`` bytes


# A POST route: the request -> (status, plain-text body).
PostRoute = Callable[[Posted], tuple[int, bytes]]


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


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr for any error; a client that went away or stalled is
        # routine on a listener, and anything else goes to the log, never as bare text on stderr.
        error = sys.exc_info()[1]
        who = client_address[0] if isinstance(client_address, tuple) and client_address else client_address
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("http: the client %s went away or stalled: %s", who, error)
        else:
            log.error("http: a request from %s failed", who, exc_info=error)


class _Server6(_Server):
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
        pages: Pages | None = None,
        posts: Mapping[str, PostRoute] | None = None,
    ) -> None:
        outer = self
        self._ready, self._metrics, self._metrics_type = ready, metrics, metrics_type
        self._pages = pages
        self._posts = dict(posts or {})

        class Handler(BaseHTTPRequestHandler):
            server_version = "mcp-reconciler"
            timeout = BODY_TIMEOUT

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

            def __getattr__(self, name: str) -> Any:
                # http.server answers 501 for a method it has no do_X for; this server changes nothing, so
                # every method but GET and HEAD is refused the same way, with 405 and the Allow header.
                if name.startswith("do_"):
                    return self._refuse
                raise AttributeError(name)

            def _refuse(self, head: bool = False) -> None:
                route = urlsplit(self.path).path in outer._posts
                body = b"method not allowed: this server is read-only (GET, HEAD)\n"
                if route:
                    body = b"method not allowed: this route takes POST\n"
                self.send_response(405)
                self.send_header("Allow", "POST" if route else "GET, HEAD")
                self.send_header("Content-Type", TEXT)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_POST(self) -> None:
                route = outer._posts.get(urlsplit(self.path).path)
                if route is None:
                    self._refuse()
                    return
                try:
                    length: int | None = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    length = None
                if length is not None and length < 0:
                    length = None
                size = length or 0
                posted = Posted(header=self.headers.get, length=length, read=lambda: self.rfile.read(size))
                try:
                    status, body = route(posted)
                except (ConnectionError, TimeoutError) as e:  # the body never came: nobody to answer
                    log.info("POST %s: the client did not send its body (%s)", urlsplit(self.path).path, e)
                    self.close_connection = True
                    return
                except Exception:
                    log.exception("POST %s failed", self.path)
                    status, body = 500, b"internal error: see the daemon's log\n"
                # The body may be unread (refused on its headers): never parse it as the next request.
                self.close_connection = True
                self._send(status, body, TEXT)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, *, head: bool) -> None:
                url = urlsplit(self.path)
                path = url.path
                if path in outer._posts:  # a POST route exists here: the method is wrong, not the path
                    self._refuse(head)
                elif path == "/healthz":
                    self._send(200, b"ok\n", TEXT, head)
                elif path == "/readyz":
                    ok, why = outer._ready()
                    self._send(200 if ok else 503, (why + "\n").encode(), TEXT, head)
                elif path == "/metrics":
                    self._send(200, outer._metrics(), outer._metrics_type, head)
                else:
                    page = None
                    if outer._pages is not None:
                        try:
                            page = outer._pages(path, parse_qs(url.query))
                        except Exception:
                            log.exception("status page %s failed", path)
                            page = (500, b"internal error: see the daemon's log\n", TEXT)
                    if page is None:
                        page = (404, b"not found: try /, /api/status, /healthz, /readyz or /metrics\n", TEXT)
                    self._send(*page, head)

            def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("Content-Security-Policy", CSP)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        server_class = _Server6 if ":" in host else _Server
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
