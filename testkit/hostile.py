"""A Modbus server that answers the way a test tells it to: late, behind noise, or with crafted
bytes. A tiny asyncio TCP server on its own thread, speaking RTU frames (`rtu+tcp://`, a
serial-to-Ethernet converter) or Modbus TCP (MBAP).

`respond` gets each request (unit, function, start, count, and the MBAP transaction id, 0 for
RTU) and returns what to send as (delay seconds, bytes) chunks; each request is answered on its
own task, so a late answer can still be on its way while the next request arrives, as it is
behind a converter. `honest` answers every read with registers whose value is their address, so
a value always shows which block it came from.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Callable, Sequence

from agent.drivers import frames
from agent.drivers.frames import Read

Chunks = Sequence[tuple[float, bytes]]
Responder = Callable[[Read], Chunks]


def words_for(read: Read) -> bytes:
    """The data of an honest answer: each register holds its own address."""
    return struct.pack(f">{read.count}H", *((read.start + i) & 0xFFFF for i in range(read.count)))


def honest_rtu(read: Read) -> bytes:
    return frames.rtu_reply(read.unit, read.function, words_for(read))


def honest_tcp(read: Read) -> bytes:
    return frames.tcp_reply(read.tid, read.unit, read.function, words_for(read))


class HostileServer:
    def __init__(self, respond: Responder, rtu: bool = True) -> None:
        self.respond = respond
        self.rtu = rtu
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("hostile server did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                read = await (self._read_rtu(reader) if self.rtu else self._read_tcp(reader))
                self.requests += 1
                task = asyncio.ensure_future(self._answer(writer, self.respond(read)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _read_rtu(reader: asyncio.StreamReader) -> Read:
        raw = await reader.readexactly(8)
        unit, function, start, count = struct.unpack(">BBHH", raw[:6])
        return Read(unit, function, start, count)

    @staticmethod
    async def _read_tcp(reader: asyncio.StreamReader) -> Read:
        raw = await reader.readexactly(12)
        tid, _, _, unit, function, start, count = struct.unpack(">HHHBBHH", raw)
        return Read(unit, function, start, count, tid)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, chunks: Chunks) -> None:
        for delay, data in chunks:
            if delay > 0:
                await asyncio.sleep(delay)
            if data and not writer.is_closing():
                writer.write(data)
                await writer.drain()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for writer in list(self._writers):
                writer.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
