"""Pure helpers shared by the SQLite and PostgreSQL stores: rows to Recorded* values, the values written
for a new instance, catalog naming and the fingerprint of an environment. No database library here."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from reconciler.collector import collector_paused
from reconciler.core.observed import (
    ENVIRONMENT_STATUSES,
    INSTALLATION_STATUSES,
    RecordedEnvironment,
    RecordedInstance,
)
from reconciler.core.suspension import Suspension
from reconciler.errors import StoreError
from reconciler.model.secrets import Secret
from reconciler.model.spec import MANAGED_BY
from reconciler.ports import NewInstance
from reconciler.settings import mask_url

GENERIC_CATALOG_ID = "00000000-0000-0000-0000-000000000001"
MCP_COLUMNS: tuple[str, ...] = (
    "mcp_server_type",
    "mcp_endpoint_path",
    "mcp_transport_type",
    "mcp_server_capabilities",
    "mcp_discovery_metadata",
)
MCP_JSON_COLUMNS = frozenset({"mcp_server_capabilities", "mcp_discovery_metadata"})
# What Agentopia's mcp_transport_type column accepts (its CHECK), and what its server-type column accepts.
COLUMN_TRANSPORTS = frozenset({"stdio", "sse", "websocket"})
COLUMN_SERVER_TYPES = frozenset({"standard_tool", "mcp_server"})
# A transport the column does not accept is written as the closest one it does. Agentopia's CHECK
# chk_mcp_server_required_fields requires a transport whenever mcp_server_type = 'mcp_server', so NULL is
# no way out: streamable-http (MCP's successor of HTTP+SSE, served over plain HTTP on one endpoint) is
# closest to sse. The true transport stays in base_config_override_json.mcp.transport and in
# mcp_discovery_metadata.transport, which the reconciler reads back; the column only informs Agentopia.
CLOSEST_TRANSPORT = {"streamable-http": "sse", "http": "sse"}
# Who "owns" a toolbox registered with `reconciler db add-environment` when no --user-id is given.
DEFAULT_USER_ID = "00000000-0000-0000-0000-000000000000"


def mask(url: str) -> str:
    """mask_url, and also a password given as a query parameter."""
    return re.sub(r"(password=)[^&\s]*", r"\1***", mask_url(url), flags=re.IGNORECASE)


def scrub(message: str, url: str) -> str:
    """A driver's message as one line, with the URL's password removed wherever it may appear."""
    line = " ".join(message.split())
    for secret in _passwords(url):
        line = line.replace(secret, "***")
    return line


def _passwords(url: str) -> list[str]:
    from urllib.parse import parse_qs, unquote, urlsplit

    try:
        parts = urlsplit(url)
        found = [parts.password or "", unquote(parts.password or "")]
        found += parse_qs(parts.query).get("password", [])
    except ValueError:
        return []
    return sorted({p for p in found if p}, key=len, reverse=True)


def check_status(status: str, instance_id: str) -> None:
    """Only enum values are written: Agentopia's own writes of other values fail in PostgreSQL."""
    if status not in INSTALLATION_STATUSES:
        raise StoreError(
            f"instance {instance_id}: status {status!r} is not in account_tool_installation_status_enum; "
            "nothing written"
        )


def check_environment_status(status: str, name: str) -> None:
    if status not in ENVIRONMENT_STATUSES:
        raise StoreError(
            f"environment {name}: status {status!r} is not in account_tool_environment_status_enum "
            f"({', '.join(ENVIRONMENT_STATUSES)})"
        )


def check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise StoreError(f"{what} {value!r} is not a UUID") from None


def new_environment_values(
    name: str, address: str, status: str, environment_id: str | None, user_id: str | None
) -> dict[str, Any]:
    """The account_tool_environments row `reconciler db add-environment` inserts, checked."""
    check_environment_status(status, name)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise StoreError(f"environment {name}: address {address!r} is not an IP address") from None
    return {
        "id": check_uuid(environment_id, "--id") if environment_id else str(uuid.uuid4()),
        "user_id": check_uuid(user_id, "--user-id") if user_id else DEFAULT_USER_ID,
        "name": name,
        "public_ip_address": address,
        "status": status,
        # Agentopia's NOT NULL droplet columns; a toolbox registered here has no droplet behind it.
        "region_slug": "local",
        "size_slug": "local",
        "image_slug": "registered-by-mcp-reconciler",
    }


