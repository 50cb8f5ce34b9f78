"""Request planner: data in, requests out."""

from __future__ import annotations

import pytest

from agent.drivers.plan import Learned, learn_from_split, plan_reads
from agent.types import DataType, DeviceTiming, PointSpec, ReadRequest, RegisterKind

H, I, C = RegisterKind.HOLDING, RegisterKind.INPUT, RegisterKind.COIL  # noqa: E741 - the kinds' initials


def pt(name: str, address: int, words: int = 2, kind: RegisterKind = H) -> PointSpec:
    data_type = {1: DataType.U16, 2: DataType.U32, 4: DataType.U64}[words]
    return PointSpec(name, kind, address, data_type, words)


def spans(requests: list[ReadRequest]) -> list[tuple[str, int, int]]:
    return [(r.kind.value, r.start, r.count) for r in requests]


@pytest.mark.parametrize(("points", "timing", "expected"), [
    # contiguous points: one request
    ([pt("a", 0), pt("b", 2), pt("c", 4)], DeviceTiming(), [("holding", 0, 6)]),
    # a small hole is bridged, a large one is not
    ([pt("a", 0), pt("b", 10)], DeviceTiming(max_gap=8), [("holding", 0, 12)]),
    ([pt("a", 0), pt("b", 11)], DeviceTiming(max_gap=8), [("holding", 0, 2), ("holding", 11, 2)]),
    # the register limit splits a long run
    ([pt(f"p{i}", i * 2) for i in range(10)], DeviceTiming(max_registers=8), [
        ("holding", 0, 8), ("holding", 8, 8), ("holding", 16, 4)]),
    # tables never mix
    ([pt("a", 0), pt("b", 2, kind=I)], DeviceTiming(), [("holding", 0, 2), ("input", 2, 2)]),
    # even alignment widens start and count
    ([pt("a", 1, 1), pt("b", 4, 1)], DeviceTiming(even_aligned=True), [("holding", 0, 6)]),
    ([pt("a", 3, 1)], DeviceTiming(even_aligned=True), [("holding", 2, 2)]),
    # alignment counts against the limit: 1..5 aligned is 0..6 (6 registers) > 5
    ([pt("a", 1, 2), pt("b", 3, 2)], DeviceTiming(even_aligned=True, max_registers=5),
     [("holding", 0, 4), ("holding", 2, 4)]),
    # overlapping points share a request
    ([pt("a", 0, 2), pt("a_lo", 1, 1)], DeviceTiming(), [("holding", 0, 2)]),
    # coils pack up to 2000 bits regardless of the register limit
    ([pt("c1", 0, 1, C), pt("c2", 1500, 1, C)], DeviceTiming(max_registers=10, max_gap=2000), [("coil", 0, 1501)]),
    ([], DeviceTiming(), []),
])
def test_plan(points: list[PointSpec], timing: DeviceTiming, expected: list[tuple[str, int, int]]) -> None:
    assert spans(plan_reads(points, timing)) == expected


def test_every_point_in_exactly_one_request() -> None:
    points = [pt(f"p{i}", a) for i, a in enumerate([0, 2, 40, 44, 100, 300, 302, 1000])]
    requests = plan_reads(points, DeviceTiming(max_registers=20, max_gap=10))
    names = [n for r in requests for n in r.points]
    assert sorted(names) == sorted(p.name for p in points)
    for request in requests:
        for name in request.points:
            spec = next(p for p in points if p.name == name)
            assert request.start <= spec.address and spec.end <= request.end


def test_sdm630_layout_takes_two_requests(library) -> None:  # type: ignore[no-untyped-def]
    """21 SDM630 points in two even-aligned reads, against 21 with one request per point."""
    profile = library.load("eastron/sdm630")
    requests = plan_reads(profile.points.values(), profile.timing())
    assert spans(requests) == [("input", 0, 0x4C), ("input", 0x156, 10)]


def test_isolated_point_is_read_alone_and_not_bridged() -> None:
    points = [pt("a", 0), pt("bad", 2), pt("c", 4)]
    learned = Learned(isolated=frozenset({"bad"}), barriers=frozenset({(H, 4)}))
    assert spans(plan_reads(points, DeviceTiming(), learned)) == [("holding", 0, 2), ("holding", 2, 2), ("holding", 4, 2)]


def test_learn_isolates_the_failed_point() -> None:
    points = {p.name: p for p in [pt("a", 0), pt("bad", 2), pt("c", 4)]}
    request = plan_reads(points.values(), DeviceTiming())[0]
    learned = learn_from_split(Learned(), request, points, {"bad"})
    assert learned.isolated == {"bad"}
    replanned = plan_reads(points.values(), DeviceTiming(), learned)
    assert all(("bad" not in r.points) or r.points == ("bad",) for r in replanned)
    assert not any(r.start < 4 < r.end or (r.start <= 2 < r.end and r.points != ("bad",)) for r in replanned)


def test_learn_stops_bridging_holes_when_every_point_reads_alone() -> None:
    points = {p.name: p for p in [pt("a", 0), pt("b", 6)]}
    request = plan_reads(points.values(), DeviceTiming())[0]
    learned = learn_from_split(Learned(), request, points, set())
    assert spans(plan_reads(points.values(), DeviceTiming(), learned)) == [("holding", 0, 2), ("holding", 6, 2)]


def test_learn_halves_the_limit_for_a_contiguous_block() -> None:
    """A contiguous block that fails but whose points all read alone: the device's limit is lower."""
    points = {p.name: p for p in [pt(f"p{i}", i * 2) for i in range(40)]}
    request = plan_reads(points.values(), DeviceTiming(max_registers=80))[0]
    assert request.count == 80
    learned = learn_from_split(Learned(), request, points, set())
    assert learned.max_registers == 40
    assert max(r.count for r in plan_reads(points.values(), DeviceTiming(max_registers=80), learned)) == 40
