-- The platform's tables and views (docs/platform.md). Idempotent: applied at every start of
-- `edge-agent ingest`, under an advisory lock so that several instances starting at once do not race.
-- Times are timestamptz (UTC inside); wire timestamps are ms since the Unix epoch.

CREATE TABLE IF NOT EXISTS qualities (
    code smallint PRIMARY KEY,
    name text NOT NULL UNIQUE
);

-- one row per gateway: the site comes from the topic (batches do not carry it)
CREATE TABLE IF NOT EXISTS gateways (
    gateway    text PRIMARY KEY,
    site       text NOT NULL,
    prefix     text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- every schema ever seen: batches from a backlog may refer to one that is no longer retained
CREATE TABLE IF NOT EXISTS schemas (
    gateway     text   NOT NULL,
    schema_id   bigint NOT NULL,
    body        jsonb  NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, schema_id)
);

CREATE TABLE IF NOT EXISTS devices (
    gateway    text NOT NULL,
    device     text NOT NULL,
    profile    text NOT NULL,
    schema_id  bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, device)
);

-- a point of a device: readings refer to it by id (4 bytes instead of four strings per row).
-- A unit change makes a new series, so values of different units never mix.
CREATE TABLE IF NOT EXISTS series (
    id      serial PRIMARY KEY,
    gateway text NOT NULL,
    device  text NOT NULL,
    point   text NOT NULL,
    unit    text NOT NULL,
    kind    text NOT NULL,
    UNIQUE (gateway, device, point, unit)
);

-- the readings, partitioned by day (UTC); partitions are created on demand by the ingest
-- (samples_YYYYMMDD). value: the engineering value (for enums the code); text: text points and
-- enum names; detail: Modbus exception code or enum code (NULL for 0).
CREATE TABLE IF NOT EXISTS samples (      -- columns ordered for alignment: 48-byte rows when text is NULL
    ts        timestamptz      NOT NULL,
    value     double precision,
    series_id integer          NOT NULL,
    quality   smallint         NOT NULL,
    detail    integer,
    text      text
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS samples_series_ts ON samples (series_id, ts);   -- a point over time, latest per point
CREATE INDEX IF NOT EXISTS samples_ts_brin ON samples USING brin (ts);     -- everything in a time range, tiny

-- one row per reading, as the reference decoder prints it: value is NULL when the reading has none
-- or is not a number (an enum's name is in text, its code in detail; a text point's string in text)
CREATE OR REPLACE VIEW readings AS
SELECT s.gateway, s.device, s.point, s.unit, r.ts, CASE WHEN s.kind = 'enum' THEN NULL ELSE r.value END AS value,
       r.text, q.name AS quality, r.detail, r.series_id
FROM samples r JOIN series s ON s.id = r.series_id JOIN qualities q ON q.code = r.quality;

-- the dedup key of at-least-once delivery, and each batch's header
CREATE TABLE IF NOT EXISTS batches (
    gateway       text     NOT NULL,
    epoch         bigint   NOT NULL,
    seq           bigint   NOT NULL,
    schema_id     bigint   NOT NULL,
    site          text     NOT NULL,
    t0            timestamptz NOT NULL,
    t_last        timestamptz,
    flags         smallint NOT NULL,
    historical    boolean  NOT NULL,
    dropped_total bigint   NOT NULL,
    dropped_new   bigint   NOT NULL,
    boot          integer  NOT NULL,
    gap_ms        bigint,
    readings      integer  NOT NULL,
    bytes         integer  NOT NULL,
    received_at   timestamptz NOT NULL,                     -- arrival at the ingest process
    stored_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (gateway, epoch, seq)
);
CREATE INDEX IF NOT EXISTS batches_stored_at ON batches USING brin (stored_at);

-- parts of a schema published in pieces (a broker with a small packet limit): joined, checked against
-- their schema_id and stored in `schemas` once all `parts` are here, then deleted
CREATE TABLE IF NOT EXISTS schema_parts (
    gateway     text    NOT NULL,
    schema_id   bigint  NOT NULL,
    part        integer NOT NULL,
    parts       integer NOT NULL,
    text        text    NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, schema_id, part)
);

