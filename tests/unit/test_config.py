"""Config and profile loading: every bad input ends in a located, actionable message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.config import ProfileLibrary, load_config
from agent.config.units import parse_duration, parse_size
from agent.drivers.urls import Transport, parse_bus_url
from agent.errors import ConfigError

GOOD = """\
gateway: {id: gw-guian-01, site: guian-ftz}
buses:
  - {name: line1, url: "rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1"}
  - {name: plant-gw, url: "tcp://192.0.2.50:502"}
devices:
  - {id: main-incomer, bus: line1, unit: 1, profile: eastron/sdm630, interval: 10s}
  - {id: hall-b, bus: line1, unit: 2, profile: chint/dtsu666, interval: 10s, constants: {ct_ratio: 40}}
  - {id: pv-roof-a, bus: plant-gw, unit: 1, profile: huawei/sun2000, interval: 5s}
mqtt: {url: "mqtts://platform.example:8883", topic_prefix: park}
buffer: {path: /var/lib/edge-agent/buffer, max_bytes: 256MiB, mode: outage}
"""


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, library: ProfileLibrary | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, library)
    return [str(p) for p in caught.value.problems]


def test_good_config_resolves_every_profile(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, GOOD))
    assert [d.profile.ref for d in loaded.devices] == ["eastron/sdm630", "chint/dtsu666", "huawei/sun2000"]
    assert loaded.config.buffer.max_bytes == 256 * 2**20
    assert loaded.devices[0].config.interval == 10.0
    assert loaded.devices[0].timing.even_aligned is True
    assert loaded.devices[2].timing.pause_after_connect == 1.0
    assert len(loaded.digest) == 64


def test_unknown_key_names_file_line_path_and_suggests(library: ProfileLibrary, write_profile) -> None:  # type: ignore[no-untyped-def]
    lib = write_profile("test/typo", """\
        vendor: T
        model: typo
        source: test
        points:
          voltage_l1:
            address: 0
            type: f32
            word_oder: CDAB
            unit: V
        """)
    with pytest.raises(ConfigError) as caught:
        lib.load("test/typo")
    (problem,) = caught.value.problems
    assert problem.file.endswith("test/typo.yaml")
    assert problem.line == 8
    assert problem.path == "points.voltage_l1.word_oder"
    assert "did you mean 'order'" in problem.message


def test_every_error_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        gateway: {id: gw-1, site: s}
        buses:
          - {name: line1, url: "rtu:///dev/ttyUSB0?baudrate=9601"}
          - {name: line1, url: "tcp://192.0.2.1"}
        devices:
          - {id: m1, bus: line1, unit: 1, profile: eastron/sdm630, intervall: 10s}
          - {id: m2, bus: line9, unit: 300, profile: eastron/sdm630}
        """)
    found = problems(path)
    text = "\n".join(found)
    assert f"{path}:3: buses[0].url: " in text and "baudrate 9601" in text
    assert f"{path}:6: devices[0].intervall: unknown key 'intervall'; did you mean 'interval'?" in text
    assert f"{path}:7: devices[1].unit: " in text
    assert f"{path}:4: buses[1].name: bus name 'line1' is used twice" in text
    assert f"{path}:7: devices[1].bus: no bus named 'line9'" in text
    assert len(found) == 5


