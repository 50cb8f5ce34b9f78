"""The `edge-agent` command. Each subcommand parses its arguments, calls one library function and
formats what it returns; no logic of its own lives here.

Exit codes: 0 success, 1 invalid input (config, profile, arguments), 2 a device or bus did not answer
(or a command's optional dependency is not installed: the message says what to install).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agent import __version__
from agent.config import ProfileLibrary, load_config
from agent.config.profiles import Profile
from agent.drivers.urls import BusSpec, parse_bus_url
from agent.errors import AgentError, ConfigError
from agent.probe import ProbeReport, all_orders, probe
from agent.types import Quality

EXIT_INPUT = 1
EXIT_NO_ANSWER = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away shows here, where it is handled, not at exit
        return code
    except ConfigError as exc:
        print(f"{len(exc.problems)} error(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_INPUT
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `edge-agent ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("run", help="run the agent (the systemd service runs this)")
    p.add_argument("-c", "--config", default="/etc/edge-agent/agent.yaml", help="agent.yaml")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config and every profile it uses")
    p.add_argument("-c", "--config", required=True, help="agent.yaml")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("probe", help="read every point of a profile once from one device")
    p.add_argument("--url", required=True, type=_bus_url,
                   help="tcp://host:port, rtu:///dev/ttyUSB0?baudrate=9600, rtu+tcp://host:port, "
                                                 "dlt645:///dev/ttyUSB1, dlt645+tcp://host:port, cjt188:// ...")
    p.add_argument("--unit", type=int, default=None, help="Modbus unit id (default: the profile's)")
    p.add_argument("--address", default=None, help="DL/T 645 / CJ/T 188 meter address as on the nameplate "
                                                   "(default: ask the one meter on the line with read-address)")
    p.add_argument("--profile", required=True, help="vendor/model")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: the profile's)")
    p.add_argument("--json", action="store_true", help="print one JSON object: point -> value (null if unavailable)")
    p.add_argument("--all-orders", action="store_true", help="also show 32/64-bit values decoded in all four orders")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("profiles", help="list or show device profiles")
    psub = p.add_subparsers(metavar="ACTION")
    q = psub.add_parser("list", help="every profile on the search path")
    q.set_defaults(func=cmd_profiles_list)
    q = psub.add_parser("show", help="one profile's points and defaults")
    q.add_argument("ref", help="vendor/model")
    q.set_defaults(func=cmd_profiles_show)

    p = sub.add_parser("simulate", help="serve a profile's registers with plausible, moving values")
    p.add_argument("--profile", required=True, help="vendor/model")
    p.add_argument("--listen", default=None, type=_bus_url, help="tcp://HOST:PORT, rtu+tcp://HOST:PORT or rtu:///dev/PTY; "
                                                  "dlt645+tcp://, dlt645:///dev/PTY, cjt188+tcp://, cjt188:///dev/PTY "
                                                  "for meter profiles (default: 127.0.0.1:5020 in the profile's protocol)")
    p.add_argument("--unit", type=int, default=None, help="unit id to answer (default: the profile's)")
    p.add_argument("--address", action="append", default=[], help="DL/T 645 / CJ/T 188 meter address to answer "
                                                                   "(nameplate order; repeat for several meters)")
    p.add_argument("--set", action="append", default=[], type=_assignment, metavar="POINT=VALUE",
                   help="pin a point to a value")
    p.add_argument("--missing", action="append", default=[], metavar="POINT",
                   help="a point the device lacks: reads of it answer exception 2 (like some EM24s' export)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("buffer", help="look into a buffer directory (read-only; safe beside a running agent)")
    bsub = p.add_subparsers(metavar="ACTION")
    q = bsub.add_parser("stats", help="counts, bytes, ages and losses")
    q.add_argument("--path", required=True, help="buffer directory")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_buffer_stats)
    q = bsub.add_parser("dump", help="one line per stored batch")
    q.add_argument("--path", required=True, help="buffer directory")
    q.add_argument("--decode", action="store_true", help="also print each payload decoded (JSON)")
    q.set_defaults(func=cmd_buffer_dump)

    p = sub.add_parser("decode", help="decode a telemetry batch to JSON lines (the reference decoder)")
    p.add_argument("file", help="batch file (msgpack, optionally zlib), or - for standard input")
    p.add_argument("--schema", required=True, help="the schema message (JSON) the batch refers to")
    p.add_argument("--header", action="store_true", help="print the batch header as the first line")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("scan", help="find the devices on a bus and the profile that fits each (opt-in, slow)")
    p.add_argument("--url", required=True, type=_bus_url, help="bus URL, as in agent.yaml")
    p.add_argument("--units", default="1-247", help="unit ids to try, e.g. 1-20 or 1,2,11")
    p.add_argument("--profile", default=None, help="DL/T 645 / CJ/T 188 lines: the profile to read the meters with")
    p.add_argument("--addresses", default=None, help="DL/T 645 / CJ/T 188 lines: a file of meter addresses to try, "
                                                     "one per line (default: DL/T 645 shortened-address search; "
                                                     "CJ/T 188 read-address, one meter alone)")
    p.add_argument("--timeout", type=float, default=0.3, help="seconds per unit (default 0.3)")
    p.add_argument("--rate", type=float, default=10.0, help="unit ids tried per second at most (default 10)")
    p.add_argument("--bus-name", default="line1", help="bus name for the printed device blocks")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("tail", help="print decoded readings arriving at a broker, live")
    p.add_argument("--broker", required=True, help="mqtt://host:1883 or mqtts://host:8883")
    p.add_argument("--topic", default="#", help="subscription filter (default: everything)")
    p.add_argument("--json", action="store_true", help="one JSON object per reading")
    p.add_argument("--count", type=int, default=None, help="exit after this many readings")
    p.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("hil", help="run simulated-park scenarios with faults and verify every poll end to end")
    p.add_argument("scenarios", nargs="*", help="scenario names (the package's hil/scenarios/) or files; default: all")
    p.add_argument("--quick", action="store_true", help="the short versions (CI)")
    p.add_argument("--out", default=".", help="where the report and PNG timelines go (default: here)")
    p.set_defaults(func=cmd_hil)

    p = sub.add_parser("ingest", help="the platform end: store every gateway's batches in PostgreSQL "
                                      "(needs edge-agent[ingest])")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:1883 or mqtts://host:8883")
    p.add_argument("--db", default=None, help="PostgreSQL connection string (default: $EDGE_INGEST_DB, "
                                              "then libpq's PG* variables)")
    p.add_argument("--topic-prefix", "--prefix", dest="prefix", default="park",
                   help="the gateways' mqtt.topic_prefix (default park; --prefix is an alias)")
    p.add_argument("--group", default="ingest", help="shared-subscription group of the instances (default ingest)")
    p.add_argument("--exclusive", action="store_true",
                   help="ordinary instead of shared subscriptions: one instance only, but safe over restarts of a "
                        "broker that does not keep shared subscriptions (mosquitto 2.0; see docs/platform.md)")
    p.add_argument("--client-id", default=None, help="MQTT client id, stable per instance (default ingest-HOSTNAME)")
    p.add_argument("--session-expiry", type=int, default=7 * 86400,
                   help="s the broker keeps this instance's session and messages while it is away (default 7 days)")
    p.add_argument("--receive-maximum", type=int, default=1000, help="unacknowledged messages in flight (default 1000)")
    p.add_argument("--chunk", type=int, default=200, help="messages per database transaction at most (default 200)")
    p.add_argument("--username", default=None)
    p.add_argument("--password-file", default=None, help="file holding the MQTT password (never logged)")
    p.add_argument("--ca-file", default=None)
    p.add_argument("--cert-file", default=None)
    p.add_argument("--key-file", default=None)
    p.add_argument("--migrate-only", action="store_true", help="create or update the tables and views, then exit")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("demo", help="a simulated park read by the real agent through a real broker, shown live")
    p.add_argument("--once", action="store_true", help="stop after 60 readings (or 20 s)")
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from agent.config.isolated import PendingConfig

    pending = PendingConfig(args.config)  # the child validates while this process imports the daemon
    from agent.daemon import run

    return run(pending)


def cmd_validate(args: argparse.Namespace) -> int:
    from agent.config.environment import check_environment

    loaded = load_config(args.config)
    errors, warnings = check_environment(loaded)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if errors:
        raise ConfigError(errors)
    print(f"{args.config}: OK: {len(loaded.config.buses)} bus(es), {len(loaded.devices)} device(s), "
          f"{loaded.point_count} point(s); profiles: {', '.join(sorted({d.profile.ref for d in loaded.devices})) or '-'}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    profile = ProfileLibrary().load(args.profile)
    unit = profile.defaults.unit_id if args.unit is None else args.unit
    protocol = parse_bus_url(args.url).protocol
    if protocol != profile.model.protocol:
        print(f"error: {args.profile} is a {profile.model.protocol} profile and {args.url} a {protocol} bus",
              file=sys.stderr)
        return EXIT_INPUT
    report = asyncio.run(probe(args.url, unit, profile, args.timeout, args.address))
    if not report.answered:
        print(f"no answer from {report.who} at {report.spec} within {report.timeout:g} s "
              f"({report.requests} request(s) tried; {report.error or 'timeout'}).\nUsual causes:\n"
              f"{report.hint(profile)}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        print(json.dumps({r.point: r.value if r.quality is Quality.OK else None for r in report.readings}))
    else:
        print(format_probe(report, profile, args.all_orders))
    return 0


def format_probe(report: ProbeReport, profile: Profile, show_orders: bool) -> str:
    meter = profile.model.protocol != "modbus"
    rows = [("point", "value", "unit", "quality", "raw bytes" if meter else "raw registers")]
    for r in report.readings:
        spec = profile.points[r.point]
        quality = r.quality.name.lower() + (f"({r.detail})" if r.quality is Quality.EXCEPTION else "")
        value = "" if r.value is None else str(r.value)
        raw = " ".join(f"{w:02X}" if meter else f"{w:04X}" for w in r.raw)
        if show_orders and not meter and (orders := all_orders(r, spec.type)):
            raw += "   " + "  ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in orders.items())
        rows.append((r.point, value, spec.unit, quality, raw))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    ok = sum(r.quality is Quality.OK for r in report.readings)
    lines.append(f"{ok}/{len(report.readings)} points ok, {report.requests} request(s), {report.who} at {report.spec}")
    if report.error and ok < len(report.readings):
        lines.append(f"first failure: {report.error}")  # what came back, when it was not a value
    return "\n".join(lines)


def cmd_profiles_list(args: argparse.Namespace) -> int:
    library = ProfileLibrary()
    if not library.available():  # an install without its package data, or a broken search path
        print(f"error: no profiles found; searched {', '.join(map(str, library.dirs))}", file=sys.stderr)
        return EXIT_INPUT
    for ref in library.available():
        try:
            profile = library.load(ref)
            print(f"{ref:28} {profile.model.vendor} {profile.model.model}: {len(profile.points)} points")
        except ConfigError as exc:
            print(f"{ref:28} INVALID: {exc.problems[0]}")
    return 0


def cmd_profiles_show(args: argparse.Namespace) -> int:
    profile = ProfileLibrary().load(args.ref)
    model = profile.model
    timing = profile.timing()
    print(f"{args.ref}: {model.vendor} {model.model}\n  {model.description}\n  source: {model.source}")
    print(f"  serial {profile.defaults.serial.settings()}, unit id {profile.defaults.unit_id}, "
          f"max {timing.max_registers} registers/request, gap {timing.max_gap}, even-aligned {timing.even_aligned}, "
          f"timeout {timing.timeout:g} s, pause after connect {timing.pause_after_connect:g} s, "
          f"between requests {timing.pause_between_requests:g} s")
    for note in model.notes:
        print(f"  note: {note}")
    for name, spec in profile.points.items():
        if spec.di is not None:  # DL/T 645 / CJ/T 188: by data identifier
            extra = f" x{spec.scale:g}" if spec.scale != 1 else ""
            print(f"  {name:24} DI {spec.di:08X} @{spec.at:<3} {spec.bcd:12} {'signed ' if spec.signed else ''}"
                  f"{'+unit code ' if spec.unit_code else ''}{extra} {spec.unit} {spec.kind.value}")
            continue
        doc = model.points[name].doc
        extra = f" x{spec.scale:g}" if spec.scale != 1 else ""
        extra += f" x({'*'.join(spec.multiply_by)})" if spec.multiply_by else ""
        print(f"  {name:24} {spec.register.value:8} {spec.address:5} (0x{spec.address:04X}"
              f"{f', doc {doc}' if doc is not None else ''}) {spec.type.value:6} {spec.order.value}{extra} "
              f"{spec.unit} {spec.kind.value}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from agent.simulate import SimulatedDevice, serve

    profile = ProfileLibrary().load(args.profile)
    overrides = dict(args.set)
    unit = profile.defaults.unit_id if args.unit is None else args.unit
    protocol = profile.model.protocol
    default = "tcp://127.0.0.1:5020" if protocol == "modbus" else f"{protocol}+tcp://127.0.0.1:5020"
    listen = parse_bus_url(args.listen or default, profile.defaults.serial.settings())
    if protocol != "modbus" or listen.protocol != "modbus":
        return _simulate_meters(args, profile, listen, overrides)

    devices = {unit: SimulatedDevice(profile, overrides, missing=set(args.missing))}
    return _serve_until_interrupted(lambda: serve(listen, devices), listen, f"{args.profile} as unit {unit}")


def _simulate_meters(args: argparse.Namespace, profile: Profile, listen: BusSpec,
                     overrides: dict[str, float | str]) -> int:
    from agent.meters.server import serve_meters
    from agent.simulate import SimulatedDevice

    protocol = profile.model.protocol
    if listen.protocol != protocol:
        print(f"error: {args.profile} is a {protocol} profile; listen on a {protocol} URL", file=sys.stderr)
        return EXIT_INPUT
    addresses = args.address or ["0" * (11 if protocol == "dlt645" else 13) + "1"]
    digits = 12 if protocol == "dlt645" else 14
    if bad := [a for a in addresses if len(a) != digits or not a.isdigit()]:
        print(f"error: a {protocol} address has {digits} digits: {', '.join(bad)}", file=sys.stderr)
        return EXIT_INPUT

    meters = {a: SimulatedDevice(profile, dict(overrides), missing=set(args.missing)) for a in addresses}
    return _serve_until_interrupted(lambda: serve_meters(listen, meters), listen,
                                    f"{args.profile} as meter(s) {', '.join(addresses)}")


def _serve_until_interrupted(start: Callable[[], Awaitable[Any]], listen: BusSpec, what: str) -> int:
    """Run a simulator server (Modbus or meters) until Ctrl-C, saying where it listens."""

    async def run() -> None:
        handle = await start()
        where = f"{listen.transport.value}://{listen.host}:{handle.port}" if handle.port else str(listen)
        print(f"simulating {what} on {where} (Ctrl-C stops)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await handle.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def _bus_url(text: str) -> str:
    """A bus URL argument, checked here so a mistake is a usage error, not a traceback."""
    try:
        parse_bus_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _assignment(text: str) -> tuple[str, float | str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected POINT=VALUE, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        return name, value


def cmd_buffer_stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.buffer.inspect import buffer_stats

    stats = buffer_stats(Path(args.path))
    if args.json:
        print(json.dumps(stats))
    else:
        for key, value in stats.items():
            print(f"{key:20} {'-' if value is None else value}")
    return 0


def cmd_buffer_dump(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.buffer.inspect import buffer_dump, decode_generic

    for row in buffer_dump(Path(args.path)):
        print(f"seq={row.seq} readings={row.readings} t_first={row.t_first} t_last={row.t_last} bytes={row.size} "
              f"crc={'ok' if row.crc_ok else 'BAD'}")
        if args.decode:
            print(json.dumps(decode_generic(row.payload), default=str))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.codec import FormatError, WireSchema, decode, decode_header

    payload = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    try:
        schema = WireSchema.from_json(Path(args.schema).read_text())
        if args.header:
            print(json.dumps({"header": decode_header(payload)[0].__dict__}))
        for reading in decode(payload, schema):
            print(json.dumps(reading.as_dict(), ensure_ascii=False))
    except (FormatError, KeyError, ValueError) as exc:
        print(f"error: cannot decode: {exc}", file=sys.stderr)
        return EXIT_INPUT
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from agent.scan import device_block, scan

    spec = parse_bus_url(args.url)
    if spec.protocol != "modbus":
        return _scan_meters(args, spec)
    try:
        units = _units(args.units)
    except ValueError as exc:
        print(f"error: --units: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(f"scanning {spec}, {len(units)} unit id(s), at most {args.rate:g}/s, {args.timeout:g} s each ...",
          file=sys.stderr, flush=True)
    found = asyncio.run(scan(spec, units, ProfileLibrary(), args.timeout, args.rate))
    for item in found:
        ranked = ", ".join(f"{c.ref} ({c.ok} points, {c.plausible}/{c.checked} plausible)"
                           for c in item.candidates[:3] if c.ok)
        print(f"# unit {item.unit}: {ranked or 'answers, no profile fits'}")
    print("devices:")
    for item in found:
        print(device_block(item, args.bus_name))
    return 0 if found else EXIT_NO_ANSWER


def _scan_meters(args: argparse.Namespace, spec: BusSpec) -> int:
    """A DL/T 645 / CJ/T 188 line: the meters that answer, from a list of addresses or read-address."""
    from pathlib import Path

    from agent.meters.probe import find_meters, read_address, search_wildcard

    library = ProfileLibrary()
    ref = args.profile or ("dlt645/three-phase" if spec.protocol == "dlt645" else "cjt188/water-meter")
    profile = library.load(ref)
    if args.addresses:
        candidates = [line.strip() for line in Path(args.addresses).read_text().splitlines()
                      if line.strip() and not line.startswith("#")]
        found = asyncio.run(find_meters(spec, profile, candidates, args.timeout))
    elif spec.protocol == "dlt645":
        print(f"searching {spec} by shortened addressing (100+ requests, {args.timeout:g} s each) ...",
              file=sys.stderr, flush=True)
        found = asyncio.run(search_wildcard(spec, profile, args.timeout))
    else:
        address = asyncio.run(read_address(spec, profile, args.timeout))
        found = [address] if address else []
    print("devices:")
    for address in found:
        print(f"  - {{id: meter-{address[-6:]}, bus: {args.bus_name}, address: \"{address}\", profile: {ref}}}")
    return 0 if found else EXIT_NO_ANSWER


def _units(text: str) -> list[int]:
    """`1-20,31` -> [1, ..., 20, 31]; Modbus unit ids are 1-247 (0 is broadcast, 248-255 reserved)."""
    units: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.strip().isdigit() or not (hi or lo).strip().isdigit():
            raise ValueError(f"expected unit ids like 1-20 or 1,2,11, got {text!r}")
        first, last = int(lo), int(hi or lo)
        if not 1 <= first <= last <= 247:
            raise ValueError(f"unit ids are 1-247, got {part.strip()!r}")
        units += range(first, last + 1)
    return sorted(set(units))


def cmd_tail(args: argparse.Namespace) -> int:
    from agent.tail import tail

    try:
        tail(args.broker, args.topic, lambda line: print(line, flush=True), args.count, args.json, args.timeout)
    except OSError as exc:
        print(f"error: cannot reach {args.broker}: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    return 0


def missing_for_harness(command: str, modules: Sequence[str]) -> list[str]:
    """What `command` (hil, demo) needs beyond the agent and is not installed, as install hints.

    Checked before anything starts, so a gateway install without the extra says what to install
    instead of dying with a traceback half-way through a run."""
    import importlib

    hints = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            hints.append(f"`edge-agent {command}` needs {module} ({exc}): pip install 'edge-agent[hil]'")
    from testkit.broker import MOSQUITTO  # the harness is loaded by its commands only

    if not os.path.exists(MOSQUITTO):
        hints.append(f"`edge-agent {command}` runs a private MQTT broker: apt install mosquitto "
                     "(or scripts/bootstrap.sh in a checkout)")
    return hints


def _report_missing(hints: list[str]) -> int:
    for hint in hints:
        print(f"error: {hint}", file=sys.stderr)
    return EXIT_NO_ANSWER


def cmd_hil(args: argparse.Namespace) -> int:
    from pathlib import Path

    missing = missing_for_harness("hil", ["matplotlib"])  # the report's PNG timelines
    if missing:
        return _report_missing(missing)
    from hil.main import main as hil_main

    return hil_main(args.scenarios, args.quick, Path(args.out))


def cmd_ingest(args: argparse.Namespace) -> int:
    try:
        from ingest.main import UsageError, run
    except ImportError as exc:  # a gateway install: psycopg (the ingest extra) is not there
        print(f"error: `edge-agent ingest` needs the ingest extra ({exc}).\n"
              "install it with: pip install 'edge-agent[ingest]'", file=sys.stderr)
        return EXIT_NO_ANSWER
    try:
        return run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT


def cmd_demo(args: argparse.Namespace) -> int:
    missing = missing_for_harness("demo", [])  # psycopg is optional: without it the demo skips its database view
    if missing:
        return _report_missing(missing)
    from hil.demo import run_demo

    return run_demo(once=args.once)


if __name__ == "__main__":
    raise SystemExit(main())
