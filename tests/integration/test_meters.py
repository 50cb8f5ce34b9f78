"""DL/T 645 and CJ/T 188 against real simulators: TCP on loopback (a serial-to-Ethernet converter)
and serial lines over socat PTYs. Nothing is mocked: Bus -> MeterLink -> socket/PTY -> meter server.
The independent `dlt645` package's meter server is read by the agent, and its client reads ours."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from agent.config import ProfileLibrary
from agent.drivers.bus import Bus
from agent.drivers.device import PollResult
from agent.drivers.health import Health
from agent.drivers.readers import build_reader
from agent.drivers.urls import BusSpec, SerialSettings, Transport
from agent.meters import dlt645
from agent.meters.bcd import address_to_wire
from agent.meters.reader import MeterReader
from agent.meters.server import MeterFaults
from agent.simulate import SimulatedDevice
from agent.types import Quality
from testkit.line import PacedLine
from tests.conftest import SimThread

LIBRARY = ProfileLibrary()
ADDRESS = "000000123456"
WATER_ADDRESS = "00000000000012"


class Clock:
    """A clock the test moves: backoff without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now


def poll(reader: MeterReader, times: int = 1) -> list[PollResult]:
    async def run() -> list[PollResult]:
        try:
            return [await reader.poll() for _ in range(times)]
        finally:
            await reader.bus.close()
    return asyncio.run(run())


def reader_for(ref: str, spec: BusSpec, address: str, **kwargs: object) -> MeterReader:
    profile = LIBRARY.load(ref)
    reader = build_reader("m", profile, Bus("line", spec), profile.timing(), address=address, **kwargs)  # type: ignore[arg-type]
    assert isinstance(reader, MeterReader)
    return reader


def values(result: PollResult) -> dict[str, object]:
    return {r.point: r.value for r in result.readings if r.quality is Quality.OK}


def test_three_phase_meter_over_tcp(sim: SimThread) -> None:
    meter = SimulatedDevice(LIBRARY.load("dlt645/three-phase"), moving=False)
    spec, handle = sim.meters_tcp("dlt645", {ADDRESS: meter})
    reader = reader_for("dlt645/three-phase", spec, ADDRESS)
    (result,) = poll(reader)
    assert values(result) == meter.served
    assert reader.stats.requests == handle.line.requests == 8  # 5 blocks + 3 single DIs


@pytest.mark.parametrize(("protocol", "ref", "address"), [
    ("dlt645", "dlt645/three-phase", ADDRESS),
    ("cjt188", "cjt188/heat-meter", "12345678901234"),
])
def test_serial_line_over_a_pty(sim: SimThread, socat_pair: tuple[str, str], protocol: str, ref: str,
                                address: str) -> None:
    device_end, agent_end = socat_pair
    meter = SimulatedDevice(LIBRARY.load(ref), moving=False)
    serial = SerialSettings(2400, "E", 1, 8)
    sim.meters(BusSpec(Transport(protocol), device_end, 0, serial), {address: meter})
    (result,) = poll(reader_for(ref, BusSpec(Transport(protocol), agent_end, 0, serial), address))
    assert values(result) == meter.served


NOISY_LINE = {
    "00 before each answer": lambda data: b"\x00" + data,
    "random bytes before and after": lambda data: b"\x55\x68\x01" + data + b"\x16\x00",
}


@pytest.mark.parametrize("noise", NOISY_LINE.values(), ids=NOISY_LINE.keys())
@pytest.mark.parametrize(("protocol", "ref", "address"), [
    ("dlt645", "dlt645/single-phase", ADDRESS),
    ("cjt188", "cjt188/water-meter", WATER_ADDRESS),
])
def test_noise_around_answers_on_a_paced_serial_line(sim: SimThread, protocol: str, ref: str, address: str,
                                                     noise: object) -> None:
    """The line adds noise to everything the meter sends (a 00 as a converter turns on, junk with
    a 68 and a 16 in it before and after): every answer is still found, N polls of N."""
    line = PacedLine(9600, noise=noise)  # type: ignore[arg-type]
    try:
        meter = SimulatedDevice(LIBRARY.load(ref), moving=False)
        serial = SerialSettings(9600, "E", 1, 8)
        sim.meters(BusSpec(Transport(protocol), line.device_port, 0, serial), {address: meter})
        results = poll(reader_for(ref, BusSpec(Transport(protocol), line.agent_port, 0, serial), address), times=3)
    finally:
        line.close()
    assert [values(r) for r in results] == [meter.served] * 3


