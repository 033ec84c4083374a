"""Docker image references, checked as ``docker pull`` would parse them.

Grammar (from the distribution/reference package)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component { "/" path-component }
    domain     := host [ ":" port ]         first component, when it has "." or ":" or is "localhost"
    path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex

Messages say which part is wrong, so that ``Ghcr.io/Org/Tool`` gets "path must be lowercase", not a regex.
"""

from __future__ import annotations

import re
from functools import lru_cache

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_NAME_LENGTH = 255


@lru_cache(maxsize=4096)  # a fleet runs few distinct images on many toolboxes
def image_reference_problem(reference: str) -> str | None:
    """None when ``reference`` is a valid Docker image reference, else what is wrong with it."""
    if not reference:
        return "image reference is empty"
    if reference != reference.strip() or any(c.isspace() for c in reference):
        return "image reference must not contain whitespace"
    rest = reference
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            return "digest must be sha256: followed by 64 lowercase hex digits"
    name = rest
    # A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            return (
                f"tag {tag!r} is not valid (letters, digits, '_', '.', '-'; at most 128; "
                "not starting with '.' or '-')"
            )
    if not name:
        return "image reference has no repository name"
    if len(name) > MAX_NAME_LENGTH:
        return f"repository name is longer than {MAX_NAME_LENGTH} characters"
    components = name.split("/")
    first = components[0]
    if len(components) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            return f"registry {first!r} is not a valid host[:port]"
        components = components[1:]
    for component in components:
        if not component:
            return "repository path has an empty component (check the slashes)"
        if not _PATH_COMPONENT.fullmatch(component):
            if component.lower() != component and _PATH_COMPONENT.fullmatch(component.lower()):
                return f"repository path {'/'.join(components)!r} must be lowercase"
            return (
                f"repository path component {component!r} is not valid "
                "(lowercase letters and digits, separated by '.', '_', '__' or '-')"
            )
    return None
