"""`rm buffer.sqlite*` under a running agent during a broker outage: the backlog it held is still
delivered when the broker is back, and the event says what happened (nothing lost)."""

from __future__ import annotations

import time
from pathlib import Path

from testkit.broker import Broker
from tests.conftest import SimThread
from tests.daemon.test_run import Platform, start_agent, write_config
from tests.daemon.test_storage_faults import events, missing_seconds, seconds_of, serve_meter, stop


def test_database_removed_during_an_outage_loses_no_backlog(sim: SimThread, broker: Broker, tmp_path: Path) -> None:
    platform = Platform(broker.port)
    buffer = tmp_path / "buf"
    agent = start_agent(write_config(tmp_path / "agent.yaml", serve_meter(sim), broker.port, buffer))
    try:
        assert platform.wait(lambda: len(seconds_of(platform)) >= 2, 20)
        broker.stop()
        outage_began = int(time.time())
        time.sleep(4)  # a backlog on disk
        for path in buffer.glob("buffer.sqlite*"):
            path.unlink()
        time.sleep(7)  # the agent looks every 5 s
        assert agent.poll() is None
        assert (buffer / "buffer.sqlite").exists()
        broker.start()
        assert platform.wait(lambda: events(platform, "buffer_lost"), 30)
        newest = int(time.time())
        assert platform.wait(lambda: max(seconds_of(platform)) >= newest + 3 and not missing_seconds(platform, []), 40)
    finally:
        err = stop(agent)
    platform.close()
    lost = events(platform, "buffer_lost")[0]
    assert lost["reason"] == "buffer file removed while in use", lost
    assert lost["salvaged_batches"] > 0 and lost["lost_batches"] == 0 and lost["lost_readings"] == 0, lost
    assert set(range(outage_began, newest)) <= seconds_of(platform)  # every second of the outage arrived
    assert "buffer file pulled away while running" in err
    assert len({h.epoch for _, h, _ in platform.batches()}) == 1  # the same file's content, the same dedup keys
