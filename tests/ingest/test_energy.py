"""The SQL views over data tables: 15-minute interval energy from counters (gaps apportioned and
flagged, resets, lost spans), hourly PV generation with the CO2 it avoided, latest per point."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from tests.ingest.conftest import migrated

T = dt.datetime(2025, 11, 21, 0, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T + dt.timedelta(minutes=minutes)


@pytest.fixture
def db(dsn: str) -> Any:
    store = migrated(dsn)
    store.create_partitions({(T.date() - dt.date(1970, 1, 1)).days + d for d in range(-1, 3)} |
                            {(dt.date(y, 6, 1) - dt.date(1970, 1, 1)).days for y in (2021, 2022, 2023, 2025)})
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def counter(conn: Any, readings: list[tuple[float, float | None]], unit: str = "kWh", point: str = "energy_import",
            device: str = "m1", gateway: str = "gw", quality: int = 0, start: dt.datetime = T) -> int:
    sid = conn.execute("INSERT INTO series (gateway, device, point, unit, kind) VALUES (%s, %s, %s, %s, 'counter')"
                       " RETURNING id", (gateway, device, point, unit)).fetchone()[0]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO samples (series_id, ts, value, quality) VALUES (%s, %s, %s, %s)",
                        [(sid, start + dt.timedelta(minutes=m), v, quality) for m, v in readings])
    return sid


def energy(conn: Any, sid: int, gap: str = "2 minutes", t_from: dt.datetime = T,
           t_to: dt.datetime = T + dt.timedelta(hours=2)) -> list[tuple[Any, ...]]:
    rows = conn.execute("SELECT bucket, energy_kwh, covered_s, estimated, counter_reset, lost_data"
                        " FROM interval_energy(%s, %s, %s::interval) WHERE series_id = %s ORDER BY bucket",
                        (t_from, t_to, gap, sid)).fetchall()
    return [(int((b - t_from).total_seconds() // 60), round(e, 6), c, est, reset, lost)
            for b, e, c, est, reset, lost in rows]


# (minute, counter kWh) readings -> (bucket minute, kWh, covered s, estimated, counter_reset, lost_data)
CASES = {
    "steady, 5-minute readings": (
        [(0, 100), (5, 101), (10, 102), (20, 104), (30, 106)], "15 minutes",
        [(0, 3.0, 900, False, False, False), (15, 3.0, 900, False, False, False)]),
    "a reading pair across a boundary is split by time": (
        [(0, 10), (10, 12), (20, 14), (30, 16)], "15 minutes",
        [(0, 3.0, 900, False, False, False), (15, 3.0, 900, False, False, False)]),
    "45 minutes without readings: apportioned, flagged estimated": (
        [(0, 0), (10, 1), (55, 10), (60, 10.5)], "15 minutes",
        [(0, 2.0, 900, True, False, False), (15, 3.0, 900, True, False, False), (30, 3.0, 900, True, False, False),
         (45, 2.5, 900, True, False, False)]),
    "a counter reset (meter replaced) is not energy": (
        [(0, 500), (5, 501), (10, 2), (15, 3), (20, 5)], "15 minutes",
        [(0, 2.0, 900, False, True, False), (15, 2.0, 300, False, False, False)]),
    "only pairs inside the bucket: partial coverage": (
        [(3, 7), (9, 8)], "15 minutes", [(0, 1.0, 360, False, False, False)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_interval_energy(db: Any, case: str) -> None:
    readings, gap, expected = CASES[case]
    assert energy(db, counter(db, readings), gap) == expected


def test_default_gap_flags_pairs_longer_than_two_minutes(db: Any) -> None:
    sid = counter(db, [(0, 0), (1, 0.1), (2, 0.2), (15, 1.5)])
    assert energy(db, sid) == [(0, 1.5, 900, True, False, False)]


def test_watt_hours_are_converted_and_bad_readings_skipped(db: Any) -> None:
    sid = counter(db, [(0, 1000), (15, 4000)], unit="Wh")
    db.execute("INSERT INTO samples (series_id, ts, value, quality) VALUES (%s, %s, NULL, 1), (%s, %s, 99999, 4)",
               (sid, at(5), sid, at(10)))  # a timeout and a decode error between them: ignored
    assert energy(db, sid, "15 minutes") == [(0, 3.0, 900, False, False, False)]


def test_a_lost_span_flags_the_buckets_it_touches(db: Any) -> None:
    sid = counter(db, [(m, m / 10) for m in range(0, 46, 5)])
    db.execute("INSERT INTO lost_spans (gateway, kind, from_ts, to_ts) VALUES ('gw', 'restart_gap', %s, %s)",
               (at(16), at(20)))
    assert [(b, lost) for b, *_, lost in energy(db, sid, "15 minutes")] == [(0, False), (15, True), (30, False)]


def test_a_window_query_uses_the_readings_around_it(db: Any) -> None:
    """interval_energy(from, to) needs the reading before `from` and after `to` for its edge buckets."""
    sid = counter(db, [(0, 0), (20, 2), (40, 4)])
    assert energy(db, sid, "30 minutes", t_from=at(15), t_to=at(30)) == [(0, 1.5, 900, False, False, False)]


def test_gauges_are_not_energy(db: Any) -> None:
    sid = db.execute("INSERT INTO series (gateway, device, point, unit, kind) VALUES ('gw', 'm', 'active_power', 'W',"
                     " 'gauge') RETURNING id").fetchone()[0]
    db.execute("INSERT INTO samples (series_id, ts, value, quality) VALUES (%s, %s, 1, 0), (%s, %s, 2, 0)",
               (sid, at(0), sid, at(5)))
    assert energy(db, sid) == []


def pv_site(conn: Any, site: str, gateway: str, start: dt.datetime, readings: list[tuple[float, float]],
            profile: str = "huawei/sun2000") -> None:
    conn.execute("INSERT INTO gateways (gateway, site, prefix) VALUES (%s, %s, 'park') ON CONFLICT DO NOTHING",
                 (gateway, site))
    conn.execute("INSERT INTO devices (gateway, device, profile, schema_id) VALUES (%s, 'inv', %s, 1)", (gateway, profile))
    counter(conn, readings, point="energy_yield_total", device="inv", gateway=gateway, start=start)


# data year -> factor applied: the year's own, else the latest earlier one, none before the first
@pytest.mark.parametrize("year, factor", [(2022, 0.5366), (2023, 0.5306), (2025, 0.5306), (2021, None)])
def test_pv_hourly_generation_and_co2_avoided(db: Any, year: int, factor: float | None) -> None:
    start = dt.datetime(year, 6, 1, 4, 0, tzinfo=dt.UTC)  # noon in Guizhou
    pv_site(db, "guian-ftz", "gw-pv", start, [(0, 1000), (30, 1010), (60, 1020)])
    rows = db.execute("SELECT site, hour, generation_kwh, co2_avoided_kg, factor_kg_per_kwh::float8, factor_year"
                      " FROM pv_hourly(%s, %s)", (start, start + dt.timedelta(hours=1))).fetchall()
    assert len(rows) == 1
    site, hour, kwh, co2, kg_per_kwh, factor_year = rows[0]
    assert (site, hour, round(kwh, 6)) == ("guian-ftz", start, 20.0)
    if factor is None:
        assert (co2, kg_per_kwh) == (None, None)
    else:
        assert (kg_per_kwh, round(co2, 6)) == (factor, round(20 * factor, 6))
        assert factor_year == min(year, 2023)


def test_a_revised_factor_is_a_new_version_and_wins(db: Any) -> None:
    start = dt.datetime(2023, 6, 1, 4, 0, tzinfo=dt.UTC)
    pv_site(db, "guian-ftz", "gw-pv", start, [(0, 0), (60, 10)])
    db.execute("INSERT INTO emission_factors (region, year, version, kg_per_kwh, scope, source) VALUES"
               " ('CN', 2023, 2, 0.5000, 'test', 'a revision')")
    assert db.execute("SELECT co2_avoided_kg, factor_version FROM pv_hourly(%s, %s)",
                      (start, start + dt.timedelta(hours=1))).fetchall() == [(5.0, 2)]


def test_only_pv_counters_count_as_generation(db: Any) -> None:
    start = dt.datetime(2023, 6, 1, 4, 0, tzinfo=dt.UTC)
    pv_site(db, "guian-ftz", "gw-pv", start, [(0, 0), (60, 10)])
    counter(db, [(0, 0), (60, 500)], point="energy_import", device="main", gateway="gw-pv", start=start)  # consumption
    rows = db.execute("SELECT generation_kwh, inverters FROM pv_hourly_co2").fetchall()
    assert rows == [(10.0, 1)]


def test_seeded_factors_cite_their_source(db: Any) -> None:
    rows = db.execute("SELECT region, year, kg_per_kwh::float8, source FROM emission_factors ORDER BY year").fetchall()
    assert [(r, y, f) for r, y, f, _ in rows] == [("CN", 2022, 0.5366), ("CN", 2023, 0.5306)]
    assert all("Ministry of Ecology and Environment" in s and "National Bureau of Statistics" in s for *_, s in rows)


def test_latest_reading_per_point(db: Any) -> None:
    sid = counter(db, [(0, 1), (5, 2), (10, 3)])
    other = counter(db, [(0, 7)], point="energy_export")
    db.execute("INSERT INTO samples (series_id, ts, value, quality, detail) VALUES (%s, %s, NULL, 2, 4)", (sid, at(15)))
    rows = db.execute("SELECT series_id, ts, value, quality, detail FROM latest_readings ORDER BY series_id").fetchall()
    assert rows == [(sid, at(15), None, "exception", 4), (other, at(0), 7.0, "ok", None)]
