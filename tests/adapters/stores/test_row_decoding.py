"""Instance rows decoded in bulk (``instances_from_values``, ``parse_configs``) give exactly what the one-row
path gives (``instance_from_row``, ``parse_config``), whatever the stored texts hold."""

from __future__ import annotations

import gc
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.adapters import store_rows
from reconciler.adapters.store_rows import (
    INSTANCE_ROW_COLUMNS,
    InstanceDecoder,
    instance_from_row,
    instances_from_values,
    parse_config,
    parse_configs,
)
from reconciler.core.observed import RecordedInstance


def stored(i: int, **extra: Any) -> str:
    config = {
        "managed_by": "mcp-reconciler",
        "spec_hash": f"sha256:{i:064x}",
        "spec_hash_version": 1,
        "image": f"ghcr.io/acme/s{i % 3}:1",
        "desired_state": "running",
        "protect": i % 2 == 0,
        "source": f"/m/tb{i}.yaml:5",
        "mcp": {"server_type": "mcp_server", "transport": "sse", "endpoint": "/sse", "capabilities": ["tools"]},
        "Env": [f"A={i}"],
        "secret_fingerprints": {},
        **extra,
    }
    return json.dumps(config, separators=(",", ":"))


# Texts that are not one JSON value, some of which make valid JSON when joined with their neighbours:
# bulk decoding must never let one row's text become another row's config.
NOT_ONE_VALUE = [
    "1,2",
    '{"a":[1',
    "2]}",
    '{"a":"x}',
    '{","b":1}',
    '{"c":1},{"d":2}',
    "",
    "   ",
    "]",
    "[",
    ",",
    '"open',
    'close"',
    "{} {}",
    "not json",
]
ODD_VALUES: list[Any] = [
    None,
    b'{"managed_by":"mcp-reconciler"}',
    b"\xff not utf-8",
    {"already": "decoded"},  # jsonb as the driver returns it
    ["a", "list"],
    "[1, 2]",
    "3",
    '"a string"',
    "null",
    ' \n{"padded": true}\n ',
    '{"dup":1,"dup":2}',
    '{"deep":' * 50 + "1" + "}" * 50,
    '{"nan": NaN, "big": 12345678901234567890}',
    '{"u": "\\u00e9t\\u00e9", "ctl": "a\\nb"}',
]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 or True are not the same value here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)  # NaN


def assert_same_as_one_by_one(values: list[Any]) -> None:
    bulk = parse_configs(values)
    assert len(bulk) == len(values)
    for value, got in zip(values, bulk, strict=True):
        assert same(got, parse_config(value)), value


def test_well_formed_configs_decode_as_one_by_one() -> None:
    assert_same_as_one_by_one([stored(i) for i in range(50)])


@pytest.mark.parametrize("bad", NOT_ONE_VALUE)
def test_a_text_that_is_not_one_value_never_shifts_the_others(bad: str) -> None:
    values: list[Any] = [stored(0), bad, stored(1), bad, bad, stored(2)]
    assert_same_as_one_by_one(values)
    assert parse_configs(values)[1] is None  # unreadable alone: no config, as before


def test_texts_that_combine_into_valid_json_stay_apart() -> None:
    # '{"a":"x}' + ',' + '{","b":1}' is one valid object, and '{"c":1},{"d":2}' two: joined naively, the
    # count would match and every config after them would belong to another row.
    values: list[Any] = [stored(0), '{"a":"x}', '{","b":1}', '{"c":1},{"d":2}', stored(1), '{"a":[1', "2]}", "1,2"]
    assert_same_as_one_by_one(values)
    assert parse_configs(values)[4]["source"] == "/m/tb1.yaml:5"


def test_odd_values_decode_as_one_by_one() -> None:
    assert_same_as_one_by_one([stored(0), *ODD_VALUES, stored(1)])
    assert_same_as_one_by_one(ODD_VALUES)
    assert_same_as_one_by_one([])
    assert_same_as_one_by_one([stored(3)])