def test_three_meters_on_one_line_each_answer_their_own(sim: SimThread, socat_pair: tuple[str, str]) -> None:
    device_end, agent_end = socat_pair
    serial = SerialSettings(2400, "E", 1, 8)
    meters = {f"0000000000{i:02d}": SimulatedDevice(LIBRARY.load("dlt645/single-phase"), moving=False,
                                                     overrides={"energy_import": 100.0 * i}) for i in (1, 2, 3)}
    sim.meters(BusSpec(Transport.DLT645, device_end, 0, serial), meters)
    bus = Bus("line", BusSpec(Transport.DLT645, agent_end, 0, serial))
    profile = LIBRARY.load("dlt645/single-phase")
    readers = [build_reader(a, profile, bus, profile.timing(), address=a) for a in meters]

    async def run() -> list[PollResult]:
        try:
            return list(await asyncio.gather(*(r.poll() for r in readers)))
        finally:
            await bus.close()
    results = asyncio.run(run())
    assert [values(r)["energy_import"] for r in results] == [100.0, 200.0, 300.0]


FOREIGN = dlt645.request(address_to_wire("999999999999", 12), __import__("agent.meters.messages",
                                                                         fromlist=["MeterRequest"]).MeterRequest(0x02010100))


@pytest.mark.parametrize("noise", [b"\x00", b"\x00\x68\x13\xfe", FOREIGN, FOREIGN[:9]],
                         ids=["00", "random", "another master", "truncated"])
def test_noise_on_the_line_does_not_desynchronise(sim: SimThread, noise: bytes) -> None:
    meter = SimulatedDevice(LIBRARY.load("dlt645/single-phase"), moving=False)
    spec, _ = sim.meters_tcp("dlt645", {ADDRESS: meter}, MeterFaults(noise=noise))
    results = poll(reader_for("dlt645/single-phase", spec, ADDRESS), times=2)
    assert all(values(r) == meter.served for r in results)


def test_a_corrupt_answer_is_a_decode_error_that_says_what_came_back(sim: SimThread) -> None:
    meter = SimulatedDevice(LIBRARY.load("dlt645/single-phase"), moving=False)
    spec, _ = sim.meters_tcp("dlt645", {ADDRESS: meter}, MeterFaults(corrupt={ADDRESS}))
    reader = reader_for("dlt645/single-phase", spec, ADDRESS)
    reader.timing = reader.timing.__class__(timeout=0.3)
    (result,) = poll(reader)
    assert {r.quality for r in result.readings} == {Quality.DECODE_ERROR}
    assert "no valid answer" in result.error and "received" in result.error and "68 56 34 12" in result.error
    assert reader.stats.requests == 1  # the rest of the poll is not sent


def test_an_unplugged_meter_goes_offline_and_comes_back(sim: SimThread) -> None:
    meter = SimulatedDevice(LIBRARY.load("cjt188/water-meter"), moving=False)
    faults = MeterFaults(silent={WATER_ADDRESS})
    spec, _ = sim.meters_tcp("cjt188", {WATER_ADDRESS: meter}, faults)
    clock = Clock()
    reader = reader_for("cjt188/water-meter", spec, WATER_ADDRESS, offline_after=3)
    reader.clock = reader._health.clock = clock
    reader.timing = reader.timing.__class__(timeout=0.2)

    async def run() -> list[PollResult]:
        results = [await reader.poll() for _ in range(4)]
        faults.silent.clear()
        results.append(await reader.poll())  # still backing off: nothing sent
        clock.now += 2.0
        results.append(await reader.poll())
        await reader.bus.close()
        return results
    results = asyncio.run(run())
    assert [r.transition for r in results[:3]] == [None, None, Health.OFFLINE]
    assert all(r.readings[0].quality is Quality.TIMEOUT for r in results[:3])
    assert results[4].skipped
    assert results[5].transition is Health.ONLINE and values(results[5]) == meter.served


def test_blocks_refused_are_learned_and_read_di_by_di(sim: SimThread) -> None:
    meter = SimulatedDevice(LIBRARY.load("dlt645/three-phase"), moving=False)
    spec, _handle = sim.meters_tcp("dlt645", {ADDRESS: meter}, MeterFaults(no_blocks=True))
    reader = reader_for("dlt645/three-phase", spec, ADDRESS)
    first, second = poll(reader, times=2)
    assert values(first) == values(second) == meter.served
    assert reader.refused == {0x0001FF00, 0x0002FF00, 0x0201FF00, 0x0202FF00, 0x0203FF00}
    assert reader.stats.requests == (8 + 20) + 23  # first poll: 5 refused blocks, then their 20 points alone


def test_a_point_the_meter_lacks_is_unavailable(sim: SimThread) -> None:
    meter = SimulatedDevice(LIBRARY.load("dlt645/single-phase"), moving=False, missing={"frequency"})
    spec, _ = sim.meters_tcp("dlt645", {ADDRESS: meter})
    reader = reader_for("dlt645/single-phase", spec, ADDRESS)
    first, second = poll(reader, times=2)
    for result in (first, second):
        by_point = {r.point: r for r in result.readings}
        assert by_point["frequency"].quality is Quality.UNAVAILABLE and by_point["frequency"].detail == 0x02
        assert by_point["voltage_l1"].quality is Quality.OK
    assert reader.stats.requests == 7 + 6  # the missing DI is not asked again in the next poll


