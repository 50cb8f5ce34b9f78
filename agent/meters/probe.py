"""Commissioning a DL/T 645 or CJ/T 188 line: who is there.

`read_address` asks the line with the read-address command to the broadcast address; a meter
alone on its line answers with its own address (with several, their answers collide). `find_meters`
tries a list of addresses with one read of the profile's first data identifier each; any answer,
even "no requested data", means a meter is there. `search_wildcard` uses DL/T 645's shortened
addressing (AA bytes match any digits): it asks "anyone whose address ends in 00, 01, ... 99?",
takes a clean answer as one meter (the answer carries its full address), and narrows a collision
(garbled bytes: several meters) by one more byte, so N meters cost about 100 + 100 per collision
requests instead of 10^12 addresses. Meters without shortened addressing stay silent: use a list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from agent.config.profiles import Profile
from agent.drivers.bus import Bus
from agent.drivers.readers import meter_target
from agent.drivers.urls import BusSpec
from agent.errors import FrameError
from agent.meters import cjt188, dlt645
from agent.meters.bcd import address_from_wire
from agent.meters.messages import MeterRequest, MeterTarget, Op


async def read_address(spec: BusSpec, profile: Profile, timeout: float | None = None,
                       bus: Bus | None = None) -> str | None:
    """The nameplate address of the one meter on the line, or None when nothing answered clearly."""
    own = bus is None
    bus = bus or Bus("probe", spec)
    timing = profile.timing() if timeout is None else replace(profile.timing(), timeout=timeout)
    broadcast = cjt188.BROADCAST if profile.model.protocol == "cjt188" else dlt645.BROADCAST
    target = MeterTarget(broadcast, cjt188.ANY_TYPE, profile.model.di_order == "msb_first")
    try:
        (outcome,) = await bus.exchange(target, [MeterRequest(0, op=Op.READ_ADDRESS)], timing)
    finally:
        if own:
            await bus.close()
    reply = outcome.reply
    if reply is None or reply.error is not None:
        return None
    return address_from_wire(reply.value)


async def find_meters(spec: BusSpec, profile: Profile, addresses: Iterable[str],
                      timeout: float | None = None) -> list[str]:
    """Which of `addresses` (nameplate order) answer a read of the profile's first DI."""
    first = next((p.di for p in profile.points.values() if p.di is not None), None)
    if first is None:
        return []
    timing = profile.timing() if timeout is None else replace(profile.timing(), timeout=timeout)
    bus = Bus("scan", spec)
    found = []
    try:
        for address in addresses:
            (outcome,) = await bus.exchange(meter_target(profile, address), [MeterRequest(first)], timing)
            if outcome.reply is not None:
                found.append(address)
    finally:
        await bus.close()
    return found


async def search_wildcard(spec: BusSpec, profile: Profile, timeout: float | None = None) -> list[str]:
    """Nameplate addresses of the DL/T 645 meters found by shortened (AA wildcard) addressing."""
    first = next((p.di for p in profile.points.values() if p.di is not None), 0x00010000)
    timing = profile.timing() if timeout is None else replace(profile.timing(), timeout=timeout)
    bus = Bus("scan", spec)
    found: set[str] = set()

    async def narrow(known: bytes) -> None:
        for digit_pair in range(100):
            low = known + bytes([int(f"{digit_pair:02d}", 16)])
            target = MeterTarget(low + b"\xAA" * (6 - len(low)))
            (outcome,) = await bus.exchange(target, [MeterRequest(first)], timing)
            if outcome.reply is not None:
                found.add(address_from_wire(outcome.reply.address))
            elif isinstance(outcome.error, FrameError) and len(low) < 6:
                await narrow(low)  # several meters answered at once: one more byte apart

    try:
        await narrow(b"")
    finally:
        await bus.close()
    return sorted(found)
