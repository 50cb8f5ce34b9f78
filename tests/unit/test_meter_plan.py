"""Meter planning and decoding by data identifier: blocks where the profile allows them, singles
after a refusal, offsets inside multi-value answers, scale and unit codes, and the simulator's
encoder as the decoder's inverse."""

from __future__ import annotations

import pytest

from agent.config import ProfileLibrary
from agent.meters.image import NO_DATA, answer_for
from agent.meters.plan import Block, decode_answer, plan_requests
from agent.types import Quality

LIBRARY = ProfileLibrary()
THREE_PHASE = LIBRARY.load("dlt645/three-phase")
HEAT = LIBRARY.load("cjt188/heat-meter")
BLOCKS = tuple(Block(b.di, b.first) for b in THREE_PHASE.model.blocks)


def test_blocks_cover_their_members() -> None:
    plan = plan_requests(THREE_PHASE.points.values(), BLOCKS)
    by_di = {p.request.di: dict(p.offsets) for p in plan}
    assert by_di[0x0201FF00] == {"voltage_l1": 0, "voltage_l2": 2, "voltage_l3": 4}
    assert by_di[0x0203FF00] == {"active_power": 0, "active_power_l1": 3, "active_power_l2": 6, "active_power_l3": 9}
    assert by_di[0x0001FF00]["energy_import_t4"] == 16
    assert len(plan) == 8  # 5 blocks + reactive power + power factor + frequency
    assert sorted(n for p in plan for n in p.request.points) == sorted(THREE_PHASE.points)


def test_refused_blocks_fall_back_to_single_dis() -> None:
    refused = frozenset(b.di for b in BLOCKS)
    plan = plan_requests(THREE_PHASE.points.values(), BLOCKS, refused)
    assert len(plan) == len(THREE_PHASE.points) == 23
    assert all(len(p.request.points) == 1 and p.offsets[0][1] == 0 for p in plan)


def test_without_blocks_one_request_per_di() -> None:
    assert len(plan_requests(THREE_PHASE.points.values())) == 23


def test_points_sharing_a_di_are_one_request() -> None:
    plan = plan_requests(HEAT.points.values())
    assert [p.request.di for p in plan] == [0x901F]
    assert dict(plan[0].offsets)["temperature_return"] == 28


def test_block_answers_decode_like_the_simulator_encodes_them() -> None:
    values = {"voltage_l1": 230.1, "voltage_l2": 231.2, "voltage_l3": 229.3,
              "active_power": -8600.5, "active_power_l1": 2900.0, "active_power_l2": 2750.1, "active_power_l3": 2950.2}
    plan = {p.request.di: p for p in plan_requests(THREE_PHASE.points.values(), BLOCKS)}
    for di in (0x0201FF00, 0x0203FF00):
        data = answer_for(di, THREE_PHASE.points.values(), values, BLOCKS)
        assert isinstance(data, bytes)
        decoded = decode_answer(plan[di], data, THREE_PHASE.points)
        assert {n: d.value for n, d in decoded.items()} == {n: values[n] for n in plan[di].request.points}


def test_kw_on_the_wire_is_w_in_the_reading() -> None:
    spec = THREE_PHASE.points["active_power"]
    plan = plan_requests([spec])[0]
    decoded = decode_answer(plan, bytes.fromhex("45 23 81"), THREE_PHASE.points)["active_power"]
    assert decoded.value == -1234.5 and decoded.quality is Quality.OK  # XX.XXXX, sign bit: -1.2345 kW


def test_unit_codes_are_converted() -> None:
    plan = plan_requests(HEAT.points.values())[0]
    values = {n: 12500.0 if n == "heat_power" else 1.0 for n in HEAT.points}
    data = bytearray(answer_for(0x901F, HEAT.points.values(), values))  # type: ignore[arg-type]
    data[5 + 4] = 0x11  # current heat in GJ instead of kWh
    data[5:9] = bytes.fromhex("00 01 00 00")  # 1.00 GJ
    decoded = decode_answer(plan, bytes(data), HEAT.points)
    assert decoded["heat_energy"].value == pytest.approx(277.777777778)
    assert decoded["heat_power"].value == 12500.0  # served as 12.50 kW
    data[5 + 4] = 0x2C  # m³ where energy belongs
    assert decode_answer(plan, bytes(data), HEAT.points)["heat_energy"].quality is Quality.DECODE_ERROR


@pytest.mark.parametrize(("data", "quality"), [
    (bytes.fromhex("78 56 34"), Quality.DECODE_ERROR),  # short
    (bytes.fromhex("7a 56 34 12"), Quality.DECODE_ERROR),  # not BCD
    (bytes.fromhex("78 56 34 12"), Quality.OK),
])
def test_malformed_values(data: bytes, quality: Quality) -> None:
    plan = plan_requests([THREE_PHASE.points["energy_import"]])[0]
    decoded = decode_answer(plan, data, THREE_PHASE.points)["energy_import"]
    assert decoded.quality is quality
    assert decoded.raw == tuple(data[:4])


def test_the_simulator_refuses_what_the_meter_lacks() -> None:
    assert answer_for(0x04000401, THREE_PHASE.points.values(), {}) == NO_DATA
    assert answer_for(0x02010100, THREE_PHASE.points.values(), {"voltage_l1": 1.0},
                      missing=frozenset({"voltage_l1"})) == NO_DATA


def test_what_the_simulator_records_is_what_the_wire_carries() -> None:
    from agent.meters.image import on_the_wire

    rounded = on_the_wire(HEAT.points, {"heat_power": 12345.678, "temperature_supply": 55.126, "volume_total": 1.0})
    assert rounded == {"heat_power": 12350.0, "temperature_supply": 55.13, "volume_total": 1.0}  # kW with 2 decimals
    rounded = on_the_wire(THREE_PHASE.points, {"voltage_l1": 230.123, "active_power": -8612.34567})
    assert rounded == {"voltage_l1": 230.1, "active_power": -8612.3}


def test_meter_points_travel_with_the_resolution_of_their_format() -> None:
    """The wire schema takes a point's decimals from `resolution`; BCD points get their format's."""
    model = THREE_PHASE.model.points
    resolutions = {n: model[n].resolution for n in ("voltage_l1", "current_l1", "active_power", "power_factor",
                                                    "energy_import")}
    assert resolutions == {"voltage_l1": 0.1, "current_l1": 0.001, "active_power": 0.1, "power_factor": 0.001,
                           "energy_import": 0.01}
