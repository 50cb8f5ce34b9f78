"""Thread hand-offs: the devices polled at one tick reach their bus thread in one job, and a device
that answers gets its outcome while a neighbour in the same job is still waiting out a timeout."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from agent.config import ProfileLibrary
from agent.drivers.bus import Backoff, Bus
from agent.drivers.device import DeviceReader
from agent.drivers.pymodbus_adapter import Faults
from agent.simulate import SimulatedDevice
from agent.types import Quality
from tests.conftest import SimThread


def test_devices_polled_at_one_tick_share_one_hand_off(sim: SimThread, library: ProfileLibrary) -> None:
    profile = library.load("eastron/sdm630")
    spec, _ = sim.tcp({unit: SimulatedDevice(profile) for unit in (1, 2, 3)})

    async def scenario() -> tuple[list, Bus]:
        bus = Bus("plant", spec, Backoff(0.05, 0.2))
        readers = [DeviceReader(f"m{unit}", unit, profile.points, profile.timing(), bus) for unit in (1, 2, 3)]
        try:
            results = [await asyncio.gather(*(r.poll() for r in readers)) for _ in range(3)]
        finally:
            await bus.close()
        return results, bus

    rounds, bus = asyncio.run(scenario())
    assert bus.transactions == 3 * 3 * 2  # three rounds of three meters, two requests each
    assert bus.hand_offs == 3  # one per round, not one per meter
    assert all(r.quality is Quality.OK for results in rounds for result in results for r in result.readings)


def test_an_answer_is_not_held_back_by_a_neighbour_timing_out(sim: SimThread, library: ProfileLibrary) -> None:
    """Meter 1 answers, meter 2 is silent (0.6 s timeout), both in one hand-off: meter 1's poll is
    complete while the bus thread is still waiting for meter 2 (one request of it not yet counted)."""
    profile = library.load("eastron/sdm630")
    spec, _ = sim.tcp({1: SimulatedDevice(profile), 2: SimulatedDevice(profile)}, Faults(silent={2}))

    async def scenario() -> tuple[int, int, list]:
        bus = Bus("plant", spec, Backoff(0.05, 0.2))
        timing = replace(profile.timing(), timeout=0.6)
        healthy = DeviceReader("healthy", 1, profile.points, timing, bus)
        silent = DeviceReader("silent", 2, profile.points, timing, bus)
        try:
            first, second = asyncio.create_task(healthy.poll()), asyncio.create_task(silent.poll())
            result = await first
            seen = bus.transactions  # meter 1's two requests; meter 2's is still out
            await second
        finally:
            await bus.close()
        return seen, bus.hand_offs, result.readings

    seen, hand_offs, readings = asyncio.run(scenario())
    assert hand_offs == 1
    assert seen == 2
    assert readings and all(r.quality is Quality.OK for r in readings)


def test_one_job_per_interval_and_the_windows_last_poll_sees_it_whole(sim: SimThread, library: ProfileLibrary) -> None:
    """Three meters at 1 s: one scheduler job starts all three polls, and when the last of them is in,
    the poller says the window is whole (the daemon seals the batch then, not at the deadline)."""
    from agent.pipeline import DeviceState
    from agent.poller import Poller

    profile = library.load("eastron/sdm630")
    spec, _ = sim.tcp({unit: SimulatedDevice(profile) for unit in (1, 2, 3)})

    async def scenario() -> tuple[int, list[tuple[int, bool]], Bus]:
        bus = Bus("plant", spec, Backoff(0.05, 0.2))
        done: list[tuple[int, bool]] = []
        poller = Poller(lambda _readings: None, lambda _event: None,
                        lambda tick: done.append((tick, poller.window_complete(tick + 1000))))
        states = {f"m{u}": DeviceState(DeviceReader(f"m{u}", u, profile.points, profile.timing(), bus), 1.0)
                  for u in (1, 2, 3)}
        poller.schedule(states)
        poller.start()
        jobs = len(poller._scheduler.get_jobs())
        for _ in range(100):  # the immediate round (at most 5 s)
            if len(done) >= 3:
                break
            await asyncio.sleep(0.05)
        await poller.stop(1.0)
        await bus.close()
        return jobs, done, bus

    jobs, done, bus = asyncio.run(scenario())
    assert jobs == 1
    first_round = done[:3]
    assert len({tick for tick, _ in first_round}) == 1
    assert [whole for _, whole in first_round] == [False, False, True]
    assert bus.hand_offs >= 1 and bus.transactions >= 6


def test_cancelled_polls_are_not_sent(sim: SimThread, library: ProfileLibrary) -> None:
    """Shutting down cancels the polls still queued: they do not go on the wire (three silent polls of
    0.5 s each would hold the bus thread, and the agent's stop, for 1.5 s)."""
    profile = library.load("eastron/sdm630")
    spec, _ = sim.tcp({1: SimulatedDevice(profile)}, Faults(silent={1}))

    async def scenario() -> tuple[int, list[BaseException | object]]:
        bus = Bus("plant", spec, Backoff(0.05, 0.2))
        timing = replace(profile.timing(), timeout=0.5)
        readers = [DeviceReader(f"m{i}", 1, profile.points, timing, bus) for i in range(3)]
        tasks = [asyncio.create_task(r.poll()) for r in readers]
        for _ in range(3):
            await asyncio.sleep(0)  # the polls queue their exchanges; the hand-off goes to the thread
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        return bus.transactions, outcomes

    transactions, outcomes = asyncio.run(scenario())
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert transactions <= 1  # at most the one already on the wire when they were cancelled
