"""The desired state a daemon acts on: the manifests re-read every cycle, with the last good state kept.

When the manifests are invalid, each file is loaded on its own: environments from files that are valid
take their new state, environments from broken files keep the state last loaded from a valid file, and
environments never loaded successfully are not acted on at all. An invalid manifest therefore never
shrinks the desired state, so it never causes a delete.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.errors import ManifestError
from reconciler.model.loader import environment_key, load_manifests, manifest_files, resolve_secrets
from reconciler.model.spec import Desired, EnvironmentSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    desired: Desired  # what to act on this cycle (may be partly last-good)
    secret_values: Mapping[str, str] = field(repr=False)
    valid: bool  # every file loaded and every secret resolved
    errors: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # environments acting on their last good state


@dataclass(frozen=True)
class DesiredMemory:
    """What a daemon remembers of the manifests between cycles (passed in and returned, never mutated)."""

    good: Mapping[str, EnvironmentSpec] = field(default_factory=dict)  # last good spec, by environment key
    last: tuple[bytes, Loaded] | None = None  # content signature and result of the last clean load


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


def load_desired(
    paths: Sequence[str], environ: Mapping[str, str], memory: DesiredMemory
) -> tuple[Loaded, DesiredMemory]:
    """The manifests as they are now, and the memory for the next cycle. Files are read every time; when
    their bytes are those of the last clean load, its result is reused instead of parsing and validating
    again (cheap idle cycles)."""
    signature = _signature(paths)
    if signature is not None and memory.last is not None and memory.last[0] == signature:
        return memory.last[1], memory
    loaded, good = _Loader(list(paths), environ, dict(memory.good)).load()
    last = (signature, loaded) if signature is not None and loaded.valid else None
    return loaded, DesiredMemory(good, last)


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
