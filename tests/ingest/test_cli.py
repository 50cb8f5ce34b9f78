"""`edge-agent ingest` from the command line: a gateway install without the extra gets a clear
message and exit 2; --migrate-only creates the tables; a bad broker URL is a usage error."""

from __future__ import annotations

import subprocess
import sys

from agent.cli import _parser
from testkit.broker import Broker
from tests.ingest.conftest import Gateway, count, query, vector, wait_until

# psycopg made unimportable, as on a gateway installed without the ingest extra
NO_PSYCOPG = ("import sys; sys.modules['psycopg'] = None; from agent.cli import main; "
              "sys.exit(main(sys.argv[1:]))")


def run(*args: str, code: str = "from agent.cli import main; import sys; sys.exit(main(sys.argv[1:]))") \
        -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False)


def test_without_the_extra_it_says_what_to_install_and_exits_2() -> None:
    result = run("ingest", "--db", "host=127.0.0.1", code=NO_PSYCOPG)
    assert result.returncode == 2
    assert "pip install 'edge-agent[ingest]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_only_creates_the_tables_and_views(dsn: str) -> None:
    result = run("ingest", "--db", dsn, "--migrate-only")
    assert result.returncode == 0, result.stderr
    names = {r[0] for r in query(dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"samples", "batches", "pending_batches", "quarantine", "events", "lost_spans", "readings", "latest_readings",
            "interval_energy_15m", "pv_hourly_co2", "emission_factors"} <= names
    assert run("ingest", "--db", dsn, "--migrate-only").returncode == 0  # idempotent


def test_a_bad_broker_url_is_a_usage_error(dsn: str) -> None:
    result = run("ingest", "--db", dsn, "--broker", "http://x")
    assert result.returncode == 1 and "mqtt://host" in result.stderr


def test_topic_prefix_with_levels_reaches_the_database(dsn: str, broker: Broker) -> None:
    """The option the docs name, as a real process: a gateway under `operator-a/park` is stored;
    `--prefix` is the same option (older scripts keep working)."""
    assert _parser().parse_args(["ingest", "--prefix", "x"]).prefix == "x"
    payload, schema, expected = vector("basic")
    base = "operator-a/park/guian-ftz/gw-guian-01"
    proc = subprocess.Popen([sys.executable, "-m", "agent", "ingest", "--broker", f"mqtt://127.0.0.1:{broker.port}",
                             "--db", dsn, "--topic-prefix", "operator-a/park", "--exclusive", "--client-id", "cli-test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    gateway = Gateway(broker.port)
    try:
        # the schema is retained: it reaches the ingest whenever that subscribes; the batch waits for it
        gateway.publish(f"{base}/schema", schema, retain=True)
        assert wait_until(lambda: _tables_exist(dsn) and count(dsn, "schemas") == 1, 30)
        gateway.publish(f"{base}/telemetry", payload)
        assert wait_until(lambda: count(dsn, "batches") == 1, 20)
        assert count(dsn, "samples") == len(expected["readings"])
        assert query(dsn, "SELECT gateway, site, prefix FROM gateways") == [("gw-guian-01", "guian-ftz", "operator-a/park")]
    finally:
        gateway.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]


def _tables_exist(dsn: str) -> bool:
    return bool(query(dsn, "SELECT to_regclass('public.schemas') IS NOT NULL")[0][0])