-- batches whose schema has not arrived yet: decoded when it does
CREATE TABLE IF NOT EXISTS pending_batches (
    id          bigserial PRIMARY KEY,
    gateway     text   NOT NULL,
    site        text   NOT NULL,
    prefix      text   NOT NULL,
    schema_id   bigint NOT NULL,
    topic       text   NOT NULL,
    payload     bytea  NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_batches_schema ON pending_batches (gateway, schema_id);

-- what could not be understood: kept byte for byte with the reason, never retried automatically
CREATE TABLE IF NOT EXISTS quarantine (
    id          bigserial PRIMARY KEY,
    topic       text  NOT NULL,
    payload     bytea NOT NULL,
    error       text  NOT NULL,
    received_at timestamptz NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- events are delivered at least once: a repeat (same gateway, kind, ts and body) is dropped
CREATE TABLE IF NOT EXISTS events (
    id          bigserial PRIMARY KEY,
    gateway     text  NOT NULL,
    site        text  NOT NULL,
    kind        text  NOT NULL,
    ts          timestamptz NOT NULL,
    body        jsonb NOT NULL,
    body_md5    text  NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (gateway, kind, ts, body_md5)
);

CREATE TABLE IF NOT EXISTS gateway_status (
    gateway    text PRIMARY KEY,
    site       text NOT NULL,
    state      text NOT NULL,
    body       jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);

-- time spans whose readings will never arrive: `restart_gap` from a batch's gap_ms (what a power
-- cut or crash lost), `buffer_evicted` from data_dropped events (a full buffer's oldest batches)
CREATE TABLE IF NOT EXISTS lost_spans (
    id        bigserial PRIMARY KEY,
    gateway   text NOT NULL,
    kind      text NOT NULL,
    from_ts   timestamptz NOT NULL,
    to_ts     timestamptz NOT NULL,
    readings  bigint,
    epoch     bigint,
    seq_first bigint,
    seq_last  bigint,
    UNIQUE (gateway, kind, from_ts, to_ts)
);
CREATE INDEX IF NOT EXISTS lost_spans_time ON lost_spans (gateway, to_ts);

-- grid CO2 emission factors, versioned: a revised publication is a new version of the same year;
-- the highest version of the latest year not after the data's year applies
CREATE TABLE IF NOT EXISTS emission_factors (
    region     text    NOT NULL,      -- 'CN' national; regional grids only with a verified source
    year       integer NOT NULL,      -- the year the factor describes
    version    integer NOT NULL DEFAULT 1,
    kg_per_kwh numeric(8, 4) NOT NULL,
    scope      text    NOT NULL,
    source     text    NOT NULL,
    published  date,
    PRIMARY KEY (region, year, version)
);
INSERT INTO emission_factors (region, year, version, kg_per_kwh, scope, source, published) VALUES
 ('CN', 2022, 1, 0.5366, 'national average electricity CO2 emission factor',
  'Ministry of Ecology and Environment and National Bureau of Statistics of China, '
  '"Announcement on the release of the 2022 electricity CO2 emission factors" (关于发布2022年电力二氧化碳排放因子的公告), dated 2024-12-20',
  '2024-12-20'),
 ('CN', 2023, 1, 0.5306, 'national average electricity CO2 emission factor',
  'Ministry of Ecology and Environment and National Bureau of Statistics of China, '
  '"Announcement on the release of the 2023 electricity CO2 emission factors" (关于发布2023年电力二氧化碳排放因子的公告), released January 2026',
  NULL)
ON CONFLICT DO NOTHING;

-- a site's grid region for the factor lookup (absent: national)
CREATE TABLE IF NOT EXISTS site_regions (
    site   text PRIMARY KEY,
    region text NOT NULL
);

-- which counters are PV generation: by profile (LIKE pattern) and point name. Every inverter
-- profile of the library names its lifetime yield energy_yield_total (kind counter, kWh).
CREATE TABLE IF NOT EXISTS pv_points (
    profile_like text NOT NULL,
    point        text NOT NULL,
    PRIMARY KEY (profile_like, point)
);
INSERT INTO pv_points VALUES ('%', 'energy_yield_total') ON CONFLICT DO NOTHING;

-- latest reading of every point (any quality), one index probe per point
CREATE OR REPLACE VIEW latest_readings AS
SELECT s.gateway, s.device, s.point, s.unit, r.ts, CASE WHEN s.kind = 'enum' THEN NULL ELSE r.value END AS value,
       r.text, q.name AS quality, r.detail, s.id AS series_id
FROM series s
CROSS JOIN LATERAL (SELECT x.ts, x.value, x.text, x.quality, x.detail FROM samples x
                    WHERE x.series_id = s.id ORDER BY x.ts DESC LIMIT 1) r
JOIN qualities q ON q.code = r.quality;

-- 15-minute energy per meter from its energy counters (kind counter, unit Wh/kWh/MWh), in kWh.
-- Consecutive good readings of a counter form a pair; the pair's increase is spread over the
-- 15-minute buckets it spans in proportion to time (linear between readings). A pair longer than
-- `gap` (readings missing in between) is still apportioned, and its buckets are flagged
-- `estimated`; a decrease (counter reset, meter replaced) is not energy: that pair counts nothing
-- and its buckets are flagged `counter_reset`. `lost_data`: the bucket overlaps a lost span of the
-- gateway. covered_s: seconds of the bucket lying between two readings (900 = complete).
-- Buckets are aligned to UTC quarter hours (which are local quarter hours in UTC+8).
CREATE OR REPLACE FUNCTION interval_energy(t_from timestamptz, t_to timestamptz, gap interval DEFAULT '2 minutes')
RETURNS TABLE (series_id integer, gateway text, device text, point text, bucket timestamptz,
               energy_kwh double precision, covered_s double precision, estimated boolean,
               counter_reset boolean, lost_data boolean)
LANGUAGE sql STABLE AS $$
WITH counters AS (
    SELECT s.id, s.gateway, s.device, s.point,
           CASE s.unit WHEN 'Wh' THEN 0.001 WHEN 'kWh' THEN 1.0 WHEN 'MWh' THEN 1000.0 END AS to_kwh
    FROM series s WHERE s.kind = 'counter' AND s.unit IN ('Wh', 'kWh', 'MWh')
), points AS (      -- readings in range plus the one before and the one after (for the edge buckets)
    SELECT c.id, r.ts, r.value * c.to_kwh AS kwh
    FROM counters c CROSS JOIN LATERAL (
        (SELECT x.ts, x.value FROM samples x WHERE x.series_id = c.id AND x.quality = 0 AND x.value IS NOT NULL
           AND x.ts < t_from ORDER BY x.ts DESC LIMIT 1)
        UNION ALL
        (SELECT x.ts, x.value FROM samples x WHERE x.series_id = c.id AND x.quality = 0 AND x.value IS NOT NULL
           AND x.ts >= t_from AND x.ts <= t_to)
        UNION ALL
        (SELECT x.ts, x.value FROM samples x WHERE x.series_id = c.id AND x.quality = 0 AND x.value IS NOT NULL
           AND x.ts > t_to ORDER BY x.ts LIMIT 1)) r
), pairs AS (
    SELECT id, lag(ts) OVER w AS t1, lag(kwh) OVER w AS v1, ts AS t2, kwh AS v2
    FROM points WINDOW w AS (PARTITION BY id ORDER BY ts)
), deltas AS (
    SELECT id, t1, t2, CASE WHEN v2 >= v1 THEN v2 - v1 END AS delta, v2 < v1 AS reset, (t2 - t1) > gap AS long,
           extract(epoch FROM t2 - t1)::double precision AS len_s
    FROM pairs WHERE t1 IS NOT NULL AND t2 > t1
), spread AS (
    SELECT d.id, b AS bucket, d.delta, d.reset, d.long, d.len_s,
           extract(epoch FROM least(d.t2, b + interval '15 minutes') - greatest(d.t1, b))::double precision AS overlap_s
    FROM deltas d
    CROSS JOIN LATERAL generate_series(date_bin('15 minutes', d.t1, timestamptz '2000-01-01 00:00+00'),
                                       d.t2 - interval '1 microsecond', interval '15 minutes') AS b
)
SELECT c.id, c.gateway, c.device, c.point, sp.bucket,
       coalesce(sum(sp.delta * sp.overlap_s / sp.len_s), 0) AS energy_kwh,
       sum(sp.overlap_s) AS covered_s,
       bool_or(sp.long) AS estimated,
       bool_or(sp.reset) AS counter_reset,
       EXISTS (SELECT 1 FROM lost_spans l WHERE l.gateway = c.gateway AND l.from_ts < sp.bucket + interval '15 minutes'
               AND l.to_ts > sp.bucket) AS lost_data
FROM spread sp JOIN counters c ON c.id = sp.id
WHERE sp.bucket >= date_bin('15 minutes', t_from, timestamptz '2000-01-01 00:00+00') AND sp.bucket < t_to
GROUP BY c.id, c.gateway, c.device, c.point, sp.bucket
$$;

CREATE OR REPLACE VIEW interval_energy_15m AS
SELECT * FROM interval_energy('-infinity', 'infinity');

-- hourly PV generation per site and the grid CO2 it avoided (generation x the factor of the year)
CREATE OR REPLACE FUNCTION pv_hourly(t_from timestamptz, t_to timestamptz)
RETURNS TABLE (site text, hour timestamptz, generation_kwh double precision, co2_avoided_kg double precision,
               factor_kg_per_kwh numeric, factor_region text, factor_year integer, factor_version integer,
               inverters bigint, estimated boolean, counter_reset boolean, lost_data boolean)
LANGUAGE sql STABLE AS $$
WITH pv AS (
    SELECT g.site, date_bin('1 hour', e.bucket, timestamptz '2000-01-01 00:00+00') AS hour, e.*
    FROM interval_energy(t_from, t_to) e
    JOIN devices d ON d.gateway = e.gateway AND d.device = e.device
    JOIN gateways g ON g.gateway = e.gateway
    WHERE EXISTS (SELECT 1 FROM pv_points p WHERE d.profile LIKE p.profile_like AND e.point = p.point)
), hourly AS (
    SELECT site, hour, sum(energy_kwh) AS kwh, count(DISTINCT series_id) AS inverters, bool_or(estimated) AS estimated,
           bool_or(counter_reset) AS counter_reset, bool_or(lost_data) AS lost_data
    FROM pv GROUP BY site, hour
)
SELECT h.site, h.hour, h.kwh, h.kwh * f.kg_per_kwh::double precision, f.kg_per_kwh, f.region, f.year, f.version,
       h.inverters, h.estimated, h.counter_reset, h.lost_data
FROM hourly h
LEFT JOIN LATERAL (
    SELECT ef.* FROM emission_factors ef
    WHERE ef.region = coalesce((SELECT r.region FROM site_regions r WHERE r.site = h.site), 'CN')
      AND ef.year <= extract(year FROM h.hour AT TIME ZONE 'Asia/Shanghai')
    ORDER BY ef.year DESC, ef.version DESC LIMIT 1) f ON true
$$;

CREATE OR REPLACE VIEW pv_hourly_co2 AS
SELECT * FROM pv_hourly('-infinity', 'infinity');

-- what needs a look: per gateway, batches stored, waiting for a schema, and lost
CREATE OR REPLACE VIEW ingest_health AS
SELECT g.gateway, g.site,
       (SELECT max(b.stored_at) FROM batches b WHERE b.gateway = g.gateway) AS last_batch_at,
       (SELECT count(*) FROM pending_batches p WHERE p.gateway = g.gateway) AS pending_batches,
       (SELECT count(*) FROM lost_spans l WHERE l.gateway = g.gateway) AS lost_spans,
       (SELECT s.state FROM gateway_status s WHERE s.gateway = g.gateway) AS state
FROM gateways g;
