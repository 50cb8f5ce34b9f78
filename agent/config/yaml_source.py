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


MAX_DEPTH = 50  # nested mappings and sequences; a config needs 4, a profile 5
MAX_NODES = 200_000  # values after expanding aliases: a "billion laughs" file stops here


def load_yaml(path: Path) -> SourceDoc:
    """Read one YAML file; a syntax error or duplicate key raises ConfigError with its line."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(name, None, "", f"cannot read file: {exc.strerror or exc}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError([Problem(name, line, "", f"not UTF-8 text: byte 0x{raw[exc.start]:02X} at offset "
                                                   f"{exc.start} (save the file as UTF-8)")]) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> SourceDoc:
    """Parse YAML text named `name` (used in messages). Nothing in `text` raises anything but a
    located ConfigError: syntax, control characters, bad tags, unhashable keys, deep nesting."""
    _check_depth(text, name)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters before any parsing
        raise ConfigError([_yaml_problem(exc, name, text)]) from None
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, name, text)]) from None
    finally:
        loader.dispose()
    doc = SourceDoc(name, None)
    if root is None:
        return doc
    problems: list[Problem] = []
    doc.data = _Builder(loader, doc, problems).build(root, ())
    if problems:
        raise ConfigError(problems)
    return doc


def _check_depth(text: str, name: str) -> None:
    """Refuse deep nesting before composing it: PyYAML's composer recurses once per level, so
    2,000 brackets would end in a RecursionError. The event parser does not recurse."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    raise ConfigError([Problem(name, line, "",
                                               f"nested more than {MAX_DEPTH} levels deep")])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, name, text)]) from None


def _yaml_problem(exc: yaml.YAMLError, name: str, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[:exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(name, line, "", f"character U+{ord(char):04X} is not allowed in YAML "
                                       "(a control character: retype the line)")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return Problem(name, mark.line + 1 if mark else None, "", f"YAML syntax error: {exc.problem or exc}")
    return Problem(name, None, "", f"YAML error: {exc}")


class _Builder:
    """Plain data from the node tree, recording each path's line; a value that cannot be built
    (a bad tag, `!!int 'x'`, a merge key of a scalar, a list as a key) is a located problem."""

    def __init__(self, loader: yaml.SafeLoader, doc: SourceDoc, problems: list[Problem]) -> None:
        self.loader, self.doc, self.problems = loader, doc, problems
        self.nodes = 0
        self.active: set[int] = set()  # ids of the nodes being built: an alias to one of them is a cycle

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            return self._fail(node, path, f"more than {MAX_NODES} values (aliases expanding without end?)")
        if id(node) in self.active:
            return self._fail(node, path, "an alias refers to the collection that contains it")
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        try:
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        except yaml.MarkedYAMLError as exc:
            self._fail(node, path, f"bad merge key (<<): {exc.problem}")
            return {}
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, path, "a key must be a plain name, not a list or a mapping")
                continue
            key = self._scalar(key_node, path)
            if key is _UNBUILT:
                continue
            key_path = (*path, key)
            if key in result:
                self.problems.append(Problem(self.doc.file, key_node.start_mark.line + 1, format_path(key_path),
                                             "duplicate key (YAML would silently keep only the last one)"))
            self.doc.lines[key_path] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, key_path)
        return result

    def _scalar(self, node: yaml.Node, path: PathKey) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            return self._fail(node, path, f"cannot read this value: {exc.problem}")
        except (ValueError, TypeError, OverflowError) as exc:  # `!!int 'x'`, `!!timestamp '2001-13-45'`
            return self._fail(node, path, f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {exc}")
        return value

    def _fail(self, node: yaml.Node, path: PathKey, message: str) -> object:
        self.problems.append(Problem(self.doc.file, node.start_mark.line + 1, format_path(path), message))
        return _UNBUILT


_UNBUILT = object()  # a value that could not be built; its problem is recorded
