"""`edge-agent ingest` from the command line: a gateway install without the extra gets a clear
message and exit 2; --migrate-only creates the tables; a bad broker URL is a usage error."""

from __future__ import annotations

import subprocess
import sys

from tests.ingest.conftest import query

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
