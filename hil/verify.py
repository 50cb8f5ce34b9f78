"""Verification of a HIL run. Pure: takes what was collected, returns checks and figures.

Every scheduled poll of every device inside the window must be accounted for:
- delivered (with quality ok, or with the reason it has no value: timeout, exception, ...), or
- inside an interval the agent announced the device offline (`device_offline` .. `device_online`), or
- while the agent was not running (killed or stopped; the next start reports the gap), or
- inside a stretch of lost batches a `data_dropped` event announced (seqs and time span), or
- counted as dropped in a batch header (losses without a span: a corrupt buffer).
Delivered values must equal what the simulator served for that request, within the wire resolution.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from hil.runner import Collected

GRACE = 2.5  # s around an agent restart where the schedule realigns


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Verdict:
    scenario: str
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    timeline: dict[str, list[float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _attribute_late_polls(ticks: dict[int, list], skipped_ms: set[int], interval: float) -> None:
    """A poll that waited behind a slow neighbour on a shared line past its interval is stamped with
    the time it really read (the truth), which falls into the next interval; that interval's own
    poll was then skipped ("previous poll still running", reported). Such readings belong to the
    empty interval before: move them there, so neither poll is counted twice or missed."""
    for tick in sorted(ticks):
        if round(tick * interval * 1000) in skipped_ms and ticks.get(tick) and not ticks.get(tick - 1):
            ticks[tick - 1] = ticks.pop(tick)


def verify(run: Collected) -> Verdict:
    scenario = run.scenario
    interval = scenario.interval
    verdict = Verdict(scenario.name)
    batches = run.platform.batches(run.schema)
    readings = [r for _, _, rs in batches for r in rs]
    by_device: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in readings:
        by_device[r.device][int(r.ts // 1000 // interval)].append(r)
    offline = _offline_windows(run)
    skipped: dict[str, set[int]] = defaultdict(set)
    for event in run.platform.events:
        if event.get("event") == "polls_skipped":
            skipped[event["device"]].update(event.get("scheduled_ms", []))
    down = [(w.start - GRACE, w.end + GRACE) for w in run.windows if w.kind in ("agent_kill", "agent_term")]
    drops = [e for e in run.platform.events if e.get("event") == "data_dropped"]
    dropped = max([h.dropped_total for _, h, _ in batches] + [e.get("dropped_total", 0) for e in drops],
                  default=0)  # cumulative: survives a lost batch
    lost_spans = [(e["from_ms"] / 1000 - interval, e["to_ms"] / 1000) for e in drops if "from_ms" in e]
    first_tick, last_tick = int(run.start // interval) + 2, int(run.end // interval) - 1
    counts: Counter[str] = Counter()
    unaccounted: list[str] = []
    for device in (d.id for d in scenario.park):
        _attribute_late_polls(by_device[device], skipped.get(device, set()), interval)
        for tick in range(first_tick, last_tick + 1):
            t = tick * interval
            got = by_device[device].get(tick)
            if got:
                ok = all(r.quality == "ok" for r in got)
                counts["delivered ok" if ok else "delivered with a quality"] += 1
                for r in got:
                    counts[f"quality {r.quality}"] += r.quality != "ok"
            elif any(a <= t <= b for a, b in offline.get(device, [])):
                counts["device reported offline"] += 1
            elif round(t * 1000) in skipped.get(device, set()):
                counts["reported skipped"] += 1
            elif any(a < t <= b for a, b in lost_spans):
                counts["announced lost"] += 1
            elif any(a <= t <= b for a, b in down):
                counts["agent not running"] += 1
            else:
                unaccounted.append(f"{device}@+{t - run.start:.0f}s")
    unspanned = max(0, dropped - sum(e.get("readings", 0) for e in drops if "from_ms" in e))
    explained_by_drops = min(len(unaccounted), unspanned // max(1, _points(run)))
    counts["counted as dropped"] = explained_by_drops
    missing = len(unaccounted) - explained_by_drops
    scheduled = len(scenario.park) * (last_tick - first_tick + 1)
    verdict.checks.append(Check("every scheduled poll accounted for", missing == 0,
                                f"{scheduled} scheduled; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
                                + (f"; UNACCOUNTED {missing}: {', '.join(unaccounted[:8])}; "
                                   f"{_seq_summary(batches, drops, run.start)}" if missing else "")))
    mismatches, compared = _compare_values(run, readings)
    verdict.checks.append(Check("delivered values equal what was served", not mismatches and compared > 0,
                                f"{compared} values compared" + (f"; {len(mismatches)} differ: {mismatches[:3]}"
                                                                  if mismatches else "")))
    restarts = sum(w.kind in ("agent_kill", "agent_term") for w in run.windows)
    gaps = [h.gap_ms for _, h, _ in batches if h.gap_ms is not None]
    verdict.checks.append(Check("every restart reports its gap", len([g for g in gaps if g > 0]) >= restarts,
                                f"{restarts} restart(s), {len(gaps)} batch(es) with gap_ms {gaps[:4]}"))
    seqs = [(h.epoch, h.seq) for _, h, _ in batches]
    duplicates = sum(n - 1 for n in Counter(seqs).values())
    twice, conflicting = _delivered_twice(batches, interval), _conflicting_keys(batches)
    verdict.checks.append(Check("every poll delivered once (under one dedup key)", not twice,
                                f"{len(twice)} polls in two batches: {twice[:4]}" if twice else "no poll in two batches"))
    verdict.checks.append(Check("no dedup key carries two contents", not conflicting,
                                f"{len(conflicting)} keys differ: {conflicting[:4]}" if conflicting
                                else f"{len(set(seqs))} keys, {duplicates} repeated deliveries, all identical"))
    verdict.figures.update({"scheduled polls": scheduled, "readings delivered": len(readings),
                            "batches": len(set(seqs)), "duplicate batches": duplicates,
                            "readings dropped (reported)": dropped, "unaccounted polls": missing,
                            "values compared": compared, "value mismatches": len(mismatches)})
    if any(w.kind == "buffer_readonly" for w in run.windows):
        kinds = Counter(e.get("event") for e in run.platform.events)
        verdict.checks.append(Check("the card failure was reported", kinds["buffer_unavailable"] > 0,
                                    f"buffer_unavailable {kinds['buffer_unavailable']}, "
                                    f"buffer_restored {kinds['buffer_restored']}"))
    lags = [m.get("loop_lag_max_ms", 0) for m in run.platform.metrics]
    verdict.figures["max event-loop lag ms"] = max(lags, default=0)
    verdict.figures.update(_latency(batches))
    verdict.timeline = _timeline(run, batches)
    return verdict


def _delivered_twice(batches: list, interval: float) -> list[str]:
    """(device, tick)s whose readings arrived under more than one (epoch, seq): a platform that
    deduplicates by key would store them twice."""
    keys: dict[tuple[str, int], set[tuple[int, int]]] = defaultdict(set)
    for _, header, rs in batches:
        for r in rs:
            keys[(r.device, int(r.ts // 1000 // interval))].add((header.epoch, header.seq))
    return [f"{device}@{tick}: {sorted(k)}" for (device, tick), k in keys.items() if len(k) > 1]


def _conflicting_keys(batches: list) -> list[tuple[int, int]]:
    """Dedup keys delivered more than once with different readings (the flags may differ: a
    re-send is historical)."""
    contents: dict[tuple[int, int], set[tuple]] = defaultdict(set)
    for _, header, rs in batches:
        contents[(header.epoch, header.seq)].add(tuple(tuple(sorted(r.as_dict().items(), key=str)) for r in rs))
    return [key for key, seen in contents.items() if len(seen) > 1]


def _seq_summary(batches: list, drops: list[dict], start: float) -> str:
    """For a failing check: the batches received per epoch as runs of consecutive seqs (a gap inside
    a run's neighbourhood is a batch lost in transit or never sealed; a restart jumps to a new block
    of numbers), with the seqs announced lost and when each batch's readings begin."""
    announced = sorted({seq for e in drops if "seqs" in e for seq in range(e["seqs"][0], e["seqs"][1] + 1)})
    by_epoch: dict[int, dict[int, float]] = defaultdict(dict)
    for _, header, rs in batches:
        if rs:
            by_epoch[header.epoch][header.seq] = min(r.ts for r in rs) / 1000 - start
    parts = []
    for epoch, seqs in by_epoch.items():
        runs: list[list[int]] = []
        for seq in sorted(seqs):
            if runs and seq == runs[-1][-1] + 1:
                runs[-1].append(seq)
            else:
                runs.append([seq])
        text = ", ".join(f"{r[0]}-{r[-1]} (from +{seqs[r[0]]:.1f}s)" for r in runs)
        parts.append(f"epoch {epoch} seqs received: {text}; announced lost: {announced[:10]}")
    return "; ".join(parts)


