"""YAML text -> plain data plus the line and column of every key and value.

A file written in the simple subset manifests use (see ``_parse_simple``) is read here, line by line,
without PyYAML; any other file, and any file with a problem, is read from libyaml's events by
``yaml_events``, which alone reports problems. Both give the same documents for a text the line reader
takes. Only the scalar types ``yaml.safe_load`` builds by default are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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
_BOOL = _TAG + "bool"
_NULL = _TAG + "null"
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


_INVALID = object()


def _type_name(tag: str) -> str:
    return tag[len(_TAG) :] if tag.startswith(_TAG) else tag


# PyYAML's implicit resolvers (``yaml.resolver.Resolver``), copied so that reading a file in the simple subset
# needs no PyYAML: (tag, pattern, the first characters it applies to), in PyYAML's order. A test checks
# that the table is PyYAML's.
_IMPLICIT = (
    (
        "tag:yaml.org,2002:bool",
        re.compile(r'''^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$''', re.X),
        "yYnNtTfFoO",
    ),
    (
        "tag:yaml.org,2002:float",
        re.compile(r'''^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$''', re.X),
        "-+0123456789.",
    ),
    (
        "tag:yaml.org,2002:int",
        re.compile(r'''^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$''', re.X),
        "-+0123456789",
    ),
    ("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), "<"),
    (
        "tag:yaml.org,2002:null",
        re.compile(r'''^(?: ~
                    |null|Null|NULL
                    | )$''', re.X),
        ("~", "n", "N", ""),
    ),
    (
        "tag:yaml.org,2002:timestamp",
        re.compile(r'''^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$''', re.X),
        "0123456789",
    ),
    ("tag:yaml.org,2002:value", re.compile(r"^(?:=)$"), "="),
    ("tag:yaml.org,2002:yaml", re.compile(r"^(?:!|&|\*)$"), "!&*"),
)  # fmt: skip
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _tag, _pattern, _firsts in _IMPLICIT:
    for _first in _firsts:
        _RESOLVERS.setdefault(_first, []).append((_tag, _pattern))
_BOOL_VALUES = {"yes": True, "no": False, "true": True, "false": False, "on": True, "off": False}
"""PyYAML's ``SafeConstructor.bool_values``."""


def _plain_tag(value: str) -> str:
    """The tag a plain (unquoted, untagged) scalar resolves to, as PyYAML's resolver gives it."""
    cached = _RESOLVED.get(value)
    if cached is None:
        cached = next((t for t, p in _RESOLVERS.get(value[:1], ()) if p.match(value)), _STR)
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
    # Booleans and nulls as PyYAML's constructors build them, without importing PyYAML.
    if tag == _NULL:
        return None, None
    if tag == _BOOL and value.lower() in _BOOL_VALUES:
        return _BOOL_VALUES[value.lower()], None
    from reconciler.model.yaml_events import construct

    try:
        return construct(tag, value), None
    except Exception:  # the constructors raise ValueError, KeyError... on values like `!!int abc`
        return _INVALID, f"{value!r} is not a valid {_type_name(tag)}"


def parse_yaml(text: str) -> ParsedFile:
    """Every document of ``text`` with positions, and every problem met (syntax errors end the file)."""
    simple = _parse_simple(text)
    if simple is not None:
        return simple
    from reconciler.model.yaml_events import parse_events

    return parse_events(text)


