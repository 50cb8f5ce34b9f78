"""Bus endpoint URLs -> BusSpec.

    tcp://host[:502]                                   Modbus TCP (MBAP framing)
    rtu+tcp://host:port                                RTU frames through a serial-to-Ethernet converter
    rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1&bytesize=8
    dlt645:///dev/ttyUSB1?baudrate=2400&parity=E       DL/T 645-2007 meters on RS-485 (default 2400 8E1)
    dlt645+tcp://host:port                             the same through a serial-to-Ethernet converter
    cjt188:///dev/ttyUSB2?baudrate=2400&parity=E       CJ/T 188 water/heat/gas meters (default 2400 8E1)
    cjt188+tcp://host:port

Pure: parsing only, no I/O. Errors are ValueError with a sentence a person can act on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit


class Transport(enum.StrEnum):
    TCP = "tcp"
    RTU = "rtu"
    RTU_OVER_TCP = "rtu+tcp"
    DLT645 = "dlt645"
    DLT645_TCP = "dlt645+tcp"
    CJT188 = "cjt188"
    CJT188_TCP = "cjt188+tcp"

    @property
    def protocol(self) -> str:
        """modbus, dlt645 or cjt188: what the frames on this bus are."""
        return self.value.split("+")[0] if self.value.startswith(("dlt645", "cjt188")) else "modbus"

    @property
    def is_local_serial(self) -> bool:
        return self in (Transport.RTU, Transport.DLT645, Transport.CJT188)


BAUD_RATES = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)
SERIAL_KEYS = {"baudrate", "parity", "stopbits", "bytesize"}
PROTOCOLS = ("modbus", "dlt645", "cjt188")


@dataclass(frozen=True, slots=True)
class SerialSettings:
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def char_time(self) -> float:
        """Seconds one character takes on the wire (start bit + data + parity + stop)."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


METER_LINE = SerialSettings(2400, "E", 1, 8)  # DL/T 645 and CJ/T 188 lines: 2400 bps 8E1 unless told


@dataclass(frozen=True, slots=True)
class BusSpec:
    """Where a bus is and how to talk to it."""

    transport: Transport
    host: str = ""  # TCP host, or the serial device path
    port: int = 502
    serial: SerialSettings | None = None

    @property
    def protocol(self) -> str:
        return self.transport.protocol

    @property
    def is_serial_line(self) -> bool:
        """RTU framing, whether on a local port or through a converter: timing is the line's."""
        return self.transport is not Transport.TCP

    def __str__(self) -> str:
        if self.transport.is_local_serial:
            return f"{self.transport.value}://{self.host} ({self.serial})"
        return f"{self.transport.value}://{self.host}:{self.port}"


def parse_bus_url(url: str, serial_defaults: SerialSettings | None = None) -> BusSpec:
    """Parse an endpoint URL; `serial_defaults` fill what an rtu:// URL leaves out."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in {t.value for t in Transport}:
        raise ValueError(f"unknown scheme {parts.scheme!r} in {url!r}: use tcp://, rtu://, rtu+tcp://, "
                         "dlt645://, dlt645+tcp://, cjt188:// or cjt188+tcp://")
    transport = Transport(scheme)
    if transport.is_local_serial:
        defaults = serial_defaults or (SerialSettings() if transport is Transport.RTU else METER_LINE)
        return _parse_rtu(url, parts.netloc, parts.path, parts.query, defaults, transport)
    if parts.query:
        raise ValueError(f"{url!r}: query parameters are only for serial URLs (rtu://, dlt645://, cjt188://)")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host; write {scheme}://HOST:PORT")
    try:
        port = parts.port if parts.port is not None else 502
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    return BusSpec(transport, parts.hostname, port)


def _parse_rtu(url: str, netloc: str, path: str, query: str, defaults: SerialSettings,
               transport: Transport = Transport.RTU) -> BusSpec:
    if netloc:
        raise ValueError(f"{url!r}: a serial URL has three slashes and a device path, "
                         f"like {transport.value}:///dev/ttyUSB0")
    if not path:
        raise ValueError(f"{url!r}: no serial device path")
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(params) - SERIAL_KEYS
    if unknown:
        raise ValueError(f"{url!r}: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(SERIAL_KEYS)}")
    try:
        baudrate = int(params.get("baudrate", defaults.baudrate))
        stopbits = int(params.get("stopbits", defaults.stopbits))
        bytesize = int(params.get("bytesize", defaults.bytesize))
    except ValueError:
        raise ValueError(f"{url!r}: baudrate, stopbits and bytesize must be whole numbers") from None
    parity = params.get("parity", defaults.parity).upper()
    if baudrate not in BAUD_RATES:
        raise ValueError(f"{url!r}: baudrate {baudrate} is not a standard rate {BAUD_RATES}")
    if parity not in ("N", "E", "O"):
        raise ValueError(f"{url!r}: parity must be N, E or O")
    if stopbits not in (1, 2):
        raise ValueError(f"{url!r}: stopbits must be 1 or 2")
    if bytesize not in (7, 8):
        raise ValueError(f"{url!r}: bytesize must be 7 or 8")
    return BusSpec(transport, path, 0, SerialSettings(baudrate, parity, stopbits, bytesize))
