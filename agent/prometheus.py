"""An optional Prometheus text endpoint (off by default; loopback only), rendered from the same
metrics document the agent publishes on MQTT (agent/metrics.py). A minimal HTTP/1.0 responder on
asyncio streams: one route, no dependency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.metrics import Metrics


async def serve(host: str, port: int, metrics: Callable[[], Metrics]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split(b" ")[1] if request.count(b" ") >= 2 else b""
            if path == b"/metrics":
                body, status = metrics().prometheus().encode(), b"200 OK"
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
