"""YAML text -> documents with positions, from libyaml's events: every file the line reader does not take.

The documents are built from the parser's *events* rather than from ``yaml.compose``: this stays
iterative (a deeply nested document cannot exhaust the C stack, which crashes libyaml's composer), it
stops as soon as a limit is crossed, and it is several times faster than composing nodes and converting
them. Only the scalar types ``yaml.safe_load`` builds by default are accepted; any other tag
(``!!python/object``, ``!!binary``, ``!custom``...) is an issue located at the tag.

Imported only when a file needs it: importing PyYAML is a quarter of ``reconciler validate``'s start-up.
"""

from __future__ import annotations

from typing import Any

import yaml

from reconciler.model.json_path import JsonPath
from reconciler.model.yaml_lines import (
    _INVALID,
    _RESOLVED,
    _STR,
    _TAG,
    MAX_ALIAS_EXPANSION,
    MAX_DEPTH,
    ParsedFile,
    Position,
    Positions,
    YamlDocument,
    YamlIssue,
    _plain_tag,
    _scalar_value,
    _type_name,
)

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Constructor(yaml.constructor.SafeConstructor):
    """Builds scalars only; one shared instance (scalar construction keeps no state)."""


_CONSTRUCTOR = _Constructor()


def construct(tag: str, value: str) -> Any:
    """PyYAML's value for a scalar of a tag ``yaml.safe_load`` builds; raises on a bad value."""
    try:
        return _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, value))
    finally:
        _CONSTRUCTOR.constructed_objects.clear()
        _CONSTRUCTOR.recursive_objects.clear()


class _Stop(Exception):
    """A limit was crossed: the rest of the file is not read."""


_BAD_KEY = object()


class _Frame:
    __slots__ = ("anchor", "container", "is_map", "key", "key_pos", "path", "positions", "start_count")

    def __init__(
        self, container: Any, positions: Any, path: JsonPath, *, anchor: str | None, count: int, is_map: bool
    ) -> None:
        self.is_map = is_map
        self.container = container
        self.positions = positions
        self.path = path
        self.anchor = anchor
        self.start_count = count
        self.key: Any = None  # None: a mapping waits for a key; else the key whose value comes next
        self.key_pos: Position = (0, 0)


