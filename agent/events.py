"""The events the agent raises, typed: one dataclass per kind, its fields exactly those documented in
docs/payload.md (a test holds the two together). An event goes to the log and to the `events`
topic (kept on disk while the broker is away) through one sink, the daemon's `emit`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str]

    def body(self) -> dict[str, Any]:
        """The fields as they travel (JSON), without `event` and `ts`, which the publisher adds."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# ---------------------------------------------------------------- devices and polls


@dataclass(frozen=True)
class DeviceOffline(Event):
    kind = "device_offline"
    device: str
    error: str


@dataclass(frozen=True)
class DeviceOnline(Event):
    kind = "device_online"
    device: str


@dataclass(frozen=True)
class PollsSkipped(Event):
    kind = "polls_skipped"
    device: str
    scheduled_ms: list[int]
    count: int
    reason: str


# ---------------------------------------------------------------- the buffer


@dataclass(frozen=True)
class DataDropped(Event):
    kind = "data_dropped"
    seqs: list[int]
    batches: int
    readings: int
    from_ms: int
    to_ms: int
    dropped_total: int


@dataclass(frozen=True)
class BufferLost(Event):
    kind = "buffer_lost"
    reason: str
    moved_to: str
    salvaged_batches: int
    lost_batches: int | None
    lost_readings: int | None
    epoch: int


@dataclass(frozen=True)
class BufferUnavailable(Event):
    kind = "buffer_unavailable"
    reason: str
    directory: str
    memory_max_bytes: int
    at_risk: str


@dataclass(frozen=True)
class BufferRestored(Event):
    kind = "buffer_restored"
    after_s: float
    reason_was: str
    replayed_batches: int
    replayed_events: int
    lost_in_memory_readings: int


# ---------------------------------------------------------------- config and clock


@dataclass(frozen=True)
class ConfigReloaded(Event):
    kind = "config_reloaded"
    config_hash: str
    devices: int
    restart_needed: bool


@dataclass(frozen=True)
class ConfigReloadFailed(Event):
    kind = "config_reload_failed"
    problems: list[str]


@dataclass(frozen=True)
class ClockJump(Event):
    kind = "clock_jump"
    seconds: float
    unsynchronized_since: float | None


@dataclass(frozen=True)
class ClockUnsynchronized(Event):
    kind = "clock_unsynchronized"
    since_ms: int


@dataclass(frozen=True)
class ClockSynchronized(Event):
    kind = "clock_synchronized"
    unsynchronized_from_ms: int
    until_ms: int


# ---------------------------------------------------------------- delivery


@dataclass(frozen=True)
class BrokerDisconnected(Event):
    kind = "broker_disconnected"
    reason: str


@dataclass(frozen=True)
class BrokerUnreachable(Event):
    kind = "broker_unreachable"
    reason: str
    problem: str


@dataclass(frozen=True)
class AckTimeout(Event):
    kind = "ack_timeout"
    waited_s: float
    in_flight: int


@dataclass(frozen=True)
class PublishRefused(Event):
    kind = "publish_refused"
    seq: int
    reason: str
    retry_in_s: float


@dataclass(frozen=True)
class BatchSplit(Event):
    kind = "batch_split"
    seq: int
    parts: list[int]
    max_packet: int


@dataclass(frozen=True)
class BatchTooLarge(Event):
    kind = "batch_too_large"
    seq: int
    bytes: int
    max_packet: int
    readings: int


@dataclass(frozen=True)
class ProtocolFallback(Event):
    kind = "protocol_fallback"
    protocol: str


@dataclass(frozen=True)
class PublisherError(Event):
    kind = "publisher_error"
    error: str


KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in Event.__subclasses__()}
