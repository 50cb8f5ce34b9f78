"""An RS-485 line on one machine, at real speed: two pseudo-terminal pairs joined by a relay that
forwards bytes no faster than the configured baud rate allows.

socat joins PTYs instantly; a 9600-baud line moves about 960 bytes a second (10 bits a byte with
start and stop bits), and poll timing, timeouts and bus efficiency only mean something at that
speed. The agent opens `agent_port`, the simulated devices `device_port`; a frame written on one
side arrives on the other once its last byte would have crossed the wire.
"""

from __future__ import annotations

import os
import select
import termios
import threading
import time
import tty
from collections.abc import Callable


class PacedLine:
    def __init__(self, baudrate: int = 9600, bits_per_byte: int = 10,
                 noise: Callable[[bytes], bytes] | None = None) -> None:
        """`noise`: applied to what the devices send (an answer, as one chunk) before it crosses the
        line, e.g. a 0x00 in front as an auto-direction RS-485 converter emits when it turns on."""
        self.byte_time = bits_per_byte / baudrate
        self.noise = noise
        self._agent_master, agent_slave = os.openpty()
        self._device_master, device_slave = os.openpty()
        for fd in (agent_slave, device_slave):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.agent_port = os.ttyname(agent_slave)
        self.device_port = os.ttyname(device_slave)
        self._slaves = (agent_slave, device_slave)  # kept open so the masters never see EOF
        self._stop = threading.Event()
        self._busy_until = 0.0  # half duplex: one transmitter at a time, like RS-485
        self.bytes = 0
        self._thread = threading.Thread(target=self._relay, name="paced-line", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        peers = {self._agent_master: self._device_master, self._device_master: self._agent_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(peers), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if fd == self._device_master and self.noise is not None:
                    data = self.noise(data)
                start = max(time.monotonic(), self._busy_until)
                self._busy_until = start + len(data) * self.byte_time
                delay = self._busy_until - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.bytes += len(data)
                try:
                    os.write(peers[fd], data)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self._agent_master, self._device_master, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass
