"""YAML loading that remembers where every key came from, so errors can say file:line and path.

PyYAML's plain `safe_load` forgets positions and silently keeps the last of two duplicate keys;
here the node tree is walked by hand: values are built with the safe constructor, and each
mapping key and sequence item records its line under its path (a tuple of keys and indexes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import ConfigError, Problem

PathKey = tuple[str | int, ...]


@dataclass
class SourceDoc:
    """Plain data from one YAML file plus the line of every path in it."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (a missing key's parent)."""
        for cut in range(len(path), -1, -1):
            if (line := self.lines.get(tuple(path[:cut]))) is not None:
                return line
        return None

    def problem(self, path: PathKey, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: PathKey) -> str:
    """('devices', 1, 'profile') -> 'devices[1].profile'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_yaml(path: Path) -> SourceDoc:
    """Read one YAML file; a syntax error or duplicate key raises ConfigError with its line."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(name, None, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> SourceDoc:
    """Parse YAML text named `name` (used in messages)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(name, line, "", f"YAML syntax error: {exc.problem or exc}")]) from exc
    finally:
        loader.dispose()
    doc = SourceDoc(name, None)
    if root is None:
        return doc
    problems: list[Problem] = []
    doc.data = _build(loader, root, (), doc, problems)
    if problems:
        raise ConfigError(problems)
    return doc


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: PathKey, doc: SourceDoc,
           problems: list[Problem]) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            key_path = (*path, key)
            if key in result:
                problems.append(Problem(doc.file, key_node.start_mark.line + 1, format_path(key_path),
                                        "duplicate key (YAML would silently keep only the last one)"))
            doc.lines[key_path] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, key_path, doc, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
