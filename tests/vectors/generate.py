"""Regenerate the golden vectors: `python -m tests.vectors.generate`.

Each vector is three files: NAME.schema.json (the retained schema message), NAME.msgpack (the
batch as published) and NAME.json (what a decoder must produce: the header and every reading).
Regenerate only on purpose (a format change bumps FORMAT_VERSION); tests/unit/test_codec.py
checks that the encoder still produces these exact bytes and the decoder these exact readings.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.codec import (
    Batch,
    DeviceInfo,
    Group,
    Header,
    PointInfo,
    WireSchema,
    compress,
    decode,
    decode_header,
    encode,
    set_historical,
)
from agent.types import Quality

HERE = Path(__file__).parent
T0 = 1_763_700_000_000  # 2025-11-21T04:40:00Z

METER = DeviceInfo("main-incomer", "eastron/sdm630", (
    PointInfo("voltage_l1", "V", "gauge", 2),
    PointInfo("active_power", "W", "gauge", 1),
    PointInfo("energy_import", "kWh", "counter", 3),
))
INVERTER = DeviceInfo("pv-roof-a", "huawei/sun2000", (
    PointInfo("active_power", "W", "gauge", 0),
    PointInfo("inverter_state", "", "enum", 0, ((0x0200, "on_grid"), (0xA000, "standby_no_irradiation"))),
    PointInfo("model_name", "", "text"),
))
SCHEMA = WireSchema("gw-guian-01", (METER, INVERTER))


def vectors() -> dict[str, tuple[Batch, bool, bool]]:
    basic = Batch(Header("gw-guian-01", 1234567, 42, SCHEMA.id, T0), [
        (0, [Group([0, 1], [T0, T0 + 1000, T0 + 2000], [[230.12, 230.4, 229.87], [8612.5, 8590.1, -120.0]]),
             Group([2], [T0 + 40, T0 + 1040, T0 + 2040], [[12345.678, 12345.68, 12345.682]])]),
    ])
    qualities = Batch(Header("gw-guian-01", 1234567, 43, SCHEMA.id, T0, dropped_total=2000, dropped_new=400,
                             boot=3, gap_ms=95_000), [
        (0, [Group([0, 1], [T0, T0 + 1000, T0 + 2000], [[230.1, None, 230.3], [None, None, 8600.0]],
                   [(1, 0, int(Quality.TIMEOUT), 0), (0, 1, int(Quality.EXCEPTION), 4),
                    (1, 1, int(Quality.TIMEOUT), 0)])]),
        (1, [Group([0, 1, 2], [T0 + 500], [[None], [0x0200], ["SUN2000-50KTL"]], [(0, 0, int(Quality.UNAVAILABLE), 0)])]),
    ])
    odd = Batch(Header("gw-guian-01", 1234567, 44, SCHEMA.id, T0), [
        (0, [Group([1], [T0, T0 + 1000], [[1e20, 12.5]])]),  # 1e20 W does not fit the integer column: a float
        (1, [Group([1], [T0, T0 + 60_000], [[0xA000, 0x0999]])]),  # an enum code the schema does not name
    ])
    return {"basic": (basic, False, False), "qualities": (qualities, False, False),
            "odd-values": (odd, False, False), "historical-zlib": (basic, True, True)}


def payload_of(batch: Batch, historical: bool, compressed: bool) -> bytes:
    payload = encode(batch, SCHEMA)
    if historical:
        payload = set_historical(payload)
    return compress(payload) if compressed else payload


def expected(payload: bytes) -> dict[str, object]:
    header, _ = decode_header(payload)
    return {"header": header.__dict__, "readings": [r.as_dict() for r in decode(payload, SCHEMA)]}


def main() -> None:
    for name, (batch, historical, compressed) in vectors().items():
        payload = payload_of(batch, historical, compressed)
        (HERE / f"{name}.msgpack").write_bytes(payload)
        (HERE / f"{name}.schema.json").write_text(SCHEMA.to_json() + "\n")
        (HERE / f"{name}.json").write_text(json.dumps(expected(payload), indent=1, ensure_ascii=False) + "\n")
        print(name, len(payload), "bytes")


if __name__ == "__main__":
    main()
