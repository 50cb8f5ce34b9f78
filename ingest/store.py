"""PostgreSQL: the tables (sql/schema.sql), partitions on demand, and one transaction per chunk of
messages. Used from one thread only (the writer, ingest/writer.py): a psycopg connection is not
shared, and the caches below are plain dicts.

Every message gets its own savepoint, so one the database refuses (a NUL byte in a text value,
say) is quarantined without undoing the others. A connection failure propagates: the caller
rolls the chunk back, acknowledges nothing and retries the same chunk later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from agent.codec import FormatError, Header, WireSchema, decode, decode_header, join_schema
from agent.types import Quality
from ingest.rows import (
    BadMessage,
    LostSpan,
    SampleColumns,
    SeriesRef,
    Topic,
    check_times,
    event_lost_spans,
    header_lost_spans,
    parse_event,
    parse_status,
    parse_topic,
    sample_columns,
)

MIGRATION_LOCK = 0x6564_6765  # advisory lock ids: schema migration, partition creation
PARTITION_LOCK = 0x6564_6766
EPOCH = dt.date(1970, 1, 1)
UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DECODE_ERRORS = (FormatError, IndexError, KeyError, TypeError, ValueError, OverflowError, AttributeError)


class NeedPartitions(Exception):
    """Samples fall on days without a partition: roll back, create them, retry the chunk."""

    def __init__(self, days: set[int]) -> None:
        super().__init__(f"partitions needed for {len(days)} day(s)")
        self.days = days


@dataclass(frozen=True)
class Message:
    """One MQTT message as the writer hands it over."""

    topic: str
    payload: bytes
    received_at: float  # time.time() at arrival


@dataclass(frozen=True)
class Known:
    schema: WireSchema
    series_of: dict[tuple[str, str], SeriesRef]


def partition_name(day: int) -> str:
    return f"samples_{(EPOCH + dt.timedelta(days=day)):%Y%m%d}"


class Store:
    def __init__(self, dsn: str, log: Any) -> None:
        self.dsn = dsn
        self.log = log
        self.conn: psycopg.Connection[Any] | None = None
        self.partitions: set[str] = set()
        self.known: dict[tuple[str, int], Known] = {}  # committed schemas with their series ids
        self.sites: dict[str, tuple[str, str]] = {}  # gateway -> (site, prefix) as stored
        self._on_commit: list[Callable[[], None]] = []  # cache updates that only hold once committed

    # ------------------------------------------------------------------ connection and DDL

    def connect(self) -> None:
        if self.conn is not None and not self.conn.closed:
            return
        self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10, application_name="edge-agent ingest")
        self.migrate()
        self._load_partitions()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def migrate(self) -> None:
        """Apply sql/schema.sql and the quality names of the wire format, unless this very
        version is already applied (DDL at every reconnect would take locks on busy tables)."""
        ddl = resources.files("ingest").joinpath("sql/schema.sql").read_text(encoding="utf-8")
        version = hashlib.sha256(ddl.encode()).hexdigest()
        conn = self._conn()
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS ingest_meta (key text PRIMARY KEY, value text NOT NULL)")
            applied = conn.execute("SELECT value FROM ingest_meta WHERE key = 'schema_sha256'").fetchone()
            if applied and applied[0] == version:
                return
            with conn.transaction():
                conn.execute(ddl)
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO qualities VALUES (%s, %s) ON CONFLICT (code) DO UPDATE SET name = "
                                    "EXCLUDED.name", [(int(q), q.name.lower()) for q in Quality])
                conn.execute("INSERT INTO ingest_meta VALUES ('schema_sha256', %s) ON CONFLICT (key) DO UPDATE SET "
                             "value = EXCLUDED.value", (version,))
            self.log.info("schema_applied", sha256=version[:12])
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def _load_partitions(self) -> None:
        rows = self._conn().execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                    "WHERE i.inhparent = 'samples'::regclass").fetchall()
        self.partitions = {r[0] for r in rows}

    def create_partitions(self, days: set[int]) -> None:
        """One partition per UTC day, in their own committed statements (outside any data
        transaction, whose lock on the parent would make CREATE wait on ourselves)."""
        conn = self._conn()
        self._load_partitions()
        for day in sorted(days):
            name = partition_name(day)
            if name in self.partitions:
                continue
            start = dt.datetime.combine(EPOCH + dt.timedelta(days=day), dt.time(), dt.UTC)
            conn.execute("SELECT pg_advisory_lock(%s)", (PARTITION_LOCK,))  # instances creating the same day
            try:
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF samples FOR VALUES FROM ({}) TO ({})")
                             .format(sql.Identifier(name), sql.Literal(start), sql.Literal(start + dt.timedelta(days=1))))
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (PARTITION_LOCK,))
            self.partitions.add(name)
            self.log.info("partition_created", partition=name)

    def _conn(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            raise psycopg.OperationalError("not connected")
        return self.conn

    # ------------------------------------------------------------------ one chunk

    def write(self, messages: list[Message]) -> list[str]:
        """Store a chunk in one transaction; returns each message's outcome (stored, duplicate,
        pending, quarantined, schema, event, status, ignored). Log lines about a message are
        written once the transaction is committed (a retried chunk would repeat them)."""
        conn = self._conn()
        self._on_commit = []
        with conn.transaction():
            outcomes = [self._one(m) for m in messages]
        for update in self._on_commit:
            update()
        self._on_commit = []
        return outcomes

    def _one(self, message: Message) -> str:
        return self._guarded(message, lambda: self._handle(message))

    def _guarded(self, message: Message, handle: Callable[[], str]) -> str:
        """Run `handle` in a savepoint; a message that is bad, or that the database refuses, is
        quarantined instead. Connection failures and missing partitions abort the chunk."""
        conn = self._conn()
        mark = len(self._on_commit)  # cache updates of a rolled-back savepoint must not happen
        try:
            with conn.transaction():  # a savepoint
                return handle()
        except BadMessage as exc:
            del self._on_commit[mark:]
            error = str(exc)
        except psycopg.errors.CheckViolation as exc:
            if "no partition" in str(exc):  # a partition vanished under the cache (retention dropped it)
                self._load_partitions()
                raise NeedPartitions(set()) from None
            del self._on_commit[mark:]
            error = f"database refused it: {exc}"
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error as exc:
            del self._on_commit[mark:]
            error = f"database refused it: {type(exc).__name__}: {exc}"
        except NeedPartitions:
            raise
        except Exception as exc:  # a defect here must not make a message that crashes us at every restart
            del self._on_commit[mark:]
            error = f"internal error: {type(exc).__name__}: {exc}"
            self.log.exception("ingest_defect", topic=message.topic)
        self.quarantine(message, error)
        return "quarantined"

    def quarantine(self, message: Message, error: str) -> None:
        self._conn().execute("INSERT INTO quarantine (topic, payload, error, received_at) "
                             "VALUES (%s, %s, %s, to_timestamp(%s))",
                             (message.topic, message.payload, error, message.received_at))
        self._on_commit.append(lambda: self.log.warning("quarantined", topic=message.topic, bytes=len(message.payload),
                                                        error=error))

    def _handle(self, message: Message) -> str:
        topic = parse_topic(message.topic)
        self._gateway(topic)
        if topic.leaf == "telemetry":
            return self._telemetry(topic, message)
        if not message.payload:  # a cleared retained message
            return "ignored"
        if topic.leaf == "schema" and topic.part is not None:
            return self._schema_part(topic, message)
        if topic.leaf == "schema":
            return self._schema(topic, message)
        if topic.leaf == "events":
            return self._event(topic, message)
        return self._status(topic, message)

    # ------------------------------------------------------------------ per topic

    def _gateway(self, topic: Topic) -> None:
        if self.sites.get(topic.gateway) == (topic.site, topic.prefix):
            return
        self._conn().execute("INSERT INTO gateways (gateway, site, prefix) VALUES (%s, %s, %s) ON CONFLICT (gateway) "
                             "DO UPDATE SET site = EXCLUDED.site, prefix = EXCLUDED.prefix, updated_at = now()",
                             (topic.gateway, topic.site, topic.prefix))
        self._on_commit.append(lambda: self.sites.__setitem__(topic.gateway, (topic.site, topic.prefix)))

    def _telemetry(self, topic: Topic, message: Message) -> str:
        header = _header(message.payload)
        if header.gateway != topic.gateway:
            raise BadMessage(f"batch of gateway {header.gateway!r} on the topic of {topic.gateway!r}")
        known = self._known(topic.gateway, header.schema_id)
        if known is None:
            self._lock_schema(topic.gateway, header.schema_id)  # a schema arriving now waits for us, or we for it
            known = self._known(topic.gateway, header.schema_id)
        if known is None:
            self._conn().execute(
                "INSERT INTO pending_batches (gateway, site, prefix, schema_id, topic, payload, received_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s))",
                (topic.gateway, topic.site, topic.prefix, header.schema_id, message.topic, message.payload,
                 message.received_at))
            self._on_commit.append(lambda: self.log.info("batch_pending", gateway=topic.gateway,
                                                         schema_id=header.schema_id, seq=header.seq))
            return "pending"
        return self._batch(topic.site, header, message, known)

    def _batch(self, site: str, header: Header, message: Message, known: Known) -> str:
        try:
            columns = sample_columns(decode(message.payload, known.schema), known.series_of)
        except DECODE_ERRORS as exc:
            raise BadMessage(f"undecodable batch: {type(exc).__name__}: {exc}") from None
        check_times(columns)
        missing = {d for d in columns.days() if partition_name(d) not in self.partitions}
        if missing:
            raise NeedPartitions(missing)
        conn = self._conn()
        fresh = conn.execute(
            "INSERT INTO batches (gateway, epoch, seq, schema_id, site, t0, t_last, flags, historical, dropped_total,"
            " dropped_new, boot, gap_ms, readings, bytes, received_at) VALUES (%s, %s, %s, %s, %s,"
            " timestamptz 'epoch' + %s * interval '1 millisecond', timestamptz 'epoch' + %s * interval '1 millisecond',"
            " %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT DO NOTHING RETURNING true",
            (header.gateway, header.epoch, header.seq, header.schema_id, site, header.t0,
             max(columns.ts_ms) if columns.ts_ms else None, header.flags, bool(header.flags & 1), header.dropped_total,
             header.dropped_new, header.boot, header.gap_ms, len(columns), len(message.payload),
             message.received_at)).fetchone()
        if fresh is None:
            return "duplicate"
        if len(columns):
            self._copy_samples(columns)
        self._lost(header.gateway, header_lost_spans(header))
        return "stored"

    def _copy_samples(self, columns: SampleColumns) -> None:
        """Binary COPY: about half the CPU of INSERT ... unnest(arrays), on both sides."""
        stamps = {ms: UTC_EPOCH + dt.timedelta(milliseconds=ms) for ms in set(columns.ts_ms)}  # few per batch
        with self._conn().cursor() as cur, cur.copy(
                "COPY samples (series_id, ts, value, text, quality, detail) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "timestamptz", "float8", "text", "int2", "int4"])
            for series, ms, value, text, quality, detail in zip(columns.series, columns.ts_ms, columns.value,
                                                                columns.text, columns.quality, columns.detail):
                copy.write_row((series, stamps[ms], value, text, quality, detail))

    def _schema(self, topic: Topic, message: Message) -> str:
        try:
            body = json.loads(message.payload)
            if isinstance(body, dict) and "parts" in body and "devices" not in body:
                return self._schema_index(topic, body)
            schema = WireSchema.from_json(message.payload)
        except (FormatError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadMessage(f"not a schema message: {type(exc).__name__}: {exc}") from None
        return self._store_schema(topic, schema)

    def _schema_index(self, topic: Topic, index: dict[str, Any]) -> str:
        """The index of a schema sent in parts: joined now if every part is already stored."""
        schema_id, parts = index["schema_id"], index["parts"]
        if not isinstance(schema_id, int) or not isinstance(parts, int) or parts < 1:
            raise BadMessage(f"schema index without an integer schema_id and parts: {index}")
        return self._join_parts(topic, schema_id, parts) or "schema_part"

    def _schema_part(self, topic: Topic, message: Message) -> str:
        """One part of a schema: kept in `schema_parts` (acknowledged only once committed, so a
        crash loses none), joined into the schema with the last one to arrive."""
        try:
            part = json.loads(message.payload)
            schema_id, number, parts, text = part["schema_id"], part["part"], part["parts"], part["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadMessage(f"not a schema part: {type(exc).__name__}: {exc}") from None
        if not (isinstance(schema_id, int) and isinstance(parts, int) and isinstance(text, str)
                and number == topic.part and 0 <= number < parts):
            raise BadMessage(f"schema part {topic.part} with part {number!r} of {parts!r}, schema_id {schema_id!r}")
        self._lock_schema(topic.gateway, schema_id)
        if self._known(topic.gateway, schema_id) is not None:
            return "schema"  # joined already (here or by another instance): a repeat
        self._conn().execute("INSERT INTO schema_parts (gateway, schema_id, part, parts, text) VALUES (%s, %s, %s, %s, %s) "
                             "ON CONFLICT (gateway, schema_id, part) DO UPDATE SET parts = EXCLUDED.parts, "
                             "text = EXCLUDED.text, received_at = now()", (topic.gateway, schema_id, number, parts, text))
        return self._join_parts(topic, schema_id, parts) or "schema_part"

    def _join_parts(self, topic: Topic, schema_id: int, parts: int) -> str | None:
        """The schema from its stored parts once all are here ("schema"), else None."""
        self._lock_schema(topic.gateway, schema_id)
        if self._known(topic.gateway, schema_id) is not None:
            return "schema"
        rows = self._conn().execute("SELECT part, parts, text FROM schema_parts WHERE gateway = %s AND schema_id = %s",
                                    (topic.gateway, schema_id)).fetchall()
        text = join_schema({"schema_id": schema_id, "parts": parts},
                           {part: {"schema_id": schema_id, "parts": count, "text": t} for part, count, t in rows})
        if text is None:
            return None
        try:
            schema = WireSchema.from_json(text)
        except (FormatError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadMessage(f"schema {schema_id} joined from {parts} parts is not a schema: {exc}") from None
        if schema.id != schema_id:
            raise BadMessage(f"schema joined from {parts} parts has id {schema.id}, its parts say {schema_id}")
        self._conn().execute("DELETE FROM schema_parts WHERE gateway = %s AND schema_id = %s", (topic.gateway, schema_id))
        return self._store_schema(topic, schema)

    def _store_schema(self, topic: Topic, schema: WireSchema) -> str:
        if schema.gateway != topic.gateway:
            raise BadMessage(f"schema of gateway {schema.gateway!r} on the topic of {topic.gateway!r}")
        self._lock_schema(topic.gateway, schema.id)
        self._conn().execute("INSERT INTO schemas (gateway, schema_id, body) VALUES (%s, %s, %s::jsonb) "
                             "ON CONFLICT DO NOTHING", (topic.gateway, schema.id, schema.to_json()))
        known = self._register(schema)
        self._drain_pending(topic.gateway, schema.id, known)
        return "schema"

    def _event(self, topic: Topic, message: Message) -> str:
        event = parse_event(message.payload)
        inserted = self._conn().execute(
            "INSERT INTO events (gateway, site, kind, ts, body, body_md5, received_at) VALUES (%s, %s, %s,"
            " timestamptz 'epoch' + %s * interval '1 millisecond', %s::jsonb, md5(%s), to_timestamp(%s))"
            " ON CONFLICT DO NOTHING RETURNING true",
            (topic.gateway, topic.site, event.kind, event.ts_ms, event.body_text, event.body_text,
             message.received_at)).fetchone()
        if inserted is None:
            return "duplicate"
        self._lost(topic.gateway, event_lost_spans(event))
        return "event"

    def _status(self, topic: Topic, message: Message) -> str:
        body = parse_status(message.payload)
        self._conn().execute(
            "INSERT INTO gateway_status (gateway, site, state, body, updated_at) VALUES (%s, %s, %s, %s::jsonb,"
            " to_timestamp(%s)) ON CONFLICT (gateway) DO UPDATE SET site = EXCLUDED.site, state = EXCLUDED.state,"
            " body = EXCLUDED.body, updated_at = EXCLUDED.updated_at WHERE gateway_status.updated_at <= EXCLUDED.updated_at",
            (topic.gateway, topic.site, body["state"], message.payload.decode(), message.received_at))
        return "status"

    # ------------------------------------------------------------------ schemas, series, pending

    def _lock_schema(self, gateway: str, schema_id: int) -> None:
        self._conn().execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))", (gateway, schema_id))

    def _known(self, gateway: str, schema_id: int) -> Known | None:
        """The schema with its series ids: cache, else the schemas table (another instance, or an
        earlier run, stored it), else None."""
        known = self.known.get((gateway, schema_id))
        if known is not None:
            return known
        row = self._conn().execute("SELECT body::text FROM schemas WHERE gateway = %s AND schema_id = %s",
                                   (gateway, schema_id)).fetchone()
        return None if row is None else self._register(WireSchema.from_json(row[0]))

    def _register(self, schema: WireSchema) -> Known:
        """Upsert the schema's devices and points (series) and learn their ids."""
        conn = self._conn()
        points = [(schema.gateway, d.id, p.name, p.unit, p.kind) for d in schema.devices for p in d.points]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO devices (gateway, device, profile, schema_id) VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT (gateway, device) DO UPDATE SET profile = EXCLUDED.profile, "
                            "schema_id = EXCLUDED.schema_id, updated_at = now()",
                            [(schema.gateway, d.id, d.profile, schema.id) for d in schema.devices])
        rows = conn.execute(
            "INSERT INTO series (gateway, device, point, unit, kind) SELECT * FROM unnest(%s::text[], %s::text[],"
            " %s::text[], %s::text[], %s::text[]) ON CONFLICT (gateway, device, point, unit) DO UPDATE SET"
            " kind = EXCLUDED.kind RETURNING id, device, point, kind",
            [list(column) for column in zip(*points, strict=True)] if points else [[], [], [], [], []]).fetchall()
        known = Known(schema, {(device, point): SeriesRef(sid, kind) for sid, device, point, kind in rows})
        self._on_commit.append(lambda: self.known.__setitem__((schema.gateway, schema.id), known))
        return known

    def _drain_pending(self, gateway: str, schema_id: int, known: Known) -> None:
        rows = self._conn().execute(
            "SELECT id, site, prefix, topic, payload, extract(epoch FROM received_at)::float8 FROM pending_batches"
            " WHERE gateway = %s AND schema_id = %s ORDER BY id FOR UPDATE SKIP LOCKED", (gateway, schema_id)).fetchall()
        for pending_id, site, _prefix, topic, payload, received_at in rows:
            message = Message(topic, bytes(payload), received_at)
            outcome = self._one_pending(site, message, known)
            self._conn().execute("DELETE FROM pending_batches WHERE id = %s", (pending_id,))
            self._on_commit.append(lambda o=outcome: self.log.info("pending_decoded", gateway=gateway,  # type: ignore[misc]
                                                                   schema_id=schema_id, outcome=o))

    def _one_pending(self, site: str, message: Message, known: Known) -> str:
        return self._guarded(message, lambda: self._batch(site, _header(message.payload), message, known))

    def _lost(self, gateway: str, spans: list[LostSpan]) -> None:
        for s in spans:
            self._conn().execute(
                "INSERT INTO lost_spans (gateway, kind, from_ts, to_ts, readings, epoch, seq_first, seq_last) VALUES"
                " (%s, %s, timestamptz 'epoch' + %s * interval '1 millisecond',"
                " timestamptz 'epoch' + %s * interval '1 millisecond', %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (gateway, s.kind, s.from_ms, s.to_ms, s.readings, s.epoch, s.seq_first, s.seq_last))

    def sweep_pending(self) -> int:
        """Pending batches whose schema is stored (a crash between the two, another instance):
        decode them now. Run at start."""
        rows = self._conn().execute("SELECT DISTINCT p.gateway, p.schema_id FROM pending_batches p JOIN schemas s"
                                    " USING (gateway, schema_id)").fetchall()
        for gateway, schema_id in rows:
            self._on_commit = []
            with self._conn().transaction():
                self._lock_schema(gateway, schema_id)
                known = self._known(gateway, schema_id)
                if known is not None:
                    self._drain_pending(gateway, schema_id, known)
            for update in self._on_commit:
                update()
        return len(rows)


def _header(payload: bytes) -> Header:
    try:
        header, _ = decode_header(payload)
    except DECODE_ERRORS as exc:
        raise BadMessage(f"not a batch: {exc}") from None
    ints = (header.epoch, header.seq, header.schema_id, header.t0, header.dropped_total, header.dropped_new,
            header.boot, header.flags)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in ints) \
            or not isinstance(header.gateway, str) or not (header.gap_ms is None or isinstance(header.gap_ms, int)):
        raise BadMessage("batch header with fields of the wrong type or range")
    return header


__all__ = ["Message", "NeedPartitions", "Store", "parse_topic", "partition_name"]
