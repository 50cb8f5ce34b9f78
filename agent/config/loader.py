"""Load agent.yaml: validate it, check it against itself (bus names, unique ids), resolve every
profile it names, and report every problem of every file at once.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
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
    doc: SourceDoc | None = None  # where each key is, for problems found after loading (a port in use)

    @property
    def point_count(self) -> int:
        return sum(len(d.profile.points) for d in self.devices)

    def problem(self, path: tuple[str | int, ...], message: str) -> Problem:
        """A problem at `path` of this config, with its line when known."""
        return self.doc.problem(path, message) if self.doc else Problem(str(self.path), None, ".".join(map(str, path)),
                                                                        message)


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
    problems += _check_endpoints(buses, doc)
    problems += _check_files(raw.get("mqtt"), doc)
    if library is None:
        dirs = raw.get("profiles_dirs")
        library = ProfileLibrary([d for d in dirs if isinstance(d, str)] if isinstance(dirs, list) else None)
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
    problems += _check_addressing(buses, devices, profiles, doc)
    if problems or config is None:
        raise ConfigError(problems)
    setups = [DeviceSetup(d, profiles[i], profiles[i].timing(d)) for i, d in enumerate(config.devices)]
    return LoadedConfig(path, config, setups, hashlib.sha256(path.read_bytes()).hexdigest(), doc)


def _entries(raw: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    """(index, mapping) of a list section, skipping malformed items (the schema check reports them).
    Values that are not plain scalars are dropped here too: the cross-checks put names and units in
    sets, and a list where a name belongs is the schema check's to report."""
    items = raw.get(key)
    if not isinstance(items, list):
        return []
    return [(i, {k: v for k, v in item.items() if _plain(v) or k in NESTED})
            for i, item in enumerate(items) if isinstance(item, dict)]


NESTED = ("constants", "intervals")  # device keys whose values are mappings


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


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
    for i, entry in devices:
        device_id, bus_name, unit = entry.get("id"), entry.get("bus"), entry.get("unit")
        if device_id in device_ids:
            problems.append(doc.problem(("devices", i, "id"), f"device id {device_id!r} is used twice"))
        device_ids.add(device_id)
        if bus_name not in bus_names:
            known = ", ".join(sorted(str(n) for n in bus_names)) or "none defined"
            problems.append(doc.problem(("devices", i, "bus"), f"no bus named {bus_name!r} (buses: {known})"))
        elif unit is not None and (bus_name, unit) in addresses:
            problems.append(doc.problem(("devices", i, "unit"),
                                        f"unit {unit} on bus {bus_name!r} is already another device"))
        elif entry.get("address") is not None and (bus_name, entry.get("address")) in addresses:
            problems.append(doc.problem(("devices", i, "address"),
                                        f"address {entry.get('address')} on bus {bus_name!r} is already another device"))
        addresses.add((bus_name, unit if unit is not None else entry.get("address")))
    return problems


def _check_endpoints(buses: list[tuple[int, dict[str, Any]]], doc: SourceDoc) -> list[Problem]:
    """One bus per serial port and per TCP endpoint: two would open the port twice (the second open
    fails or, worse, both interleave frames on one line) or hold two connections to a gateway that
    serves one. Devices behind one endpoint share its bus."""
    from agent.drivers.urls import parse_bus_url

    problems = []
    seen: dict[tuple[str, object], object] = {}
    for i, bus in buses:
        url = bus.get("url")
        try:
            spec = parse_bus_url(url) if isinstance(url, str) else None
        except ValueError:
            continue  # the schema check reports it
        if spec is None:
            continue
        if spec.transport.is_local_serial:
            key: tuple[str, object] = ("serial port", os.path.realpath(spec.host))  # by-id links name one tty
        else:
            key = ("TCP endpoint", (spec.host.lower(), spec.port))
        if key in seen:
            where = key[1] if key[0] == "serial port" else f"{spec.host}:{spec.port}"
            problems.append(doc.problem(("buses", i, "url"), f"{key[0]} {where} is already bus {seen[key]!r}: "
                                                             "put the devices behind it on that one bus"))
        else:
            seen[key] = bus.get("name")
    return problems


SECRET_FILES = ("password_file", "ca_file", "cert_file", "key_file")


def _check_files(mqtt: object, doc: SourceDoc) -> list[Problem]:
    """The files `run` reads at start must be there and readable: a missing one would stop the
    agent at every start (a crash loop under systemd), so it is the config's error."""
    if not isinstance(mqtt, dict):
        return []
    problems = []
    for key in SECRET_FILES:
        name = mqtt.get(key)
        if not isinstance(name, str):
            continue
        try:
            if not stat.S_ISREG(os.stat(name).st_mode):  # a directory, or a FIFO that would block the read
                problems.append(doc.problem(("mqtt", key), f"{name} is not a regular file"))
                continue
            with open(name, "rb") as f:
                content = f.read(1 << 20)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(doc.problem(("mqtt", key), f"cannot read {name}: {reason}"))
            continue
        if key == "password_file":
            try:
                content.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(doc.problem(("mqtt", key), f"{name} is not UTF-8 text"))
    return problems


ADDRESS_DIGITS = {"dlt645": 12, "cjt188": 14}


def _check_addressing(buses: list[tuple[int, dict[str, Any]]], devices: list[tuple[int, dict[str, Any]]],
                      profiles: dict[int, Profile], doc: SourceDoc) -> list[Problem]:
    """A Modbus device has a `unit`, a DL/T 645 or CJ/T 188 meter an `address` of 12 or 14 digits,
    and the profile speaks the bus's protocol."""
    protocols = {bus.get("name"): _protocol(bus.get("url")) for _, bus in buses}
    problems = []
    for i, device in devices:
        protocol = protocols.get(device.get("bus"))
        if protocol is None:
            continue  # unknown bus or bad URL: reported elsewhere
        problems += _check_device_addressing(device, protocol, doc, i)
        profile = profiles.get(i)
        if profile is not None and profile.model.protocol != protocol:
            problems.append(doc.problem(("devices", i, "profile"),
                                        f"{profile.ref} is a {profile.model.protocol} profile, but bus "
                                        f"{device.get('bus')!r} is a {protocol} bus"))
    return problems


def _check_device_addressing(device: dict[str, Any], protocol: str, doc: SourceDoc, i: int) -> list[Problem]:
    unit, address = device.get("unit"), device.get("address")
    if protocol == "modbus":
        if address is not None:
            return [doc.problem(("devices", i, "address"), "`address` is for DL/T 645 and CJ/T 188 meters; "
                                                           "a Modbus device has `unit`")]
        return [] if unit is not None else [doc.problem(("devices", i, "unit"), "required key is missing")]
    if unit is not None:
        return [doc.problem(("devices", i, "unit"), f"a {protocol} meter is addressed by `address` "
                                                    f"({ADDRESS_DIGITS[protocol]} digits), not `unit`")]
    if address is None:
        return [doc.problem(("devices", i, "address"), "required key is missing: the meter address, "
                                                       f"{ADDRESS_DIGITS[protocol]} digits as on the nameplate")]
    digits = ADDRESS_DIGITS[protocol]
    if isinstance(address, str) and address.isdigit() and len(address) != digits:
        return [doc.problem(("devices", i, "address"), f"a {protocol} address has {digits} digits, "
                                                       f"this one {len(address)}: write it as on the nameplate, "
                                                       "with its leading zeros")]
    return []


def _protocol(url: object) -> str | None:
    from agent.drivers.urls import parse_bus_url

    try:
        return parse_bus_url(str(url)).protocol if isinstance(url, str) else None
    except ValueError:
        return None


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