# ------------------------------------------------------------------ the independent implementation


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PACKAGE_VALUES = {"energy_import": 12345.67, "energy_export": 78.9, "voltage_l1": 231.4, "current_l1": -5.432,
                  "active_power": -1234.5, "power_factor": 0.987, "frequency": 49.98}


def package_meter(server):  # type: ignore[no-untyped-def]
    """The package's meter holding PACKAGE_VALUES at ADDRESS (it takes the address in wire order)."""
    server.set_address(bytes(address_to_wire(ADDRESS, 12)))
    server.set_00(0x00010000, 12345.67)
    server.set_00(0x00020000, 78.9)
    server.set_02(0x02010100, 231.4)
    server.set_02(0x02020100, -5.432)
    server.set_02(0x02030000, -1.2345)  # kW
    server.set_02(0x02060000, 0.987)
    server.set_02(0x02800002, 49.98)
    return server


def test_the_agent_reads_the_dlt645_package_meter_server() -> None:
    from dlt645 import MeterServerService

    port = free_port()
    server = package_meter(MeterServerService.new_tcp_server("127.0.0.1", port, 5.0))
    server.start()
    try:
        (result,) = poll(reader_for("dlt645/single-phase", BusSpec(Transport.DLT645_TCP, "127.0.0.1", port), ADDRESS))
    finally:
        server.stop()
    assert values(result) == PACKAGE_VALUES


def test_the_agent_reads_the_dlt645_package_meter_server_on_a_serial_line(socat_pair: tuple[str, str]) -> None:
    from dlt645 import MeterServerService

    device_end, agent_end = socat_pair
    server = package_meter(MeterServerService.new_rtu_server(device_end, 8, 1, 2400, "E", 1.0))
    assert server.start()
    try:
        spec = BusSpec(Transport.DLT645, agent_end, 0, SerialSettings(2400, "E", 1, 8))
        results = poll(reader_for("dlt645/single-phase", spec, ADDRESS), times=2)
    finally:
        server.stop()
    assert all(values(r) == PACKAGE_VALUES for r in results)


def test_the_dlt645_package_client_reads_the_agent_simulator(sim: SimThread) -> None:
    from dlt645 import MeterClientService

    meter = SimulatedDevice(LIBRARY.load("dlt645/three-phase"), moving=False,
                            overrides={"energy_import": 4321.09, "voltage_l2": 228.7, "active_power": -2500.0})
    spec, _ = sim.meters_tcp("dlt645", {ADDRESS: meter})
    client = MeterClientService.new_tcp_client("127.0.0.1", spec.port, timeout=2.0)
    client.set_address(address_to_wire(ADDRESS, 12).hex())  # the package prints and takes the wire order
    try:
        energy = client.read_00(0x00010000)
        voltage = client.read_02(0x02010200)
        power = client.read_02(0x02030000)
    finally:
        client.disconnect()
    assert (energy.value, voltage.value, power.value) == (4321.09, 228.7, -2.5)


def test_probe_finds_the_address_with_read_address(sim: SimThread, tmp_path: Path) -> None:
    from agent.meters.probe import read_address

    meter = SimulatedDevice(LIBRARY.load("dlt645/single-phase"), moving=False)
    spec, _ = sim.meters_tcp("dlt645", {ADDRESS: meter})
    assert asyncio.run(read_address(spec, LIBRARY.load("dlt645/single-phase"))) == ADDRESS


def test_a_meter_lacking_a_point_still_goes_offline_when_unplugged(sim: SimThread) -> None:
    """Points known to be missing are reported unavailable without a request, but only while the
    meter answers: they must not make a silent meter look alive."""
    meter = SimulatedDevice(LIBRARY.load("dlt645/single-phase"), moving=False, missing={"frequency"})
    faults = MeterFaults()
    spec, _ = sim.meters_tcp("dlt645", {ADDRESS: meter}, faults)
    reader = reader_for("dlt645/single-phase", spec, ADDRESS)
    reader.timing = reader.timing.__class__(timeout=0.2)

    async def run() -> list[PollResult]:
        results = [await reader.poll()]
        faults.silent.add(ADDRESS)
        results += [await reader.poll() for _ in range(3)]
        await reader.bus.close()
        return results
    results = asyncio.run(run())
    assert reader.missing == {"frequency"}
    assert results[-1].transition is Health.OFFLINE
    assert {r.quality for r in results[1].readings} == {Quality.TIMEOUT}
