"""The broker URL of `mqtt.url`: `mqtt://host[:1883]` or `mqtts://host[:8883]`, nothing else.

Pure parsing; errors are ValueError with a sentence a person can act on (pydantic locates them).
Credentials are refused in the URL: a password there ends up in logs, `ps` and backups of the
config, and the agent would have to choose between it and `mqtt.username`/`password_file`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {parts.scheme + '://' if parts.scheme else 'none'} in {url!r}: "
                         "use mqtt://HOST:1883 or mqtts://HOST:8883 (TLS)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("no credentials in the URL: put the user name in mqtt.username and the password "
                         "in a file named by mqtt.password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a broker URL is {scheme}://HOST:PORT, without a path or query")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host; write {scheme}://HOST:{SCHEMES[scheme]}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    return BrokerAddress(parts.hostname, port or SCHEMES[scheme], scheme == "mqtts")
