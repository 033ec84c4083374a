"""apply on a terminal: the plan first, then a confirmation (only "yes" applies; --auto-approve skips it);
off a terminal it never asks. Progress lines say when each step starts and ends."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.e2e.conftest import World, all_containers, server


def apply_on_a_tty(w: World, answer: str, *extra: str) -> tuple[int, str, str]:
    main, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", str(w.manifests), *extra],
                                env=w.env, cwd=w.tmp, stdin=follower, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        os.write(main, answer.encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(main)
        os.close(follower)
    return proc.returncode, out, err


@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)
def test_apply_asks_on_a_terminal_and_only_yes_applies(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a")]})
    code, out, err = apply_on_a_tty(w, "no\n")
    assert code == 1 and "Apply cancelled" in err
    assert "+ create srv-a" in out and "Only 'yes' is accepted" in out
    assert "srv-a" not in all_containers(w, 0)
    code, out, err = apply_on_a_tty(w, "yes\n")
    assert code == 0, err
    assert out.index("+ create srv-a") < out.index("Only 'yes'")  # the plan first
    assert "[start] create tb0/srv-a" in err and "[ok after" in err
    assert all_containers(w, 0)["srv-a"]["state"] == "running"


@pytest.mark.parametrize("world_factory", ["sqlite"], indirect=True)
def test_auto_approve_and_no_terminal_never_ask(world_factory: Callable[..., World]) -> None:
    w = world_factory(1)
    w.write({"tb0": [server("srv-a")]})
    code, out, err = apply_on_a_tty(w, "", "--auto-approve")
    assert code == 0, err
    assert "Only 'yes'" not in out
    w.write({"tb0": [server("srv-a"), server("srv-b")]})
    command = [sys.executable, "-m", "reconciler", "apply", str(w.manifests)]
    done = subprocess.run(command, env=w.env, cwd=w.tmp, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 and "Only 'yes'" not in done.stdout and "+ create srv-b" in done.stdout
    assert "[start] create tb0/srv-b" in done.stderr
