"""Load agent.yaml: validate it, check it against itself (bus names, unique ids), resolve every
profile it names, and report every problem of every file at once.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """Load and fully resolve the agent config, or raise ConfigError with every problem found.

    Cross-references and profiles are checked on the raw data even when the schema check failed,
    so one run shows a typo in one device and an unknown bus in another together.
    """
    path = Path(path)
    doc = load_yaml(path)
    problems: list[Problem] = []
    config: AgentConfig | None = None
    try:
        config = validate(AgentConfig, doc)
    except ConfigError as exc:
        problems += exc.problems
    raw = doc.data if isinstance(doc.data, dict) else {}
    buses = _entries(raw, "buses")
    devices = _entries(raw, "devices")
    problems += _check_references(buses, devices, doc)
    if library is None:
        dirs = raw.get("profiles_dirs")
        library = ProfileLibrary(dirs if isinstance(dirs, list) else None)
    profiles: dict[int, Profile] = {}
    for index, device in devices:
        ref = device.get("profile")
        if not isinstance(ref, str):
            continue
        try:
            profiles[index] = library.load(ref)
        except ConfigError as exc:
            problems += _relocate(exc.problems, doc, ("devices", index, "profile"), ref)
            continue
        problems += _check_constants(device, profiles[index], doc, index)
    if problems or config is None:
        raise ConfigError(problems)
    setups = [DeviceSetup(d, profiles[i], profiles[i].timing(d)) for i, d in enumerate(config.devices)]
    return LoadedConfig(path, config, setups, hashlib.sha256(path.read_bytes()).hexdigest())


def _entries(raw: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    """(index, mapping) of a list section, skipping malformed items (the schema check reports them)."""
    items = raw.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _check_references(buses: list[tuple[int, dict[str, Any]]], devices: list[tuple[int, dict[str, Any]]],
                      doc: SourceDoc) -> list[Problem]:
    problems = []
    bus_names: set[object] = set()
    for i, bus in buses:
        name = bus.get("name")
        if name in bus_names:
            problems.append(doc.problem(("buses", i, "name"), f"bus name {name!r} is used twice"))
        bus_names.add(name)
    device_ids: set[object] = set()
    addresses: set[tuple[object, object]] = set()
    for i, device in devices:
        device_id, bus, unit = device.get("id"), device.get("bus"), device.get("unit")
        if device_id in device_ids:
            problems.append(doc.problem(("devices", i, "id"), f"device id {device_id!r} is used twice"))
        device_ids.add(device_id)
        if bus not in bus_names:
            known = ", ".join(sorted(str(n) for n in bus_names)) or "none defined"
            problems.append(doc.problem(("devices", i, "bus"), f"no bus named {bus!r} (buses: {known})"))
        elif (bus, unit) in addresses:
            problems.append(doc.problem(("devices", i, "unit"),
                                        f"unit {unit} on bus {bus!r} is already another device"))
        addresses.add((bus, unit))
    return problems


def _check_constants(device: dict[str, Any], profile: Profile, doc: SourceDoc, index: int) -> list[Problem]:
    problems = []
    constants = device.get("constants")
    unknown = sorted(set(constants) - set(profile.points)) if isinstance(constants, dict) else []
    if unknown:
        problems.append(doc.problem(("devices", index, "constants"),
                                    f"profile {profile.ref} has no point(s) {unknown} to fix a value for"))
    intervals = device.get("intervals")
    for pattern in intervals if isinstance(intervals, dict) else []:
        if not fnmatch.filter(profile.points, str(pattern)):
            problems.append(doc.problem(("devices", index, "intervals", pattern),
                                        f"pattern {pattern!r} matches no point of {profile.ref}"))
    return problems


def _relocate(problems: list[Problem], doc: SourceDoc, path: tuple[str | int, ...], ref: str) -> list[Problem]:
    """A profile that cannot be found is the config's problem; one that is broken is its own file's."""
    located = []
    for problem in problems:
        if problem.file == ref and problem.line is None:
            located.append(doc.problem(path, problem.message))
        else:
            located.append(problem)
    return located
