"""A hostile little agent on loopback for the DTMA client's edge tests (imported as ``loopback``).

Each request (head and body, read by Content-Length) goes to a handler that writes to the socket itself, so
it can answer, trickle, hang or hang up. Everything it does is bounded and ends when the test leaves the
``with`` block.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from reconciler.model.secrets import Secret
from reconciler.ports import DtmaTarget

TOKEN = "loopback-token-5c2a9e"


@dataclass
class Request:
    method: str
    path: str
    head: bytes
    body: bytes


@dataclass
class Loopback:
    url: str
    stop: threading.Event
    requests: list[Request] = field(default_factory=list)

    def target(self, token: str = TOKEN) -> DtmaTarget:
        return DtmaTarget("env-loop", self.url, Secret(token), "loop-toolbox")

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if (r.method, r.path) == (method, path))


Handler = Callable[[Request, socket.socket, threading.Event], None]


def answer(status: int, body: Any, reason: str = "X") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    method, path = head.split(b" ")[:2]
    return Request(method.decode(), path.decode(), head, rest[:length])


@contextmanager
def loopback(handler: Handler) -> Iterator[Loopback]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    server = Loopback(f"http://127.0.0.1:{listener.getsockname()[1]}", stop)
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def connection(conn: socket.socket) -> None:
        with conn:
            try:
                while not stop.is_set():
                    request = _read_request(conn)
                    if request is None:
                        return
                    server.requests.append(request)
                    handler(request, conn, stop)
            except OSError:
                return  # the client hung up: what several tests make it do

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            t = threading.Thread(target=connection, args=(conn,), daemon=True)
            threads.append(t)
            t.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=10)
        for conn in conns:  # wakes a thread waiting for the next request on a kept-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(timeout=10)
