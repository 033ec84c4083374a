"""YAML text -> plain data plus the line and column of every key and value.

The documents are built from the parser's *events* rather than from ``yaml.compose``: this stays
iterative (a deeply nested document cannot exhaust the C stack, which crashes libyaml's composer), it
stops as soon as a limit is crossed, and it is several times faster than composing nodes and converting
them. Only the scalar types ``yaml.safe_load`` builds by default are accepted; any other tag
(``!!python/object``, ``!!binary``, ``!custom``...) is an issue located at the tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.model.json_path import JsonPath

MAX_DEPTH = 64
"""Manifests need 5 levels; anything deeper is a mistake or an attack on the parser."""
MAX_INT_DIGITS = 100
"""Manifests hold ports; a longer integer is refused before Python converts it (beyond 4,300 digits
``int()`` raises, and printing a huge hexadecimal one in a message would too)."""
MAX_ALIAS_EXPANSION = 1_000_000
"""Values reached through aliases, per file: bounds "billion laughs" documents."""

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "null", "bool", "int", "float", "timestamp"))
_INT = _TAG + "int"
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Constructor(yaml.constructor.SafeConstructor):
    """Builds scalars only; one shared instance (scalar construction keeps no state)."""


_CONSTRUCTOR = _Constructor()
_RESOLVER = yaml.resolver.Resolver()
# Plain scalar -> the tag it resolves to, shared by every file (names, images and ports repeat across a
# fleet's manifests); resolution depends on the text alone. Bounded in entries and in the length kept.
_RESOLVED: dict[str, str] = {}
_RESOLVED_MAX = 100_000
_RESOLVED_MAX_LENGTH = 200

Position = tuple[int, int]
"""1-based (line, column)."""


@dataclass(frozen=True)
class YamlIssue:
    line: int
    column: int
    path: JsonPath
    message: str


class Positions:
    """Where each key and value of a document's containers was written, looked up by JSON path.

    Keyed by ``id()`` of the containers, which are kept alive in ``_pinned`` so an id is never reused.
    """

    def __init__(self) -> None:
        self._maps: dict[int, dict[str, tuple[int, int, int, int]]] = {}
        self._seqs: dict[int, list[Position]] = {}
        self._pinned: list[object] = []

    def _add_map(self, container: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
        entry: dict[str, tuple[int, int, int, int]] = {}
        self._maps[id(container)] = entry
        self._pinned.append(container)
        return entry

    def _add_seq(self, container: list[Any]) -> list[Position]:
        entry: list[Position] = []
        self._seqs[id(container)] = entry
        self._pinned.append(container)
        return entry

    def of_items(self, container: list[Any]) -> list[Position]:
        """Where each item of a list from this document starts."""
        return self._seqs[id(container)]

    def of_key(self, container: dict[str, Any], key: str) -> Position:
        entry = self._maps[id(container)][key]
        return (entry[0], entry[1])

    def locate(self, root: Any, start: Position, path: JsonPath, *, key: bool = False) -> Position:
        """Position of the value at ``path`` (of its key when ``key``); the deepest known point on failure."""
        found = start
        current = root
        last = len(path) - 1
        for index, step in enumerate(path):
            if isinstance(current, dict) and isinstance(step, str):
                entry = self._maps.get(id(current), {}).get(step)
                if entry is None or step not in current:
                    return found
                found = (entry[0], entry[1]) if key and index == last else (entry[2], entry[3])
                current = current[step]
            elif isinstance(current, list) and isinstance(step, int):
                seq = self._seqs.get(id(current), [])
                if not 0 <= step < len(seq):
                    return found
                found = seq[step]
                current = current[step]
            else:
                return found
        return found


@dataclass
class YamlDocument:
    data: Any
    start: Position
    positions: Positions
    invalid: list[JsonPath] = field(default_factory=list)
    """Paths whose value could not be built (bad tag, bad key...): schema errors under them are noise."""
    printable: bool = False
    """Every string in it (keys too) is known to be printable ASCII: the line reader read it."""

    def locate(self, path: JsonPath, *, key: bool = False) -> Position:
        return self.positions.locate(self.data, self.start, path, key=key)


@dataclass
class ParsedFile:
    documents: list[YamlDocument]
    issues: list[YamlIssue]


class _Stop(Exception):
    """A limit was crossed: the rest of the file is not read."""


_INVALID = object()
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


def _type_name(tag: str) -> str:
    return tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _plain_tag(value: str) -> str:
    """The tag a plain (unquoted, untagged) scalar resolves to."""
    cached = _RESOLVED.get(value)
    if cached is None:
        cached = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        if len(value) <= _RESOLVED_MAX_LENGTH and len(_RESOLVED) < _RESOLVED_MAX:
            _RESOLVED[value] = cached
    return cached


def _scalar_value(tag: str, value: str) -> tuple[Any, str | None]:
    """The value of a scalar with this tag, or ``_INVALID`` and the problem."""
    if tag == _STR:
        return value, None
    too_large = f"integer is too large (more than {MAX_INT_DIGITS} digits)"
    if tag == _INT and value.isdigit() and value.isascii() and (value == "0" or value[0] != "0"):
        # Plain decimals (ports) without the constructor; signs, 0x, 0o, 1_000... take the full path.
        return (int(value), None) if len(value) <= MAX_INT_DIGITS else (_INVALID, too_large)
    if tag not in _SCALAR_TAGS:
        return _INVALID, f"unsupported YAML tag {_type_name(tag)}"
    if tag == _INT and sum(c.isalnum() for c in value) > MAX_INT_DIGITS + 2:  # 0x, 0o, 0b
        return _INVALID, too_large
    try:
        return _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, value)), None
    except Exception:  # the constructors raise ValueError, KeyError... on values like `!!int abc`
        return _INVALID, f"{value!r} is not a valid {_type_name(tag)}"
    finally:
        _CONSTRUCTOR.constructed_objects.clear()
        _CONSTRUCTOR.recursive_objects.clear()


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


def parse_yaml(text: str) -> ParsedFile:
    """Every document of ``text`` with positions, and every problem met (syntax errors end the file)."""
    simple = _parse_simple(text)
    if simple is not None:
        return simple
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


# The simple subset: what manifests are written in (block mappings and sequences, one key or item per line,
# plain or single-line quoted scalars, one-line flow lists and mappings of such scalars, comments, `---`).
# Every line of a file must match; anything else (tabs, CR, non-ASCII, anchors, tags, block or multi-line
# scalars, null values...) goes to the event path, which alone reports problems.
_UNSAFE = re.compile(r"[^\x20-\x7e\n]")
_KEY = r"[A-Za-z_][A-Za-z0-9_.-]*"
_QUOTED = r"\"[^\"\\\n]*\"|'[^'\n]*'"
_PLAIN = r"[A-Za-z0-9_./~$][^ :#\n]*(?:(?: +(?=[^ #\n])|:(?=[^ \n]))[^ :#\n]*)*"
_FLOW_ITEM = rf"[A-Za-z0-9_./~$][A-Za-z0-9_./~$@+=-]*|{_QUOTED}"
_FLOW_SEQ = rf"\[ *(?:(?:{_FLOW_ITEM})(?: *, *(?:{_FLOW_ITEM}))*)? *\]"
_FLOW_MAP = rf"\{{ *(?:{_KEY}: +(?:{_FLOW_ITEM})(?: *, *{_KEY}: +(?:{_FLOW_ITEM}))*)? *\}}"
_LINE = re.compile(
    rf"^(?:(---)|( *)(?:-( +))?(?:({_KEY}):( +|$))?({_PLAIN}|{_QUOTED}|{_FLOW_SEQ}|{_FLOW_MAP})?)"
    r"(?: *(?<![^ \n])#.*| *)$",
    re.MULTILINE,
)
_FLOW_ITEMS = re.compile(rf"({_FLOW_ITEM})")
_FLOW_PAIRS = re.compile(rf"({_KEY}): +({_FLOW_ITEM})")


class _NotSimple(Exception):
    """The text is outside the simple subset: the event path reads it."""


def _simple_scalar(text: str) -> Any:
    if text[0] in "\"'":
        return text[1:-1]
    tag = _RESOLVED.get(text) or _plain_tag(text)
    if tag == _STR:
        return text
    value, problem = _scalar_value(tag, text)
    if problem is not None:
        raise _NotSimple
    return value


def _simple_value(text: str, line: int, column: int, positions: Positions) -> Any:
    """A value written on one line at ``column`` (0-based): a scalar or a flow list or mapping."""
    first = text[0]
    if first == "[":
        items: list[Any] = []
        where = positions._add_seq(items)
        for match in _FLOW_ITEMS.finditer(text):
            items.append(_simple_scalar(match[1]))
            where.append((line, column + match.start() + 1))
        return items
    if first == "{":
        mapping: dict[str, Any] = {}
        entry = positions._add_map(mapping)
        for match in _FLOW_PAIRS.finditer(text):
            key = match[1]
            if key in mapping or (_RESOLVED.get(key) or _plain_tag(key)) != _STR:
                raise _NotSimple
            mapping[key] = _simple_scalar(match[2])
            entry[key] = (line, column + match.start() + 1, line, column + match.start(2) + 1)
        return mapping
    return _simple_scalar(text)


def _parse_simple(text: str) -> ParsedFile | None:
    """``parse_yaml`` for a file written in the simple subset, line by line; None for any other file."""
    if _UNSAFE.search(text) is not None:
        return None
    rows = _LINE.findall(text)
    if len(rows) != text.count("\n") + 1:
        return None  # some line is outside the subset
    try:
        return ParsedFile(_simple_documents(rows), [])
    except _NotSimple:
        return None


def _simple_documents(rows: list[tuple[str, str, str, str, str, str]]) -> list[YamlDocument]:
    documents: list[YamlDocument] = []
    document = YamlDocument(None, (1, 1), Positions(), printable=True)
    # The innermost open collection (indent -1: none yet) and the ones around it, innermost last.
    indent, is_map = -1, False
    top: Any = None  # the collection itself
    where: Any = None  # its positions: key -> (line, column, line, column), or one (line, column) per item
    stack: list[tuple[int, Any, Any, bool]] = []
    pending: str | None = None  # a key written without a value: the block under it is its value
    get = _RESOLVED.get
    for line, (marker, spaces, dash, key, gap, value) in enumerate(rows, 1):
        column = len(spaces)
        if key and not dash and column == indent and is_map and pending is None:
            pass  # another key of the current mapping (most lines)
        elif marker:
            if pending is not None:
                raise _NotSimple  # a null value
            if document.data is not None:
                documents.append(document)
            document = YamlDocument(None, (line, 1), Positions(), printable=True)
            indent, top, where, is_map, stack = -1, None, None, False, []
            continue
        elif not (dash or key or value):
            continue  # blank or comment
        elif pending is not None:
            # The first line of the block under a key: a mapping indented more, or a list indented at least
            # as much.
            if column < indent or (column == indent and not dash) or len(stack) >= MAX_DEPTH - 2:
                raise _NotSimple
            container: Any = [] if dash else {}
            inner = document.positions._add_seq(container) if dash else document.positions._add_map(container)
            top[pending] = container
            where[pending] = (*where[pending][:2], line, column + 1)
            stack.append((indent, top, where, is_map))
            indent, top, where, is_map = column, container, inner, not dash
            pending = None
        elif indent < 0:
            if document.data is not None or dash or not key:
                raise _NotSimple  # only a mapping at the root, once
            top = document.data = {}
            document.start = (line, column + 1)
            indent, where, is_map = column, document.positions._add_map(top), True
        else:
            while indent > column or (indent == column and not is_map and not dash):
                if not stack:
                    raise _NotSimple
                indent, top, where, is_map = stack.pop()
            if indent != column:
                raise _NotSimple
        if dash:
            if is_map:
                raise _NotSimple
            column += 1 + len(dash)
            if key:
                item: dict[str, Any] = {}
                top.append(item)
                where.append((line, column + 1))
                if len(stack) >= MAX_DEPTH - 2:
                    raise _NotSimple
                stack.append((indent, top, where, is_map))
                indent, top, where, is_map = column, item, document.positions._add_map(item), True
            elif value:
                if value[0] in "\"'[{" or (get(value) or _plain_tag(value)) != _STR:
                    top.append(_simple_value(value, line, column, document.positions))
                else:
                    top.append(value)
                where.append((line, column + 1))
                continue
            else:
                raise _NotSimple  # a null item
        elif not key:
            raise _NotSimple  # a scalar where a key belongs
        if key in top or (get(key) or _plain_tag(key)) != _STR:
            raise _NotSimple
        if not value:
            pending = key
            where[key] = (line, column + 1)
            continue
        at = column + len(key) + 1 + len(gap)
        if value[0] in "\"'[{":
            top[key] = _simple_value(value, line, at, document.positions)
        else:
            tag = get(value) or _plain_tag(value)
            if tag == _STR:
                top[key] = value
            elif tag == _INT and value.isdigit() and (value == "0" or value[0] != "0") and len(value) <= 18:
                top[key] = int(value)  # a port
            else:
                top[key] = _simple_scalar(value)
        where[key] = (line, column + 1, line, at + 1)
    if pending is not None:
        raise _NotSimple
    if document.data is not None:
        documents.append(document)
    return documents