def test_reference_errors_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        gateway: {id: gw-1, site: s}
        buses:
          - {name: line1, url: "tcp://192.0.2.1"}
          - {name: line1, url: "tcp://192.0.2.2"}
        devices:
          - {id: m1, bus: line1, unit: 1, profile: eastron/sdm63}
          - {id: m1, bus: line2, unit: 2, profile: eastron/sdm630}
          - {id: m3, bus: line1, unit: 1, profile: chint/dtsu666, constants: {ct_ration: 5}}
        """)
    text = "\n".join(problems(path))
    assert f"{path}:4: buses[1].name: bus name 'line1' is used twice" in text
    assert f"{path}:6: devices[0].profile: unknown profile 'eastron/sdm63'; did you mean eastron/sdm630" in text
    assert f"{path}:7: devices[1].id: device id 'm1' is used twice" in text
    assert f"{path}:7: devices[1].bus: no bus named 'line2'" in text
    assert f"{path}:8: devices[2].unit: unit 1 on bus 'line1' is already another device" in text
    assert f"{path}:8: devices[2].constants: profile chint/dtsu666 has no point(s) ['ct_ration']" in text


def test_missing_key_points_at_parent(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway: {site: s}\n")
    assert problems(path) == [f"{path}:1: gateway.id: required key is missing"]


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway: {id: gw, site: s}\nbuses:\n  - {name: a, url: [\n")
    (message,) = problems(path)
    assert message.startswith(f"{path}:") and "YAML syntax error" in message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway: {id: gw, site: s}\nbuffer: {mode: always}\nbuffer: {mode: outage}\n")
    assert problems(path) == [f"{path}:3: buffer: duplicate key (YAML would silently keep only the last one)"]


def test_missing_file(tmp_path: Path) -> None:
    (message,) = problems(tmp_path / "nope.yaml")
    assert "cannot read file" in message


def test_broken_profile_is_reported_in_its_own_file(tmp_path: Path, write_profile) -> None:  # type: ignore[no-untyped-def]
    lib = write_profile("test/bad", """\
        vendor: T
        model: bad
        source: test
        points:
          active_power: {address: 0, type: i32, unit: kW}
          energy_import: {address: 2, type: u32, unit: kWh}
          state: {address: 4, type: enum}
        """)
    path = write(tmp_path, """\
        gateway: {id: gw-1, site: s}
        buses: [{name: b, url: "tcp://192.0.2.1"}]
        devices: [{id: d, bus: b, unit: 1, profile: test/bad}]
        """)
    found = problems(path, lib)
    assert any(":7: points.state: an enum point needs `values`" in p for p in found), found


def test_canonical_units_and_counters_are_enforced(write_profile) -> None:  # type: ignore[no-untyped-def]
    lib = write_profile("test/units", """\
        vendor: T
        model: units
        source: test
        points:
          active_power: {address: 0, type: i32, unit: kW}
          energy_import: {address: 2, type: u32, unit: kWh}
        """)
    with pytest.raises(ConfigError) as caught:
        lib.load("test/units")
    text = str(caught.value)
    assert ":5: points.active_power.unit: canonical point active_power is in 'W', not 'kW'" in text
    assert ":6: points.energy_import.kind: energy_import is a counter" in text


def test_extends_overrides_and_removes(write_profile) -> None:  # type: ignore[no-untyped-def]
    write_profile("test/base", """\
        vendor: T
        model: base
        source: test
        defaults: {register: input, max_registers: 80, even_aligned: true}
        points:
          voltage_l1: {address: 0, type: f32, unit: V}
          energy_import: {address: 0x101E, type: f32, unit: kWh, kind: counter}
          energy_export: {address: 0x1028, type: f32, unit: kWh, kind: counter}
        """)
    lib = write_profile("test/variant", """\
        vendor: T
        model: variant
        source: test
        extends: test/base
        remove: [energy_export]
        defaults: {max_registers: 50}
        points:
          energy_import: {address: 0x401E, type: f32, unit: kWh, kind: counter}
        """)
    profile = lib.load("test/variant")
    assert set(profile.points) == {"voltage_l1", "energy_import"}
    assert profile.points["energy_import"].address == 0x401E
    assert profile.points["voltage_l1"].register.value == "input"
    assert profile.timing().max_registers == 50 and profile.timing().even_aligned


def test_extends_loop_is_an_error(write_profile) -> None:  # type: ignore[no-untyped-def]
    write_profile("test/a", "vendor: T\nmodel: a\nsource: t\nextends: test/b\n")
    lib = write_profile("test/b", "vendor: T\nmodel: b\nsource: t\nextends: test/a\n")
    with pytest.raises(ConfigError, match="loop"):
        lib.load("test/a")


def test_every_shipped_profile_validates(library: ProfileLibrary) -> None:
    refs = library.available()
    assert {"eastron/sdm630", "chint/dtsu666", "huawei/sun2000", "xintai/water-meter"} <= set(refs)
    for ref in refs:
        assert library.load(ref).points, ref


@pytest.mark.parametrize(("url", "transport", "host", "port", "serial"), [
    ("tcp://192.0.2.50", Transport.TCP, "192.0.2.50", 502, None),
    ("tcp://gw.local:1502", Transport.TCP, "gw.local", 1502, None),
    ("rtu+tcp://192.0.2.9:4001", Transport.RTU_OVER_TCP, "192.0.2.9", 4001, None),
    ("rtu:///dev/ttyUSB0?baudrate=2400&parity=E&stopbits=2", Transport.RTU, "/dev/ttyUSB0", 0, "2400 8E2"),
    ("rtu:///dev/ttyAMA0", Transport.RTU, "/dev/ttyAMA0", 0, "9600 8N1"),
])
def test_bus_urls(url: str, transport: Transport, host: str, port: int, serial: str | None) -> None:
    spec = parse_bus_url(url)
    assert (spec.transport, spec.host, spec.port) == (transport, host, port)
    assert (str(spec.serial) if spec.serial else None) == serial


@pytest.mark.parametrize(("url", "fragment"), [
    ("modbus://x", "unknown scheme"),
    ("rtu://dev/ttyUSB0", "three slashes"),
    ("rtu:///dev/ttyUSB0?baud=9600", "unknown parameter"),
    ("rtu:///dev/ttyUSB0?parity=X", "parity"),
    ("tcp://", "no host"),
    ("tcp://h:99999", "port must be a number from 1 to 65535"),
    ("tcp://h:0", "port must be a number from 1 to 65535"),
])
def test_bad_bus_urls(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_bus_url(url)


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("15m", 900.0), ("1h", 3600.0), (3, 3.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("256MiB", 256 * 2**20), ("64MB", 64 * 10**6), (4096, 4096), ("1GiB", 2**30)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["10 parsecs", True, "fast"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_interval_patterns_must_match_a_point(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        gateway: {id: gw-1, site: s}
        buses: [{name: b, url: "tcp://192.0.2.1"}]
        devices:
          - {id: m1, bus: b, unit: 1, profile: eastron/sdm630, interval: 1s, intervals: {"energie_*": 60s}}
        """)
    assert problems(path) == [f"{path}:4: devices[0].intervals.energie_*: pattern 'energie_*' matches no point "
                              "of eastron/sdm630"]