def parse_json(value: Any) -> Any:
    """JSON from a jsonb value (already parsed) or a text column; anything unreadable is None."""
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def dump_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def format_time(value: datetime) -> str:
    """How the SQLite store writes a timestamp: ISO 8601 in UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def suspension_from_row(row: Mapping[str, Any]) -> Suspension:
    """A row of mcp_reconciler_suspensions (any backend) as the core's value."""
    at = parse_time(row["suspended_at"]) or datetime(1970, 1, 1, tzinfo=UTC)
    return Suspension(str(row["environment_id"]), str(row["reason"]), str(row["suspended_by"]), at.astimezone(UTC))


def environment_from_row(row: Mapping[str, Any]) -> RecordedEnvironment:
    token = row.get("dtma_bearer_token")
    return RecordedEnvironment(
        id=str(row["id"]),
        name=row.get("name"),
        address=host_address(row.get("address")),
        status=str(row.get("status") or ""),
        last_heartbeat_at=parse_time(row.get("last_heartbeat_at")),
        dtma_token=Secret(str(token)) if token else None,
    )


def host_address(value: Any) -> str | None:
    """The address as text; PostgreSQL's inet::text shows a host as ``1.2.3.4/32``, which is dropped."""
    if not value:
        return None
    text = str(value)
    address, _, bits = text.partition("/")
    return address if bits in ("32", "128") else text


def instance_from_row(row: Mapping[str, Any]) -> RecordedInstance:
    """``row`` carries the instance columns plus ``catalog_image`` (the catalog's docker_image_url)."""
    return _instance_from_row(row)


# The columns of ``InstanceDecoder`` rows, in order (the SQLite store selects exactly these).
INSTANCE_ROW_COLUMNS: tuple[str, ...] = (
    "id",
    "account_tool_environment_id",
    "tool_catalog_id",
    "instance_name_on_toolbox",
    "status_on_toolbox",
    "base_config_override_json",
    "instance_error_message",
    "last_heartbeat_from_dtma",
    "catalog_image",
)


class InstanceDecoder:
    """Instance rows fetched as plain tuples in ``INSTANCE_ROW_COLUMNS`` order -> RecordedInstance.

    A store that is read again and again (the daemon observes every cycle) keeps one decoder: a row unchanged
    since the last read is one dict look-up on the tuple the driver returned, with no dict per row and no
    JSON re-parse (most of an idle cycle's CPU otherwise). Only the last read's rows are kept, so memory is
    bounded by the table. The values are frozen dataclasses whose config nobody mutates. The rows not seen
    before are decoded together (``instances_from_values``)."""

    def __init__(self) -> None:
        self._last: dict[tuple[Any, ...], RecordedInstance] = {}

    def decode(self, values: Iterable[tuple[Any, ...]]) -> tuple[RecordedInstance, ...]:
        last = self._last
        rows = values if isinstance(values, list) else list(values)
        if not last:  # the first read: every row is new
            out = instances_from_values(rows)
        else:
            found = [last.get(v) for v in rows]
            fresh = [v for v, f in zip(rows, found, strict=True) if f is None]
            if fresh:
                decoded = iter(instances_from_values(fresh))
                found = [next(decoded) if f is None else f for f in found]
            out = cast(list[RecordedInstance], found)
        self._last = dict(zip(rows, out, strict=True))
        return tuple(out)


def instances_from_values(values: Sequence[tuple[Any, ...]]) -> list[RecordedInstance]:
    """Rows as tuples in ``INSTANCE_ROW_COLUMNS`` order -> RecordedInstance, the same values as
    ``instance_from_row``; their configs decoded together (``parse_configs``). Reading 10,000 rows this way
    costs about half of what one dict and one JSON decode per row did, and it runs while the listings need
    the GIL."""
    with collector_paused():
        configs = parse_configs([v[5] for v in values])
        return [_instance(v, config) for v, config in zip(values, configs, strict=True)]


def _interned(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) and len(v) <= _INTERN_MAX else v for k, v in pairs}


_INTERN_MAX = 64
# Stored configs repeat the same keys and short values (managed_by, transport, status...) on every row:
# shared strings keep 100,000 decoded configs about half the size (reconciler plan at 10,000 toolboxes x 10
# stayed over 500 MB without it).
_CONFIG_DECODER = json.JSONDecoder(object_pairs_hook=_interned)


def parse_config(value: Any) -> Any:
    """A stored config (jsonb, or its text) with its keys and short strings shared across rows."""
    if isinstance(value, str | bytes):
        try:
            return _CONFIG_DECODER.decode(value if isinstance(value, str) else value.decode())
        except ValueError:
            return None
    return parse_json(value)


