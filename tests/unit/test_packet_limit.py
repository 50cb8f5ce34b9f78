"""What must fit under a broker's packet limit: the schema in parts (and joined again), a batch cut
down to single columns and runs of rows, decoding to exactly the readings of the original."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from agent.codec import (
    Batch,
    Group,
    Header,
    SchemaAssembler,
    WireSchema,
    decode,
    encode,
    join_schema,
    schema_messages,
    schema_topic,
    split,
)
from tests.mqtt.harness import fleet_schema

TOPIC = "park/test-site/gw-test/schema"
OVERHEAD = 16


def room(limit: int):  # type: ignore[no-untyped-def]
    return lambda topic: limit - OVERHEAD - len(topic.encode())


@pytest.mark.parametrize("devices, limit", [(50, 400), (2, 400), (50, 128 * 1024), (3, 256)])
def test_schema_parts_fit_the_limit_and_join_to_the_schema(devices: int, limit: int) -> None:
    schema = fleet_schema(devices)
    text = schema.to_json()
    messages = schema_messages(text, TOPIC, room(limit))
    assert all(len(p.encode()) + len(t.encode()) + OVERHEAD <= limit for t, p in messages)
    if len(text.encode()) + len(TOPIC) + OVERHEAD <= limit:
        assert messages == [(TOPIC, text)]
        return
    assert messages[-1][0] == TOPIC  # the index comes last: the parts are retained before it
    assembler = SchemaAssembler()
    shuffled = messages[:-1]
    random.Random(devices).shuffle(shuffled)
    results = [assembler.add(schema_topic(t)[1], p) for t, p in [messages[-1], *shuffled]]  # type: ignore[index]
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == text
    assert WireSchema.from_json(results[-1]).id == schema.id


def test_schema_without_a_limit_is_one_message_as_before() -> None:
    text = fleet_schema(50).to_json()
    assert schema_messages(text, TOPIC, None) == [(TOPIC, text)]


def test_parts_of_another_schema_are_not_joined() -> None:
    old, new = fleet_schema(10).to_json(), fleet_schema(11).to_json()
    old_parts = {json.loads(p)["part"]: json.loads(p) for _, p in schema_messages(old, TOPIC, room(400))[:-1]}
    new_messages = schema_messages(new, TOPIC, room(400))
    index = json.loads(new_messages[-1][1])
    assert join_schema(index, old_parts) is None
    new_parts = {json.loads(p)["part"]: json.loads(p) for _, p in new_messages[:-1]}
    assert join_schema(index, {**old_parts, **new_parts}) == new


def test_schema_topic() -> None:
    assert schema_topic("a/b/c/schema") == ("a/b/c", "")
    assert schema_topic("a/b/c/schema/12") == ("a/b/c", "12")
    assert schema_topic("a/b/c/telemetry") is None
    assert schema_topic("a/b/c/schema/x") is None


def test_a_limit_too_small_for_any_part_is_said() -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        schema_messages(fleet_schema(2).to_json(), TOPIC, room(80))


def big_batch(schema: WireSchema, rows: int = 10) -> tuple[bytes, int]:
    """Every point of two meters for `rows` rows, with gaps (None + issue), floats and counters."""
    t0 = 1_763_700_000_000
    groups = []
    for device in (0, 1):
        points = list(range(len(schema.devices[device].points)))
        rng = random.Random(device)
        columns = [[None if (p + r) % 7 == 0 else (1e12 if (p * r) % 11 == 5 else round(rng.uniform(0, 500), 2))
                    for r in range(rows)] for p in points]
        issues = [(r, p, 1, 0) for p in points for r in range(rows) if columns[p][r] is None]
        groups.append((device, [Group(points, [t0 + 1000 * r + device for r in range(rows)], columns, issues)]))
    batch = Batch(Header("gw-test", 3, 77, schema.id, t0, dropped_total=5, dropped_new=2), groups)
    return encode(batch, schema), batch.readings


@pytest.mark.parametrize("limit, rows", [(200, 10), (350, 10), (1000, 10), (120, 60)])
def test_split_cuts_groups_by_columns_and_rows_and_loses_nothing(limit: int, rows: int) -> None:
    schema = fleet_schema(2)
    payload, readings = big_batch(schema, rows)
    keys = itertools.count(100)
    parts = split(payload, limit, lambda: (3, next(keys)))
    assert len(parts) > 1 and all(len(p.payload) <= limit for p in parts)
    assert sum(p.readings for p in parts) == readings
    original = sorted(r.as_dict().__repr__() for r in decode(payload, schema))
    again = sorted(r.as_dict().__repr__() for p in parts for r in decode(p.payload, schema))
    assert again == original
