"""Command-line arguments -> settings -> the service. `agent/cli.py` defines the arguments (so
`--help` works on a gateway without the extra) and calls `run` here."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import psycopg

from agent import log as logging_setup
from agent.config.broker import parse_broker_url
from ingest.service import Ingest, IngestSettings
from ingest.store import Store
from ingest.subscriber import BrokerSettings


class UsageError(ValueError):
    """A bad argument: exit 1 with this message."""


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    try:
        address = parse_broker_url(args.broker)  # the agent's rules: mqtt(s)://HOST[:PORT], no credentials
    except ValueError as exc:
        raise UsageError(f"--broker (mqtt://host[:port] or mqtts://host[:port]): {exc}") from None
    password = Path(args.password_file).read_text().strip() if args.password_file else None
    return BrokerSettings(
        host=address.host, port=address.port, tls=address.tls,
        ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file, username=args.username,
        password=password, prefix=args.prefix, group=args.group, shared=not args.exclusive,
        client_id=args.client_id or f"ingest-{socket.gethostname()}", session_expiry=args.session_expiry,
        receive_maximum=args.receive_maximum)


def run(args: argparse.Namespace) -> int:
    logging_setup.configure()
    dsn = args.db or os.environ.get("EDGE_INGEST_DB", "")
    if args.migrate_only:
        store = Store(dsn, logging_setup.get("ingest"))
        try:
            store.connect()  # applies the schema
        except psycopg.OperationalError as exc:
            print(f"error: cannot reach the database: {str(exc).strip()}", file=sys.stderr)
            return 2
        store.close()
        print("schema applied")
        return 0
    settings = IngestSettings(dsn=dsn, broker=broker_settings(args), chunk=args.chunk)
    return Ingest(settings).run()
