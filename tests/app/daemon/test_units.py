"""Pure parts of the daemon: backoff, flap guard, jitter bounds, readiness, option parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from reconciler.adapters.http_status import parse_listen
from reconciler.adapters.scheduler import interval_trigger
from reconciler.cli.run_cmd import parse_duration, parse_jitter
from reconciler.core import flap
from reconciler.core.backoff import BackoffPolicy, BackoffState, failed, jittered_interval, succeeded
from reconciler.core.plan import Action, Change, NoticeKind, Plan, Step
from reconciler.errors import ConfigError


def test_backoff_doubles_caps_and_resets() -> None:
    policy = BackoffPolicy(base=30, factor=2, cap=900, jitter=0.0)
    state = BackoffState()
    assert state.due(0.0) and not state.backing_off
    delays = []
    now = 1000.0
    for _ in range(8):
        state = failed(state, policy, now, 0.5, "boom")
        delays.append(state.retry_at - now)
    assert delays == [30, 60, 120, 240, 480, 900, 900, 900]
    assert not state.due(now + 899) and state.due(now + 900)
    assert succeeded(state) == BackoffState()


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999999])
def test_backoff_jitter_stays_within_its_fraction(rand: float) -> None:
    policy = BackoffPolicy(base=30, cap=900, jitter=0.1)
    for failures in range(1, 12):
        raw = min(900.0, 30 * 2 ** (failures - 1))
        delay = policy.delay(failures, rand)
        assert raw * 0.9 - 1e-9 <= delay <= raw * 1.1 + 1e-9
    assert policy.delay(1, 0.0) == pytest.approx(27.0) and policy.delay(1, 0.999999) == pytest.approx(
        33.0, rel=1e-5
    )


def test_jittered_interval_bounds() -> None:
    assert jittered_interval(30, 3, 0.0) == 30
    assert 30 <= jittered_interval(30, 3, 0.999) < 33


def test_scheduler_trigger_jitter_bounds_with_a_frozen_clock() -> None:
    trigger = interval_trigger(30, 3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with freeze_time(start):
        seen = [trigger.get_next_fire_time(start, start) for _ in range(200)]
    offsets = [(t - start).total_seconds() for t in seen if t is not None]
    assert len(offsets) == 200
    assert all(30 <= o <= 33 for o in offsets)
    assert max(offsets) - min(offsets) > 0.5  # jitter is really applied


def _step(server: str = "web", action: Action = Action.RESTART, spec_hash: str = "h1") -> Step:
    return Step("env-1", "tb0", server, action, "it exited", changes=(Change("state", "exited", "running"),),
                spec_hash=spec_hash)  # fmt: skip


def _cycle(state: flap.FlapState, steps: list[Step], *, apply_ok: bool = True) -> tuple[Plan, flap.FlapState]:
    plan, state = flap.guard(state, Plan(tuple(steps)), {"env-1"}, threshold=2)
    if apply_ok:
        state = flap.after_apply(state, plan.steps)
    return plan, state


def test_flap_guard_stalls_after_two_repeats_and_lifts_on_spec_change() -> None:
    state: flap.FlapState = {}
    kept = []
    for _ in range(4):
        plan, state = _cycle(state, [_step()])
        kept.append(len(plan.steps))
    assert kept == [1, 1, 0, 0]  # applied, needed again and re-applied, needed a second time: stalled
    assert flap.stalled(state) == (("env-1", "web"),)
    assert [n.kind for n in plan.notices] == [NoticeKind.STALLED]
    plan, state = _cycle(state, [_step(spec_hash="h2")])  # the manifest changed the spec
    assert len(plan.steps) == 1 and flap.stalled(state) == ()


def test_flap_guard_forgets_a_server_that_settles_and_ignores_failed_applies() -> None:
    state: flap.FlapState = {}
    _, state = _cycle(state, [_step()])
    _, state = _cycle(state, [])  # settled: no step needed
    assert state == {}
    for _ in range(5):  # the step keeps failing: that is backoff's business, not a flap
        plan, state = _cycle(state, [_step()], apply_ok=False)
        assert len(plan.steps) == 1
    assert flap.stalled(state) == ()


def test_flap_guard_keeps_records_of_environments_not_planned_this_cycle() -> None:
    state: flap.FlapState = {}
    for _ in range(3):
        _, state = _cycle(state, [_step()])
    assert flap.stalled(state)
    _plan, kept = flap.guard(state, Plan(()), {"env-other"})
    assert flap.stalled(kept) == (("env-1", "web"),)


def test_flap_guard_resets_when_the_difference_changes() -> None:
    state: flap.FlapState = {}
    for _ in range(2):
        _, state = _cycle(state, [_step()])
    replace_step = Step("env-1", "tb0", "web", Action.REPLACE, "spec changed",
                        changes=(Change("image", "a:1", "a:2"),), spec_hash="h1")  # fmt: skip
    plan, state = _cycle(state, [replace_step])
    assert len(plan.steps) == 1 and state[("env-1", "web")].repeats == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("90", 90), ("1.5m", 90), ("1h", 3600), ("250ms", 0.25)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "fast", "-5s", "0", "5d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_parse_jitter() -> None:
    assert parse_jitter("10%", 30) == pytest.approx(0.1)
    assert parse_jitter("3s", 30) == pytest.approx(0.1)
    assert parse_jitter("0", 30) == 0
    with pytest.raises(ConfigError):
        parse_jitter("150%", 30)


def test_listen_is_loopback_unless_allowed() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("127.0.0.1", 9464)
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ConfigError, match="not a loopback address"):
        parse_listen("0.0.0.0:9464")
    assert parse_listen("0.0.0.0:9464", allow_remote=True) == ("0.0.0.0", 9464)
    with pytest.raises(ConfigError):
        parse_listen("127.0.0.1:http")


def test_a_client_that_goes_away_mid_request_leaves_no_traceback_on_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import http.client
    import logging

    from reconciler.adapters.http_status import Posted, StatusServer

    caplog.set_level(logging.INFO, logger="reconciler.adapters.http_status")

    def gone(request: Posted) -> tuple[int, bytes]:
        raise ConnectionResetError(104, "Connection reset by peer")  # what reading a vanished body raises

    server = StatusServer("127.0.0.1", 0, ready=lambda: (True, "ready"), metrics=lambda: b"",
                          metrics_type="text/plain", posts={"/hooks/git": gone}).start()  # fmt: skip
    try:
        host, port = server.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", "/hooks/git", body=b"{}")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()  # nobody to answer: the connection is closed
        conn.close()
        # An error that escapes a request (a broken pipe while answering) is logged, not printed.
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            server._server.handle_error(None, ("127.0.0.1", 1))
        try:
            raise ValueError("a bug")
        except ValueError:
            server._server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err
    assert "did not send its body" in caplog.text and "a request from 127.0.0.1 failed" in caplog.text


def test_readiness_follows_the_clock(tmp_path: object) -> None:
    from pathlib import Path

    from reconciler.app.daemon import Daemon, DaemonConfig
    from reconciler.settings import Settings

    class Clock:
        t = 100.0

        def monotonic(self) -> float:
            return self.t

        def now(self) -> datetime:
            return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    base = Path(str(tmp_path))
    manifests = base / "m"
    manifests.mkdir()
    from reconciler.app.stores import migrate_database

    url = f"sqlite:///{base / 'state.db'}"
    migrate_database(url)
    clock = Clock()
    d = Daemon(Settings(database_url=url, journal_path=str(base / "j.db")), DaemonConfig(paths=(str(manifests),),
               interval=30, jitter=0.1), clock=clock, environ={})  # fmt: skip
    try:
        assert d.readiness() == (False, "no cycle has finished yet")
        d.cycle()
        assert d.readiness() == (True, "ready")
        clock.t += 3 * 33 - 1
        assert d.readiness()[0]
        clock.t += 2
        ok, why = d.readiness()
        assert not ok and "last cycle ended" in why
    finally:
        d.close()


def test_journal_retention_uses_the_injected_clock(tmp_path: object) -> None:
    from pathlib import Path

    from reconciler.adapters.journal import Journal
    from reconciler.app.daemon import Daemon, DaemonConfig
    from reconciler.app.stores import migrate_database
    from reconciler.settings import Settings

    class Clock:
        moment = datetime(2026, 1, 1, tzinfo=UTC)

        def monotonic(self) -> float:
            return 0.0

        def now(self) -> datetime:
            return self.moment

    base = Path(str(tmp_path))
    (base / "m").mkdir()
    url = f"sqlite:///{base / 'state.db'}"
    migrate_database(url)
    clock = Clock()
    settings = Settings(database_url=url, journal_path=str(base / "j.db"), journal_max_age_days=7)
    d = Daemon(settings, DaemonConfig(paths=(str(base / "m"),)), clock=clock, environ={})
    try:
        d.cycle()  # the empty manifest directory is invalid: journalled as a daemon-check run
        assert d.retention() == 0
        clock.moment += timedelta(days=8)
        assert d.retention() == 1
    finally:
        d.close()
    j = Journal(base / "j.db")
    try:
        assert j.runs() == []
    finally:
        j.close()


def test_the_cyclic_collector_is_paused_during_a_cycle_and_as_it_was_after(tmp_path: object) -> None:
    import gc
    from pathlib import Path

    from reconciler.app.daemon import Daemon, DaemonConfig
    from reconciler.app.stores import migrate_database
    from reconciler.settings import Settings

    base = Path(str(tmp_path))
    (base / "m").mkdir()
    url = f"sqlite:///{base / 'state.db'}"
    migrate_database(url)
    during: list[bool] = []

    def on_cycle(report: object) -> None:
        during.append(gc.isenabled())
        if len(during) == 2:
            raise RuntimeError("a listener failed")

    d = Daemon(Settings(database_url=url, journal_path=str(base / "j.db")), DaemonConfig(paths=(str(base / "m"),)),
               environ={}, on_cycle=on_cycle)  # fmt: skip
    try:
        assert gc.isenabled()
        d.cycle()
        assert during == [False] and gc.isenabled()
        with pytest.raises(RuntimeError, match="a listener failed"):
            d.cycle()
        assert gc.isenabled()  # back on even when the cycle raised
        gc.disable()  # an embedder that runs without the collector keeps it off
        try:
            d.cycle()
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        d.close()
