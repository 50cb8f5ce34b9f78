"""Device profiles: find `vendor/model` on the search path, validate it, resolve `extends`, and
turn it into the runtime Profile (PointSpecs with the profile defaults applied).

Device knowledge is data: a new meter is a YAML file, never a Python class. The library ships inside
the package (agent/profiles/<vendor>/<model>.yaml, package data: a wheel carries it); an operator adds
or overrides profiles in /etc/edge-agent/profiles, $EDGE_AGENT_PROFILES or the config's `profiles_dirs`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from agent.config.canonical import CANONICAL_COUNTERS, canonical_unit
from agent.config.models import NAME, PointModel, ProfileDefaults, ProfileModel, Timing
from agent.config.validation import validate
from agent.config.yaml_source import SourceDoc, load_yaml
from agent.errors import ConfigError, Problem
from agent.meters.bcd import parse_format
from agent.meters.plan import UNIT_BASES
from agent.types import DataType, DeviceTiming, PointKind, PointSpec

OPERATOR_DIR = Path("/etc/edge-agent/profiles")  # an operator's own or corrected profiles, kept across upgrades


def builtin_dir() -> Path:
    """The library shipped in the installed package (found through the package, not the source tree)."""
    return Path(str(resources.files("agent") / "profiles"))


BUILTIN_DIR = builtin_dir()


@dataclass(frozen=True)
class Profile:
    """A resolved profile: what the poller, decoder and simulator need, free of pydantic."""

    ref: str
    model: ProfileModel
    points: dict[str, PointSpec]
    path: Path

    @property
    def defaults(self) -> ProfileDefaults:
        return self.model.defaults

    def timing(self, override: Timing | None = None) -> DeviceTiming:
        """Profile timing with any values the device entry sets on top."""
        timing = DeviceTiming()
        for layer in (self.model.defaults, override):
            if layer is None:
                continue
            changes = {f.name: getattr(layer, f.name) for f in fields(Timing) if getattr(layer, f.name) is not None}
            timing = replace(timing, **changes)
        return timing


def search_path(extra: list[str] | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: the config's `profiles_dirs`, $EDGE_AGENT_PROFILES,
    /etc/edge-agent/profiles, then the library shipped in the package."""
    dirs = [Path(d) for d in extra or []]
    env = os.environ.get("EDGE_AGENT_PROFILES")
    if env:
        dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs += [OPERATOR_DIR, BUILTIN_DIR]
    return dirs


