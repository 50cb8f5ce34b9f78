"""The two input formats, the agent config and the device profile, as plain frozen dataclasses.

They hold no pydantic: `edge-agent run` keeps its settings in these and never imports pydantic
(about 14 MB of its memory). Validation (validation.py, in `validate` and in the short-lived child
that `run` starts, isolated.py) reads the annotations: every model forbids unknown keys (a typo like
`word_oder` is an error, never ignored); durations and sizes are parsed at this edge, so the rest of
the agent sees seconds and bytes. Cross-file checks (bus names, profile references) live in
`loader.py`, which knows the lines.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from agent.config.broker import parse_broker_url
from agent.config.constraints import Before, Pattern, checked
from agent.config.units import parse_duration, parse_size
from agent.drivers.urls import PROTOCOLS, SerialSettings, parse_bus_url
from agent.meters.bcd import parse_format
from agent.types import DataType, Order, PointKind, RegisterKind

Seconds = Annotated[float, Before(parse_duration), Ge(0)]
PositiveSeconds = Annotated[float, Before(parse_duration), Gt(0)]
Bytes = Annotated[int, Before(parse_size), Ge(0)]
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DeviceId = Annotated[str, Pattern(DEVICE_ID.pattern)]
Address32 = Annotated[int, Ge(0), Le(0xFFFFFFFF)]
Byte = Annotated[int, Ge(0), Le(255)]


@dataclass(frozen=True, kw_only=True)
class Strict:
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}


# --------------------------------------------------------------------------- device profiles


@dataclass(frozen=True, kw_only=True)
class SerialDefaults(Strict):
    baudrate: int = 9600
    parity: Annotated[str, Pattern("^[NEO]$")] = "N"
    stopbits: Annotated[int, Ge(1), Le(2)] = 1
    bytesize: Annotated[int, Ge(7), Le(8)] = 8

    def settings(self) -> SerialSettings:
        return SerialSettings(self.baudrate, self.parity, self.stopbits, self.bytesize)


@dataclass(frozen=True, kw_only=True)
class Timing(Strict):
    """Per-device request limits and timing; a profile sets them, a device entry may override."""

    max_registers: Annotated[int, Ge(1), Le(125)] | None = None  # per request (Modbus allows 125)
    max_gap: Annotated[int, Ge(0), Le(124)] | None = None  # unused registers a read may bridge
    even_aligned: bool | None = None  # start and count must be even (Eastron)
    pause_after_connect: Seconds | None = None
    pause_between_requests: Seconds | None = None
    timeout: PositiveSeconds | None = None


@dataclass(frozen=True, kw_only=True)
class ProfileDefaults(Timing):
    register: RegisterKind = RegisterKind.HOLDING
    order: Order = Order.ABCD
    unit_id: Byte = 1
    serial: SerialDefaults = SerialDefaults()


@dataclass(frozen=True, kw_only=True)
class PointModel(Strict):
    """One quantity of a device: where it is, how to decode it, what it means."""

    address: Annotated[int, Ge(0), Le(65535)] | None = None  # wire (0-based PDU) address
    doc: int | str | None = None  # the number printed in the manual, for humans
    type: DataType = DataType.U16
    register: RegisterKind | None = None  # None: the profile default
    order: Order | None = None  # None: the profile default
    length: Annotated[int, Ge(1), Le(125)] | None = None  # registers, for strings
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    na: list[int] = field(default_factory=list)  # raw words (as an unsigned integer) meaning "not available"
    kind: PointKind = PointKind.GAUGE
    multiply_by: list[str] = field(default_factory=list)  # points whose values multiply this (CT/PT ratios)
    plus: list[str] = field(default_factory=list)  # points added after scaling (integer + fraction totals)
    constant: float | None = None  # not read: a value set on site (a CT ratio on the panel); devices may override
    model: list[int] = field(default_factory=list)  # SunSpec: `address` is the offset from this model's ID register
    scale_factor: str | None = None  # a point holding a power-of-ten exponent (SunSpec *_SF)
    values: dict[int, str] | None = None  # enum code -> state name
    bits: dict[int, str] | None = None  # bit number -> flag name, for bit fields
    hidden: bool = False  # read to compute other points, not published
    description: str = ""
    example: float | int | str | None = None  # a typical engineering value (the simulator serves it)
    resolution: Annotated[float, Gt(0)] | None = None  # wire resolution, e.g. 0.01 (default: by unit; payload.md)
    # DL/T 645 and CJ/T 188 (docs/dlt645.md, docs/cjt188.md): read by data identifier, BCD values
    di: Address32 | None = None  # data identifier, e.g. 0x00010000
    format: str | None = None  # BCD data format, e.g. XXXXXX.XX
    signed: bool = False  # sign in the top bit of the highest byte
    at: Byte = 0  # byte offset of the value in the DI's answer (CJ/T 188 901F)
    unit_code: bool = False  # CJ/T 188: a unit code byte follows the value and is converted to `unit`

    @property
    def words(self) -> int:
        """Registers (or bits, for coils/discretes) this point occupies."""
        return (self.length or 0) if self.type is DataType.STRING else self.type.words

    def __post_init__(self) -> None:
        if self.address is None and self.di is None and self.constant is None:
            raise ValueError("a point needs `address` (Modbus), `di` (DL/T 645, CJ/T 188) "
                             "or `constant` (a value set on site)")
        if self.di is not None:
            self._coherent_meter_point()
        if self.type is DataType.STRING and not self.length:
            raise ValueError("a string point needs `length` (in registers)")
        if self.type is not DataType.STRING and self.length:
            raise ValueError("`length` is only for string points")
        if self.type is DataType.ENUM and not self.values:
            raise ValueError("an enum point needs `values` (code: name)")
        if self.register is not None and self.register.is_bit and self.type is not DataType.U16:
            raise ValueError("coil and discrete points are single bits: leave `type` out")
        if self.address is not None and self.address + self.words > 65536:
            raise ValueError("the point runs past register 65535")

    def _coherent_meter_point(self) -> None:
        if self.address is not None:
            raise ValueError("a point has `address` (Modbus) or `di` (DL/T 645, CJ/T 188), not both")
        if not self.format:
            raise ValueError("a `di` point needs `format`, the BCD data format such as XXXXXX.XX")
        parse_format(self.format)


@dataclass(frozen=True, kw_only=True)
class BlockModel(Strict):
    """A DL/T 645 block DI the meter answers (one byte FF) and the DI of its first element."""

    di: Address32
    first: Address32

    def __post_init__(self) -> None:
        wild = [s for s in (0, 8, 16, 24) if (self.di >> s) & 0xFF == 0xFF]
        if len(wild) != 1:
            raise ValueError(f"block DI {self.di:08X} must have exactly one FF byte")
        mask = ~(0xFF << wild[0]) & 0xFFFFFFFF
        if self.first & mask != self.di & mask:
            raise ValueError(f"first element {self.first:08X} is not in block {self.di:08X}")


@dataclass(frozen=True, kw_only=True)
class ProfileModel(Strict):
    """A device profile: agent/profiles/<vendor>/<model>.yaml (or the same layout in an operator directory)."""

    vendor: str
    model: str
    description: str = ""
    source: str  # the document (and version) the addresses come from
    variants: list[str] = field(default_factory=list)  # firmware/hardware variants it applies to
    notes: list[str] = field(default_factory=list)  # quirks; UNVERIFIED facts say so here
    extends: str | None = None  # vendor/model whose points and defaults this one starts from
    remove: list[str] = field(default_factory=list)  # points of the base this variant lacks
    defaults: ProfileDefaults = ProfileDefaults()
    points: dict[str, PointModel] = field(default_factory=dict)
    discovery: Annotated[str, Pattern("^sunspec$")] | None = None  # sunspec: walk the model chain at first contact
    protocol: Annotated[str, Pattern(f"^({'|'.join(PROTOCOLS)})$")] = "modbus"  # what the device speaks
    blocks: list[BlockModel] = field(default_factory=list)  # DL/T 645 block DIs the meter supports
    meter_type: Byte | None = None  # CJ/T 188 T byte: 0x10 water, 0x20 heat, 0x30 gas
    di_order: Annotated[str, Pattern("^(msb_first|lsb_first)$")] = "msb_first"  # CJ/T 188: 90 1F or 1F 90


# --------------------------------------------------------------------------- agent config


@dataclass(frozen=True, kw_only=True)
class Gateway(Strict):
    id: DeviceId
    site: DeviceId


@dataclass(frozen=True, kw_only=True)
class BusModel(Strict):
    name: DeviceId
    url: Annotated[str, checked(parse_bus_url)]


def _quoted_address(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("write the meter address in quotes, as on the nameplate (\"000000123456\"): "
                         "unquoted, YAML reads a number and drops the leading zeros")
    return value


@dataclass(frozen=True, kw_only=True)
class DeviceModel(Timing):
    id: DeviceId
    bus: str
    unit: Byte | None = None  # Modbus unit id (required on a Modbus bus)
    # DL/T 645 (12 digits) or CJ/T 188 (14 digits) address, as on the nameplate; the loader checks the count
    address: Annotated[Annotated[str, Pattern(r"^[0-9]+$")] | None, Before(_quoted_address)] = None
    profile: Annotated[str, Pattern(r"^[a-z0-9_.-]+/[a-z0-9_.-]+$")]
    interval: PositiveSeconds = 10.0
    enabled: bool = True
    # a value per ratio point, for meters whose CT/PT ratio is not readable (profile point names)
    constants: dict[str, float] = field(default_factory=dict)
    # other intervals for some points, by name pattern: {"energy_*": 60s} reads totals once a minute
    intervals: dict[str, PositiveSeconds] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MqttModel(Strict):
    url: Annotated[str, checked(parse_broker_url)]  # mqtt://HOST[:1883] or mqtts://HOST[:8883]; no credentials
    topic_prefix: str = "park"
    client_id: str | None = None  # default: the gateway id
    username: str | None = None
    password_file: str | None = None  # read at start, never logged
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: PositiveSeconds = 30.0
    window: Annotated[int, Ge(1), Le(65535)] = 10  # QoS 1 messages in flight
    ack_timeout: PositiveSeconds = 60.0
    batch_interval: Annotated[PositiveSeconds, Le(60.0)] = 10.0
    compress: bool = False
    drain_rate: Annotated[float, Gt(0)] = 50.0  # backlog batches per second after an outage
    reconnect_max: Annotated[PositiveSeconds, Ge(1.0)] = 60.0  # the reconnect backoff's ceiling (1 s doubling)
    # the broker's packet limit when it does not announce one (MQTT 3.1.1); the smaller of the two applies
    max_packet_size: Annotated[Annotated[int, Ge(256), Le(268_435_455)] | None, Before(parse_size)] = None


class BufferMode(enum.StrEnum):
    OUTAGE = "outage"
    ALWAYS = "always"


@dataclass(frozen=True, kw_only=True)
class BufferModel(Strict):
    path: str = "/var/lib/edge-agent/buffer"
    max_bytes: Bytes = 256 * 2**20
    min_free_bytes: Bytes = 64 * 2**20
    mode: BufferMode = BufferMode.OUTAGE
    spill_after: PositiveSeconds = 2.0
    outage_commit: PositiveSeconds = 1.0
    memory_bytes: Bytes = 32 * 2**20  # what is kept in memory while the disk fails (read-only, full, EIO)


def prometheus_address(listen: str) -> tuple[str, int]:
    """`127.0.0.1:9100` -> ("127.0.0.1", 9100); loopback only (the endpoint has no authentication)."""
    host, _, port = listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
        raise ValueError(f"expected 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (loopback only), got {listen!r}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range: 1 to 65535")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, kw_only=True)
class AgentConfig(Strict):
    gateway: Gateway
    buses: list[BusModel] = field(default_factory=list)
    devices: list[DeviceModel] = field(default_factory=list)
    mqtt: MqttModel | None = None
    buffer: BufferModel = BufferModel()
    profiles_dirs: list[str] = field(default_factory=list)  # searched before the built-in library
    # 127.0.0.1:PORT, localhost:PORT or [::1]:PORT; off by default
    prometheus: Annotated[str, checked(prometheus_address)] | None = None
