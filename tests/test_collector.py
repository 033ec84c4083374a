"""The collector pause: taken by several threads at once, the collector comes back as it was."""

from __future__ import annotations

import gc
import threading

from reconciler.collector import collector_paused


def test_overlapping_pauses_restore_the_collector_once_the_last_ends() -> None:
    assert gc.isenabled()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def second() -> None:
        first_in.wait()
        with collector_paused():
            second_in.set()
            first_out.wait()
            seen.append(gc.isenabled())  # the first pause ended, this one still runs

    t = threading.Thread(target=second)
    t.start()
    with collector_paused():
        first_in.set()
        second_in.wait()
        assert not gc.isenabled()
    first_out.set()
    t.join()
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_inside_still_restores_it() -> None:
    try:
        with collector_paused():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()
