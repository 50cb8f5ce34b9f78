"""Requests per full poll for each shipped profile (and the bench's reference meter), against one
request per point (the peers' habit), and the pure planner's speed."""

from __future__ import annotations

import time

from agent.drivers.plan import plan_reads
from bench.report import Figure
from bench.workload import library as profiles


def run(quick: bool = False) -> list[Figure]:
    library = profiles()
    figures = []
    for ref in library.available():
        profile = library.load(ref)
        requests = plan_reads(profile.points.values(), profile.timing())
        figures.append(Figure(f"requests/poll {ref}", len(requests), "requests", note=(
            f"{len(profile.points)} points = {len(profile.points)} requests one-per-point; "
            f"{len(requests) / len(profile.points):.2f}x of that")))
    profile = library.load("huawei/sun2000")
    rounds = 2000 if quick else 20000
    started = time.perf_counter()
    for _ in range(rounds):
        plan_reads(profile.points.values(), profile.timing())
    figures.append(Figure("plan time huawei/sun2000", (time.perf_counter() - started) / rounds * 1e6, "us/plan"))
    return figures
