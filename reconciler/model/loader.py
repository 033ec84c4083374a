"""Manifest files -> ``Desired``: read, parse with positions, check the schema and the semantics, build.

Every problem in every file is collected before anything is raised, so one run of ``reconciler
validate`` shows them all, each as ``file:line:column: path: message``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from reconciler.collector import collector_paused
from reconciler.errors import ManifestError, ManifestIssue
from reconciler.model.json_path import JsonPath, format_path
from reconciler.model.schema_check import SchemaIssue, check_document
from reconciler.model.secrets_resolve import resolve_secrets, secret_fingerprints
from reconciler.model.semantic import check_names, check_servers
from reconciler.model.spec import (
    Desired,
    DesiredState,
    EnvironmentPolicy,
    EnvironmentSpec,
    EnvValue,
    OnUnhealthy,
    ReadinessSpec,
    ReadinessType,
    SecretRef,
    ServerSpec,
    SourceRef,
    Transport,
)
from reconciler.model.yaml_lines import YamlDocument, parse_yaml

__all__ = [
    "MAX_FILE_BYTES",
    "ReadAhead",
    "environment_hints",
    "load_manifests",
    "manifest_files",
    "read_ahead",
    "resolve_secrets",
    "secret_fingerprints",
]

MAX_FILE_BYTES = 10 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml")
MANIFEST_KEYS = frozenset({"apiVersion", "kind", "environment", "servers"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class ManifestFile:
    path: Path
    display: str
    """As the user would write it: ``examples/coding-toolbox.yaml``."""
    digest_name: str
    """Name entering the digest: relative to the directory given, or the file's own name, so that
    ``manifests/`` and ``./manifests`` (or another checkout) give the same digest."""
    found: bool = False
    """Found in a directory rather than named: skipped when it is not a manifest at all."""


def _clean(message: str) -> str:
    # One issue, one line: control characters from keys or values must not break the format.
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in message)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _issue(file: str, line: int, column: int, path: JsonPath, message: str) -> ManifestIssue:
    return ManifestIssue(file, line, column, format_path(path), _clean(message))


def _stat_file(path: str | Path) -> os.stat_result | None:
    """``os.stat`` of a regular file (symlinks followed), None for anything else: ``Path.is_file``, keeping
    the stat for the duplicate check."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return None
        raise
    except ValueError:  # a NUL in the name
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _yaml_files_under(folder: Path) -> list[tuple[tuple[str, ...], os.stat_result]]:
    """``*.yaml``/``*.yml`` in ``folder`` and its subdirectories (one per environment, say): the parts of each
    path relative to ``folder`` and its stat, sorted by path; dotfiles and dot directories (``.git``,
    ``.reconciler``) skipped, symlinked directories not followed (no loops)."""
    found: list[tuple[tuple[str, ...], os.stat_result]] = []
    top = os.fspath(folder)
    parts_of: dict[str, tuple[str, ...]] = {top: ()}
    for root, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        here = parts_of.pop(root)
        for d in dirs:
            parts_of[os.path.join(root, d)] = (*here, d)  # as os.walk names it
        for name in names:
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                info = _stat_file(os.path.join(root, name))
                if info is not None:
                    found.append(((*here, name), info))
    found.sort(key=lambda entry: entry[0])
    return found


def manifest_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[ManifestFile], list[ManifestIssue]]:
    """Files named, and ``*.yaml``/``*.yml`` in directories named and their subdirectories (sorted, no
    dotfiles)."""
    files: list[ManifestFile] = []
    issues: list[ManifestIssue] = []
    seen: set[tuple[int, int]] = set()

    def add(info: os.stat_result, path: Path, display: str, digest_name: str, found: bool = False) -> None:
        # The same file named twice (or through a symlink) is read once: one stat, not a realpath per file.
        key = (info.st_dev, info.st_ino)
        if key not in seen:
            seen.add(key)
            files.append(ManifestFile(path, display, digest_name, found))

    for given in paths:
        path = Path(given)
        display = os.fspath(given)
        # A directory or a missing path has no line to point at: such issues carry no position.
        if path.is_dir():
            entries = _yaml_files_under(path)
            if not entries:
                message = "directory holds no *.yaml or *.yml file, nor do its subdirectories"
                issues.append(_issue(display, 0, 0, (), message))
            for parts, info in entries:
                child = path.joinpath(*parts)
                add(info, child, str(child), "/".join(parts), found=True)
        elif (named := _stat_file(path)) is not None:
            add(named, path, display, path.name)
        else:
            issues.append(_issue(display, 0, 0, (), "no such file or directory"))
    return files, issues


