"""What `validate` checks beyond the file: the machine it will run on. `run` needs the Prometheus
port free and a buffer directory it can create; a config can be right and still not start here.

I/O only (a bind, a stat); the checks that need nothing but the file live in loader.py. Their
answers depend on who asks: validate runs as the operator, the service as its own user, so a
permission problem is a warning, a path through a regular file or a read-only mount an error.
"""

from __future__ import annotations

import errno
import os
import socket
import urllib.request
from pathlib import Path

from agent.config.loader import LoadedConfig
from agent.config.models import prometheus_address
from agent.errors import Problem


def check_environment(loaded: LoadedConfig) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) about this machine."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    listen = loaded.config.prometheus
    if listen:
        problem = _port_problem(listen)
        if problem is not None:
            (warnings if problem.startswith("in use by a running edge-agent") else errors).append(
                loaded.problem(("prometheus",), problem))
    error, warning = _buffer_problem(Path(loaded.config.buffer.path))
    if error:
        errors.append(loaded.problem(("buffer", "path"), error))
    if warning:
        warnings.append(loaded.problem(("buffer", "path"), warning))
    return errors, warnings


def _port_problem(listen: str) -> str | None:
    host, port = prometheus_address(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            sock.bind((host, port))
            return None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"cannot listen on {listen}: {exc.strerror or exc}"
    if _is_agent(listen):
        return "in use by a running edge-agent (fine for a reload; a second agent could not start)"
    return f"port {port} is in use by another program: `run` could not listen there; choose another port"


def _is_agent(listen: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=1) as answer:
            return b"edge_agent_" in answer.read(65536)
    except (OSError, ValueError):
        return False


def _buffer_problem(directory: Path) -> tuple[str | None, str | None]:
    """(error, warning) for the buffer directory: usable, creatable, or why not."""
    existing = directory
    try:
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            return f"{existing} is not a directory: the buffer cannot be created there (batches would " \
                   "only be kept in memory, lost at a restart)", None
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{existing} is on a read-only file system: the buffer cannot be written there", None
    except OSError as exc:
        return f"cannot look at {directory}: {exc.strerror or exc}", None
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write into" if existing == directory else f"create {directory} in"
        return None, f"this user cannot {verb} {existing}: check that the service's user can"
    return None, None
