"""The metrics document, typed: published as JSON on the `metrics` topic every 60 s and served as
Prometheus text (agent/prometheus.py) from the same object, so the two cannot disagree."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEVICE_COUNTERS = ("polls", "requests", "timeouts", "exceptions", "bus_errors", "skipped", "overruns", "stalls")
PUBLISHER_COUNTERS = ("published", "acked", "refused", "connects", "disconnects")


@dataclass(frozen=True)
class DeviceMetrics:
    health: str
    polls: int
    requests: int
    timeouts: int
    exceptions: int
    bus_errors: int
    skipped: int
    overruns: int  # runs skipped because the previous one was still running
    stalls: int  # runs that never happened (the agent could not start them on time)
    latency_ms: float


@dataclass(frozen=True)
class BufferMetrics:
    batches: int
    bytes: int
    readings: int
    oldest_ms: int | None
    dropped_total: int
    slowest_commit_ms: float
    in_memory: int  # batches held in memory awaiting their PUBACK (outage mode)
    on_disk: bool  # False while the disk fails and batches are kept in memory
    unavailable_reason: str | None


@dataclass
class PublisherStats:
    """Counted by the publisher as it goes (on the event loop); the metrics carry a copy."""

    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    refused: int = 0  # PUBACKs with a failure reason code
    watchdog_reconnects: int = 0
    historical: int = 0
    probe_hits: int = 0  # reconnects started early because a TCP probe found the broker back
    too_large: int = 0  # status, events or metrics not published: larger than the broker's packet limit
    protocol: str = ""


@dataclass(frozen=True)
class Metrics:
    ts: int
    devices: dict[str, DeviceMetrics]
    buffer: BufferMetrics
    publisher: PublisherStats | None
    loop_lag_max_ms: float
    rss_kb: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def prometheus(self) -> str:
        lines: list[str] = []
        for name in DEVICE_COUNTERS:
            lines.append(f"# TYPE edge_agent_device_{name}_total counter")
            lines += [f'edge_agent_device_{name}_total{{device="{key}"}} {getattr(d, name)}'
                      for key, d in self.devices.items()]
        lines.append("# TYPE edge_agent_device_online gauge")
        lines += [f'edge_agent_device_online{{device="{key}"}} {int(d.health == "online")}'
                  for key, d in self.devices.items()]
        lines.append("# TYPE edge_agent_device_latency_seconds gauge")
        lines += [f'edge_agent_device_latency_seconds{{device="{key}"}} {d.latency_ms / 1000}'
                  for key, d in self.devices.items()]
        b = self.buffer
        for name in ("batches", "bytes", "readings", "in_memory"):
            lines += [f"# TYPE edge_agent_buffer_{name} gauge", f"edge_agent_buffer_{name} {getattr(b, name)}"]
        lines += ["# TYPE edge_agent_buffer_on_disk gauge", f"edge_agent_buffer_on_disk {int(b.on_disk)}",
                  "# TYPE edge_agent_dropped_readings_total counter", f"edge_agent_dropped_readings_total {b.dropped_total}"]
        if self.publisher is not None:
            for name in PUBLISHER_COUNTERS:
                lines += [f"# TYPE edge_agent_mqtt_{name}_total counter",
                          f"edge_agent_mqtt_{name}_total {getattr(self.publisher, name)}"]
        lines += ["# TYPE edge_agent_buffer_slowest_commit_seconds gauge",
                  f"edge_agent_buffer_slowest_commit_seconds {b.slowest_commit_ms / 1000}",
                  "# TYPE edge_agent_loop_lag_max_seconds gauge",
                  f"edge_agent_loop_lag_max_seconds {self.loop_lag_max_ms / 1000}",
                  "# TYPE edge_agent_rss_bytes gauge", f"edge_agent_rss_bytes {self.rss_kb * 1024}"]
        return "\n".join(lines) + "\n"
