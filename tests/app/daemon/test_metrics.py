"""/metrics of a real running daemon, read over its listener and parsed by prometheus_client's text parser:
per-environment series (and their removal), build info, the process and Python collectors, and the DTMA
requests by route template and status class."""

from __future__ import annotations

import platform
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families

from reconciler import __version__
from reconciler.adapters.metrics import DaemonMetrics
from reconciler.app.daemon import Daemon
from reconciler.app.suspend import suspend
from tests.app.daemon.conftest import CANARY, TOKEN, DaemonWorld, server

Labels = tuple[tuple[str, str], ...]
ROUTES = {"/tools", "/tools/status", "/status", "/health", "/tools/{name}", "/tools/{name}/start",
          "/tools/{name}/stop", "/tools/{name}/restart", "/tools/{name}/logs", "other"}  # fmt: skip


def scrape(d: Daemon) -> tuple[str, dict[tuple[str, Labels], float]]:
    assert d.http_address is not None
    with urllib.request.urlopen(f"http://{d.http_address}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body) for s in f.samples}  # fmt: skip
    return body, samples


def by_env(samples: dict[tuple[str, Labels], float], name: str) -> dict[str, float]:
    """environment -> value of the series ``name`` labelled by environment only."""
    return {dict(k[1])["environment"]: v for k, v in samples.items() if k[0] == name and len(k[1]) == 1}


@contextmanager
def running(d: Daemon) -> Iterator[Daemon]:
    """The daemon's real loop (scheduler, listener) in a thread, after its first cycle."""
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(d.run()))
    runner.start()
    try:
        assert d.cycle_finished.wait(20), "the scheduler never ran the first cycle"
        yield d
    finally:
        d.stop()
        runner.join(20)
    assert codes == [0]


def test_metrics_per_environment_build_info_collectors_and_dtma_routes(
    world_of: Callable[..., DaemonWorld],
) -> None:
    w = world_of(3)
    w.write({"tb0": [server("sa", env={"K": {"secretFromEnv": "CANARY_VAR"}})],
             "tb1": [server("sb"), server("sc")], "tb2": [server("sd")]})  # fmt: skip
    w.sim.sim.set_faults(1, error_rate={"POST /tools": 1.0})  # tb1's deploys fail
    w.sim.sim.set_faults(2, drop=True)  # tb2's agent does not answer
    d = w.daemon(interval=3600, listen="127.0.0.1:0")
    with running(d):
        body, samples = scrape(d)
        assert CANARY not in body and TOKEN not in body
        assert by_env(samples, "reconciler_environment_drift_steps") == {"tb0": 1, "tb1": 2, "tb2": 0}
        by_action = "reconciler_environment_drift_steps_by_action"
        assert samples[(by_action, (("action", "create"), ("environment", "tb1")))] == 2
        assert by_env(samples, "reconciler_environment_unobserved") == {"tb0": 0, "tb1": 0, "tb2": 1}
        assert by_env(samples, "reconciler_environment_failed_steps_total") == {"tb0": 0, "tb1": 2, "tb2": 0}
        success = by_env(samples, "reconciler_environment_last_success_timestamp_seconds")
        assert success["tb0"] > 0 and success["tb1"] == 0 and success["tb2"] == 0
        assert by_env(samples, "reconciler_environment_stalled_servers") == {"tb0": 0, "tb1": 0, "tb2": 0}
        assert samples[("reconciler_cycle_interval_seconds", ())] == 3600
        # The fleet-wide series are still there.
        assert samples[("reconciler_drift_steps", ())] == 3
        assert samples[("reconciler_unreachable_toolboxes", ())] == 1

        build = [dict(k[1]) for k, v in samples.items() if k[0] == "reconciler_build_info" and v == 1]
        assert build == [{"version": __version__, "python": platform.python_version(),
                          "implementation": "cpython"}]  # fmt: skip
        names = {k[0] for k in samples}
        assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
                "python_info", "python_gc_objects_collected_total"} <= names  # fmt: skip

        requests = {(dict(k[1])["method"], dict(k[1])["route"], dict(k[1])["status_class"]): v
                    for k, v in samples.items() if k[0] == "reconciler_dtma_requests_total"}  # fmt: skip
        assert {route for _, route, _ in requests} <= ROUTES  # templated: no server name in a label
        assert requests[("POST", "/tools", "2xx")] == 1  # tb0's create
        assert requests[("POST", "/tools", "5xx")] >= 2  # tb1's creates (each retry counts)
        assert requests[("GET", "/tools/status", "2xx")] >= 2  # tb0 and tb1 listed (and watched after a create)
        assert requests[("GET", "/tools/status", "transport-error")] >= 1  # tb2
        for (method, route, status), count in requests.items():
            labels = (("method", method), ("route", route), ("status_class", status))
            assert samples[("reconciler_dtma_request_duration_seconds_count", labels)] == count

        # tb2 leaves the manifests, tb1's deploys work again: tb2's series go, tb1 succeeds. tb0 is suspended
        # with a new server declared: that drift is held back, and still shown.
        w.sim.sim.clear_faults(1)
        w.write({"tb0": [server("sa", env={"K": {"secretFromEnv": "CANARY_VAR"}}), server("se")],
                 "tb1": [server("sb"), server("sc")]})  # fmt: skip
        suspend(w.settings(), "tb0", "incident 7", by="test")
        w.clock.advance(7200)  # past tb1's backoff
        report = d.cycle()
        assert [(r.step.server, r.outcome) for r in report.results] == [("sb", "ok"), ("sc", "ok")]
        _, after = scrape(d)
    assert by_env(after, "reconciler_environment_drift_steps") == {"tb0": 1, "tb1": 2}
    assert after[(by_action, (("action", "create"), ("environment", "tb0")))] == 1
    assert [k for k in after if dict(k[1]).get("environment") == "tb2"] == []
    assert by_env(after, "reconciler_environment_failed_steps_total") == {"tb0": 0, "tb1": 2}  # a counter
    assert by_env(after, "reconciler_environment_last_success_timestamp_seconds")["tb1"] > 0
    assert by_env(after, "reconciler_environment_last_success_timestamp_seconds")["tb0"] == success["tb0"]


def test_by_action_series_follow_the_plan_and_removal_drops_every_series() -> None:
    m = DaemonMetrics()

    def text() -> str:
        return m.render().decode()

    values = {"drift_steps": 3, "drift_by_action": {"create": 2, "delete": 1}, "unobserved": False,
              "failed_steps": 1, "stalled_servers": 1, "success_at": None}  # fmt: skip
    m.set_environment("a", **values)  # type: ignore[arg-type]
    m.set_environment("b", **{**values, "drift_by_action": {"create": 3}})  # type: ignore[arg-type]
    assert 'reconciler_environment_drift_steps_by_action{action="delete",environment="a"} 1.0' in text()
    m.set_environment("a", **{**values, "drift_steps": 1, "drift_by_action": {"create": 1}})  # type: ignore[arg-type]
    assert 'action="delete",environment="a"' not in text()
    assert 'reconciler_environment_failed_steps_total{environment="a"} 2.0' in text()
    m.keep_environments(["b"])
    assert 'environment="a"' not in text() and 'environment="b"' in text()
