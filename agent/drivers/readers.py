"""The reader for one configured device: a Modbus DeviceReader or a DL/T 645 / CJ/T 188 MeterReader.

The one place that knows which kind a profile needs, so the daemon and the commissioning commands
build either the same way and treat both alike (poll(), health, stats, device_id).
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.config.profiles import Profile
from agent.drivers.bus import Bus
from agent.drivers.device import DeviceReader
from agent.meters import cjt188, dlt645
from agent.meters.bcd import address_to_wire
from agent.meters.messages import MeterTarget
from agent.meters.plan import Block
from agent.meters.reader import MeterReader
from agent.types import DeviceTiming, PointSpec

Reader = DeviceReader | MeterReader


def meter_target(profile: Profile, address: str) -> MeterTarget:
    """The nameplate address of a meter of this profile, as the link addresses it."""
    model = profile.model
    digits = cjt188.ADDRESS_DIGITS if model.protocol == "cjt188" else dlt645.ADDRESS_DIGITS
    return MeterTarget(address_to_wire(address, digits), model.meter_type or 0, model.di_order == "msb_first")


def build_reader(device_id: str, profile: Profile, bus: Bus, timing: DeviceTiming, *, unit: int | None = None,
                 address: str | None = None, points: Mapping[str, PointSpec] | None = None,
                 constants: Mapping[str, float] | None = None, offline_after: int = 3) -> Reader:
    """A reader for `profile`'s protocol; `unit` for Modbus, `address` (nameplate order) for meters."""
    points = profile.points if points is None else points
    if profile.model.protocol == "modbus":
        return DeviceReader(device_id, unit if unit is not None else profile.defaults.unit_id, points, timing, bus,
                            dict(constants or {}), offline_after=offline_after, discovery=profile.model.discovery)
    if address is None:
        raise ValueError(f"a {profile.model.protocol} meter needs its address")
    blocks = tuple(Block(b.di, b.first) for b in profile.model.blocks)
    return MeterReader(device_id, meter_target(profile, address), points, timing, bus, blocks,
                       dict(constants or {}), offline_after=offline_after)
