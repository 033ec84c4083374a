"""A known token through every client path: it must appear in no log record, exception or repr."""

from __future__ import annotations

import logging
import traceback

import pytest

from reconciler.adapters.dtma_client import DtmaClient, RetryPolicy
from reconciler.errors import DtmaError
from reconciler.model.secrets import Secret
from reconciler.ports import DeployRequest, DtmaTarget
from tests.sim_helpers import running_simulator

CANARY = "canary-token-7f3a9c1e5b"


async def no_sleep(seconds: float) -> None:
    """The client's retry sleep, skipped."""


def test_token_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="reconciler")  # put back when the test ends
    texts: list[str] = []
    with running_simulator(token=CANARY, shape="b") as sim:
        client = DtmaClient(read_timeout=0.3, retry=RetryPolicy(attempts=2), sleep=no_sleep)
        texts.append(repr(client))
        good = sim.target(0)
        wrong = DtmaTarget("env-0", good.base_url, Secret(CANARY + "x"))
        texts += [repr(good), str(good), repr(wrong)]
        req = DeployRequest("img:1", "srv", "id-1", env=(("K", Secret(CANARY)),), port=8080, host_port=31001)
        texts.append(repr(req))

        def attempt(fn: object, *args: object) -> None:
            try:
                result = fn(*args)  # type: ignore[operator]
                texts.append(repr(result))
            except DtmaError as exc:
                texts.extend([str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(exc.__cause__)])

        for target in (good, wrong):
            attempt(client.health, target)
            attempt(client.deploy, target, req)
            attempt(client.deploy, target, req)  # 409
            attempt(client.list, target)
            attempt(client.list_many, [target])
            attempt(client.stop, target, "srv")
            attempt(client.start, target, "srv")
            attempt(client.stop, target, "missing")
        sim.sim.toolbox(0).forget()
        attempt(client.delete, good, "srv")
        sim.sim.set_faults(0, error_rate={"*": 1.0})
        attempt(client.list, good)
        sim.sim.set_faults(0, error_rate={}, latency=1.0)
        attempt(client.list, good)
        sim.sim.clear_faults(0)
        sim.sim.set_faults(0, drop=True)
        attempt(client.list, good)
        client.close()
    records = [r.getMessage() + repr(r.args) + (r.exc_text or "") for r in caplog.records]
    assert any(r.name.startswith("reconciler.adapters.dtma") for r in caplog.records)  # debug logging was on
    assert len(texts) > 30
    for text in texts + records:
        assert CANARY not in text
