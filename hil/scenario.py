"""HIL scenario files: a park, a run length and a schedule of faults. Validated like agent.yaml
(pydantic, unknown keys are errors, located by file and line)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from agent.config.units import parse_duration
from agent.config.validation import validate
from agent.config.yaml_source import load_yaml
from agent.errors import ConfigError, Problem

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
SCENARIO_DIR = Path(str(resources.files("hil") / "scenarios"))  # package data: a wheel carries them
PER_SERVER = 20  # expanded TCP devices per simulated Modbus TCP server


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimDevice(Strict):
    id: str
    profile: str
    unit: int | None = Field(None, ge=1, le=247)  # Modbus devices
    address: str | None = Field(None, pattern=r"^[0-9]{12}([0-9]{2})?$")  # DL/T 645 / CJ/T 188 meters, nameplate order
    line: str | None = None  # an RS-485 line name (paced PTYs); None: Modbus TCP
    baudrate: int = 9600
    count: int = Field(1, ge=1, le=1000)  # this many alike: ids <id>-001.., TCP devices 20 to a server
    endpoint: str = "tcp"  # for Modbus TCP devices: which simulated server (bus) they share

    @property
    def bus(self) -> str:
        return self.line or self.endpoint

    def expanded(self) -> list[SimDevice]:
        """The devices this entry stands for (itself when count is 1)."""
        if self.count == 1:
            return [self]
        if self.line is not None or self.unit is None:
            raise ValueError("`count` is for Modbus TCP devices")
        return [self.model_copy(update={"id": f"{self.id}-{i + 1:03d}", "count": 1, "unit": self.unit + i % PER_SERVER,
                                        "endpoint": f"{self.endpoint}{i // PER_SERVER + 1}"})
                for i in range(self.count)]

    @model_validator(mode="after")
    def _addressed(self) -> SimDevice:
        if (self.unit is None) == (self.address is None):
            raise ValueError("a device has `unit` (Modbus) or `address` (DL/T 645, CJ/T 188 meters)")
        if self.address is not None and self.line is None:
            raise ValueError("a meter with `address` sits on a `line`")
        return self


class Fault(Strict):
    """One fault: starts `at` seconds into the run and lasts `for_` seconds."""

    at: Seconds
    for_: Seconds = Field(0.0, alias="for")
    kind: str = Field(pattern="^(broker_down|black_hole|device_silent|device_exception|corrupt_frames|agent_kill|"
                              "agent_term|buffer_readonly)$")
    device: str | None = None
    code: int = 4  # for device_exception

    @model_validator(mode="after")
    def _needs_device(self) -> Fault:
        if self.kind.startswith(("device_", "corrupt")) and not self.device:
            raise ValueError(f"{self.kind} needs `device`")
        return self


class Scenario(Strict):
    name: str
    description: str = ""
    duration: Seconds
    quick_duration: Seconds | None = None
    interval: Seconds = 1.0
    batch_interval: Seconds = 2.0
    buffer_max_bytes: str = "64MiB"  # small values make an outage overflow the buffer (counted drops)
    devices: list[SimDevice]
    faults: list[Fault] = Field(default_factory=list)

    @property
    def park(self) -> list[SimDevice]:
        """Every simulated device, `count` expanded."""
        return [one for entry in self.devices for one in entry.expanded()]

    @property
    def buffer_on_card(self) -> bool:
        """The buffer lives on an ext4 image (loop device) that faults can drive read-only (needs root)."""
        return any(f.kind == "buffer_readonly" for f in self.faults)

    def length(self, quick: bool) -> float:
        return self.quick_duration if quick and self.quick_duration else self.duration


def load(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError([Problem(name_or_path, None, "", f"no such scenario; the package has: "
                                                             f"{', '.join(available()) or 'none'}")])
    return validate(Scenario, load_yaml(path))


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
