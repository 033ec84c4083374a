"""The daemon's pid file, which ``reconciler reconcile-now`` reads to send the daemon SIGHUP.

The daemon keeps an exclusive flock on the file for its whole life. A reader trusts the pid only while that
lock is held, so a pid file left behind by a daemon that died (whose pid may now be another process) is never
signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from pathlib import Path

from reconciler.errors import ConfigError

NAME = "daemon.pid"


def beside(journal_path: str) -> Path:
    """The default place: ``daemon.pid`` in the directory of the journal (``.reconciler/`` by default)."""
    return Path(journal_path).resolve().parent / NAME


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Write this process's pid under an exclusive lock; False when another live daemon holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # releases the flock
        self._fd = None


def running_pid(path: Path) -> int:
    """The pid of the daemon holding ``path``; ConfigError when no daemon holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ConfigError(
            f"no daemon pid file at {path}: is `reconciler run` running with this journal?"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the daemon pid file {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            if text.isdigit():
                return int(text)
            raise ConfigError(f"the daemon pid file {path} holds no pid ({text[:20]!r})") from None
        raise ConfigError(f"no daemon is running: {path} is left from one that stopped")
    finally:
        os.close(fd)


def poke(path: Path) -> int:
    """Send SIGHUP (reconcile now) to the daemon that holds ``path``; returns its pid."""
    pid = running_pid(path)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ConfigError(f"the daemon (pid {pid}) in {path} is gone") from None
    except PermissionError:
        raise ConfigError(f"not allowed to signal the daemon (pid {pid}): run as its user") from None
    return pid
