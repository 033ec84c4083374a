"""Run the DTMA simulator in-process for tests (imported as ``sim_helpers``; tests/ is on sys.path).

with running_simulator(toolboxes=3, mode="newer", token="t") as sim:   # mode: newer, older or kind
    # (default: the simulator's DEFAULT_MODE; a shape alone picks the lineage serving it when that is real)
    sim.addresses            # ["127.0.0.1:41001", ...]
    sim.targets              # DtmaTarget per toolbox, environment ids "env-0", "env-1", ...
    sim.admin(0, "POST", "/__sim/faults", {"latency": 0.05})   # over real HTTP, admin token header
    sim.counters(0)          # {"GET /status": 2, ...}; sim.counters() sums all toolboxes
    sim.sim                  # the Simulator itself (Python API: set_faults, toolbox(i), env_of, ...)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reconciler.model.secrets import Secret
from reconciler.ports import DtmaTarget
from reconciler.simulator import ADMIN_HEADER, Simulator

DEFAULT_TOKEN = "sim-test-token-0123456789"
ADMIN_TOKEN = "sim-admin-token"


@dataclass
class RunningSimulator:
    sim: Simulator
    token: str

    @property
    def addresses(self) -> list[str]:
        return self.sim.addresses

    @property
    def targets(self) -> list[DtmaTarget]:
        return [self.target(i) for i in range(len(self.addresses))]

    def target(self, index: int, token: str | None = None) -> DtmaTarget:
        return DtmaTarget(
            environment_id=f"env-{index}",
            base_url=f"http://{self.addresses[index]}",
            token=Secret(self.token if token is None else token),
        )

    def admin(self, index: int, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://{self.addresses[index]}{path}",
            data=data,
            method=method,
            headers={ADMIN_HEADER: self.sim.admin_token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def counters(self, index: int | None = None) -> dict[str, int]:
        return self.sim.counters(index)


@contextmanager
def running_simulator(
    toolboxes: int = 1,
    shape: str | None = None,
    token: str = DEFAULT_TOKEN,
    *,
    start_delay: float = 0.0,
    clock: Callable[[], float] | None = None,
    per: str = "port",
    host: str = "127.0.0.1",
    mode: str | None = None,
    **kwargs: Any,
) -> Iterator[RunningSimulator]:
    extra: dict[str, Any] = dict(kwargs)
    if clock is not None:
        extra["clock"] = clock
    sim = Simulator(
        toolboxes=toolboxes,
        mode=mode,
        shape=shape,
        token=token,
        admin_token=ADMIN_TOKEN,
        start_delay=start_delay,
        per=per,
        host=host,
        **extra,
    )
    with sim:
        yield RunningSimulator(sim, token)


class FakeClock:
    """A monotonic clock the test moves by hand (for start delays and planned exits)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def call(
    address: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = DEFAULT_TOKEN,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """One agent call over real HTTP with urllib (no reconciler client): (status, JSON body, text, or None
    for an empty body)."""
    data = None if body is None else json.dumps(body).encode()
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://{address}{path}", data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()
