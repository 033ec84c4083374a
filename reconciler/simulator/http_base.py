"""The request parsing the simulator's HTTP servers share (the DTMA routes and the simulated MCP servers)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


class _Headers(dict[str, str]):
    """Request headers by lower-cased name; ``get`` ignores case like ``email.message.Message``."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


_MAX_LINE = 65536
_MAX_HEADERS = 100


class FastRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with kept-alive connections, buffered writes and a header parser cheaper than ``email``'s."""

    protocol_version = "HTTP/1.1"
    # Buffered writes: headers and body leave in one segment (unbuffered, the body waits on delayed ACK).
    wbufsize = 64 * 1024

    def handle_one_request(self) -> None:
        """``BaseHTTPRequestHandler.handle_one_request`` without the ``email`` header parser, which cost
        the simulator more CPU than answering (measured in tests/benchmarks: 1,000 listings)."""
        try:
            raw = self.rfile.readline(_MAX_LINE + 1)
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        if not raw:
            self.close_connection = True
            return
        self.raw_requestline = raw
        self.requestline = raw.decode("iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        self.command, self.request_version = "", "HTTP/0.9"
        if len(raw) > _MAX_LINE or len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.close_connection = True
            self.send_error(400, "Bad request line")
            return
        self.command, self.path, self.request_version = words
        headers = _Headers()
        for _ in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep or len(line) > _MAX_LINE:
                self.close_connection = True
                self.send_error(400, "Bad header line")
                return
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        else:
            self.close_connection = True
            self.send_error(431, "Too many headers")
            return
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("Connection", "").lower()
        self.close_connection = "close" in connection or (
            self.request_version == "HTTP/1.0" and "keep-alive" not in connection
        )
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()