def test_yaml_booleans_where_a_name_is_expected_get_a_hint(write_profile) -> None:  # type: ignore[no-untyped-def]
    lib = write_profile("test/bools", """\
        vendor: T
        model: bools
        source: test
        points:
          state: {address: 0, type: enum, values: {1: off, 2: on}}
        """)
    with pytest.raises(ConfigError) as caught:
        lib.load("test/bools")
    assert "YAML reads this as the boolean False: put the word in quotes" in str(caught.value)


def test_reconnect_ceiling_below_the_first_backoff_step_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("topic_prefix: park}", "topic_prefix: park,\n       reconnect_max: 500ms}"))
    (problem,) = problems(path)
    assert problem == f"{path}:10: mqtt.reconnect_max: Input should be greater than or equal to 1"
    assert load_config(write(tmp_path, GOOD, "ok.yaml")).config.mqtt.reconnect_max == 60.0  # the default


# --------------------------------------------------------------------------- what `run` needs, checked by `validate`

MINIMAL = "gateway: {id: gw-1, site: s}\n"


@pytest.mark.parametrize(("mqtt", "fragment"), [
    ("{url: 'mqtt://h:99999'}", "mqtt.url: 'mqtt://h:99999': the port must be a number from 1 to 65535"),
    ("{url: 'mqtt://h:0'}", "the port must be a number from 1 to 65535"),
    ("{url: 'mqtt://'}", "no host; write mqtt://HOST:1883"),
    ("{url: 'mqtt://:1883'}", "no host"),
    ("{url: 'mqtts://user:pw@host'}", "no credentials in the URL: put the user name in mqtt.username"),
    ("{url: 'mqtt://user@host'}", "no credentials in the URL"),
    ("{url: 'http://host'}", "unknown scheme http:// in 'http://host': use mqtt://HOST:1883 or mqtts://HOST:8883"),
    ("{url: 'host:1883'}", "use mqtt://HOST:1883"),
    ("{url: 'mqtt://host/topic'}", "without a path or query"),
    ("{url: 'mqtt://h', password_file: /nonexistent/pw}", "mqtt.password_file: cannot read /nonexistent/pw: "
                                                          "No such file or directory"),
    ("{url: 'mqtt://h', ca_file: /nonexistent/ca.pem}", "mqtt.ca_file: cannot read /nonexistent/ca.pem"),
    ("{url: 'mqtt://h', password_file: /tmp}", "mqtt.password_file: /tmp is not a regular file"),
])
def test_broker_settings_run_would_fail_on_are_located(tmp_path: Path, mqtt: str, fragment: str) -> None:
    found = problems(write(tmp_path, MINIMAL + f"mqtt: {mqtt}\n"))
    assert len(found) == 1 and found[0].startswith(f"{tmp_path}/agent.yaml:2: mqtt.") and fragment in found[0], found


