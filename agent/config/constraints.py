"""Constraints on config fields that pydantic applies but that cost the daemon nothing to import.

The config models are plain frozen dataclasses, so `edge-agent run` holds its settings without
pydantic in the process (about 14 MB); the config is validated in a short-lived child (see
`agent/config/isolated.py`). Range limits use `annotated_types` (Ge, Le, Gt); the two markers here
hook into pydantic only when a schema is built, through pydantic's `__get_pydantic_core_schema__`
protocol, so pydantic_core is imported only where validation happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Before:
    """Run `parse` on the raw value first: "1.5s" -> 1.5, "256MiB" -> 268435456."""

    parse: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.parse, handler(source))


def checked(check: Callable[[str], object]) -> Before:
    """A string field checked by `check` (raising ValueError with the reason) and kept as written;
    a value that is no string is left to the field's type to refuse."""

    def run(value: Any) -> Any:
        if isinstance(value, str):
            check(value)
        return value

    return Before(run)


@dataclass(frozen=True)
class Pattern:
    """A string matching `regex` (validation.py says the common patterns in words)."""

    regex: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        schema = handler(source)
        if schema.get("type") != "str":
            raise TypeError(f"Pattern({self.regex!r}) applies to str fields, not {schema.get('type')}")
        return {**schema, "pattern": self.regex}