def _read(file: ManifestFile) -> tuple[bytes | None, ManifestIssue | None]:
    try:
        with open(file.path, "rb") as handle:
            # At most MAX_FILE_BYTES + 1 bytes, without a buffer of that size per file: up to the size the
            # file has, then whatever it grew by since.
            raw = handle.read(min(os.fstat(handle.fileno()).st_size, MAX_FILE_BYTES) + 1)
            if len(raw) <= MAX_FILE_BYTES:
                raw += handle.read(MAX_FILE_BYTES + 1 - len(raw))
    except OSError as exc:
        return None, _issue(file.display, 1, 1, (), f"cannot read the file: {exc.strerror or exc}")
    if len(raw) > MAX_FILE_BYTES:
        return None, _issue(file.display, 1, 1, (), "file is larger than 10 MB; split it into several files")
    return raw, None


def _decode(raw: bytes, display: str) -> tuple[str | None, ManifestIssue | None]:
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, _issue(display, line, column, (), f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})")


_ENVIRONMENT_LINE = re.compile(rb"""^environment:[ \t]*(["']?)([^"'#\r\n]*?)\1[ \t]*(?:#.*)?\r?$""", re.MULTILINE)


@dataclass(frozen=True)
class ReadAhead:
    """The manifest files of ``paths`` and their bytes, read once: ``plan`` takes its environment hints from
    them while the listings start, then loads them, instead of finding and reading every file twice."""

    paths: tuple[str, ...]
    files: tuple[ManifestFile, ...]
    issues: tuple[ManifestIssue, ...]
    contents: tuple[tuple[bytes | None, ManifestIssue | None], ...]
    """What reading each file gave: its bytes, or the issue."""

    def environment_hints(self) -> frozenset[str]:
        """The environments the manifests most likely declare, read from their top-level ``environment:``
        lines without parsing them: a hint for starting work early (``plan`` lists these toolboxes while it
        loads), never a substitute for ``load_manifests``."""
        found: set[str] = set()
        for raw, _ in self.contents:
            if raw is not None:
                found.update(m[2].decode("utf-8", "replace").strip() for m in _ENVIRONMENT_LINE.finditer(raw))
        return frozenset(f for f in found if f)


def _names_of(paths: Sequence[str | os.PathLike[str]]) -> tuple[str, ...]:
    return tuple(os.fspath(p) for p in paths)


def read_ahead(paths: Sequence[str | os.PathLike[str]]) -> ReadAhead:
    """Find and read the manifest files of ``paths`` (see ``ReadAhead``)."""
    files, issues = manifest_files(paths)
    return ReadAhead(_names_of(paths), tuple(files), tuple(issues), tuple(map(_read, files)))


def environment_hints(paths: Sequence[str | os.PathLike[str]]) -> frozenset[str]:
    """``ReadAhead.environment_hints`` of ``paths``."""
    return read_ahead(paths).environment_hints()


def load_manifests(paths: Sequence[str | os.PathLike[str]], *, read: ReadAhead | None = None) -> Desired:
    """Load, check and build every manifest; raise ``ManifestError`` with every issue found. ``read``: the
    files and bytes ``read_ahead(paths)`` found, used instead of reading them again."""
    # Loading allocates a few objects per line of YAML and frees them by reference counting (nothing it
    # builds holds a cycle), so the cyclic collector's passes, over a heap that holds every spec built so
    # far (and a daemon's whole state), are pure cost. It runs again, if it ran before, once loading is done.
    with collector_paused():
        return _load(paths, read if read is not None and read.paths == _names_of(paths) else None)


def _load(paths: Sequence[str | os.PathLike[str]], ahead: ReadAhead | None) -> Desired:
    contents: Iterable[tuple[bytes | None, ManifestIssue | None]]
    if ahead is None:
        files, issues = manifest_files(paths)
        contents = map(_read, files)  # one file at a time
    else:
        files, issues, contents = list(ahead.files), list(ahead.issues), ahead.contents
    digest = hashlib.sha256()
    environments: list[EnvironmentSpec] = []
    declared: dict[str, SourceRef] = {}

    skipped: list[str] = []
    read: list[str] = []

    for file, (raw, unread) in zip(files, contents, strict=True):
        if raw is None:
            issues.append(cast(ManifestIssue, unread))
            continue
        text, problem = _decode(raw, file.display)
        parsed = parse_yaml(text) if text is not None else None
        if file.found and parsed is not None and _not_a_manifest(parsed.documents):
            skipped.append(file.display)
            continue
        read.append(file.display)
        name = file.digest_name.encode()
        digest.update(b"%d:%s\n%d\n" % (len(name), name, len(raw)))
        digest.update(raw)
        if parsed is None:
            issues.append(cast(ManifestIssue, problem))
            continue
        issues.extend(_issue(file.display, i.line, i.column, i.path, i.message) for i in parsed.issues)
        if not parsed.documents and not parsed.issues:
            issues.append(_issue(file.display, 1, 1, (), "the file holds no manifest document"))
        for document in parsed.documents:
            spec, document_issues = _document(document, file.display)
            issues.extend(document_issues)
            _check_declared_once(document, file.display, declared, issues)
            if spec is not None and not document_issues:
                environments.append(spec)

    if issues:
        raise ManifestError(issues)
    return Desired(
        environments=tuple(environments),
        digest="sha256:" + digest.hexdigest(),
        files=tuple(read),
        skipped=tuple(skipped),
    )


