"""An optional Prometheus text endpoint (off by default; loopback only), rendered from the same
metrics document the agent publishes on MQTT. A minimal HTTP/1.0 responder on asyncio streams:
one route, no dependency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

DEVICE_COUNTERS = ("polls", "requests", "timeouts", "exceptions", "bus_errors", "skipped", "overruns", "stalls")


def render(metrics: dict[str, Any]) -> str:
    lines = []
    for name in DEVICE_COUNTERS:
        lines.append(f"# TYPE edge_agent_device_{name}_total counter")
        lines += [f'edge_agent_device_{name}_total{{device="{key}"}} {d[name]}' for key, d in metrics["devices"].items()]
    lines.append("# TYPE edge_agent_device_online gauge")
    lines += [f'edge_agent_device_online{{device="{key}"}} {int(d["health"] == "online")}'
              for key, d in metrics["devices"].items()]
    lines.append("# TYPE edge_agent_device_latency_seconds gauge")
    lines += [f'edge_agent_device_latency_seconds{{device="{key}"}} {d["latency_ms"] / 1000}'
              for key, d in metrics["devices"].items()]
    buffer = metrics["buffer"]
    for name in ("batches", "bytes", "readings", "in_memory"):
        lines += [f"# TYPE edge_agent_buffer_{name} gauge", f"edge_agent_buffer_{name} {buffer[name]}"]
    lines += ["# TYPE edge_agent_buffer_on_disk gauge", f"edge_agent_buffer_on_disk {int(buffer['on_disk'])}"]
    lines += ["# TYPE edge_agent_dropped_readings_total counter",
              f"edge_agent_dropped_readings_total {buffer['dropped_total']}"]
    publisher = metrics.get("publisher") or {}
    for name in ("published", "acked", "refused", "connects", "disconnects"):
        if name in publisher:
            lines += [f"# TYPE edge_agent_mqtt_{name}_total counter", f"edge_agent_mqtt_{name}_total {publisher[name]}"]
    lines += ["# TYPE edge_agent_buffer_slowest_commit_seconds gauge",
              f"edge_agent_buffer_slowest_commit_seconds {buffer['slowest_commit_ms'] / 1000}",
              "# TYPE edge_agent_loop_lag_max_seconds gauge",
              f"edge_agent_loop_lag_max_seconds {metrics['loop_lag_max_ms'] / 1000}"]
    lines += ["# TYPE edge_agent_rss_bytes gauge", f"edge_agent_rss_bytes {metrics['rss_kb'] * 1024}"]
    return "\n".join(lines) + "\n"


async def serve(host: str, port: int, metrics: Callable[[], dict[str, Any]]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
            if path == b"/metrics":
                body, status = render(metrics()).encode(), b"200 OK"
            else:
                body, status = b"see /metrics\n", b"404 Not Found"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