# The simple subset: what manifests (and the CI workflows beside them) are written in: a mapping at the root,
# block mappings and lists with one key or item per line, plain or single-line quoted scalars, one-line flow
# lists and mappings of such scalars, literal block scalars (`key: |`), comments, `---`. Anything else (tabs,
# CR, non-ASCII, anchors, tags, other block or multi-line scalars, null values...) goes to the event path,
# and so does any problem except one: a key that reads as another type (a workflow's `on:`), reported as the
# event path reports it.
_UNSAFE = re.compile(r"[^\x20-\x7e\n]")
_KEY = r"[A-Za-z_][A-Za-z0-9_.-]*"
_QUOTED = r"\"[^\"\\\n]*\"|'[^'\n]*'"
_PLAIN = r"[A-Za-z0-9_./~$][^ :#\n]*(?:(?: +(?=[^ #\n])|:(?=[^ \n]))[^ :#\n]*)*"
_FLOW_ITEM = rf"[A-Za-z0-9_./~$][A-Za-z0-9_./~$@+=-]*|{_QUOTED}"
_FLOW_SEQ = rf"\[ *(?:(?:{_FLOW_ITEM})(?: *, *(?:{_FLOW_ITEM}))*)? *\]"
_FLOW_MAP = rf"\{{ *(?:{_KEY}: +(?:{_FLOW_ITEM})(?: *, *{_KEY}: +(?:{_FLOW_ITEM}))*)? *\}}"
_VALUE = rf"{_PLAIN}|{_QUOTED}|{_FLOW_SEQ}|{_FLOW_MAP}"
_TAIL = r"(?: *(?<![^ \n])#.*| *)"
# One match per line: (---, indentation, spaces after a dash, key, spaces after its colon, value, ""). A
# file holding a "|" is read with the second pattern, which also takes a literal block scalar's header
# (`key: |`) and any other line whole, in the last group: a block scalar's text, or a line the reader
# refuses.
_LINE = re.compile(rf"^(?:(---)|( *)(?:-( +))?(?:({_KEY}):( +|$))?({_VALUE})?){_TAIL}()$", re.MULTILINE)
_LINE_RAW = re.compile(
    rf"^(?:(?:(---)|( *)(?:-( +))?(?:({_KEY}):( +|$))?({_VALUE}|\|)?){_TAIL}$|([^\n]+)$)", re.MULTILINE
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
    if first == "|":
        raise _NotSimple  # a block scalar as a list item
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
    rows = (_LINE_RAW if "|" in text else _LINE).findall(text)
    if len(rows) != text.count("\n") + 1:
        return None  # some line is outside the subset
    issues: list[YamlIssue] = []
    try:
        return ParsedFile(_simple_documents(rows, text, issues), issues)
    except _NotSimple:
        return None


class _Block:
    """A literal block scalar (``key: |``, clipped) being read: its lines, without their indentation."""

    def __init__(self, mapping: dict[str, Any], key: str, source: list[str]) -> None:
        self.mapping, self.key = mapping, key
        self.lines: list[str] = []
        self.blank: list[int] = []  # lengths of the blank lines before the first line of text
        self.indent = 0  # of its text: that of its first non-blank line (0: none yet)
        self.source = source  # the file's lines

    def take(self, line: int, above: int) -> bool:
        """Whether the line belongs to the scalar (taken) or ends it; ``above``: its mapping's indentation."""
        raw = self.source[line - 1]
        text = raw.lstrip(" ")
        depth = len(raw) - len(text)
        if not text:
            # Spaces beyond the indentation would be text; before the first line, its indentation is unknown.
            if self.indent and depth > self.indent:
                raise _NotSimple
            if not self.indent:
                self.blank.append(depth)
            self.lines.append("")
            return True
        if not self.indent:
            if depth <= above or any(b > depth for b in self.blank):
                raise _NotSimple  # an empty scalar, or blank lines indented more than its text
            self.indent = depth
        if depth < self.indent:
            self.finish()
            return False
        self.lines.append(raw[self.indent :])
        return True

    def finish(self) -> None:
        while self.lines and not self.lines[-1]:
            self.lines.pop()  # clipped: trailing blank lines dropped, one line break kept
        if not self.indent:
            raise _NotSimple
        self.mapping[self.key] = "\n".join(self.lines) + "\n"


def _simple_documents(
    rows: list[tuple[str, str, str, str, str, str, str]], text: str, issues: list[YamlIssue]
) -> list[YamlDocument]:
    documents: list[YamlDocument] = []
    document = YamlDocument(None, (1, 1), Positions(), printable=True)
    # The innermost open collection (indent -1: none yet) and the ones around it, innermost last.
    indent, is_map = -1, False
    top: Any = None  # the collection itself
    where: Any = None  # its positions: key -> (line, column, line, column), or one (line, column) per item
    path: JsonPath = ()  # of the innermost collection, as the event path names it (for issues)
    stack: list[tuple[int, Any, Any, bool, JsonPath]] = []
    pending: str | None = None  # a key written without a value: the block under it is its value
    dropped = False  # the pending key is not a string: its value is read, not kept
    block: _Block | None = None
    source: list[str] = []  # the file's lines, split when a block scalar needs them
    get = _RESOLVED.get
    for line, (marker, spaces, dash, key, gap, value, raw) in enumerate(rows, 1):
        if block is not None:
            if block.take(line, indent):
                continue
            block = None
        column = len(spaces)
        if key and not dash and column == indent and is_map and pending is None:
            pass  # another key of the current mapping (most lines)
        elif raw:
            raise _NotSimple  # a line outside the subset
        elif marker:
            if pending is not None:
                raise _NotSimple  # a null value
            if document.data is not None:
                documents.append(document)
            document = YamlDocument(None, (line, 1), Positions(), printable=True)
            indent, top, where, is_map, stack, path = -1, None, None, False, [], ()
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
            stack.append((indent, top, where, is_map, path))
            if not dropped:
                top[pending] = container
                where[pending] = (*where[pending][:2], line, column + 1)
                path = (*path, pending)
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
                indent, top, where, is_map, path = stack.pop()
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
                stack.append((indent, top, where, is_map, path))
                path = (*path, len(top) - 1)
                indent, top, where, is_map = column, item, document.positions._add_map(item), True
            elif value:
                if value[0] in "\"'[{|" or (get(value) or _plain_tag(value)) != _STR:
                    top.append(_simple_value(value, line, column, document.positions))
                else:
                    top.append(value)
                where.append((line, column + 1))
                continue
            else:
                raise _NotSimple  # a null item
        elif not key:
            raise _NotSimple  # a scalar where a key belongs
        if key in top:
            raise _NotSimple  # a duplicate
        tag = get(key) or _plain_tag(key)
        if tag != _STR:
            # `on:` in a CI workflow beside the manifests: reported as the event path reports it, the value
            # read but not kept.
            issues.append(YamlIssue(line, column + 1, path, f"mapping key {key!r} reads as {_type_name(tag)}, "
                                    "not a string (quote it)"))  # fmt: skip
            document.invalid.append(path)
            if not value:
                pending, dropped = key, True
            elif value == "|":
                source = source or text.split("\n")
                block = _Block({}, key, source)
            else:
                _simple_value(value, line, 0, Positions())
            continue
        if not value:
            pending, dropped = key, False
            where[key] = (line, column + 1)
            continue
        at = column + len(key) + 1 + len(gap)
        if value == "|":
            source = source or text.split("\n")  # once per file
            block = _Block(top, key, source)
            top[key] = None
        elif value[0] in "\"'[{":
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
    if block is not None:
        if not text.endswith("\n"):
            raise _NotSimple  # its last line has no line break to keep
        block.finish()
    if pending is not None:
        raise _NotSimple
    if document.data is not None:
        documents.append(document)
    return documents
