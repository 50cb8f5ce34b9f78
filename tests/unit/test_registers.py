"""Register words <-> values. Vectors come from vendor documents and IEEE 754, written here by hand,
independently of any profile."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.registers import decimals_of, decode_words, encode_value, raw_unsigned, shortest_f32
from agent.types import DataType, Order


def words(hex_bytes: str) -> list[int]:
    """'1E 85 0B 3F' (bytes in wire order) -> registers [0x1E85, 0x0B3F]."""
    data = bytes.fromhex(hex_bytes)
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


@pytest.mark.parametrize(("wire", "data_type", "order", "expected"), [
    # Xintai water meter protocol example: flow 0.545 m3/h sent fully byte-reversed
    ("1E 85 0B 3F", DataType.F32, Order.DCBA, 0.545),
    # TUF-2000 example (arivin29 register map): temperature 36.625 C, word-swapped float
    ("80 6B 42 12", DataType.F32, Order.CDAB, 36.625),
    # IEEE 754: 230.1 is 0x4366199A; Eastron sends high word first
    ("43 66 19 9A", DataType.F32, Order.ABCD, 230.1),
    ("66 43 9A 19", DataType.F32, Order.BADC, 230.1),
    ("19 9A 43 66", DataType.F32, Order.CDAB, 230.1),
    # IEEE 754 double: 1.5 is 0x3FF8000000000000
    ("3F F8 00 00 00 00 00 00", DataType.F64, Order.ABCD, 1.5),
    ("00 00 00 00 00 00 3F F8", DataType.F64, Order.CDAB, 1.5),
    ("00 00 00 00 00 00 F8 3F", DataType.F64, Order.DCBA, 1.5),
    ("F8 3F 00 00 00 00 00 00", DataType.F64, Order.BADC, 1.5),
    ("FF FE", DataType.I16, Order.ABCD, -2),
    ("FE FF", DataType.I16, Order.BADC, -2),
    ("FF FE", DataType.U16, Order.ABCD, 65534),
    # Huawei accumulated yield 123456.78 kWh at gain 100 = 12345678 = 0x00BC614E, big-endian
    ("00 BC 61 4E", DataType.U32, Order.ABCD, 12345678),
    # Carlo Gavazzi int32, low word first: -1234 = 0xFFFFFB2E
    ("FB 2E FF FF", DataType.I32, Order.CDAB, -1234),
    ("2E FB FF FF", DataType.I32, Order.DCBA, -1234),
    # Schneider iEM3000 int64 energy in Wh, big-endian: 5_000_000_123
    ("00 00 00 01 2A 05 F2 7B", DataType.I64, Order.ABCD, 5_000_000_123),
    ("F2 7B 2A 05 00 01 00 00", DataType.U64, Order.CDAB, 5_000_000_123),
    ("FF FF FF FF FF FF FF FF", DataType.I64, Order.ABCD, -1),
    # SunSpec "SunS" marker and a padded string
    ("53 75 6E 53", DataType.STRING, Order.ABCD, "SunS"),
    ("48 55 41 57 45 49 00 00", DataType.STRING, Order.ABCD, "HUAWEI"),
])
def test_decode_vectors(wire: str, data_type: DataType, order: Order, expected: object) -> None:
    """Each documented wire frame decodes to the documented value (documents print floats rounded
    to 3 decimals: 0x3F0B851E is 0.54499996, shown as 0.545)."""
    decoded = decode_words(words(wire), data_type, order)
    if isinstance(expected, float):
        assert decoded == pytest.approx(expected, abs=5e-4)
    else:
        assert decoded == expected


@pytest.mark.parametrize(("wire", "order", "expected"), [
    ("7F FF FF FF", Order.ABCD, 0x7FFFFFFF),
    ("FF FF 7F FF", Order.CDAB, 0x7FFFFFFF),
    ("7F C0 00 00", Order.ABCD, 0x7FC00000),
])
def test_raw_unsigned_is_value_order(wire: str, order: Order, expected: int) -> None:
    """Sentinels are matched in value order, whatever order the device sends."""
    assert raw_unsigned(words(wire), order) == expected


INT_RANGES = {
    DataType.U16: (0, 2**16 - 1), DataType.I16: (-(2**15), 2**15 - 1),
    DataType.U32: (0, 2**32 - 1), DataType.I32: (-(2**31), 2**31 - 1),
    DataType.U64: (0, 2**64 - 1), DataType.I64: (-(2**63), 2**63 - 1),
}


@given(st.sampled_from(sorted(INT_RANGES)), st.sampled_from(list(Order)), st.data())
def test_integer_round_trip(data_type: DataType, order: Order, data: st.DataObject) -> None:
    """encode then decode is the identity for every integer type and order."""
    lo, hi = INT_RANGES[data_type]
    value = data.draw(st.integers(lo, hi))
    encoded = encode_value(value, data_type, order)
    assert len(encoded) == data_type.words
    assert decode_words(encoded, data_type, order) == value


@given(st.sampled_from(list(Order)), st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_f32_round_trip(order: Order, value: float) -> None:
    """A float32 comes back as the same float32 (printed in its shortest form)."""
    decoded = decode_words(encode_value(value, DataType.F32, order), DataType.F32, order)
    assert encode_value(decoded, DataType.F32, order) == encode_value(value, DataType.F32, order)


@given(st.sampled_from(list(Order)), st.floats(allow_nan=False, allow_infinity=False))
def test_f64_round_trip(order: Order, value: float) -> None:
    assert decode_words(encode_value(value, DataType.F64, order), DataType.F64, order) == value


@pytest.mark.parametrize(("value", "expected"), [(230.10000610351562, 230.1), (0.5450000166893005, 0.545),
                                                 (0.0, 0.0), (1e-45, 1e-45)])
def test_shortest_f32(value: float, expected: float) -> None:
    assert shortest_f32(value) == expected


def test_shortest_f32_keeps_nan() -> None:
    assert math.isnan(shortest_f32(float("nan")))


@pytest.mark.parametrize(("scale", "places"), [(0.1, 1), (0.01, 2), (0.001, 3), (1.0, 0), (10.0, 0), (1e-05, 5),
                                               (0.25, 2)])
def test_decimals_of(scale: float, places: int) -> None:
    assert decimals_of(scale) == places
