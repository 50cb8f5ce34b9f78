"""DL/T 645 and CJ/T 188 in the config: bus URLs with their line defaults, meter addresses as on
the nameplate, and every wrong combination a located error (file:line: yaml.path: message)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ProfileLibrary
from agent.config.loader import load_config
from agent.drivers.readers import meter_target
from agent.drivers.urls import SerialSettings, Transport, parse_bus_url
from tests.unit.test_config import problems, write

HEADER = """\
    gateway: {id: gw-1, site: s}
    buses:
      - {name: elec, url: "dlt645:///dev/ttyUSB1"}
      - {name: water, url: "cjt188+tcp://192.0.2.7:8899"}
      - {name: modbus, url: "tcp://192.0.2.1"}
    devices:
"""


@pytest.mark.parametrize(("url", "transport", "serial"), [
    ("dlt645:///dev/ttyUSB1", Transport.DLT645, SerialSettings(2400, "E", 1, 8)),
    ("dlt645:///dev/ttyUSB1?baudrate=9600&parity=E", Transport.DLT645, SerialSettings(9600, "E", 1, 8)),
    ("cjt188:///dev/ttyUSB2?baudrate=1200", Transport.CJT188, SerialSettings(1200, "E", 1, 8)),
    ("dlt645+tcp://10.0.0.5:8899", Transport.DLT645_TCP, None),
    ("cjt188+tcp://10.0.0.6:502", Transport.CJT188_TCP, None),
])
def test_bus_urls(url: str, transport: Transport, serial: SerialSettings | None) -> None:
    spec = parse_bus_url(url)
    assert (spec.transport, spec.serial) == (transport, serial)
    assert spec.protocol == transport.value.split("+")[0]


def test_a_valid_meter_config(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + """\
      - {id: incomer, bus: elec, address: "000000123456", profile: dlt645/three-phase}
      - {id: hall, bus: elec, address: "000000123457", profile: chint/dtsu666-dlt645}
      - {id: tap, bus: water, address: "00000000000012", profile: cjt188/water-meter}
      - {id: pv, bus: modbus, unit: 1, profile: huawei/sun2000}
    """)
    loaded = load_config(path)
    target = meter_target(loaded.devices[0].profile, loaded.devices[0].config.address or "")
    assert target.address.hex(" ") == "56 34 12 00 00 00"  # nameplate order in, wire order out


@pytest.mark.parametrize(("entry", "where", "message"), [
    ('{id: m, bus: elec, unit: 1, profile: dlt645/three-phase}', "devices[0].unit",
     "a dlt645 meter is addressed by `address` (12 digits), not `unit`"),
    ('{id: m, bus: elec, address: "00000012345", profile: dlt645/three-phase}', "devices[0].address",
     "a dlt645 address has 12 digits, this one 11"),
    ('{id: m, bus: water, address: "000000123456", profile: cjt188/water-meter}', "devices[0].address",
     "a cjt188 address has 14 digits, this one 12"),
    ('{id: m, bus: elec, address: "000000123456", profile: eastron/sdm630}', "devices[0].profile",
     "eastron/sdm630 is a modbus profile, but bus 'elec' is a dlt645 bus"),
    ('{id: m, bus: modbus, unit: 1, profile: dlt645/single-phase}', "devices[0].profile",
     "dlt645/single-phase is a dlt645 profile, but bus 'modbus' is a modbus bus"),
    ('{id: m, bus: water, address: "00000000000012", profile: dlt645/single-phase}', "devices[0].profile",
     "is a dlt645 profile, but bus 'water' is a cjt188 bus"),
    ('{id: m, bus: modbus, unit: 1, address: "000000123456", profile: eastron/sdm630}', "devices[0].address",
     "`address` is for DL/T 645 and CJ/T 188 meters"),
    ('{id: m, bus: elec, profile: dlt645/three-phase}', "devices[0].address", "required key is missing"),
    ('{id: m, bus: modbus, profile: eastron/sdm630}', "devices[0].unit", "required key is missing"),
    ('{id: m, bus: elec, address: 000000123456, profile: dlt645/three-phase}', "devices[0].address",
     "write the meter address in quotes"),
    ('{id: m, bus: elec, address: "00000012345X", profile: dlt645/three-phase}', "devices[0].address",
     "expected digits only (got '00000012345X')"),
])
def test_wrong_combinations_are_located(tmp_path: Path, entry: str, where: str, message: str) -> None:
    path = write(tmp_path, HEADER + f"      - {entry}\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:7: {where}: ") and message in p for p in found), found


def test_two_meters_with_one_address(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + """\
      - {id: a, bus: elec, address: "000000123456", profile: dlt645/three-phase}
      - {id: b, bus: elec, address: "000000123456", profile: dlt645/three-phase}
    """)
    assert problems(path) == [f"{path}:8: devices[1].address: address 000000123456 on bus 'elec' is already "
                              "another device"]


@pytest.mark.parametrize(("point", "message"), [
    ("{address: 0, type: u16}", "a dlt645 point is read by `di`"),
    ("{di: 0x00010000, unit: kWh}", "a `di` point needs `format`"),
    ("{di: 0x00010000, format: XX.X.X, unit: kWh}", "data format"),
    ("{di: 0x00010000, address: 3, format: XXXXXX.XX}", "`address` (Modbus) or `di`"),
])
def test_profile_point_errors(write_profile, point: str, message: str) -> None:  # type: ignore[no-untyped-def]
    from agent.errors import ConfigError

    library: ProfileLibrary = write_profile("test/meter", f"""\
        vendor: T
        model: m
        source: tests
        protocol: dlt645
        points:
          energy_x: {point}
        """)
    with pytest.raises(ConfigError) as caught:
        library.load("test/meter")
    assert any(message in str(p) and ":6:" in str(p) for p in caught.value.problems), caught.value.problems


def test_block_must_have_one_wildcard(write_profile) -> None:  # type: ignore[no-untyped-def]
    from agent.errors import ConfigError

    library: ProfileLibrary = write_profile("test/blocks", """\
        vendor: T
        model: m
        source: tests
        protocol: dlt645
        blocks: [{di: 0x02010100, first: 0x02010100}]
        points: {}
        """)
    with pytest.raises(ConfigError, match="exactly one FF byte"):
        library.load("test/blocks")


def test_a_cjt188_profile_needs_its_meter_type(write_profile) -> None:  # type: ignore[no-untyped-def]
    from agent.errors import ConfigError

    library: ProfileLibrary = write_profile("test/water", """\
        vendor: T
        model: m
        source: tests
        protocol: cjt188
        points: {volume_total: {di: 0x901F, format: XXXXXX.XX, unit_code: true, unit: "m³", kind: counter}}
        """)
    with pytest.raises(ConfigError, match="needs `meter_type`"):
        library.load("test/water")