class ProfileLibrary:
    """Looks profiles up by reference and caches the resolved ones."""

    def __init__(self, extra_dirs: list[str] | None = None) -> None:
        self.dirs = search_path(extra_dirs)
        self._cache: dict[str, Profile] = {}
        self._defaults_written: dict[str, dict[str, Any]] = {}  # ref -> its `defaults` as written, bases merged

    def available(self) -> list[str]:
        """Every vendor/model reference on the search path, sorted."""
        refs: set[str] = set()
        for root in self.dirs:
            with contextlib.suppress(OSError, ValueError):  # a name too long, a NUL byte: no profiles there
                refs.update(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.yaml"))
        return sorted(refs)

    def find(self, ref: str) -> Path | None:
        for root in self.dirs:
            candidate = root / f"{ref}.yaml"
            try:
                if candidate.is_file():
                    return candidate
            except (OSError, ValueError):  # a name too long for the file system, a NUL byte
                continue
        return None

    def load(self, ref: str) -> Profile:
        """Resolve `ref`; raises ConfigError naming the profile file's lines."""
        if ref not in self._cache:
            self._cache[ref] = self._resolve(ref, ())
        return self._cache[ref]

    def _resolve(self, ref: str, chain: tuple[str, ...]) -> Profile:
        path = self.find(ref)
        if path is None:
            raise ConfigError([Problem(ref, None, "", self.unknown_message(ref))])
        doc = load_yaml(path)
        model = validate(ProfileModel, doc)
        if model.extends:
            if model.extends in (*chain, ref):
                raise ConfigError([doc.problem(("extends",), f"profiles extend each other in a loop: "
                                                             f"{' -> '.join((*chain, ref, model.extends))}")])
            base = self._resolve(model.extends, (*chain, ref))
            model, written = _merge(base.model, self._defaults_written[model.extends], model, doc)
        else:
            written = _written(doc, "defaults")
        self._defaults_written[ref] = written
        check_points(model, doc)
        model = with_bcd_resolution(model)
        return Profile(ref, model, build_specs(model), path)

    def unknown_message(self, ref: str) -> str:
        import difflib

        close = difflib.get_close_matches(ref, self.available(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown profile {ref!r}{hint} (see `edge-agent profiles list`)"


INHERITED = ("protocol", "blocks", "meter_type", "di_order")  # a variant keeps these unless it sets them


def _written(doc: SourceDoc, key: str) -> dict[str, Any]:
    """The mapping under `key` as the file wrote it (already validated: a mapping or absent)."""
    value = doc.data.get(key) if isinstance(doc.data, dict) else None
    return dict(value) if isinstance(value, dict) else {}


def _merge(base: ProfileModel, base_defaults: dict[str, Any], child: ProfileModel,
           doc: SourceDoc) -> tuple[ProfileModel, dict[str, Any]]:
    """A variant: the base's points and defaults, the child's on top, minus `remove`. Defaults merge
    key by key as written (a variant setting `timeout` keeps the base's `unit_id`; a variant's
    `serial` replaces the base's whole); also returns the merged defaults as written, for variants
    of this variant."""
    missing = [name for name in child.remove if name not in base.points]
    if missing:
        raise ConfigError([doc.problem(("remove",), f"the base profile has no point(s) {missing}")])
    points = {k: v for k, v in base.points.items() if k not in child.remove}
    points.update(child.points)
    written = {**base_defaults, **_written(doc, "defaults")}
    defaults = validate(ProfileDefaults, doc, written, ("defaults",))
    notes = [*base.notes, *child.notes]
    own_keys = doc.data.keys() if isinstance(doc.data, dict) else ()
    inherited = {key: getattr(base, key) for key in INHERITED if key not in own_keys}
    return replace(child, points=points, defaults=defaults, notes=notes, remove=[], **inherited), written


def check_points(model: ProfileModel, doc: SourceDoc) -> None:
    """Checks that need the point's name or other points: naming, canonical units, references."""
    problems: list[Problem] = []
    for name, point in model.points.items():
        path = ("points", name)
        if not NAME.match(name):
            problems.append(doc.problem(path, "point names are lower_snake_case"))
        expected = canonical_unit(name)
        if expected is not None and point.unit != expected:
            problems.append(doc.problem((*path, "unit"), f"canonical point {name} is in {expected or 'no unit'!r}, "
                                                         f"not {point.unit!r}: scale it to the canonical unit"))
        if name in CANONICAL_COUNTERS and point.kind is not PointKind.COUNTER:
            problems.append(doc.problem((*path, "kind"), f"{name} is a counter: write kind: counter"))
        for ref in (*point.multiply_by, *([point.scale_factor] if point.scale_factor else []), *point.plus):
            if ref not in model.points:
                problems.append(doc.problem(path, f"refers to point {ref!r}, which the profile does not have"))
            elif model.points[ref].multiply_by or model.points[ref].scale_factor or model.points[ref].plus:
                problems.append(doc.problem(path, f"refers to {ref!r}, which is itself derived"))
        if point.model and model.discovery != "sunspec":
            problems.append(doc.problem((*path, "model"), "model-relative points need `discovery: sunspec`"))
        if point.type in (DataType.STRING, DataType.ENUM) and (point.multiply_by or point.scale_factor or point.plus):
            problems.append(doc.problem(path, "string and enum points cannot be scaled"))
        problems += _check_protocol_point(model, doc, name, point)
    problems += _check_overlaps(model, doc)
    problems += _check_protocol(model, doc)
    if problems:
        raise ConfigError(problems)


def _check_protocol_point(model: ProfileModel, doc: SourceDoc, name: str, point: PointModel) -> list[Problem]:
    """Modbus points are addressed by register, DL/T 645 and CJ/T 188 points by data identifier."""
    path = ("points", name)
    if point.constant is not None and point.address is None and point.di is None:
        return []
    if model.protocol == "modbus" and point.di is not None:
        return [doc.problem((*path, "di"), "`di` is for DL/T 645 and CJ/T 188 profiles: set `protocol`")]
    if model.protocol != "modbus" and point.di is None:
        return [doc.problem(path, f"a {model.protocol} point is read by `di` (data identifier), not `address`")]
    if point.unit_code and point.unit not in UNIT_BASES:
        return [doc.problem((*path, "unit"), f"a point with a unit code is converted into one of "
                                             f"{sorted(UNIT_BASES)}, not {point.unit!r}")]
    if model.protocol == "cjt188" and point.di is not None and point.di > 0xFFFF:
        return [doc.problem((*path, "di"), "a CJ/T 188 data identifier is 2 bytes (e.g. 0x901F)")]
    return []


def _check_overlaps(model: ProfileModel, doc: SourceDoc) -> list[Problem]:
    """Two points whose registers partly overlap are the classic off-by-one (an f32 at 100 and the
    next at 101). The same registers read whole as another type (a status word as an enum and as
    bits) is deliberate and allowed; the same registers twice as the same type is a copy-paste."""
    problems = []
    spans: dict[tuple[object, ...], list[tuple[int, int, str, DataType]]] = {}
    for name, point in model.points.items():
        if point.address is None or point.words == 0:
            continue
        table = (point.register or model.defaults.register, tuple(point.model))  # SunSpec: per model
        start, end = point.address, point.address + point.words
        for other_start, other_end, other, other_type in spans.setdefault(table, []):
            if start >= other_end or other_start >= end:
                continue
            if (start, end) == (other_start, other_end) and point.type is not other_type:
                continue
            what = "the same registers as" if (start, end) == (other_start, other_end) else "registers overlapping"
            problems.append(doc.problem(("points", name, "address"),
                                        f"{name} ({start}..{end - 1}) reads {what} {other} "
                                        f"({other_start}..{other_end - 1})"))
            break
        spans[table].append((start, end, name, point.type))
    return problems


def _check_protocol(model: ProfileModel, doc: SourceDoc) -> list[Problem]:
    problems = []
    if model.blocks and model.protocol != "dlt645":
        problems.append(doc.problem(("blocks",), "block DIs are a DL/T 645 feature"))
    if model.protocol == "cjt188" and model.meter_type is None:
        problems.append(doc.problem(("protocol",), "a cjt188 profile needs `meter_type` (0x10 water, 0x20 heat, "
                                                   "0x30 gas)"))
    if model.meter_type is not None and model.protocol != "cjt188":
        problems.append(doc.problem(("meter_type",), "`meter_type` is a CJ/T 188 setting"))
    return problems


def with_bcd_resolution(model: ProfileModel) -> ProfileModel:
    """A DL/T 645 / CJ/T 188 point travels with the resolution its BCD format carries (XXX.X V:
    0.1 V; XX.XXXX kW scaled to W: 0.1 W) unless the profile sets `resolution`."""
    points = {}
    for name, point in model.points.items():
        if point.di is not None and point.format and point.resolution is None:
            step = abs(point.scale) * 10.0 ** -parse_format(point.format).decimals
            point = replace(point, resolution=float(f"{step:.12g}"))
        points[name] = point
    return replace(model, points=points)


def build_specs(model: ProfileModel) -> dict[str, PointSpec]:
    return {name: to_spec(name, point, model.defaults) for name, point in model.points.items()}


def to_spec(name: str, point: PointModel, defaults: ProfileDefaults) -> PointSpec:
    return PointSpec(
        name=name,
        register=point.register or defaults.register,
        address=point.address if point.address is not None else 0,
        type=point.type,
        words=point.words,
        order=point.order or defaults.order,
        scale=point.scale,
        offset=point.offset,
        unit=point.unit,
        kind=point.kind,
        na=frozenset(point.na),
        multiply_by=tuple(point.multiply_by),
        plus=tuple(point.plus),
        constant=point.constant,
        models=tuple(point.model),
        scale_factor=point.scale_factor,
        values=tuple(sorted((point.values or {}).items())),
        hidden=point.hidden,
        di=point.di,
        at=point.at,
        bcd=point.format or "",
        signed=point.signed,
        unit_code=point.unit_code,
    )
