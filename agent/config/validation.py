"""Validate plain data against a config model (models.py) and turn pydantic's errors into located
Problems a person can act on.

pydantic is imported here, inside `validate`, and nowhere else in the agent: the daemon runs on
settings validated by a short-lived child (isolated.py) and never pays for it.

pydantic reports a location as a tuple of keys and indexes; the SourceDoc knows the line of each.
Messages for the common mistakes are rewritten: an unknown key lists the allowed keys and the
nearest match, so `word_oder` says "did you mean 'order'?".
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from agent.config.yaml_source import PathKey, SourceDoc
from agent.errors import ConfigError, Problem

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError

M = TypeVar("M")


def validate(model: type[M], doc: SourceDoc, data: Any = None, base: PathKey = ()) -> M:
    """Validate `data` (default: the whole document) against `model`, raising located problems."""
    from pydantic import ValidationError

    payload = doc.data if data is None else data
    if payload is None:
        payload = {}
    try:
        return _adapter(model).validate_python(payload)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, model, doc, base)) from None


def _adapter(model: type[M]) -> TypeAdapter[M]:
    """One TypeAdapter per model (building one compiles the model's validator: milliseconds)."""
    from pydantic import TypeAdapter

    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    adapter: TypeAdapter[M] = _ADAPTERS[model]
    return adapter


_ADAPTERS: dict[type, Any] = {}


def problems_from(exc: ValidationError, model: type[Any], doc: SourceDoc,
                  base: PathKey = ()) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if not _is_pydantic_tag(part))
        path = (*base, *loc)
        problems.append(doc.problem(path, _message(dict(error), model, loc)))
    return problems


def _is_pydantic_tag(part: object) -> bool:
    # pydantic inserts validator names such as "function-after[...]" into some locations
    return isinstance(part, str) and ("[" in part and "]" in part)


def _message(error: dict[str, Any], model: type[Any], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(model, loc[:-1])
        return unknown_key_message(str(loc[-1]), allowed)
    if kind == "missing":
        return "required key is missing"
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return f"YAML reads this as the boolean {error['input']}: put the word in quotes (\"off\", \"yes\")"
    if kind == "string_pattern_mismatch":
        return f"{_pattern_words(str(error.get('ctx', {}).get('pattern', '')))} (got {error.get('input')!r})"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind == "enum" or kind.startswith("literal"):
        return f"{message} (got {error.get('input')!r})"
    return message


PATTERN_WORDS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "expected letters, digits, '.', '_' and '-', starting with a letter or digit",
    r"^[a-z0-9_.-]+/[a-z0-9_.-]+$": "expected vendor/model in lower case (see `edge-agent profiles list`)",
    r"^[0-9]+$": "expected digits only",
}
ALTERNATIVES = re.compile(r"^\^\(?([A-Za-z0-9_|]+)\)?\$$")


def _pattern_words(pattern: str) -> str:
    """A regular expression the operator never wrote, said in words: `^(a|b)$` -> one of a, b."""
    if pattern in PATTERN_WORDS:
        return PATTERN_WORDS[pattern]
    if match := ALTERNATIVES.match(pattern):
        return f"expected one of: {', '.join(match.group(1).split('|'))}"
    if match := re.match(r"^\^\[([A-Z]+)\]\$$", pattern):
        return f"expected one of: {', '.join(match.group(1))}"
    return f"does not have the expected form ({pattern})"


def unknown_key_message(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}allowed: {', '.join(sorted(allowed))}"


def _allowed_keys(model: type[Any], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model reached by following `loc` from `model`."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if not dataclasses.is_dataclass(current):
        return []
    return [field.name for field in dataclasses.fields(current)]


def _step(annotation: Any, part: object) -> Any:
    annotation = _unwrap(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type) and isinstance(part, str):
        return typing.get_type_hints(annotation, include_extras=True).get(part)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / X | None -> X; Annotated[X, ...] -> X."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
