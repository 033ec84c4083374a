"""The desired state a daemon acts on: the manifests re-read every cycle, with the last good state kept.

When the manifests are invalid, each file is loaded on its own: environments from files that are valid
take their new state, environments from broken files keep the state last loaded from a valid file, and
environments never loaded successfully are not acted on at all. An invalid manifest therefore never
shrinks the desired state, so it never causes a delete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.errors import ManifestError
from reconciler.model.loader import (
    MANIFEST_SUFFIXES,
    environment_key,
    load_manifests,
    manifest_files,
    resolve_secrets,
)
from reconciler.model.spec import Desired, EnvironmentSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    desired: Desired  # what to act on this cycle (may be partly last-good)
    secret_values: Mapping[str, str] = field(repr=False)
    valid: bool  # every file loaded and every secret resolved
    errors: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # environments acting on their last good state


# A file or directory changed less than this many seconds before its stat was taken (or after) may change
# again within one tick of the file system's clock, same size, without its stat showing it: such a tree is not
# stamped, and the next cycle reads the bytes again (git's "racily clean" files). Local file systems tick in
# milliseconds, FAT's modification time in 2 s; a network file system whose server clock lags this host's
# by more than a second narrows the margin by as much.
SETTLE_SECONDS = 3.0

Stat = tuple[object, ...]


@dataclass(frozen=True)
class DesiredMemory:
    """What a daemon remembers of the manifests between cycles (passed in and returned, never mutated)."""

    good: Mapping[str, EnvironmentSpec] = field(default_factory=dict)  # last good spec, by environment key
    last: tuple[bytes, Loaded] | None = None  # content signature and result of the last clean load
    # The stat of every path that can tell a change of the manifests (``_tree``), taken just before the bytes
    # of ``last`` were read: while each path stats the same, the bytes are those. None: read them next time.
    stamp: tuple[Stat, ...] | None = None


def _signature(paths: Sequence[str]) -> bytes | None:
    """A digest of every manifest file's name and bytes (re-read each cycle); None if one is unreadable."""
    files, problems = manifest_files(list(paths))
    if problems:
        return None
    h = hashlib.sha256()
    for file in files:
        try:
            raw = file.path.read_bytes()
        except OSError:
            return None
        h.update(b"%d:%s\n%d\n" % (len(file.display), file.display.encode(), len(raw)))
        h.update(raw)
    return h.digest()


def _tree(paths: Sequence[str]) -> list[str]:
    """Every path whose stat tells whether the manifests changed: each path given, each directory the loader
    walks under it (its mtime moves when an entry is added, removed or renamed) and each ``*.yaml``/``*.yml``
    entry there (a superset of the files ``manifest_files`` reads: a dangling link is stamped as such)."""
    out: list[str] = []
    for given in paths:
        out.append(given)
        if not os.path.isdir(given):
            continue
        for root, dirs, names in os.walk(given):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # as the loader: dot directories are not read
            out.append(root)
            out.extend(os.path.join(root, n) for n in names if n.endswith(MANIFEST_SUFFIXES) and n[0] != ".")
    return out


