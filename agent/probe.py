"""Read every point of a profile once from one device: the integrator's first contact.

Returns data (a ProbeReport); the CLI formats it. When nothing answers, the report says what was
tried and what usually causes that, instead of a bare timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.config.profiles import Profile
from agent.drivers.bus import Bus
from agent.drivers.readers import build_reader
from agent.drivers.registers import decode_words
from agent.drivers.urls import BusSpec, Transport, parse_bus_url
from agent.types import DataType, Order, Quality, Reading


@dataclass(frozen=True)
class ProbeReport:
    url: str
    spec: BusSpec
    unit: int
    timeout: float
    readings: list[Reading]
    requests: int
    error: str = ""
    address: str = ""  # DL/T 645 / CJ/T 188: the meter read (given, or found with read-address)

    @property
    def who(self) -> str:
        return f"meter {self.address or '(address unknown)'}" if self.spec.protocol != "modbus" else f"unit {self.unit}"

    @property
    def answered(self) -> bool:
        return any(r.quality is not Quality.TIMEOUT for r in self.readings)

    def hint(self, profile: Profile) -> str:
        """Why a device usually stays silent, for this kind of link."""
        serial = profile.defaults.serial
        if self.spec.protocol != "modbus":
            causes = [f"wrong meter address (tried {self.address or 'read-address to the broadcast address'}; "
                      "write it as on the nameplate; without --address the meter must be alone on the line)",
                      f"wrong baud rate or parity (tried {self.spec.serial or 'the converter settings'}; "
                      f"profile default {serial.baudrate} {serial.bytesize}{serial.parity}{serial.stopbits})",
                      "the meter's port is set to another protocol (Modbus instead of DL/T 645)",
                      "RS-485 A and B swapped, or no common ground"]
        elif self.spec.transport is Transport.TCP:
            causes = ["host or port wrong, or a firewall in between",
                      "Modbus TCP disabled on the device (Huawei: enable it with the installer account)",
                      f"wrong unit id (tried {self.unit}; profile default {profile.defaults.unit_id}; "
                      "Huawei inverter AP uses 0, SMA SunSpec 126)",
                      "the device accepts one client at a time and another one is connected"]
        else:
            causes = [f"wrong baud rate or parity (tried {self.spec.serial}; profile default "
                      f"{serial.baudrate} {serial.bytesize}{serial.parity}{serial.stopbits})",
                      f"wrong unit id (tried {self.unit}; profile default {profile.defaults.unit_id})",
                      "RS-485 A and B swapped (some vendors label them reversed), or no common ground",
                      "another master on the same bus, or the port is the wrong one"]
        return "\n".join(f"  - {c}" for c in causes)


async def probe(url: str, unit: int, profile: Profile, timeout: float | None = None,
                address: str | None = None) -> ProbeReport:
    """Poll the device once with the profile's timing (optionally another timeout). A DL/T 645 or
    CJ/T 188 meter without `address` is first asked for it with the read-address broadcast."""
    spec = parse_bus_url(url, profile.defaults.serial.settings())
    timing = profile.timing()
    if timeout is not None:
        timing = replace(timing, timeout=timeout)
    bus = Bus("probe", spec)
    try:
        if profile.model.protocol != "modbus" and address is None:
            from agent.meters.probe import read_address

            address = await read_address(spec, profile, timing.timeout, bus)
            if address is None:
                return ProbeReport(url, spec, unit, timing.timeout, [], 1,
                                   "no single meter answered read-address: give --address")
        reader = build_reader("probe", profile, bus, timing, unit=unit, address=address, offline_after=1_000_000)
        result = await reader.poll()
    finally:
        await bus.close()
    sunspec = getattr(reader, "sunspec", None)
    error = result.error or (sunspec.describe() if sunspec else "")
    return ProbeReport(url, spec, unit, timing.timeout, result.readings, reader.stats.requests, error, address or "")


def all_orders(reading: Reading, data_type: DataType) -> dict[str, float | int | str]:
    """The raw registers decoded in each of the four orders: for "which order is it?" by eye."""
    if len(reading.raw) < 2 or data_type in (DataType.STRING, DataType.ENUM, DataType.BITS):
        return {}
    return {order.value: decode_words(reading.raw, data_type, order) for order in Order}