def _pos(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.documents: list[YamlDocument] = []
        self.issues: list[YamlIssue] = []
        self._expanded = 0
        self._resolved = _RESOLVED

    def issue(self, pos: Position, path: JsonPath, message: str) -> None:
        self.issues.append(YamlIssue(pos[0], pos[1], path, message))

    def run(self, loader: Any) -> None:
        # Dispatch on exact event types and resolve plain scalars through a cache: this loop sees
        # every value of every manifest, and at 100k servers the usual isinstance chains dominate.
        stack: list[_Frame] = []
        anchors: dict[str, tuple[Any, int]] = {}
        document: YamlDocument | None = None
        count = 0
        skip = 0  # > 0 while skipping a complex (non-string) key's subtree
        get_event = loader.get_event
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        mapping_end, sequence_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
        resolved = self._resolved  # plain scalar -> its implicit tag, filled by _tag

        while (event := get_event()) is not None:
            kind = type(event)
            if skip:
                if kind is mapping_start or kind is sequence_start:
                    skip += 1
                elif kind is mapping_end or kind is sequence_end:
                    skip -= 1
                continue
            if document is None:
                if kind is yaml.DocumentStartEvent:
                    document = YamlDocument(None, _pos(event.start_mark), Positions())
                    anchors = {}
                    count = 0
                continue  # stream start/end
            if kind is mapping_end or kind is sequence_end:
                frame = stack.pop()
                if frame.anchor:
                    anchors[frame.anchor] = (frame.container, count - frame.start_count + 1)
                continue
            if kind is yaml.DocumentEndEvent:
                if document.data is not None:
                    self.documents.append(document)
                document = None
                continue
            mark = event.start_mark
            pos = (mark.line + 1, mark.column + 1)
            parent = stack[-1] if stack else None

            if parent is not None and parent.is_map and parent.key is None:
                # A key is expected.
                parent.key_pos = pos
                if kind is scalar_event:
                    # Fast path: an untagged plain or quoted key that reads as a string (almost every key).
                    if event.tag is None and (not event.implicit[0] or resolved.get(event.value) == _STR):
                        parent.key = event.value
                    else:
                        parent.key = self._key(event, pos, parent, document)
                    continue
                if kind is alias_event:
                    self.issue(pos, parent.path, "mapping keys must be plain strings, not aliases")
                else:
                    self.issue(pos, parent.path, "mapping keys must be plain strings")
                    skip = 1 if kind is mapping_start or kind is sequence_start else 0
                document.invalid.append(parent.path)
                parent.key = _BAD_KEY
                continue

            if kind is scalar_event and parent is not None and event.tag is None and not event.anchor:
                # Fast path: an untagged string value in a mapping or a sequence (most values).
                value = event.value
                if not event.implicit[0] or resolved.get(value) == _STR:
                    if not parent.is_map:
                        count += 1
                        parent.container.append(value)
                        parent.positions.append(pos)
                        continue
                    key = parent.key
                    if key is not _BAD_KEY and key not in parent.container:
                        count += 1
                        parent.key = None
                        parent.container[key] = value
                        parent.positions[key] = (*parent.key_pos, *pos)
                        continue
            if kind is scalar_event:
                count += 1
                value = self._scalar(event, pos, parent, document)
                if event.anchor:
                    anchors[event.anchor] = (value, 1)
                self._attach(parent, document, value, pos)
            elif kind is alias_event:
                anchored = anchors.get(event.anchor) if event.anchor else None
                if anchored is None:
                    path = self._child_path(parent)
                    self.issue(pos, path, f"alias *{event.anchor} refers to no complete anchor before it")
                    document.invalid.append(path)
                    value = _INVALID
                else:
                    value, size = anchored
                    count += size  # so that an anchor holding this alias counts the expanded size
                    self._expanded += size
                    if self._expanded > MAX_ALIAS_EXPANSION:
                        path = self._child_path(parent)
                        self.issue(pos, path, f"aliases expand to more than {MAX_ALIAS_EXPANSION} values")
                        raise _Stop
                self._attach(parent, document, value, pos)
            else:  # mapping or sequence start
                count += 1
                path = self._child_path(parent)
                if len(stack) >= MAX_DEPTH:
                    self.issue(pos, path, f"nesting deeper than {MAX_DEPTH} levels")
                    raise _Stop
                is_map = kind is mapping_start
                self._check_collection_tag(event, pos, path, document, is_map=is_map)
                container: Any = {} if is_map else []
                frame_pos = (
                    document.positions._add_map(container) if is_map else document.positions._add_seq(container)
                )
                self._attach(parent, document, container, pos)
                stack.append(_Frame(container, frame_pos, path, anchor=event.anchor, count=count, is_map=is_map))

    @staticmethod
    def _child_path(parent: _Frame | None) -> JsonPath:
        if parent is None:
            return ()
        if not parent.is_map:
            return (*parent.path, len(parent.container))
        if parent.key is None or parent.key is _BAD_KEY:
            return parent.path
        return (*parent.path, parent.key)

    def _attach(self, parent: _Frame | None, document: YamlDocument, value: Any, pos: Position) -> None:
        if parent is None:
            document.data = value
            document.start = pos
            return
        if not parent.is_map:
            parent.container.append(value)
            parent.positions.append(pos)
            return
        key = parent.key
        parent.key = None
        if key is _BAD_KEY:
            return
        if key in parent.container:
            first = parent.positions[key]
            self.issue(parent.key_pos, (*parent.path, key), f"duplicate key '{key}' (first at line {first[0]})")
            document.invalid.append((*parent.path, key))
            return
        parent.container[key] = value
        parent.positions[key] = (*parent.key_pos, *pos)

    def _tag(self, event: yaml.ScalarEvent) -> str:
        tag: str | None = event.tag
        if tag is not None and tag != "!":
            return tag
        if not event.implicit[0]:
            return _STR  # quoted, or tagged '!'
        return _plain_tag(event.value)

    def _key(self, event: yaml.ScalarEvent, pos: Position, parent: _Frame, document: YamlDocument) -> Any:
        tag = self._tag(event)
        if tag == _STR:
            return event.value
        if tag == _TAG + "merge":
            self.issue(pos, parent.path, "merge keys (<<) are not supported; write the keys out")
        else:
            self.issue(
                pos,
                parent.path,
                f"mapping key {event.value!r} reads as {_type_name(tag)}, not a string (quote it)",
            )
        document.invalid.append(parent.path)
        return _BAD_KEY

    def _scalar(
        self, event: yaml.ScalarEvent, pos: Position, parent: _Frame | None, document: YamlDocument
    ) -> Any:
        value, problem = _scalar_value(self._tag(event), event.value)
        if problem is not None:
            path = self._child_path(parent)
            self.issue(pos, path, problem)
            document.invalid.append(path)
        return value

    def _check_collection_tag(
        self,
        event: yaml.CollectionStartEvent,
        pos: Position,
        path: JsonPath,
        document: YamlDocument,
        *,
        is_map: bool,
    ) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            return
        wanted = _TAG + ("map" if is_map else "seq")
        if tag != wanted:
            self.issue(pos, path, f"unsupported YAML tag {_type_name(tag)}")
            document.invalid.append(path)


def parse_events(text: str) -> ParsedFile:
    """``parse_yaml`` from libyaml's events: any text."""
    builder = _Builder()
    loader = _Loader(text)
    try:
        builder.run(loader)
    except _Stop:
        pass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _pos(mark) if mark is not None else (1, 1)
        problem = exc.problem or "invalid YAML"
        if "maximum nesting depth" in problem:
            # libyaml 0.2.5+ (PyYAML 6.0.2+ wheels) stops deep flow collections in its scanner, before
            # our own depth check sees an event: report both the same way.
            builder.issue(where, (), f"nesting deeper than {MAX_DEPTH} levels")
        else:
            context = f" ({exc.context})" if exc.context else ""
            builder.issue(where, (), f"YAML syntax error: {problem}{context}")
    except yaml.YAMLError as exc:
        # ReaderError (control characters...) carries an offset, not a line.
        position = getattr(exc, "position", None)
        where = _offset_position(text, position) if isinstance(position, int) else (1, 1)
        reason = getattr(exc, "reason", None) or "unreadable YAML"
        builder.issue(where, (), f"YAML error: {reason}")
    finally:
        loader.dispose()
    return ParsedFile(builder.documents, builder.issues)


def _offset_position(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return (line, offset - (text.rfind("\n", 0, offset) + 1) + 1)
