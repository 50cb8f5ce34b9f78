"""Human quantities in config files: durations ("10s", "500ms", "15m") and sizes ("256MiB").

Pure parsing; each parser raises ValueError with the accepted forms, and pydantic turns that into
a located config error.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string like 250ms, 10s, 15m, 1h, 2d."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10s or 500ms")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"expected a duration like 10s, 500ms, 15m or 1h, got {value!r}")


def parse_size(value: object) -> int:
    """Bytes from an integer or a string like 256MiB, 1GB, 4096."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 256MiB")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)):
        unit = (match.group(2) or "b").lower()
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"expected a size like 256MiB, 64MB or a number of bytes, got {value!r}")
