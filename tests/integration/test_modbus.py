"""The acquisition stack against real pymodbus servers: TCP on loopback, RTU over socat PTYs,
RTU frames over TCP. Nothing is mocked: Bus -> pymodbus client -> socket/PTY -> pymodbus server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from agent.config import ProfileLibrary
from agent.drivers.bus import Backoff, Bus
from agent.drivers.device import DeviceReader, Health
from agent.drivers.plan import plan_reads
from agent.drivers.pymodbus_adapter import Faults
from agent.drivers.urls import BusSpec, Transport
from agent.errors import DeviceException, DeviceTimeout
from agent.simulate import SimulatedDevice
from agent.types import Quality
from tests.conftest import SimThread, rtu_spec

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
WIDE = {"f32": 2, "i32": 2, "u32": 2, "f64": 4, "i64": 4, "u64": 4}
SAMPLE = {"f32": -1234.5, "i32": -123456789, "u32": 4000000000, "f64": 12345.678901234,
          "i64": -5000000000123, "u64": 18000000000000000000}


def zoo_profile() -> str:
    """A profile with every data type in every order, laid out back to back."""
    lines = ["vendor: Test", "model: zoo", "source: tests", "defaults: {register: holding, max_registers: 125}",
             "points:"]
    address = 0
    for data_type, words in WIDE.items():
        for order in ORDERS:
            lines.append(f"  {data_type}_{order.lower()}: {{address: {address}, type: {data_type}, order: {order}}}")
            address += words
    lines += [
        f"  u16_plain: {{address: {address}, type: u16}}",
        f"  i16_scaled: {{address: {address + 1}, type: i16, scale: 0.1}}",
        f"  i16_swapped: {{address: {address + 2}, type: i16, order: BADC}}",
        f"  name: {{address: {address + 3}, type: string, length: 4}}",
        f"  state: {{address: {address + 7}, type: enum, values: {{1: running, 2: fault}}}}",
        f"  flags: {{address: {address + 8}, type: bits, bits: {{0: a, 1: b}}}}",
        "  u32_input: {address: 0, type: u32, register: input}",
        "  relay: {address: 3, register: coil}",
        "  door_open: {address: 17, register: discrete}",
    ]
    return "\n".join(lines) + "\n"


def zoo_values() -> dict[str, object]:
    values: dict[str, object] = {f"{t}_{o.lower()}": SAMPLE[t] for t in WIDE for o in ORDERS}
    values.update(u16_plain=65000, i16_scaled=-12.3, i16_swapped=-2, name="EA-7", state="fault", flags=5,
                  u32_input=123456, relay=1, door_open=1)
    return values


@pytest.fixture
def zoo(write_profile) -> ProfileLibrary:  # type: ignore[no-untyped-def]
    return write_profile("test/zoo", zoo_profile())


async def poll_once(spec: BusSpec, unit: int, lib: ProfileLibrary, ref: str, **timing: float) -> tuple[dict, Bus]:
    profile = lib.load(ref)
    base = profile.timing()
    bus = Bus("t", spec, Backoff(0.05, 0.2))
    reader = DeviceReader("dev", unit, profile.points, replace(base, **timing), bus)
    try:
        result = await reader.poll()
    finally:
        await bus.close()
    return {r.point: r for r in result.readings}, bus


def assert_zoo(readings: dict) -> None:
    expected = zoo_values()
    assert set(readings) == set(expected)
    for name, value in expected.items():
        reading = readings[name]
        assert reading.quality is Quality.OK, (name, reading)
        if name.startswith("f32"):
            assert reading.value == pytest.approx(value, rel=1e-7), name
        else:
            assert reading.value == value, name


def test_every_type_and_order_over_tcp(sim: SimThread, zoo: ProfileLibrary) -> None:
    """Values served by a pymodbus TCP server come back exactly, for every type and order."""
    spec, _ = sim.tcp({5: SimulatedDevice(zoo.load("test/zoo"), zoo_values(), moving=False)})
    readings, bus = asyncio.run(poll_once(spec, 5, zoo, "test/zoo"))
    assert_zoo(readings)
    # the wire words, checked by hand against IEEE 754: -1234.5 = 0xC49A5000
    assert readings["f32_abcd"].raw == (0xC49A, 0x5000)
    assert readings["f32_cdab"].raw == (0x5000, 0xC49A)
    assert readings["f32_badc"].raw == (0x9AC4, 0x0050)
    assert readings["f32_dcba"].raw == (0x0050, 0x9AC4)
    assert bus.transactions == 4  # holding block, input, coil, discrete


def test_every_type_and_order_over_rtu(sim: SimThread, zoo: ProfileLibrary, socat_pair: tuple[str, str]) -> None:
    """The same over RTU framing on a pseudo-terminal pair (an RS-485 line on one machine)."""
    device_end, agent_end = socat_pair
    sim.serve(rtu_spec(device_end), {7: SimulatedDevice(zoo.load("test/zoo"), zoo_values(), moving=False)})
    readings, _ = asyncio.run(poll_once(rtu_spec(agent_end), 7, zoo, "test/zoo"))
    assert_zoo(readings)


def test_every_type_and_order_rtu_over_tcp(sim: SimThread, zoo: ProfileLibrary) -> None:
    """RTU frames through a serial-to-Ethernet converter (rtu+tcp://)."""
    spec, _ = sim.tcp({9: SimulatedDevice(zoo.load("test/zoo"), zoo_values(), moving=False)}, rtu_framing=True)
    assert spec.transport is Transport.RTU_OVER_TCP
    readings, _ = asyncio.run(poll_once(spec, 9, zoo, "test/zoo"))
    assert_zoo(readings)


def test_sdm630_full_poll_is_two_requests(sim: SimThread, library: ProfileLibrary) -> None:
    """21 points, two even-aligned reads on the wire (the simulator refuses odd or oversize reads)."""
    spec, _ = sim.tcp({1: SimulatedDevice(library.load("eastron/sdm630"))})
    readings, bus = asyncio.run(poll_once(spec, 1, library, "eastron/sdm630"))
    assert all(r.quality is Quality.OK for r in readings.values())
    assert len(readings) == 21
    assert bus.transactions == 2


def test_an_exchange_goes_on_after_an_exception_and_stops_at_a_timeout(sim: SimThread, library: ProfileLibrary) -> None:
    """A device's whole poll is one exchange: an exception response is an answer, so the next
    request still goes out; silence ends the exchange, so a dead unit costs one timeout per poll."""
    profile = library.load("eastron/sdm630")
    spec, _ = sim.tcp({1: SimulatedDevice(profile, missing={"energy_export"}), 2: SimulatedDevice(profile)},
                      Faults(silent={2}))
    plan = plan_reads(list(profile.points.values()), profile.timing())
    timing = replace(profile.timing(), timeout=0.2)

    async def scenario() -> tuple[list, list, int]:
        bus = Bus("t", spec)
        refused_then_read = await bus.exchange(1, plan, timing)
        silent = await bus.exchange(2, plan, timing)
        await bus.close()
        return refused_then_read, silent, bus.transactions

    refused_then_read, silent, transactions = asyncio.run(scenario())
    assert [type(o.error) for o in refused_then_read] == [DeviceException, type(None)]
    assert refused_then_read[0].error.code == 2 and len(refused_then_read[1].words) == plan[1].count
    assert len(silent) == 1 and isinstance(silent[0].error, DeviceTimeout)
    assert transactions == 3  # the silent unit's second request never went out


def test_exception_2_split_keeps_the_rest_and_is_remembered(sim: SimThread, library: ProfileLibrary) -> None:
    """A meter without the export register (like some EM24s): the block answers exception 2, every
    other point still reads in the same poll, the missing one is unavailable, and the next poll
    does not pay for the split again."""
    profile = library.load("eastron/sdm630")
    spec, _ = sim.tcp({1: SimulatedDevice(profile, missing={"energy_export"}, moving=False)})

    async def scenario() -> tuple[list, list, list[int]]:
        bus = Bus("t", spec)
        reader = DeviceReader("m", 1, profile.points, profile.timing(), bus)
        counts = []
        first = await reader.poll()
        counts.append(bus.transactions)
        second = await reader.poll()
        counts.append(bus.transactions - counts[0])
        await bus.close()
        return first.readings, second.readings, counts

    first, second, (first_requests, second_requests) = asyncio.run(scenario())
    for readings in (first, second):
        by_point = {r.point: r for r in readings}
        assert by_point["energy_export"].quality is Quality.UNAVAILABLE
        assert by_point["energy_export"].detail == 2
        ok = [r for r in readings if r.point != "energy_export"]
        assert len(ok) == 20 and all(r.quality is Quality.OK for r in ok)
        assert by_point["voltage_l1"].value == 230.0
    assert first_requests == 1 + 17 + 1  # the refused block, its 17 points alone, the 0x156 block
    assert second_requests == 2  # 0x00..0x49 without the missing register, and the 0x156 block


def test_silent_device_times_out_then_goes_offline_and_comes_back(sim: SimThread, library: ProfileLibrary) -> None:
    profile = library.load("eastron/sdm630")
    faults = Faults(silent={1})
    spec, _ = sim.tcp({1: SimulatedDevice(profile)}, faults)

    async def scenario() -> list:
        bus = Bus("t", spec)
        timing = replace(profile.timing(), timeout=0.2)
        reader = DeviceReader("m", 1, profile.points, timing, bus, backoff=Backoff(0.3, 0.3))
        results = [await reader.poll() for _ in range(4)]  # 3 failures -> offline; 4th skipped
        faults.silent.clear()
        await asyncio.sleep(0.35)
        results.append(await reader.poll())  # re-probe succeeds -> online, full poll
        await bus.close()
        return [results, reader.stats]

    results, stats = asyncio.run(scenario())
    assert all(r.quality is Quality.TIMEOUT for r in results[0].readings)
    assert len(results[0].readings) == 21  # every point accounted for, with the reason
    assert [r.transition for r in results] == [None, None, Health.OFFLINE, None, Health.ONLINE]
    assert results[3].skipped and not results[3].readings
    assert stats.timeouts == 3  # one timeout per failed poll, not one per request
    assert all(r.quality is Quality.OK for r in results[4].readings) and len(results[4].readings) == 21


def test_silent_device_does_not_slow_its_healthy_neighbour(sim: SimThread, library: ProfileLibrary,
                                                           socat_pair: tuple[str, str]) -> None:
    """Two meters on one RS-485 line, one of them dead: the dead one costs the line a timeout per
    re-probe (backoff), so the healthy one keeps polling on schedule."""
    device_end, agent_end = socat_pair
    profile = library.load("eastron/sdm630")
    faults = Faults(silent={2})
    sim.serve(rtu_spec(device_end), {1: SimulatedDevice(profile), 2: SimulatedDevice(profile)}, faults)
    interval, duration = 0.5, 6.0

    async def loop(reader: DeviceReader, outcomes: list, end: float) -> None:
        next_tick = time.monotonic()
        while next_tick < end:
            outcomes.append(await reader.poll())
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))

    async def scenario() -> tuple[list, list, DeviceReader]:
        bus = Bus("line1", rtu_spec(agent_end))
        timing = replace(profile.timing(), timeout=0.3)
        healthy = DeviceReader("healthy", 1, profile.points, timing, bus)
        dead = DeviceReader("dead", 2, profile.points, timing, bus)
        good, bad = [], []
        end = time.monotonic() + duration
        await asyncio.gather(loop(healthy, good, end), loop(dead, bad, end))
        await bus.close()
        return good, bad, dead

    good, bad, dead = asyncio.run(scenario())
    scheduled = int(duration / interval)
    assert len(good) >= scheduled - 1
    assert all(r.quality is Quality.OK for result in good for r in result.readings)
    assert dead.health is Health.OFFLINE
    # 3 polls to declare it offline, then re-probes at 2 s, 4 s ... : a handful of timeouts, not one per poll
    assert dead.stats.timeouts <= 5, dead.stats
    assert sum(result.skipped for result in bad) >= scheduled // 2