def test_random_mixes_over_several_batches_decode_as_one_by_one() -> None:
    rng = random.Random(16)
    pieces: list[Any] = [*NOT_ONE_VALUE, *ODD_VALUES]
    for _ in range(20):
        values: list[Any] = []
        for i in range(rng.randrange(1, 2 * store_rows._BATCH + 50, 97)):
            values.append(rng.choice(pieces) if rng.random() < 0.02 else stored(i))
        assert_same_as_one_by_one(values)


def test_short_strings_are_shared_across_rows_as_before() -> None:
    # The memory of a plan at 100,000 rows depends on it.
    a, b = parse_configs([stored(1), stored(4)])
    assert a["desired_state"] is b["desired_state"]
    assert a["mcp"]["transport"] is b["mcp"]["transport"]
    assert a["image"] is b["image"]
    one = parse_config(stored(1))
    assert one["managed_by"] is a["managed_by"]


def row_values(i: int, config: Any, **over: Any) -> tuple[Any, ...]:
    row = {
        "id": f"i-{i:04d}",
        "account_tool_environment_id": f"env-{i % 7}",
        "tool_catalog_id": "cat-1",
        "instance_name_on_toolbox": f"s{i}",
        "status_on_toolbox": "running",
        "base_config_override_json": config,
        "instance_error_message": None,
        "last_heartbeat_from_dtma": None,
        "catalog_image": "ghcr.io/acme/catalog:1",
        **over,
    }
    return tuple(row[c] for c in INSTANCE_ROW_COLUMNS)


def assert_same_instances(got: list[RecordedInstance], values: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(values)
    for inst, v in zip(got, values, strict=True):
        one = instance_from_row(dict(zip(INSTANCE_ROW_COLUMNS, v, strict=True)))
        assert inst == one
        assert same(dict(inst.config), dict(one.config))  # config is not part of the dataclass equality


def test_bulk_rows_are_the_one_row_values() -> None:
    values = [row_values(i, stored(i)) for i in range(30)]
    values += [
        row_values(100, None, status_on_toolbox=None),
        row_values(101, "not json", instance_name_on_toolbox=None),
        row_values(102, stored(2, image=7, spec_hash=None, spec_hash_version="1", protect="yes")),
        row_values(103, stored(3, managed_by="someone-else"), catalog_image=None),
        row_values(104, '{"image": ""}'),
        row_values(105, "[1]", last_heartbeat_from_dtma="2026-01-02T03:04:05"),
        row_values(106, stored(6), last_heartbeat_from_dtma=datetime(2026, 1, 2, tzinfo=UTC)),
        row_values(107, stored(7), last_heartbeat_from_dtma="garbage", instance_error_message="boom"),
        row_values(108, '{"a":"x}'),
        row_values(109, '{","b":1}'),
    ]
    assert_same_instances(instances_from_values(values), values)
    decoder = InstanceDecoder()
    assert_same_instances(list(decoder.decode(values)), values)
    again = decoder.decode(list(values))
    assert all(x is y for x, y in zip(again, decoder.decode(iter(values)), strict=True))  # kept, not re-decoded
    changed = [*values[:5], row_values(3, stored(33)), *values[6:]]
    assert_same_instances(list(decoder.decode(changed)), changed)


def test_the_collector_is_left_as_it_was() -> None:
    values = [row_values(i, stored(i)) for i in range(5)]
    assert gc.isenabled()
    instances_from_values(values)
    assert gc.isenabled()
    gc.disable()
    try:
        instances_from_values(values)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_well_formed_texts_take_the_bulk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def one_by_one(value: Any) -> Any:
        raise AssertionError("decoded one by one")

    monkeypatch.setattr(store_rows, "parse_config", one_by_one)
    assert [c["source"] for c in parse_configs([stored(i) for i in range(3)])] == [
        f"/m/tb{i}.yaml:5" for i in range(3)
    ]
