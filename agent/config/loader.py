"""Load agent.yaml: validate it, check it against itself (bus names, unique ids), resolve every
profile it names, and report every problem of every file at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from agent.config.models import AgentConfig, DeviceModel
from agent.config.profiles import Profile, ProfileLibrary
from agent.config.validation import validate
from agent.config.yaml_source import SourceDoc, load_yaml
from agent.errors import ConfigError, Problem
from agent.types import DeviceTiming


@dataclass(frozen=True)
class DeviceSetup:
    """One configured device with its resolved profile and timing."""

    config: DeviceModel
    profile: Profile
    timing: DeviceTiming


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    config: AgentConfig
    devices: list[DeviceSetup] = field(default_factory=list)
    digest: str = ""  # sha256 of the file bytes: the config hash in the status message

    @property
    def point_count(self) -> int:
        return sum(len(d.profile.points) for d in self.devices)


def load_config(path: str | Path, library: ProfileLibrary | None = None) -> LoadedConfig:
    """Load and fully resolve the agent config, or raise ConfigError with every problem found."""
    path = Path(path)
    doc = load_yaml(path)
    config = validate(AgentConfig, doc)
    library = library or ProfileLibrary(config.profiles_dirs)
    problems = _check_references(config, doc)
    devices: list[DeviceSetup] = []
    for index, device in enumerate(config.devices):
        try:
            profile = library.load(device.profile)
        except ConfigError as exc:
            problems += _relocate(exc.problems, doc, ("devices", index, "profile"), device.profile)
            continue
        problems += _check_constants(device, profile, doc, index)
        devices.append(DeviceSetup(device, profile, profile.timing(device)))
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(path, config, devices, hashlib.sha256(path.read_bytes()).hexdigest())


def _check_references(config: AgentConfig, doc: SourceDoc) -> list[Problem]:
    problems = []
    bus_names: set[str] = set()
    for i, bus in enumerate(config.buses):
        if bus.name in bus_names:
            problems.append(doc.problem(("buses", i, "name"), f"bus name {bus.name!r} is used twice"))
        bus_names.add(bus.name)
    device_ids: set[str] = set()
    addresses: set[tuple[str, int]] = set()
    for i, device in enumerate(config.devices):
        if device.id in device_ids:
            problems.append(doc.problem(("devices", i, "id"), f"device id {device.id!r} is used twice"))
        device_ids.add(device.id)
        if device.bus not in bus_names:
            known = ", ".join(sorted(bus_names)) or "none defined"
            problems.append(doc.problem(("devices", i, "bus"), f"no bus named {device.bus!r} (buses: {known})"))
        elif (device.bus, device.unit) in addresses:
            problems.append(doc.problem(("devices", i, "unit"),
                                        f"unit {device.unit} on bus {device.bus!r} is already another device"))
        addresses.add((device.bus, device.unit))
    return problems


def _check_constants(device: DeviceModel, profile: Profile, doc: SourceDoc, index: int) -> list[Problem]:
    unknown = sorted(set(device.constants) - set(profile.points))
    if not unknown:
        return []
    return [doc.problem(("devices", index, "constants"),
                        f"profile {profile.ref} has no point(s) {unknown} to fix a value for")]


def _relocate(problems: list[Problem], doc: SourceDoc, path: tuple[str | int, ...], ref: str) -> list[Problem]:
    """A profile that cannot be found is the config's problem; one that is broken is its own file's."""
    located = []
    for problem in problems:
        if problem.file == ref and problem.line is None:
            located.append(doc.problem(path, problem.message))
        else:
            located.append(problem)
    return located
