"""The platform end: MQTT batches from the gateways into PostgreSQL (`edge-agent ingest`).

Needs the `ingest` extra (psycopg); nothing here imports it at package level, so `agent` can
tell a gateway install without it apart from a broken one.
"""
