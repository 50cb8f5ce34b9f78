"""The agent's whole lifecycle through power cuts during an outage: a real `edge-agent run` with its
buffer on the power-cut file system (testkit/powercut.py), the broker down, kill -9 followed by a power
cut (unsynced writes dropped, torn or reordered) several times, then the broker back.

Drafts, sequence reservations and stored events all live in the buffer: every second polled is
delivered or inside a loss the agent announced (the `gap_ms` of the first batch after each start,
or a `data_dropped` span), no dedup key carries two contents, every restart reports its gap, the
events raised while offline in runs that outlived a commit are delivered, and a cut costs about a
second of readings (README: the open batch is drafted every second during an outage).
"""

from __future__ import annotations

import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from agent.codec import decode_header
from testkit.broker import Broker, free_port
from testkit.powercut import MODES, PowerCutFS
from tests.conftest import SimThread
from tests.daemon.test_run import Platform, start_agent, write_config
from tests.daemon.test_storage_faults import events, missing_seconds, seconds_of, serve_meter, stop


def restart_gaps(platform: Platform) -> list[tuple[int, int]]:
    """(last reading on disk before the start, first reading of the run) in ms, from each batch whose
    header carries `gap_ms`: what the agent announces a restart lost."""
    spans = []
    for _, header, readings in platform.batches():
        if header.gap_ms is not None and readings:
            first = min(r.ts for r in readings)
            spans.append((first - header.gap_ms, first))
    return spans


def conflicting_keys(platform: Platform) -> list[tuple[int, int]]:
    contents: dict[tuple[int, int], set[bytes]] = defaultdict(set)
    for payload in platform.payloads:
        header = decode_header(payload)[0]
        contents[(header.epoch, header.seq)].add(payload)
    return [key for key, bodies in contents.items() if len(bodies) > 1]


@pytest.mark.timeout(300)  # ~25 s (3 cuts), ~50 s with --long (8)
def test_power_cuts_during_an_outage_lose_only_what_the_restart_announces(
        sim: SimThread, broker: Broker, powercut_fs: PowerCutFS, tmp_path: Path, long_mode: bool) -> None:
    rng = random.Random(20261130)
    cuts = 8 if long_mode else 3
    config = write_config(tmp_path / "agent.yaml", serve_meter(sim), broker.port, powercut_fs.mountpoint / "buffer")
    # a second device on a port nothing listens on: it goes offline in every run, a `device_offline`
    # event raised while the broker is away, kept on disk with the batches
    config.write_text(config.read_text()
                      .replace("buses: [", f'buses: [{{name: dead, url: "tcp://127.0.0.1:{free_port()}"}}, ')
                      .replace("devices:\n", "devices:\n  - {id: unplugged, bus: dead, unit: 1, "
                                             "profile: eastron/sdm630, interval: 1s}\n"))
    platform = Platform(broker.port)
    broker.stop()
    kills: list[float] = []
    offline_runs = 0
    for _ in range(cuts):
        agent = start_agent(config)
        assert agent.poll() is None, agent.communicate()[1][-3000:]
        lifetime = rng.uniform(3.5, 7.0)
        time.sleep(lifetime)
        offline_runs += lifetime >= 6.0  # offline after 3 failed polls, committed within a second
        agent.send_signal(signal.SIGKILL)
        agent.communicate(15)
        kills.append(time.time() * 1000)
        powercut_fs.cut(rng.choice(MODES), rng.randrange(1 << 30))
    broker.start()
    agent = start_agent(config)
    try:
        lost = lambda: restart_gaps(platform) + [(e["from_ms"], e["to_ms"]) for e in events(platform, "data_dropped")]
        newest = int(time.time())
        assert platform.wait(lambda: seconds_of(platform) and max(seconds_of(platform)) >= newest + 3
                             and not missing_seconds(platform, lost()), 60), missing_seconds(platform, lost())
    finally:
        err = stop(agent)
    platform.close()
    assert "Traceback" not in err
    spans = restart_gaps(platform)
    assert len(spans) == cuts, f"{cuts} restarts, first batches with a gap: {spans}"  # each restart reports its gap
    assert missing_seconds(platform, lost()) == [], err[-2000:]
    assert conflicting_keys(platform) == []  # sequence reservations survived the cuts: no key reused
    assert not events(platform, "buffer_lost")  # no start found a damaged file
    # what each cut cost: from the last reading on disk to the kill (the README: about a second)
    cost = [kill - before for kill, (before, _) in zip(kills, sorted(spans))]
    polls = [int(kill // 1000 - before // 1000) for kill, (before, _) in zip(kills, sorted(spans))]
    print(f"\n{cuts} kill -9 + power cuts during an outage: from the last reading on disk to the kill "
          f"{[round(c) for c in cost]} ms, 1 s polls lost per cut {polls}; "
          f"{len(events(platform, 'device_offline'))} device_offline events delivered of {cuts + 1} runs")
    assert max(cost) < 5000, cost
    assert len(events(platform, "device_offline")) >= offline_runs
