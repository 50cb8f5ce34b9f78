"""Request planner: the fewest Modbus reads that cover a device's points. Pure.

Points of one table are sorted by address and packed greedily into blocks while the block stays
within the device's register limit and the hole to the next point is at most `max_gap` registers
(reading a few unused registers is far cheaper than another request on a 9600-baud line). Even
alignment widens each block to an even start and count.

What the device taught us is respected too: `isolated` points (they answer exception 2 unless
read alone) get a request of their own, and `barriers` are addresses a block must not reach
across (the hole before them holds an unimplemented register).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.types import DeviceTiming, PointSpec, ReadRequest, RegisterKind

BIT_LIMIT = 2000  # Modbus maximum coils or discrete inputs in one read


@dataclass(frozen=True)
class Learned:
    """What exception-2 splits taught about one device; it only ever grows."""

    isolated: frozenset[str] = frozenset()
    barriers: frozenset[tuple[RegisterKind, int]] = field(default_factory=frozenset)
    max_registers: int | None = None  # a smaller limit than documented, when big blocks fail


def plan_reads(points: Iterable[PointSpec], timing: DeviceTiming, learned: Learned = Learned()) -> list[ReadRequest]:
    """Requests in table then address order; every point in exactly one request."""
    by_kind: dict[RegisterKind, list[PointSpec]] = {}
    for spec in points:
        by_kind.setdefault(spec.register, []).append(spec)
    requests: list[ReadRequest] = []
    for kind in RegisterKind:
        specs = sorted(by_kind.get(kind, []), key=lambda s: (s.address, s.end, s.name))
        requests += _plan_table(kind, specs, timing, learned)
    return sorted(requests, key=lambda r: (list(RegisterKind).index(r.kind), r.start))


def _plan_table(kind: RegisterKind, specs: list[PointSpec], timing: DeviceTiming,
                learned: Learned) -> list[ReadRequest]:
    limit = BIT_LIMIT if kind.is_bit else min(timing.max_registers, learned.max_registers or 125)
    align = timing.even_aligned and not kind.is_bit
    requests = [_request(kind, s.address, s.end, [s.name], align) for s in specs if s.name in learned.isolated]
    start = end = 0
    names: list[str] = []
    for spec in (s for s in specs if s.name not in learned.isolated):
        if names and _fits(start, end, spec, limit, timing.max_gap, align, (kind, spec.address) in learned.barriers):
            end = max(end, spec.end)
            names.append(spec.name)
            continue
        if names:
            requests.append(_request(kind, start, end, names, align))
        start, end, names = spec.address, spec.end, [spec.name]
    if names:
        requests.append(_request(kind, start, end, names, align))
    return requests


def _fits(start: int, end: int, spec: PointSpec, limit: int, max_gap: int, align: bool, barrier: bool) -> bool:
    if barrier or spec.address - end > max_gap:
        return False
    lo, hi = _aligned(start, max(end, spec.end), align)
    return hi - lo <= limit


def _aligned(start: int, end: int, align: bool) -> tuple[int, int]:
    if not align:
        return start, end
    return start - start % 2, end + end % 2


def _request(kind: RegisterKind, start: int, end: int, names: list[str], align: bool) -> ReadRequest:
    lo, hi = _aligned(start, end, align)
    return ReadRequest(kind, lo, hi - lo, tuple(names))


def learn_from_split(learned: Learned, request: ReadRequest, points: dict[str, PointSpec],
                     failed: set[str]) -> Learned:
    """What a block answering exception 2 teaches, once its points were read one by one.

    - points that failed alone are isolated, and no block may reach across them (the holes are
      presumed innocent; if the narrower block still fails, the next split learns about them);
    - else, if the block bridged holes, an unimplemented register sits in a hole: no bridging there;
    - else the block was contiguous and still refused: the device's real limit is lower, halve it.
    A repeat failure refines further, so the plan converges on what the device accepts.
    """
    specs = sorted((points[n] for n in request.points), key=lambda s: s.address)
    holes = {(request.kind, b.address) for a, b in itertools.pairwise(specs) if b.address > a.end}
    if failed:
        after_failed = {(request.kind, b.address) for a, b in itertools.pairwise(specs) if a.name in failed}
        return Learned(learned.isolated | failed, learned.barriers | after_failed, learned.max_registers)
    if holes - learned.barriers:
        return Learned(learned.isolated, learned.barriers | holes, learned.max_registers)
    limit = max(max(s.words for s in specs), request.count // 2)
    return Learned(learned.isolated, learned.barriers, min(limit, learned.max_registers or limit))
