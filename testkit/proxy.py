"""A TCP proxy that can black-hole a link: it keeps both sockets open but stops forwarding, as a
NAT or cellular modem that silently loses its state does. New connections work again once healed."""

from __future__ import annotations

import asyncio
import threading

from testkit.broker import free_port


class BlackHoleProxy:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.black_hole = False
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        self.connections = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the broker is down: refuse as it would
            writer.close()
            return
        link = {"dead": self.black_hole}  # once a link has been black-holed it never forwards again

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    link["dead"] = link["dead"] or self.black_hole
                    if link["dead"]:
                        continue  # swallowed: nothing is forwarded, nothing is closed
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def set_black_hole(self, on: bool) -> None:
        self.black_hole = on

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