def parse_configs(values: Sequence[Any]) -> list[Any]:
    """``parse_config`` of each value (the same results, short strings as shared), the texts decoded
    ``_BATCH`` at a time by one call of the C decoder: one call per row, with a Python hook per JSON object,
    cost twice as much. Batches keep the joined text small (a plan at 100,000 rows is held to its memory).

    A batch's texts are joined into one JSON array with a random number between them, and the result is taken
    only if every other element is that number: then each text stood alone between two separators and parsed
    as exactly one value, so results cannot shift between rows whatever a row holds. A text that is not one
    JSON value (``{"a":[1`` or ``1,2``) breaks the array or the separators, and that batch is decoded one text
    at a time, as ``parse_config`` does."""
    out: list[Any] = []
    for start in range(0, len(values), _BATCH):
        out += _parse_batch(values[start : start + _BATCH])
    return out


_BATCH = 1000


def _parse_batch(values: Sequence[Any]) -> list[Any]:
    texts = [v for v in values if type(v) is str]
    if len(texts) < 2:
        return [parse_config(v) for v in values]
    mark = secrets.randbits(62)
    try:
        joined: Any = json.loads("[" + f",{mark},".join(texts) + "]")
    except ValueError:
        joined = None
    if type(joined) is not list or len(joined) != 2 * len(texts) - 1 or joined[1::2].count(mark) != len(texts) - 1:
        return [parse_config(v) for v in values]
    decoded = iter(joined[::2])
    out: list[Any] = []
    for v in values:
        if type(v) is str:
            value = next(decoded)
            if type(value) is dict:
                _share_strings(value)
            out.append(value)
        else:
            out.append(parse_config(v))
    return out


def _share_strings(config: dict[str, Any]) -> None:
    """Short string values interned in place in ``config`` and the objects within it, as ``parse_config``'s
    hook does while decoding (the keys are shared already: the C decoder keeps one string per key and call).
    Objects inside lists are left: the stored configs hold few."""
    intern = sys.intern
    todo = [config]
    for item in todo:
        for k, v in item.items():
            if type(v) is str:
                if len(v) <= _INTERN_MAX:
                    item[k] = intern(v)
            elif type(v) is dict:
                todo.append(v)


def _instance_from_row(row: Mapping[str, Any]) -> RecordedInstance:
    values = (row["id"], row["account_tool_environment_id"], row["tool_catalog_id"])
    values += tuple(row.get(c) for c in INSTANCE_ROW_COLUMNS[3:])
    return _instance(values, parse_config(row.get("base_config_override_json")))


def _instance(values: tuple[Any, ...], config: Any) -> RecordedInstance:
    """One row (in ``INSTANCE_ROW_COLUMNS`` order) with its config already parsed: what
    ``model.stored.read_stored`` reads, without the parts the row does not keep."""
    instance_id, environment_id, catalog_id, name, status, _, error_message, heartbeat, catalog_image = values
    config = config if isinstance(config, dict) else {}
    get = config.get
    image = get("image")
    spec_hash = get("spec_hash")
    version = get("spec_hash_version")
    return RecordedInstance(
        id=str(instance_id),
        environment_id=str(environment_id),
        catalog_id=str(catalog_id),
        name=name,
        status=str(status or ""),
        image=(image if isinstance(image, str) else None) or (str(catalog_image) if catalog_image else None),
        managed=get("managed_by") == MANAGED_BY,
        spec_hash=spec_hash if isinstance(spec_hash, str) else None,
        hash_version=version if isinstance(version, int) else None,
        protect=get("protect") is True,
        config=config,
        error_message=error_message,
        last_heartbeat_from_dtma=parse_time(heartbeat),
    )


def config_with_mcp(
    config: Mapping[str, Any], transport: str, endpoint: str | None, capabilities: Iterable[str]
) -> dict[str, Any]:
    """The config to store: the MCP fields always live in it, whatever columns the table has."""
    out = dict(config)
    if not isinstance(out.get("mcp"), dict):
        out["mcp"] = {
            "server_type": "mcp_server",
            "transport": transport,
            "endpoint": endpoint,
            "capabilities": list(capabilities),
        }
    return out