def _stat(path: str) -> tuple[Stat, tuple[int, ...]]:
    """The path's own stat and, for a symbolic link, its target's (or that it dangles); and the modification
    and change times among them."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return (path, "missing", exc.errno), ()
    own = (path, st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if not stat.S_ISLNK(st.st_mode):
        return own, (st.st_mtime_ns, st.st_ctime_ns)
    try:
        t = os.stat(path)
    except OSError:
        return (*own, "dangling"), (st.st_mtime_ns, st.st_ctime_ns)
    target = (t.st_mode, t.st_ino, t.st_dev, t.st_size, t.st_mtime_ns, t.st_ctime_ns)
    return (*own, *target), (st.st_mtime_ns, st.st_ctime_ns, t.st_mtime_ns, t.st_ctime_ns)


def _stamp(paths: Sequence[str], settle: float) -> tuple[Stat, ...] | None:
    """The stat of the tree now, or None while part of it changed less than ``settle`` seconds ago. It begins
    with the paths given, as given (another list of paths is another tree)."""
    recent = time.time_ns() - int(settle * 1e9)
    stamp: list[Stat] = [tuple(paths)]
    for path in _tree(paths):
        entry, times = _stat(path)
        if any(t >= recent for t in times):
            return None
        stamp.append(entry)
    return tuple(stamp)


def _unchanged(stamp: tuple[Stat, ...], paths: Sequence[str]) -> bool:
    return stamp[0] == tuple(paths) and all(_stat(str(entry[0]))[0] == entry for entry in stamp[1:])


def load_desired(
    paths: Sequence[str], environ: Mapping[str, str], memory: DesiredMemory, *, settle: float = SETTLE_SECONDS
) -> tuple[Loaded, DesiredMemory]:
    """The manifests as they are now, and the memory for the next cycle. When every file and directory stats
    as it did just before the last clean load read them (and had settled then: ``settle``), that load is
    reused without reading a byte; otherwise the files are read, and when their bytes are those of the last
    clean load, its result is reused instead of parsing and validating again (cheap idle cycles)."""
    if memory.stamp is not None and memory.last is not None and _unchanged(memory.stamp, paths):
        return memory.last[1], memory
    stamp = _stamp(paths, settle)  # before the bytes are read: a write after it changes a stat
    signature = _signature(paths)
    if signature is not None and memory.last is not None and memory.last[0] == signature:
        return memory.last[1], replace(memory, stamp=stamp)
    loaded, good = _Loader(list(paths), environ, dict(memory.good)).load()
    last = (signature, loaded) if signature is not None and loaded.valid else None
    return loaded, DesiredMemory(good, last, stamp if last is not None else None)


class _Loader:
    """One load, over a private copy of the last good specs."""

    def __init__(self, paths: list[str], environ: Mapping[str, str], good: dict[str, EnvironmentSpec]) -> None:
        self.paths, self.environ, self._good = paths, environ, good

    def load(self) -> tuple[Loaded, dict[str, EnvironmentSpec]]:
        try:
            desired = load_manifests(self.paths)
        except ManifestError as exc:
            return self._partial(exc), self._good
        fresh, values, errors = self._with_secrets(desired.environments)
        if errors:
            return self._merge(fresh, values, errors, desired.digest), self._good
        good = {environment_key(e.environment): e for e in desired.environments}
        return Loaded(desired, values, valid=True), good

    def _with_secrets(
        self, environments: Sequence[EnvironmentSpec]
    ) -> tuple[list[EnvironmentSpec], dict[str, str], list[str]]:
        """The environments whose secrets all resolve, their values, and the errors of the others."""
        ok: list[EnvironmentSpec] = []
        values: dict[str, str] = {}
        errors: list[str] = []
        for env in environments:
            try:
                values.update(resolve_secrets(Desired((env,)), self.environ))
            except ManifestError as exc:
                errors.extend(str(i) for i in exc.issues)
                continue
            ok.append(env)
        return ok, values, errors

    def _partial(self, error: ManifestError) -> Loaded:
        files, _ = manifest_files(self.paths)
        fresh: list[EnvironmentSpec] = []
        seen: dict[str, int] = {}
        for file in files:
            try:
                one = load_manifests([str(file.path)])
            except ManifestError:
                continue
            for env in one.environments:
                key = environment_key(env.environment)
                seen[key] = seen.get(key, 0) + 1
                fresh.append(env)
        # An environment declared in two files is itself an error: keep its last good state instead.
        fresh = [e for e in fresh if seen[environment_key(e.environment)] == 1]
        ok, values, errors = self._with_secrets(fresh)
        return self._merge(ok, values, [str(i) for i in error.issues] + errors, "invalid")

    def _merge(
        self, fresh: list[EnvironmentSpec], values: dict[str, str], errors: list[str], digest: str
    ) -> Loaded:
        by_key = {environment_key(e.environment): e for e in fresh}
        kept: list[str] = []
        for key, env in self._good.items():
            if key in by_key:
                continue
            # The last good state is usable only while its secrets are still set.
            _, kept_values, missing = self._with_secrets([env])
            if missing:
                log.warning(
                    "environment %s: last good state needs secrets that are no longer set", env.environment
                )
                continue
            values.update(kept_values)
            by_key[key] = env
            kept.append(env.environment)
        for env in fresh:
            self._good[environment_key(env.environment)] = env
        environments = tuple(sorted(by_key.values(), key=lambda e: environment_key(e.environment)))
        desired = Desired(environments=environments, digest=digest, files=tuple(str(Path(p)) for p in self.paths))
        return Loaded(desired, values, valid=False, errors=tuple(errors), kept=tuple(sorted(kept)))