def _not_a_manifest(documents: Sequence[YamlDocument]) -> bool:
    """Mappings none of which holds a manifest key: a CI workflow or a compose file beside the manifests.
    A manifest with a typo still has some of the four keys, so it is checked, not skipped."""
    return bool(documents) and all(
        isinstance(d.data, dict) and not (MANIFEST_KEYS & d.data.keys()) for d in documents
    )


def environment_key(environment: str) -> str:
    """How two declarations of one toolbox are recognised: ids ignore case, names do not."""
    return environment.lower() if _UUID.fullmatch(environment) else environment


def _check_declared_once(
    document: YamlDocument, file: str, declared: dict[str, SourceRef], issues: list[ManifestIssue]
) -> None:
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("environment"), str):
        return
    line, column = document.locate(("environment",))
    here = SourceRef(file, line, column)
    first = declared.setdefault(environment_key(data["environment"]), here)
    if first is not here:
        issues.append(
            _issue(
                file,
                line,
                column,
                ("environment",),
                f"environment {data['environment']!r} is declared twice: at {first} and at {here}",
            )
        )


def _under(path: JsonPath, prefixes: list[JsonPath]) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in prefixes)


def _document(document: YamlDocument, file: str) -> tuple[EnvironmentSpec | None, list[ManifestIssue]]:
    data = document.data
    if not isinstance(data, dict):
        if document.invalid:
            return None, []  # already reported where the value could not be built
        line, column = document.start
        message = "a manifest document must be a mapping with apiVersion, kind, environment and servers"
        return None, [_issue(file, line, column, (), message)]

    # Text the line reader took holds no control character (check_names would find nothing).
    names = [] if document.printable else check_names(data)
    named = {i.path for i in names}  # one clear message per name, not also the pattern's
    found: list[SchemaIssue] = [
        i for i in check_document(data) if not _under(i.path, document.invalid) and i.path not in named
    ]
    found.extend(names)
    found.extend(check_servers(data, lambda path: document.locate(path)[0]))
    issues = []
    for item in found:
        line, column = document.locate(item.path, key=item.at_key)
        issues.append(_issue(file, line, column, item.path, item.message))
    if issues or document.invalid:
        return None, issues
    return _build(document, file), []


def _opt_int(value: Any) -> int | None:
    # The schema admits 8080.0 as an integer; the spec holds ints.
    return None if value is None else int(value)


_NO_READINESS = ReadinessSpec()  # shared by every server that declares none (it is immutable)


def _readiness(raw: dict[str, Any] | None) -> ReadinessSpec:
    if not raw:
        return _NO_READINESS
    timeout = raw.get("timeout")
    return ReadinessSpec(
        type=cast(ReadinessType | None, raw.get("type")),
        path=raw.get("path"),
        timeout=None if timeout is None else float(timeout),
        failure_threshold=_opt_int(raw.get("failureThreshold")),
    )


def _build(document: YamlDocument, file: str) -> EnvironmentSpec:
    """Only called on a document the schema accepted, so the shapes are known."""
    data: dict[str, Any] = document.data
    servers: list[ServerSpec] = []
    positions = document.positions
    for (line, column), raw in zip(positions.of_items(data["servers"]), data["servers"], strict=True):
        env: list[tuple[str, EnvValue]] = []
        for key, value in (raw.get("env") or {}).items():
            if isinstance(value, dict):
                where = positions.of_key(value, "secretFromEnv")
                env.append((key, SecretRef(value["secretFromEnv"], source=SourceRef(file, *where))))
            else:
                env.append((key, value))
        servers.append(
            ServerSpec(
                name=raw["name"],
                image=raw["image"],
                transport=cast(Transport, raw["transport"]),
                endpoint=raw.get("endpoint"),
                port=_opt_int(raw.get("port")),
                host_port=_opt_int(raw.get("hostPort")),
                host_ip=raw.get("hostIp"),
                capabilities=tuple(raw.get("capabilities", ())),
                state=cast(DesiredState, raw.get("state", "running")),
                env=tuple(env),
                protect=raw.get("protect", False),
                source=SourceRef(file, line, column),
                readiness=_readiness(raw.get("readiness")),
                tools=tuple(raw["tools"]) if "tools" in raw else None,
                on_unhealthy=cast(OnUnhealthy, raw.get("onUnhealthy", "none")),
            )
        )
    policy = data.get("policy", {})
    return EnvironmentSpec(
        environment=data["environment"],
        servers=tuple(servers),
        policy=EnvironmentPolicy(
            prune=policy.get("prune", False),
            allow_empty=policy.get("allowEmpty", False),
            adopt=policy.get("adopt", False),
        ),
        source=SourceRef(file, *document.start),
    )