@dataclass(frozen=True)
class McpRules:
    """What the instance table's CHECK constraints accept in the MCP columns (read from the database).

    ``required`` are the columns that must be NOT NULL when ``mcp_server_type = 'mcp_server'``: Agentopia's
    ``chk_mcp_server_required_fields`` requires ``mcp_transport_type``. The defaults are Agentopia's rules,
    used where the constraints cannot be read (SQLite) so that every store writes the same combination."""

    transports: frozenset[str] = COLUMN_TRANSPORTS
    server_types: frozenset[str] = COLUMN_SERVER_TYPES
    required: frozenset[str] = frozenset({"mcp_transport_type"})


AGENTOPIA_MCP_RULES = McpRules()
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_NOT_NULL = re.compile(r"\b(mcp_[a-z_]+) IS NOT NULL", re.IGNORECASE)


def mcp_rules_from_checks(definitions: Iterable[str]) -> McpRules:
    """The rules in a table's CHECK constraint texts (``pg_get_constraintdef``). A column with no list of
    values keeps Agentopia's; a constraint that names ``'mcp_server'`` and ``X IS NOT NULL`` makes X
    required for MCP servers."""
    transports: frozenset[str] | None = None
    server_types: frozenset[str] | None = None
    required: set[str] = set()
    for text in definitions:
        literals = frozenset(v.replace("''", "'") for v in _QUOTED.findall(text))
        names_type = "mcp_server_type" in text
        names_transport = "mcp_transport_type" in text
        if names_type and "'mcp_server'" in text and " IS NOT NULL" in text.upper():
            required |= {c for c in _NOT_NULL.findall(text) if c in MCP_COLUMNS}
        elif names_transport and not names_type and literals:
            transports = literals if transports is None else transports & literals
        elif names_type and not names_transport and literals:
            server_types = literals if server_types is None else server_types & literals
    return McpRules(
        # No list of values: still only Agentopia's three, which its code knows.
        transports=COLUMN_TRANSPORTS if transports is None else transports,
        server_types=COLUMN_SERVER_TYPES if server_types is None else server_types,
        required=frozenset(required),
    )


def mcp_values(config: Mapping[str, Any], rules: McpRules = AGENTOPIA_MCP_RULES) -> dict[str, Any]:
    """Values for the five MCP columns, from the config's ``mcp`` block (JSON columns as Python values),
    in a combination the table's CHECK constraints accept (see CLOSEST_TRANSPORT)."""
    mcp = config.get("mcp")
    if not isinstance(mcp, dict):
        return {}
    transport = mcp.get("transport") if isinstance(mcp.get("transport"), str) else None
    capabilities = mcp.get("capabilities")
    server_type = mcp.get("server_type")
    server_type = server_type if server_type in COLUMN_SERVER_TYPES else "mcp_server"
    column_transport = transport if transport in rules.transports else None
    if column_transport is None and transport is not None:
        closest = CLOSEST_TRANSPORT.get(transport)
        column_transport = closest if closest in rules.transports else None
    endpoint = mcp.get("endpoint") if isinstance(mcp.get("endpoint"), str) else None
    values: dict[str, Any] = {
        "mcp_server_type": server_type,
        "mcp_endpoint_path": endpoint,
        "mcp_transport_type": column_transport,
        "mcp_server_capabilities": list(capabilities) if isinstance(capabilities, list) else [],
        "mcp_discovery_metadata": {
            "managed_by": MANAGED_BY,
            "transport": transport,
            "column_transport": column_transport,
        },
    }
    if server_type == "mcp_server" and any(values.get(c) is None for c in rules.required):
        # No accepted combination as an MCP server: recorded as a standard tool, the truth in the metadata.
        values["mcp_server_type"] = "standard_tool"
        values["mcp_discovery_metadata"]["server_type"] = "mcp_server"
    if values["mcp_server_type"] not in rules.server_types:
        values["mcp_server_type"] = None
    return values


def merged_metadata(current: Any, keys: Mapping[str, Any]) -> dict[str, Any]:
    """``mcp_discovery_metadata`` with a probe's keys merged over it (top level; what was there stays)."""
    found = parse_json(current) if isinstance(current, (str, bytes)) else current
    return {**(found if isinstance(found, dict) else {}), **keys}


