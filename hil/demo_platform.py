"""The demo's platform end: a private PostgreSQL cluster and a real `edge-agent ingest` process on
the demo's broker, and the one query a park dashboard would run (latest value per point, the last
hour's PV generation and the CO₂ it avoided).

Optional by design: the demo's point is the gateway, and a machine without PostgreSQL or psycopg
still runs it; it then says in one line how to get this part.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HINT = ("(PostgreSQL part skipped: {reason}; to see the data land in PostgreSQL, run scripts/bootstrap.sh "
        "or apt-get install postgresql and pip install 'edge-agent[ingest]')")
PREFIX = "[postgresql]"

# One statement: what a dashboard shows. The latest reading of each point (by the reading's own
# time) and the last hour's PV generation with the grid CO2 it avoided (pv_hourly: PV counters'
# interval energy x the versioned emission factor of the hour's year).
QUERY = """
SELECT (SELECT count(*) FROM batches) AS batches,
       (SELECT coalesce(json_agg(json_build_object('device', device, 'point', point, 'value', value, 'text', text,
                                                   'unit', unit, 'quality', quality) ORDER BY device, point), '[]')
        FROM latest_readings WHERE point = ANY(%(points)s)) AS latest,
       pv.kwh, pv.co2_kg, pv.factor
FROM (SELECT sum(generation_kwh) AS kwh, sum(co2_avoided_kg) AS co2_kg, max(factor_kg_per_kwh) AS factor
      FROM pv_hourly(now() - interval '1 hour', now())) pv
"""


@dataclass
class Platform:
    """A running ingest into a private cluster; `report()` runs the query and formats it."""

    dsn: str
    points: list[str]
    _conn: Any = field(default=None, repr=False)

    def _query(self) -> tuple[Any, ...]:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        row = self._conn.execute(QUERY, {"points": self.points}).fetchone()
        assert row is not None  # an aggregate over a subquery: always one row
        return tuple(row)

    def stored_batches(self) -> int:
        """0 also when the database cannot be asked (the report then says why)."""
        import psycopg

        try:
            return int(self._query()[0])
        except psycopg.Error:
            return 0

    def report(self) -> list[str]:
        import psycopg

        try:
            batches, latest, kwh, co2_kg, factor = self._query()
        except psycopg.Error as exc:  # the demo goes on: the park's view matters more than this line
            return [f"{PREFIX} query failed: {str(exc).strip().splitlines()[0]}"]
        lines = [f"{PREFIX} {batches} batches stored by edge-agent ingest; latest value per point:"]
        by_device: dict[str, list[str]] = {}
        for r in latest:
            by_device.setdefault(r["device"], []).append(f"{r['point']}={_shown(r)}")
        lines += [f"{PREFIX}   {device}: {', '.join(values)}" for device, values in sorted(by_device.items())]
        if kwh is None:
            lines.append(f"{PREFIX} last hour: no PV generation yet (it needs two readings of a yield counter)")
        else:
            lines.append(f"{PREFIX} last hour: PV {kwh:.3f} kWh generated, {co2_kg:.3f} kg CO₂ avoided "
                         f"(grid factor {float(factor):.4f} kg/kWh)")
        return lines

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _shown(reading: dict[str, Any]) -> str:
    if reading["quality"] != "ok":
        return reading["quality"]
    if reading["text"] is not None:
        return str(reading["text"])
    unit = f" {reading['unit']}" if reading["unit"] else ""
    return f"{reading['value']:.12g}{unit}"


@contextlib.contextmanager
def platform(workdir: Path, mqtt_port: int, points: list[str], emit: Callable[[str], None]) -> Iterator[Platform | None]:
    """PostgreSQL and `edge-agent ingest` up and subscribed, or None (with the one-line hint)."""
    try:
        import psycopg  # noqa: F401 - only: is the ingest extra installed?

        from ingest.devcluster import ClusterError, DevCluster
    except ImportError as exc:
        emit(HINT.format(reason=f"{exc.name or exc} is not installed"))
        yield None
        return
    try:
        cluster = DevCluster().start()
    except (ClusterError, OSError, subprocess.SubprocessError) as exc:
        emit(HINT.format(reason=str(exc).splitlines()[0][:160]))
        yield None
        return
    log_path = workdir / "ingest.log"
    ingest = _start_ingest(cluster.dsn(), mqtt_port, log_path)
    try:
        if not _wait_subscribed(ingest, log_path, 60):
            emit(f"{PREFIX} edge-agent ingest did not come up; its log:\n{log_path.read_text()[-1500:]}")
            yield None
            return
        emit(f"{PREFIX} edge-agent ingest pid {ingest.pid} stores every batch in PostgreSQL on port {cluster.port} "
             f"(query it yourself: psql 'host=127.0.0.1 port={cluster.port} user=postgres' -c 'TABLE latest_readings')")
        shown = Platform(cluster.dsn(), points)
        try:
            yield shown
        finally:
            shown.close()
    finally:
        _stop(ingest)
        cluster.destroy()


def _start_ingest(dsn: str, mqtt_port: int, log_path: Path) -> subprocess.Popen[bytes]:
    # --exclusive: one instance, ordinary subscriptions (the broker requirements in docs/platform.md)
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "agent", "ingest", "--broker", f"mqtt://127.0.0.1:{mqtt_port}",
                                 "--db", dsn, "--topic-prefix", "park", "--exclusive", "--client-id", "ingest-demo"],
                                stdout=subprocess.DEVNULL, stderr=log)


def _wait_subscribed(ingest: subprocess.Popen[bytes], log_path: Path, timeout: float) -> bool:
    """Until its `subscribed` log line (JSON lines: stderr is a file): batches the agent publishes
    after that reach it. False if it exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ingest.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, AttributeError):  # a line that is not a JSON object
                if json.loads(line).get("event") == "subscribed":
                    return True
        time.sleep(0.1)
    return False


def _stop(ingest: subprocess.Popen[bytes]) -> None:
    ingest.terminate()
    try:
        ingest.wait(15)
    except subprocess.TimeoutExpired:
        ingest.kill()
        ingest.wait(5)
