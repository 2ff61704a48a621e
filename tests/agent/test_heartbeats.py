"""agent.heartbeats: one loop beating for many nodes, spread over the interval, bounded in concurrency,
never catching up with extra beats. Stub heartbeats, no API server."""

from __future__ import annotations

import asyncio
import random
from typing import cast

from agent.heartbeats import HeartbeatScheduler
from agent.node import NodeHeartbeat
from tests.support import eventually


class StubBeat:
    """What the scheduler uses of a NodeHeartbeat: a name, an interval and ``beat``."""

    def __init__(self, name: str, interval: float, delay: float = 0.0, fail: bool = False) -> None:
        self.name = name
        self.lease_interval = interval
        self.delay = delay
        self.fail = fail
        self.times: list[float] = []

    async def beat(self) -> None:
        self.times.append(asyncio.get_running_loop().time())
        if self.fail:
            raise RuntimeError("API down")
        await asyncio.sleep(self.delay)


def as_heartbeat(stub: StubBeat) -> NodeHeartbeat:
    return cast(NodeHeartbeat, stub)


async def test_first_beats_are_spread_over_the_interval_and_each_node_keeps_beating() -> None:
    scheduler = HeartbeatScheduler(rng=random.Random(7))
    stubs = [StubBeat(f"n{i}", 0.5) for i in range(40)]
    start = asyncio.get_running_loop().time()
    for stub in stubs:
        scheduler.add(as_heartbeat(stub))
    try:

        async def three_each() -> bool:
            return all(len(s.times) >= 3 for s in stubs)

        await eventually(three_each, "three beats from every node", timeout=10)
    finally:
        await scheduler.stop()
    firsts = sorted(s.times[0] - start for s in stubs)
    # Spread, not a burst: the first beats fall in distinct tenths of the interval.
    assert len({int(t / 0.05) for t in firsts}) >= 8
    for s in stubs:  # in phase (a late beat's successor is still on time), never two in a row
        gaps = [b - a for a, b in zip(s.times, s.times[1:], strict=False)]
        assert all(g >= 0.5 * 0.96 / 2 for g in gaps), gaps
    assert scheduler.beats >= 120 and scheduler.failures == 0


async def test_at_most_concurrency_beats_run_at_once_and_a_slow_api_gets_no_extra_beats() -> None:
    scheduler = HeartbeatScheduler(concurrency=3, rng=random.Random(1))
    running = 0
    peak = 0

    class Slow(StubBeat):
        async def beat(self) -> None:
            nonlocal running, peak
            self.times.append(asyncio.get_running_loop().time())
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.2)
            running -= 1

    stubs = [Slow(f"s{i}", 0.1) for i in range(12)]
    for stub in stubs:
        scheduler.add(as_heartbeat(stub))
    await asyncio.sleep(1.5)
    await scheduler.stop()
    assert peak == 3
    # 3 at a time, 0.2 s each: about 15 beats a second however many are due; none beats twice in a row
    # to catch up (a late beat is followed by at least half an interval).
    for s in stubs:
        gaps = [b - a for a, b in zip(s.times, s.times[1:], strict=False)]
        assert all(g >= 0.1 * 0.96 / 2 for g in gaps), gaps


async def test_a_removed_node_stops_beating_and_failures_are_counted_not_fatal() -> None:
    scheduler = HeartbeatScheduler(rng=random.Random(3))
    gone, broken, kept = StubBeat("gone", 0.1), StubBeat("broken", 0.1, fail=True), StubBeat("kept", 0.1)
    for stub in (gone, broken, kept):
        scheduler.add(as_heartbeat(stub))
    try:

        async def all_beat() -> bool:
            return all(s.times for s in (gone, broken, kept))

        await eventually(all_beat, "a first beat from each", timeout=5)
        scheduler.remove(as_heartbeat(gone))
        scheduler.add(as_heartbeat(kept))  # added again: still one beat per interval, not two
        seen = len(gone.times)
        before = len(kept.times)
        await asyncio.sleep(0.55)
        assert len(gone.times) == seen
        assert 3 <= len(kept.times) - before <= 7
        assert scheduler.failures >= 1 and len(broken.times) >= 2
        assert len(scheduler) == 2
    finally:
        await scheduler.stop()