def test_password_file_that_is_not_text(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe")
    found = problems(write(tmp_path, MINIMAL + f"mqtt: {{url: 'mqtt://h', password_file: {secret}}}\n"))
    assert found == [f"{tmp_path}/agent.yaml:2: mqtt.password_file: {secret} is not UTF-8 text"]


def test_readable_password_file_and_plain_broker_url_load(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    loaded = load_config(write(tmp_path, MINIMAL + f"mqtt: {{url: 'mqtts://[::1]', password_file: {secret}}}\n"))
    assert loaded.config.mqtt is not None and loaded.config.mqtt.password_file == str(secret)


@pytest.mark.parametrize(("listen", "fragment"), [
    ("127.0.0.1:99999", "port 99999 is out of range"),
    ("0.0.0.0:9100", "loopback only"),
    ("9100", "expected 127.0.0.1:PORT"),
])
def test_prometheus_listen_address(tmp_path: Path, listen: str, fragment: str) -> None:
    found = problems(write(tmp_path, MINIMAL + f"prometheus: '{listen}'\n"))
    assert len(found) == 1 and "agent.yaml:2: prometheus:" in found[0] and fragment in found[0], found


def test_two_buses_on_one_serial_port_even_through_a_link(tmp_path: Path) -> None:
    tty = tmp_path / "ttyUSB0"
    tty.touch()
    (tmp_path / "by-id").symlink_to(tty)
    found = problems(write(tmp_path, MINIMAL + textwrap.dedent(f"""\
        buses:
          - {{name: line1, url: "rtu://{tty}?baudrate=9600"}}
          - {{name: meters, url: "dlt645://{tmp_path}/by-id"}}
        """)))
    assert found == [f"{tmp_path}/agent.yaml:4: buses[1].url: serial port {tty} is already bus 'line1': "
                     "put the devices behind it on that one bus"]


@pytest.mark.parametrize("second", ["tcp://GW.example:502", "tcp://gw.example", "rtu+tcp://gw.example:502"])
def test_two_buses_to_one_tcp_endpoint(tmp_path: Path, second: str) -> None:
    found = problems(write(tmp_path, MINIMAL + textwrap.dedent(f"""\
        buses:
          - {{name: plant, url: "tcp://gw.example:502"}}
          - {{name: plant2, url: "{second}"}}
        """)))
    host = second.split("//")[1].split(":")[0].lower()
    assert found == [f"{tmp_path}/agent.yaml:4: buses[1].url: TCP endpoint {host}:502 "
                     "is already bus 'plant': put the devices behind it on that one bus"]


def test_distinct_endpoints_and_ports_are_fine(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, MINIMAL + textwrap.dedent("""\
        buses:
          - {name: a, url: "tcp://gw.example:502"}
          - {name: b, url: "tcp://gw.example:503"}
          - {name: c, url: "rtu:///dev/ttyUSB0"}
          - {name: d, url: "rtu:///dev/ttyUSB1"}
        """)))
    assert len(loaded.config.buses) == 4


def test_unknown_bus_scheme_lists_the_known_ones(tmp_path: Path) -> None:
    found = problems(write(tmp_path, MINIMAL + "buses: [{name: a, url: 'modbus://gw:502'}]\n"))
    assert len(found) == 1 and "unknown scheme 'modbus'" in found[0] and "use tcp://, rtu://, rtu+tcp://" in found[0]
    assert "^" not in found[0]  # no regular expression shown to the operator


POINTS_HEAD = """\
    vendor: T
    model: t
    source: test
    points:
"""


@pytest.mark.parametrize(("points", "expected"), [
    ("  a: {address: 100, type: f32}\n  b: {address: 101, type: f32}\n",
     "points.b.address: b (101..102) reads registers overlapping a (100..101)"),
    ("  a: {address: 100, type: u64}\n  b: {address: 103}\n", "b (103..103) reads registers overlapping a (100..103)"),
    ("  a: {address: 100, type: f32}\n  b: {address: 100, type: f32}\n",
     "b (100..101) reads the same registers as a (100..101)"),
    ("  a: {address: 0, type: string, length: 8}\n  b: {address: 7}\n", "b (7..7) reads registers overlapping a"),
])
def test_overlapping_registers_in_a_profile(write_profile, points: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    lib = write_profile("test/overlap", POINTS_HEAD + textwrap.indent(points, "    "))
    with pytest.raises(ConfigError) as caught:
        lib.load("test/overlap")
    assert any(expected in str(p) for p in caught.value.problems), [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("points", [
    "  a: {address: 100, type: f32}\n  b: {address: 102, type: f32}\n",  # adjacent
    "  status: {address: 5, type: enum, values: {0: idle, 1: running}}\n  status_bits: {address: 5, type: u16}\n",
    "  a: {address: 100, register: input}\n  b: {address: 100, register: holding}\n",  # other tables
    "  a: {address: 0, model: [101]}\n  b: {address: 0, model: [103]}\n",  # SunSpec offsets in other models
])
def test_registers_that_may_share_addresses(write_profile, points: str) -> None:  # type: ignore[no-untyped-def]
    extra = "    discovery: sunspec\n" if "model:" in points else ""
    lib = write_profile("test/fine", POINTS_HEAD.replace("    points:\n", extra + "    points:\n")
                        + textwrap.indent(points, "    "))
    assert len(lib.load("test/fine").points) == 2


def test_every_shipped_profile_still_loads(library: ProfileLibrary) -> None:
    refs = library.available()
    assert len(refs) > 10
    for ref in refs:
        library.load(ref)


def test_a_form_is_said_in_words_not_as_a_regular_expression(tmp_path: Path, write_profile) -> None:  # type: ignore[no-untyped-def]
    found = problems(write(tmp_path, "gateway: {id: 'gw 1', site: s}\n"))
    assert found == [f"{tmp_path}/agent.yaml:1: gateway.id: expected letters, digits, '.', '_' and '-', starting "
                     "with a letter or digit (got 'gw 1')"]
    lib = write_profile("test/proto", POINTS_HEAD.replace("    points:\n", "    protocol: modbus-tcp\n    points: {}\n"))
    with pytest.raises(ConfigError) as caught:
        lib.load("test/proto")
    assert [p.message for p in caught.value.problems] == [
        "expected one of: modbus, dlt645, cjt188 (got 'modbus-tcp')"]


def test_max_packet_size_is_a_size_of_at_least_256_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("topic_prefix: park}", "topic_prefix: park,\n       max_packet_size: 128KiB}"))
    assert load_config(path).config.mqtt.max_packet_size == 128 * 1024
    assert load_config(write(tmp_path, GOOD, "ok.yaml")).config.mqtt.max_packet_size is None  # the default
    small = write(tmp_path, GOOD.replace("topic_prefix: park}", "topic_prefix: park,\n       max_packet_size: 100}"),
                  "small.yaml")
    (problem,) = problems(small)
    assert problem == f"{small}:10: mqtt.max_packet_size: Input should be greater than or equal to 256"
