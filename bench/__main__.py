"""Run every benchmark, print a table, optionally write the figures as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from bench import (
    buffer,
    bus,
    daemon,
    footprint,
    hostile,
    latency,
    meters,
    outage,
    payload,
    planner,
    resend,
    storm,
    throughput,
)
from bench.report import Figure

SUITES = {"planner": planner.run, "bus": bus.run, "payload": payload.run, "buffer": buffer.run, "outage": outage.run,
          "daemon": daemon.run, "throughput": throughput.run, "meters": meters.run, "latency": latency.run,
          "hostile": hostile.run, "resend": resend.run, "footprint": footprint.run, "storm": storm.run}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI); figures are less precise")
    parser.add_argument("--out", help="write figures as JSON to this file")
    parser.add_argument("--only", choices=sorted(SUITES), action="append", help="run only these suites")
    args = parser.parse_args()
    figures: list[Figure] = []
    for name, run in SUITES.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        for figure in run(quick=args.quick):
            print(figure.row(), flush=True)
            figures.append(figure)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({fig.name: fig.as_json() for fig in figures}, f, indent=2)
    return 0


def _fleet(quick: bool = False) -> list[Figure]:
    """Imported on use: it needs the ingest extra (psycopg), the other suites do not."""
    from bench import fleet

    return fleet.run(quick=quick)


SUITES["fleet"] = _fleet  # registered down here, before main() reads SUITES

if __name__ == "__main__":
    sys.exit(main())
