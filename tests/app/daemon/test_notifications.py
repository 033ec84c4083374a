"""Notifications end to end: a real HTTP receiver on loopback gets one message per event kind and
environment (deduplicated over later cycles), Slack's format on request, nothing secret; a receiver that
never answers does not hold a cycle up, and failed deliveries are counted."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.adapters.notify import Notifier, Target, parse_target
from reconciler.app.daemon import Daemon, DaemonConfig, NotifyConfig
from reconciler.core.notify import Event
from reconciler.errors import ConfigError
from reconciler.model.secrets import Secret
from tests.app.daemon.conftest import CANARY, FAST, TOKEN, DaemonWorld, server
from tests.core.test_notify import NOW


@dataclass
class Receiver:
    """A webhook receiver on loopback; with ``gate`` set, every request waits for it before answering."""

    url: str
    got: queue.Queue[tuple[str, dict[str, Any]]] = field(default_factory=queue.Queue)
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)

    def take(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        return [self.got.get(timeout=20) for _ in range(count)]


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    servers: list[tuple[ThreadingHTTPServer, Receiver]] = []

    def start(gate: threading.Event | None = None) -> Receiver:
        box: list[Receiver] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                rec = box[0]
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.entered.set()
                if rec.gate is not None:
                    rec.gate.wait(30)
                rec.got.put((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        rec = Receiver(f"http://127.0.0.1:{httpd.server_address[1]}", gate=gate)
        box.append(rec)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append((httpd, rec))
        return rec

    yield start
    for httpd, rec in servers:
        if rec.gate is not None:
            rec.gate.set()
        httpd.shutdown()
        httpd.server_close()


def notifying(w: DaemonWorld, *urls: str, **notify: Any) -> Daemon:
    cfg = DaemonConfig(paths=(str(w.manifests),))
    d = Daemon(w.settings(), cfg, environ={"CANARY_VAR": CANARY}, clock=w.clock, executor_config=FAST,
               notify_config=NotifyConfig(urls=tuple(Secret(u) for u in urls), **notify))  # fmt: skip
    w.daemons.append(d)
    return d


def test_one_message_per_event_kind_and_environment(
    world_of: Callable[..., DaemonWorld], receiver: Callable[..., Receiver]
) -> None:
    w = world_of(4)
    rec = receiver()
    secret_env = {"TOKENISH": {"secretFromEnv": "CANARY_VAR"}}
    w.write({
        "tb0": [server("crashy", env=secret_env), server("calm")],  # drift fixed, then stalled
        "tb1": [server("sb")],  # every deploy fails
        "tb2": [server("sx")],  # created, then the manifest empties it: refused (allowEmpty)
        "tb3": [server("sy")],  # its agent stops answering: unobserved
    }, prune=True)  # fmt: skip
    w.sim.sim.set_faults(1, error_rate={"POST /tools": 1.0})
    w.sim.sim.set_faults(3, drop=True)
    d = notifying(w, rec.url + "/generic", "slack+" + rec.url + "/slack", unobserved_cycles=1)
    d.cycle()
    w.write({"tb0": [server("crashy", env=secret_env), server("calm")], "tb1": [server("sb")], "tb2": [],
             "tb3": [server("sy")]}, prune=True)  # fmt: skip
    for _ in range(4):  # crashy exits after every start: restarted twice, then stalled; tb1 and tb3 back off
        w.sim.admin(0, "POST", "/__sim/exit-after", {"name": "crashy", "seconds": 0})
        w.clock.advance(60)  # past the backoff, well within the 15-minute period
        d.cycle()
    assert d.last_report is not None and d.last_report.stalled == ("tb0/crashy",)
    expected = {
        ("drift-fixed", "tb0"), ("drift-fixed", "tb2"), ("step-failed", "tb1"), ("server-stalled", "tb0"),
        ("plan-refused", "tb2"), ("toolbox-unobserved", "tb3"),
    }  # fmt: skip
    got = rec.take(2 * len(expected))  # each to both receivers
    d.close()  # drains the queue: anything more would have arrived by now
    assert rec.got.empty(), f"more than one message per kind and environment: {rec.got.get()}"
    generic = [body for path, body in got if path == "/generic"]
    slack = [body for path, body in got if path == "/slack"]
    assert {(m["event"], m["environment"]) for m in generic} == expected
    assert len(generic) == len(expected) == len(slack)
    failed = next(m for m in generic if m["event"] == "step-failed")
    assert failed["server"] == "sb" and "create failed" in failed["reason"] and isinstance(failed["run_id"], int)
    unobserved = next(m for m in generic if m["event"] == "toolbox-unobserved")
    assert unobserved["reason"].startswith("not observed for 2 cycles in a row")
    assert all(set(m) == {"text"} for m in slack)
    assert any("server-stalled* tb0/crashy" in m["text"] for m in slack)
    everything = json.dumps(got)
    assert CANARY not in everything and TOKEN not in everything


def test_a_receiver_that_never_answers_does_not_hold_up_a_cycle(
    world_of: Callable[..., DaemonWorld], receiver: Callable[..., Receiver]
) -> None:
    w = world_of(1)
    blocked = receiver(gate=threading.Event())
    w.write({"tb0": [server("sa")]})
    d = notifying(w, blocked.url, timeout=30)
    first = d.cycle()
    assert [str(r.outcome) for r in first.results] == ["ok"]
    assert blocked.entered.wait(20)  # the message reached the receiver, which holds it...
    w.write({"tb0": [server("sa"), server("sb")]})
    second = d.cycle()  # ...and the next cycle, with a message of its own, still returns
    assert [str(r.outcome) for r in second.results] == ["ok"]
    assert blocked.gate is not None and not blocked.gate.is_set() and blocked.got.empty()
    blocked.gate.set()
    assert blocked.take(1)[0][1]["event"] == "drift-fixed"


def test_failed_deliveries_are_counted_and_logged_without_the_url(
    world_of: Callable[..., DaemonWorld], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/services/T000/B000/{CANARY}"
    w = world_of(1)
    w.write({"tb0": [server("sa")]})
    d = notifying(w, dead)
    d.cycle()
    d.close()  # waits for the queued delivery to be tried
    families = text_string_to_metric_families(d.metrics.render().decode())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    assert samples[("reconciler_notification_failures_total", (("reason", "connection"),))] == 1
    assert "notification drift-fixed to http://127.0.0.1:" in caplog.text
    assert CANARY not in caplog.text and "/services/" not in caplog.text


def test_a_slow_receiver_times_out_and_a_full_queue_drops(receiver: Callable[..., Receiver]) -> None:
    gate = threading.Event()
    slow = receiver(gate=gate)
    event = Event("drift-fixed", "tb0", "sa", "drift found and fixed: create sa")
    failures: queue.Queue[str] = queue.Queue()
    hasty = Notifier([Target(slow.url)], on_failure=failures.put, timeout=0.2)
    stuck = Notifier([Target(slow.url)], on_failure=failures.put, timeout=30, queue_size=1)
    try:
        hasty.send(event, NOW)
        assert failures.get(timeout=20) == "timeout"
        # The worker holds at most one (waiting on the receiver) and the queue one more: of three, one at
        # least is dropped at once, never waited for.
        for _ in range(3):
            stuck.send(event, NOW)
        assert failures.get_nowait() == "queue-full"
    finally:
        gate.set()
        hasty.close()
        stuck.close()


def test_notify_urls_must_be_http() -> None:
    assert parse_target("slack+https://hooks.slack.com/services/T/B/X") == Target(
        "https://hooks.slack.com/services/T/B/X", "slack"
    )
    assert parse_target("https://alerts.example.com/hook").format == "json"
    with pytest.raises(ConfigError, match="not an http") as caught:
        parse_target("ftp://files.example.com/secret-path")
    assert "secret-path" not in str(caught.value)
    for malformed in ("https://[bad/services/secret-path", "https://hooks.example:99999/services/secret-path"):
        with pytest.raises(ConfigError, match="not a valid URL") as caught:
            parse_target(malformed)
        assert "secret-path" not in str(caught.value)


def test_receivers_and_the_webhook_secret_come_from_the_environment_unshown() -> None:
    from reconciler.settings import from_environ

    settings = from_environ({"RECONCILER_NOTIFY": "https://a.example/x, slack+https://hooks.example/T/B/C\n",
                             "RECONCILER_WEBHOOK_SECRET": "hook-secret-1"})  # fmt: skip
    assert [u.reveal() for u in settings.notify_urls] == [
        "https://a.example/x",
        "slack+https://hooks.example/T/B/C",
    ]
    assert settings.webhook_secret is not None and settings.webhook_secret.reveal() == "hook-secret-1"
    assert "hooks.example" not in repr(settings) and "hook-secret-1" not in repr(settings)
    assert from_environ({}).notify_urls == () and from_environ({}).webhook_secret is None