def test_bus_reconnects_after_the_server_restarts(sim: SimThread, library: ProfileLibrary) -> None:
    """A converter power-cycles: reads fail fast while it is away and resume by themselves."""
    profile = library.load("eastron/sdm630")
    spec, handle = sim.tcp({1: SimulatedDevice(profile)})

    async def scenario() -> list[Quality]:
        bus = Bus("t", spec, Backoff(0.1, 0.2))
        reader = DeviceReader("m", 1, profile.points, profile.timing(), bus, offline_after=1000)
        qualities = [(await reader.poll()).readings[0].quality]
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(handle.stop(), sim.loop))
        qualities.append((await reader.poll()).readings[0].quality)
        sim.serve(BusSpec(Transport.TCP, "127.0.0.1", spec.port), {1: SimulatedDevice(profile)})
        for _ in range(50):
            await asyncio.sleep(0.05)
            quality = (await reader.poll()).readings[0].quality
            if quality is Quality.OK:
                break
        qualities.append(quality)
        await bus.close()
        return qualities

    assert asyncio.run(scenario()) == [Quality.OK, Quality.TIMEOUT, Quality.OK]


def test_pause_after_connect_is_honoured(sim: SimThread, library: ProfileLibrary) -> None:
    """Huawei dongles need a pause after connecting; the first request waits for it."""
    spec, _ = sim.tcp({1: SimulatedDevice(library.load("huawei/sun2000"))})
    started = time.monotonic()
    readings, _ = asyncio.run(poll_once(spec, 1, library, "huawei/sun2000"))
    assert time.monotonic() - started >= 1.0  # the profile's pause; a lower bound: sleeps never end early
    assert readings["inverter_state"].value == "on_grid"
    assert readings["inverter_state"].detail == 0x0200