def mcp_columns_of(found: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Instance id -> its non-empty MCP columns (JSON columns parsed), from rows with ``id`` and those columns."""
    out: dict[str, dict[str, Any]] = {}
    for row in found:
        values = {
            c: parse_json(row[c]) if c in MCP_JSON_COLUMNS else row[c]
            for c in MCP_COLUMNS
            if c in row.keys() and row[c] not in (None, "", [], {})  # noqa: SIM118 (driver rows are not dicts)
        }
        if values:
            out[str(row["id"])] = values
    return out


def probed_metadata(value: Any) -> dict[str, Any] | None:
    """The metadata when it holds a probe's answer (``last_probe``), else None."""
    found = parse_json(value) if isinstance(value, (str, bytes)) else value
    return found if isinstance(found, dict) and isinstance(found.get("last_probe"), dict) else None


def port_mapping(config: Mapping[str, Any]) -> dict[str, int | None] | None:
    """``port_mapping_json`` as the column's comment documents it: ``{"container_port": 8080,
    "host_port": 49152}``. A port without a host port has ``"host_port": null``; no port at all, NULL."""
    port = config.get("port")
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    host_port: int | None = None
    host = config.get("HostConfig")
    bindings = host.get("PortBindings") if isinstance(host, dict) else None
    entries = bindings.get(f"{port}/tcp") if isinstance(bindings, dict) else None
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        raw = str(entries[0].get("HostPort") or "")
        host_port = int(raw) if raw.isdigit() else None
    return {"container_port": port, "host_port": host_port}


def image_version(image: str | None) -> str | None:
    """The ``version`` column: the image's tag (``latest`` when none is given), or its digest when pinned
    by digest only."""
    if not image:
        return None
    rest, _, digest = image.partition("@")
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        return rest[colon + 1 :]
    return digest or "latest"


def config_columns(config: Mapping[str, Any], rules: McpRules = AGENTOPIA_MCP_RULES) -> dict[str, Any]:
    """Every column written from a stored config, besides the config itself (JSON as Python values)."""
    image = config.get("image")
    values: dict[str, Any] = {
        "port_mapping_json": port_mapping(config),
        "version": image_version(image if isinstance(image, str) else None),
    }
    values.update(mcp_values(config, rules))
    return values


def new_instance_values(
    new: NewInstance, instance_id: str, rules: McpRules = AGENTOPIA_MCP_RULES
) -> dict[str, Any]:
    """Every column of a new row; JSON values still as Python values."""
    config = config_with_mcp(new.config, new.transport, new.endpoint, new.capabilities)
    return {
        "id": instance_id,
        "account_tool_environment_id": new.environment_id,
        "tool_catalog_id": new.catalog_id,
        "instance_name_on_toolbox": new.name,
        "status_on_toolbox": "pending_deploy",
        "base_config_override_json": config,
        **config_columns(config, rules),
    }


def catalog_values(image: str, catalog_id: str, owner: str | None = None) -> dict[str, Any]:
    """A catalog row of the reconciler's own for one image. Names carry the image, so they are unique
    per image and cannot collide with Agentopia's names (which never hold a slash-separated image).

    Private: Agentopia's ``is_public`` defaults to true and a policy shows public rows to every signed-in
    user. ``created_by`` is the user owning the toolbox that first needed the image (``owner``), the one
    Agentopia shows the instance to; NULL when the row is made without a toolbox."""
    label = f"{MANAGED_BY}: {image}"
    return {
        "id": catalog_id,
        "tool_name": label,
        "name": label,
        "description": f"MCP server image {image}, registered by {MANAGED_BY}",
        "package_identifier": image,
        "docker_image_url": image,
        "packaging_type": "docker_image",
        "status": "available",
        "version_info": {"managed_by": MANAGED_BY, "image": image},
        "version": "1.0.0",
        "category": "mcp",
        "default_config_template": {},
        "is_public": False,
        "created_by": owner,
    }


def fingerprint(environment: Mapping[str, Any] | None, instances: Iterable[Mapping[str, Any]]) -> str:
    """sha256 over what a saved plan depends on: the environment's identity, address and status, and each
    instance's catalog, name, status and stored config. Heartbeats and timestamps are left out, since
    Agentopia moves them all the time without changing anything a plan would do."""
    env = None
    if environment is not None:
        env = {k: _plain(environment.get(k)) for k in ("id", "name", "address", "status")}
    rows = sorted(
        (
            {
                "id": _plain(r.get("id")),
                "catalog": _plain(r.get("tool_catalog_id")),
                "name": r.get("instance_name_on_toolbox"),
                "status": _plain(r.get("status_on_toolbox")),
                "config": parse_json(r.get("base_config_override_json")),
            }
            for r in instances
        ),
        key=lambda r: str(r["id"]),
    )
    canonical = json.dumps({"environment": env, "instances": rows}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _plain(value: Any) -> str | None:
    return None if value is None else str(value)


def advisory_key(environment_id: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, stable across processes and hosts (unlike hash())."""
    digest = hashlib.sha256(f"mcp-reconciler:{environment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
