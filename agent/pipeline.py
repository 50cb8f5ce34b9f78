"""What a config builds: its buses, one reader per (device, poll interval), and its wire schema.
Replaced as a whole on reload; the poller schedules its readers."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

from agent.codec import WireSchema
from agent.config import LoadedConfig
from agent.drivers.bus import Bus
from agent.drivers.readers import Reader, build_reader
from agent.drivers.urls import parse_bus_url
from agent.schedule import TickTracker
from agent.types import PointSpec
from agent.wire import build_schema


@dataclass
class DeviceState:
    """One scheduled reader: a device, or the group of its points that has its own interval."""

    reader: Reader
    interval: float
    ticks: TickTracker = field(init=False)
    overruns: int = 0  # runs the scheduler skipped because the previous one was still running
    stalls: int = 0  # runs that silently never happened (the agent could not start them on time)
    failing_since: float | None = None
    last_summary: float = 0.0
    failures_since_summary: int = 0
    running: bool = False  # a poll is in flight
    next_tick_ms: int = 0  # the scheduled time of its next poll (a batch window is whole once all are past it)

    def __post_init__(self) -> None:
        self.ticks = TickTracker(self.interval)


@dataclass
class Pipeline:
    loaded: LoadedConfig
    schema: WireSchema
    buses: dict[str, Bus]
    devices: dict[str, DeviceState] = field(default_factory=dict)

    async def close(self) -> None:
        for bus in self.buses.values():
            await bus.close()


def build_pipeline(loaded: LoadedConfig) -> Pipeline:
    config = loaded.config
    buses = {bus.name: Bus(bus.name, parse_bus_url(bus.url)) for bus in config.buses}
    enabled = [d for d in loaded.devices if d.config.enabled]
    pipeline = Pipeline(loaded, build_schema(config.gateway.id, enabled), buses)
    for setup in enabled:
        device = setup.config
        groups = split_by_interval(setup.profile.points, device.interval, dict(device.intervals))
        for interval, points in groups.items():
            reader = build_reader(device.id, setup.profile, buses[device.bus], setup.timing, unit=device.unit,
                                  address=device.address, points=points, constants=device.constants)
            key = device.id if interval == device.interval else f"{device.id}@{interval:g}s"
            pipeline.devices[key] = DeviceState(reader, interval)
    return pipeline


def split_by_interval(points: dict[str, PointSpec], interval: float,
                      intervals: dict[str, float]) -> dict[float, dict[str, PointSpec]]:
    """Points per poll interval (the first matching pattern wins, the rest use `interval`). A point
    that others need (a CT ratio, a scale factor) is also read, hidden, with each group that needs it."""
    chosen = {name: next((i for pattern, i in intervals.items() if fnmatch.fnmatch(name, pattern)), interval)
              for name in points}
    groups: dict[float, dict[str, PointSpec]] = {}
    for name, spec in points.items():
        groups.setdefault(chosen[name], {})[name] = spec
    for group in groups.values():
        for spec in list(group.values()):
            for ref in spec.refs:
                group.setdefault(ref, replace(points[ref], hidden=True))
    return dict(sorted(groups.items()))