def test_simulated_huawei_ignores_requests_right_after_connect(sim: SimThread, library: ProfileLibrary) -> None:
    """The simulator keeps Huawei's quirk: without the profile's pause the first request goes unanswered."""
    spec, _ = sim.tcp({1: SimulatedDevice(library.load("huawei/sun2000"), moving=False)})
    hasty, _ = asyncio.run(poll_once(spec, 1, library, "huawei/sun2000", pause_after_connect=0.0, timeout=0.3))
    assert all(r.quality is Quality.TIMEOUT for r in hasty.values())
    patient, _ = asyncio.run(poll_once(spec, 1, library, "huawei/sun2000"))
    assert all(r.quality is Quality.OK for r in patient.values())


def test_device_going_silent_during_a_split_is_a_timeout_not_a_crash(sim: SimThread, library: ProfileLibrary) -> None:
    """The block answers exception 2 (a missing register), then every single read times out: the
    poll still returns every point with a reason, and nothing is learned from the half-done split."""
    profile = library.load("eastron/sdm630")
    slow = SimulatedDevice(profile, missing={"energy_export"}, moving=False, delay=0.4)  # the block is refused at once
    spec, _ = sim.tcp({1: slow})

    async def scenario() -> tuple[list, object, int]:
        bus = Bus("t", spec)
        reader = DeviceReader("m", 1, profile.points, replace(profile.timing(), timeout=0.1), bus)
        result = await reader.poll()
        await bus.close()
        return result.readings, reader.learned, len(reader.plan)

    readings, learned, requests = asyncio.run(scenario())
    by_point = {r.point: r for r in readings}
    assert set(by_point) == set(profile.points)
    block = [name for name in by_point if profile.points[name].address < 0x100]
    assert all(by_point[name].quality is Quality.TIMEOUT for name in block)
    assert not learned.isolated and not learned.barriers and requests == 2