def _points(run: Collected) -> int:
    """Readings one poll of one device yields, on average over the devices (to turn a count of
    dropped readings into polls)."""
    return max(1, round(sum(len(d.points) for d in run.schema.devices) / len(run.schema.devices)))


def _offline_windows(run: Collected) -> dict[str, list[tuple[float, float]]]:
    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    opened: dict[str, float] = {}
    for event in sorted(run.platform.events, key=lambda e: e.get("ts", 0)):
        device, ts = event.get("device"), event.get("ts", 0) / 1000
        if event.get("event") == "device_offline" and device:
            opened[device] = ts - 3 * run.scenario.interval  # the failed polls before the verdict were delivered
        elif event.get("event") == "device_online" and device in opened:
            windows[device].append((opened.pop(device), ts + run.scenario.interval))
    for device, since in opened.items():
        windows[device].append((since, float("inf")))
    return windows


def _compare_values(run: Collected, readings: list) -> tuple[list[str], int]:
    exps = {(d.id, p.name): (p.exp, p.kind) for d in run.schema.devices for p in d.points}
    mismatches, compared = [], 0
    for r in readings:
        exp, kind = exps.get((r.device, r.point), (0, "text"))
        history = run.served.get(r.device)
        if r.quality != "ok" or kind in ("text", "enum") or not history or not isinstance(r.value, int | float):
            continue
        stamps = [t for t, _ in history]
        i = bisect.bisect_right(stamps, r.ts / 1000)  # served after the request went out (ts is when it did)
        if i >= len(history):
            continue
        served = history[i][1].get(r.point)
        if not isinstance(served, int | float):
            continue
        compared += 1
        tolerance = max(10.0 ** -exp, abs(served) * 1e-6)
        if abs(float(r.value) - float(served)) > tolerance:
            mismatches.append(f"{r.device}.{r.point}@{r.ts}: {r.value} != {served}")
    return mismatches, compared


def _latency(batches: list) -> dict[str, float]:
    live = [at - r.ts / 1000 for at, header, rs in batches if not header.flags & 1 for r in rs]
    if len(live) < 2:
        return {}
    return {"latency median s": statistics.median(live), "latency p95 s": statistics.quantiles(live, n=20)[-1],
            "latency max s": max(live)}


def _timeline(run: Collected, batches: list) -> dict[str, list[float]]:
    seconds = int(run.end + 10 - run.start) + 1
    live, historical, dropped = [0.0] * seconds, [0.0] * seconds, [0.0] * seconds
    for at, header, rs in batches:
        i = int(at - run.start)
        if 0 <= i < seconds:
            (historical if header.flags & 1 else live)[i] += len(rs)
            dropped[i] = max(dropped[i], header.dropped_total)
    for i in range(1, seconds):
        dropped[i] = max(dropped[i], dropped[i - 1])
    return {"live": live, "historical": historical, "dropped": dropped}
