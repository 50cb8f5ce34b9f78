"""Pydantic v2 models of the two input formats: the agent config and the device profile.

Every model forbids unknown keys (a typo like `word_oder` is an error, never ignored) and is frozen.
Durations and sizes are parsed at this edge, so the rest of the agent sees seconds and bytes.
Cross-file checks (bus names, profile references) live in `loader.py`, which knows the lines.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agent.config.broker import parse_broker_url
from agent.config.units import parse_duration, parse_size
from agent.drivers.urls import PROTOCOLS, SerialSettings, parse_bus_url
from agent.meters.bcd import parse_format
from agent.types import DataType, Order, PointKind, RegisterKind

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Bytes = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- device profiles


class SerialDefaults(Strict):
    baudrate: int = 9600
    parity: str = Field("N", pattern="^[NEO]$")
    stopbits: int = Field(1, ge=1, le=2)
    bytesize: int = Field(8, ge=7, le=8)

    def settings(self) -> SerialSettings:
        return SerialSettings(self.baudrate, self.parity, self.stopbits, self.bytesize)


class Timing(Strict):
    """Per-device request limits and timing; a profile sets them, a device entry may override."""

    max_registers: int | None = Field(None, ge=1, le=125)  # per request (Modbus allows 125)
    max_gap: int | None = Field(None, ge=0, le=124)  # unused registers a read may bridge
    even_aligned: bool | None = None  # start and count must be even (Eastron)
    pause_after_connect: Seconds | None = None
    pause_between_requests: Seconds | None = None
    timeout: PositiveSeconds | None = None


class ProfileDefaults(Timing):
    register_: RegisterKind = Field(RegisterKind.HOLDING, alias="register")
    order: Order = Order.ABCD
    unit_id: int = Field(1, ge=0, le=255)
    serial: SerialDefaults = SerialDefaults()


class PointModel(Strict):
    """One quantity of a device: where it is, how to decode it, what it means."""

    address: int | None = Field(None, ge=0, le=65535, description="wire (0-based PDU) address")
    doc: int | str | None = Field(None, description="the number printed in the manual, for humans")
    type: DataType = DataType.U16
    register_: RegisterKind | None = Field(None, alias="register")  # None: the profile default
    order: Order | None = None  # None: the profile default
    length: int | None = Field(None, ge=1, le=125)  # registers, for strings
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    na: list[int] = Field(default_factory=list)  # raw words (as an unsigned integer) meaning "not available"
    kind: PointKind = PointKind.GAUGE
    multiply_by: list[str] = Field(default_factory=list)  # points whose values multiply this (CT/PT ratios)
    plus: list[str] = Field(default_factory=list)  # points added after scaling (integer + fraction totals)
    constant: float | None = None  # not read: a value set on site (a CT ratio on the panel); devices may override
    model: list[int] = Field(default_factory=list)  # SunSpec: `address` is the offset from this model's ID register
    scale_factor: str | None = None  # a point holding a power-of-ten exponent (SunSpec *_SF)
    values: dict[int, str] | None = None  # enum code -> state name
    bits: dict[int, str] | None = None  # bit number -> flag name, for bit fields
    hidden: bool = False  # read to compute other points, not published
    description: str = ""
    example: float | int | str | None = None  # a typical engineering value (the simulator serves it)
    resolution: float | None = Field(None, gt=0)  # wire resolution, e.g. 0.01 (default: by unit; docs/payload.md)
    # DL/T 645 and CJ/T 188 (docs/dlt645.md, docs/cjt188.md): read by data identifier, BCD values
    di: int | None = Field(None, ge=0, le=0xFFFFFFFF)  # data identifier, e.g. 0x00010000
    format_: str | None = Field(None, alias="format")  # BCD data format, e.g. XXXXXX.XX
    signed: bool = False  # sign in the top bit of the highest byte
    at: int = Field(0, ge=0, le=255)  # byte offset of the value in the DI's answer (CJ/T 188 901F)
    unit_code: bool = False  # CJ/T 188: a unit code byte follows the value and is converted to `unit`

    @property
    def words(self) -> int:
        """Registers (or bits, for coils/discretes) this point occupies."""
        return (self.length or 0) if self.type is DataType.STRING else self.type.words

    @model_validator(mode="after")
    def _coherent(self) -> PointModel:
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
        if self.register_ is not None and self.register_.is_bit and self.type is not DataType.U16:
            raise ValueError("coil and discrete points are single bits: leave `type` out")
        if self.address is not None and self.address + self.words > 65536:
            raise ValueError("the point runs past register 65535")
        return self

    def _coherent_meter_point(self) -> None:
        if self.address is not None:
            raise ValueError("a point has `address` (Modbus) or `di` (DL/T 645, CJ/T 188), not both")
        if not self.format_:
            raise ValueError("a `di` point needs `format`, the BCD data format such as XXXXXX.XX")
        parse_format(self.format_)


class BlockModel(Strict):
    """A DL/T 645 block DI the meter answers (one byte FF) and the DI of its first element."""

    di: int = Field(ge=0, le=0xFFFFFFFF)
    first: int = Field(ge=0, le=0xFFFFFFFF)

    @model_validator(mode="after")
    def _one_wildcard(self) -> BlockModel:
        wild = [s for s in (0, 8, 16, 24) if (self.di >> s) & 0xFF == 0xFF]
        if len(wild) != 1:
            raise ValueError(f"block DI {self.di:08X} must have exactly one FF byte")
        mask = ~(0xFF << wild[0]) & 0xFFFFFFFF
        if self.first & mask != self.di & mask:
            raise ValueError(f"first element {self.first:08X} is not in block {self.di:08X}")
        return self


class ProfileModel(Strict):
    """A device profile: agent/profiles/<vendor>/<model>.yaml (or the same layout in an operator directory)."""

    vendor: str
    model: str
    description: str = ""
    source: str = Field(description="document (and version) the addresses come from")
    variants: list[str] = Field(default_factory=list)  # firmware/hardware variants it applies to
    notes: list[str] = Field(default_factory=list)  # quirks; UNVERIFIED facts say so here
    extends: str | None = None  # vendor/model whose points and defaults this one starts from
    remove: list[str] = Field(default_factory=list)  # points of the base this variant lacks
    defaults: ProfileDefaults = ProfileDefaults()
    points: dict[str, PointModel] = Field(default_factory=dict)
    discovery: str | None = Field(None, pattern="^sunspec$")  # sunspec: walk the model chain at first contact
    protocol: str = Field("modbus", pattern=f"^({'|'.join(PROTOCOLS)})$")  # what the device speaks
    blocks: list[BlockModel] = Field(default_factory=list)  # DL/T 645 block DIs the meter supports
    meter_type: int | None = Field(None, ge=0, le=255)  # CJ/T 188 T byte: 0x10 water, 0x20 heat, 0x30 gas
    di_order: str = Field("msb_first", pattern="^(msb_first|lsb_first)$")  # CJ/T 188: 90 1F or 1F 90 on the wire


# --------------------------------------------------------------------------- agent config


class Gateway(Strict):
    id: str = Field(pattern=DEVICE_ID.pattern)
    site: str = Field(pattern=DEVICE_ID.pattern)


class BusModel(Strict):
    name: str = Field(pattern=DEVICE_ID.pattern)
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parse_bus_url(url)
        return url


def _quoted_address(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("write the meter address in quotes, as on the nameplate (\"000000123456\"): "
                         "unquoted, YAML reads a number and drops the leading zeros")
    return value


class DeviceModel(Timing):
    id: str = Field(pattern=DEVICE_ID.pattern)
    bus: str
    unit: int | None = Field(None, ge=0, le=255)  # Modbus unit id (required on a Modbus bus)
    # DL/T 645 (12 digits) or CJ/T 188 (14 digits) address, as on the nameplate; the loader checks the count
    address: Annotated[str | None, BeforeValidator(_quoted_address)] = Field(None, pattern=r"^[0-9]+$")
    profile: str = Field(pattern=r"^[a-z0-9_.-]+/[a-z0-9_.-]+$")
    interval: PositiveSeconds = 10.0
    enabled: bool = True
    # a value per ratio point, for meters whose CT/PT ratio is not readable (profile point names)
    constants: dict[str, float] = Field(default_factory=dict)
    # other intervals for some points, by name pattern: {"energy_*": 60s} reads totals once a minute
    intervals: dict[str, PositiveSeconds] = Field(default_factory=dict)


class MqttModel(Strict):
    url: str  # mqtt://HOST[:1883] or mqtts://HOST[:8883]; credentials go in username/password_file
    topic_prefix: str = "park"
    client_id: str | None = None  # default: the gateway id
    username: str | None = None
    password_file: str | None = None  # read at start, never logged
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: PositiveSeconds = 30.0
    window: int = Field(10, ge=1, le=65535)  # QoS 1 messages in flight
    ack_timeout: PositiveSeconds = 60.0
    batch_interval: PositiveSeconds = Field(10.0, le=60.0)
    compress: bool = False
    drain_rate: float = Field(50.0, gt=0)  # backlog batches per second after an outage
    reconnect_max: PositiveSeconds = Field(60.0, ge=1.0)  # the reconnect backoff's ceiling (1 s doubling, jittered)
    # the broker's packet limit when it does not announce one (MQTT 3.1.1); the smaller of the two applies
    max_packet_size: Annotated[int | None, BeforeValidator(parse_size)] = Field(None, ge=256, le=268_435_455)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parse_broker_url(url)
        return url


class BufferMode(enum.StrEnum):
    OUTAGE = "outage"
    ALWAYS = "always"


class BufferModel(Strict):
    path: str = "/var/lib/edge-agent/buffer"
    max_bytes: Bytes = 256 * 2**20
    min_free_bytes: Bytes = 64 * 2**20
    mode: BufferMode = BufferMode.OUTAGE
    spill_after: PositiveSeconds = 2.0
    outage_commit: PositiveSeconds = 1.0
    memory_bytes: Bytes = 32 * 2**20  # what is kept in memory while the disk fails (read-only, full, EIO)


class AgentConfig(Strict):
    gateway: Gateway
    buses: list[BusModel] = Field(default_factory=list)
    devices: list[DeviceModel] = Field(default_factory=list)
    mqtt: MqttModel | None = None
    buffer: BufferModel = BufferModel()
    profiles_dirs: list[str] = Field(default_factory=list)  # searched before the built-in library
    prometheus: str | None = None  # 127.0.0.1:PORT, localhost:PORT or [::1]:PORT; off by default

    @field_validator("prometheus")
    @classmethod
    def _loopback(cls, listen: str | None) -> str | None:
        if listen is not None:
            prometheus_address(listen)
        return listen


def prometheus_address(listen: str) -> tuple[str, int]:
    """`127.0.0.1:9100` -> ("127.0.0.1", 9100); loopback only (the endpoint has no authentication)."""
    host, _, port = listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
        raise ValueError(f"expected 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (loopback only), got {listen!r}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range: 1 to 65535")
    return host.strip("[]"), int(port)
