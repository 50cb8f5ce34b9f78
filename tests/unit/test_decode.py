"""Decoder: registers of one point -> value and quality; derived points."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.decode import BlockDecoder, Decoded, block_decoder, decode_point, derive
from agent.types import DataType, Order, PointSpec, Quality, ReadRequest, RegisterKind

H = RegisterKind.HOLDING


def spec(data_type: DataType = DataType.U16, words: int = 1, **kw: object) -> PointSpec:
    return PointSpec(kw.pop("name", "p"), kw.pop("register", H), 0, data_type, words, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("point", "words", "expected"), [
    (spec(scale=0.1), [2301], Decoded(230.1, raw=(2301,))),
    (spec(DataType.I16, scale=0.01), [0xFFFE], Decoded(-0.02, raw=(0xFFFE,))),
    (spec(offset=-40.0, scale=0.5), [100], Decoded(10.0, raw=(100,))),
    (spec(DataType.U32, 2, scale=0.01), [0x00BC, 0x614E], Decoded(123456.78, raw=(0x00BC, 0x614E))),
    # Huawei int32 "invalid" sentinel
    (spec(DataType.I32, 2, na=frozenset({0x7FFFFFFF})), [0x7FFF, 0xFFFF], Decoded(None, Quality.UNAVAILABLE,
                                                                                  raw=(0x7FFF, 0xFFFF))),
    # the sentinel is matched in value order, here for a word-swapped device
    (spec(DataType.U32, 2, order=Order.CDAB, na=frozenset({0xFFFFFFFF})), [0xFFFF, 0xFFFF],
     Decoded(None, Quality.UNAVAILABLE, raw=(0xFFFF, 0xFFFF))),
    # float NaN (SunSpec float "not implemented" 0x7FC00000) is unavailable even without a sentinel
    (spec(DataType.F32, 2), [0x7FC0, 0x0000], Decoded(None, Quality.UNAVAILABLE, raw=(0x7FC0, 0))),
    (spec(DataType.ENUM, values=((0x200, "on_grid"),)), [0x200], Decoded("on_grid", detail=0x200, raw=(0x200,))),
    (spec(DataType.ENUM, values=((0x200, "on_grid"),)), [0x999], Decoded("unknown_0x0999", detail=0x999, raw=(0x999,))),
    (spec(DataType.BITS), [0b101], Decoded(5, raw=(5,))),
    (spec(register=RegisterKind.COIL), [1], Decoded(1, raw=(1,))),
    # a short answer is a decode error, not a crash
    (spec(DataType.U32, 2), [1], Decoded(None, Quality.DECODE_ERROR, raw=(1,))),
])
def test_decode_point(point: PointSpec, words: list[int], expected: Decoded) -> None:
    assert decode_point(point, words) == expected
    whole_answer = ReadRequest(point.register, point.address, point.words, (point.name,))
    assert BlockDecoder(whole_answer, [point])(words) == {point.name: expected}


NUMBERS = [t for t in DataType if t not in (DataType.STRING, DataType.ENUM, DataType.BITS)]


@st.composite
def blocks(draw: st.DrawFn) -> tuple[ReadRequest, list[PointSpec], list[int]]:
    """A request covering a few points of random types, orders, sentinels and scales, and an answer."""
    specs, address = [], 0
    for index in range(draw(st.integers(1, 6))):
        address += draw(st.integers(0, 3))
        data_type = draw(st.sampled_from([*NUMBERS, DataType.BITS, DataType.ENUM]))
        words = data_type.words
        na = draw(st.frozensets(st.sampled_from([0, 0xFFFF, 0x8000, 0x7FFFFFFF, 0xFFFFFFFF]), max_size=2))
        specs.append(PointSpec(f"p{index}", H, address, data_type, words, draw(st.sampled_from(list(Order))),
                               scale=draw(st.sampled_from([1.0, 0.1, 0.001, 10.0])), na=na,
                               values=((1, "one"),) if data_type is DataType.ENUM else ()))
        address += words
    answer = draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0xFFFF, 0x7FC0, 0x8000])),
                           min_size=address, max_size=address))
    return ReadRequest(H, 0, address, tuple(s.name for s in specs)), specs, answer


@given(blocks())
def test_block_decoder_agrees_with_decode_point(block: tuple[ReadRequest, list[PointSpec], list[int]]) -> None:
    """The compiled fast path and the general one give the same value, quality and raw words."""
    request, specs, answer = block
    general = {s.name: decode_point(s, answer[s.address:s.end]) for s in specs}
    assert BlockDecoder(request, specs)(answer) == general


def dtsu_points() -> list[PointSpec]:
    return [
        PointSpec("ct_ratio", H, 6, DataType.U16, 1),
        PointSpec("pt_ratio", H, 7, DataType.U16, 1, scale=0.1),
        PointSpec("current_l1", H, 0x200C, DataType.F32, 2, scale=0.001, multiply_by=("ct_ratio",)),
        PointSpec("active_power", H, 0x2012, DataType.F32, 2, scale=0.1, multiply_by=("pt_ratio", "ct_ratio")),
    ]


def test_devices_with_one_plan_share_one_decoder() -> None:
    """100 identical meters hold one set of decoders (the unpackers of 4,000 points were 1.1 MB)."""
    specs = (PointSpec("v", H, 0, DataType.F32, 2), PointSpec("a", H, 2, DataType.F32, 2))
    request = ReadRequest(H, 0, 4, ("v", "a"))
    same = block_decoder(request, specs)
    assert block_decoder(ReadRequest(H, 0, 4, ("v", "a")), tuple(specs)) is same
    assert block_decoder(request, specs[:1]) is not same
    assert same([0x4366, 0x8000, 0x3F80, 0]) == BlockDecoder(request, specs)([0x4366, 0x8000, 0x3F80, 0])


def test_ct_pt_ratios_apply() -> None:
    """DTSU666 secondary values: I = raw x IrAt x 0.001, P = raw x (UrAt x 0.1) x IrAt x 0.1 (nymea, SensorsIot)."""
    points = dtsu_points()
    by_name = {p.name: p for p in points}
    decoded = {
        "ct_ratio": decode_point(by_name["ct_ratio"], [40]),  # 200/5 A CT
        "pt_ratio": decode_point(by_name["pt_ratio"], [10]),  # raw 10 = 1.0
        "current_l1": decode_point(by_name["current_l1"], [0x44FA, 0x0000]),  # 2000.0 -> 2 A secondary
        "active_power": decode_point(by_name["active_power"], [0x45BB, 0x8000]),  # 6000.0 -> 600 W secondary
    }
    result = derive(points, decoded)
    assert result["current_l1"].value == pytest.approx(80.0)
    assert result["active_power"].value == pytest.approx(24000.0)


def test_missing_ratio_makes_derived_point_unavailable() -> None:
    points = dtsu_points()
    decoded = {"ct_ratio": Decoded(None, Quality.TIMEOUT), "current_l1": Decoded(2.0, raw=(0x44FA, 0))}
    assert derive(points, decoded)["current_l1"].quality is Quality.UNAVAILABLE


def test_constants_stand_in_for_ratio_registers() -> None:
    points = dtsu_points()
    decoded = {"current_l1": decode_point(points[2], [0x44FA, 0x0000])}
    assert derive(points, decoded, {"ct_ratio": 100.0})["current_l1"].value == pytest.approx(200.0)


def test_sunspec_scale_factor() -> None:
    """SunSpec: value = raw x 10^SF; W = 12345 with W_SF = -1 is 1234.5 W."""
    w_sf = PointSpec("w_sf", H, 40085, DataType.I16, 1, hidden=True)
    w = PointSpec("active_power", H, 40084, DataType.I16, 1, scale_factor="w_sf")
    decoded = {"w_sf": decode_point(w_sf, [0xFFFF]), "active_power": decode_point(w, [12345])}
    assert derive([w_sf, w], decoded)["active_power"].value == pytest.approx(1234.5)
