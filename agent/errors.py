"""The agent's exception tree. Library exceptions (pymodbus, serial, sqlite3, paho) are mapped
onto these at their one seam, so nothing above a seam catches a third-party exception.

    AgentError
    ├── ConfigError          bad YAML, unknown key, unknown profile: carries every Problem at once
    ├── BusError             the transport could not be opened or broke (reconnect with backoff)
    ├── BrokerError          the MQTT broker cannot be reached (TCP, TLS, no answer): retry with backoff
    │   ├── BrokerDown       nothing accepts TCP connections there (refused, timed out): probe cheaply
    │   └── BrokerRefused    it answered and refused the connection (CONNACK reason code)
    ├── StorageError         the durable ring cannot do its job
    │   ├── BufferLocked     another agent holds the buffer directory
    │   ├── BufferIOError    the disk failed (EIO, ENOSPC, read-only): the store falls back to memory
    │   └── BufferCorrupt    the file is damaged: the store moves it aside and salvages it
    └── DeviceError          one transaction failed; the bus is still usable
        ├── DeviceTimeout    no answer within the timeout
        ├── DeviceException  a Modbus exception response (code 1..11)
        └── FrameError       an answer arrived but was malformed (bad CRC, wrong length)
"""

from __future__ import annotations

from dataclasses import dataclass


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one input file, located as precisely as the input allows."""

    file: str
    line: int | None  # 1-based; None when the problem has no single place (a missing file)
    path: str  # YAML path such as devices[1].profile; "" for the whole document
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(AgentError):
    """Configuration or profile input is invalid; lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class BusError(AgentError):
    """The bus (serial port or TCP connection) is not usable right now."""


class BrokerError(AgentError):
    """The MQTT broker cannot be reached, or the connection to it failed. `problem` names the kind of
    trouble for the operator (one full log line and one event per kind, then summaries): `unreachable`,
    `bad_credentials`, `not_authorized`, `client_id_refused`, `refused`, `tls_untrusted`,
    `tls_hostname`, `tls_setup`, `tls`, `error`."""

    problem = "error"

    def __init__(self, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        if problem is not None:
            self.problem = problem


class BrokerDown(BrokerError):
    """Nothing accepts a TCP connection at the broker's address (refused, unreachable, timed out)."""

    problem = "unreachable"


class BrokerRefused(BrokerError):
    """The broker refused the connection (its CONNACK reason: bad credentials, client id, protocol)."""

    problem = "refused"


class StorageError(AgentError):
    """The durable buffer cannot do its job."""


class BufferLocked(StorageError):
    """Another agent holds the buffer directory."""


class BufferIOError(StorageError):
    """The disk failed a read or a write (EIO, ENOSPC, a read-only remount); nothing already
    committed is lost. The store keeps batches in memory meanwhile and retries the disk."""


class BufferCorrupt(StorageError):
    """The buffer file is damaged (or is not a buffer at all): recover it, do not retry it."""


class DeviceError(AgentError):
    """One transaction with one device failed."""


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class DeviceException(DeviceError):
    """The device answered with a Modbus exception response."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(message or f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")


class FrameError(DeviceError):
    """An answer arrived but could not be parsed (CRC, length, wrong function)."""


EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}
ILLEGAL_ADDRESS = 2
