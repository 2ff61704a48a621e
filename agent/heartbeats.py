"""One heartbeat loop for many nodes (hollow nodes): Lease renewals spread evenly in time, few at once.

A thousand ``NodeHeartbeat`` tasks sleeping ``lease_interval`` each would wake in bursts (nodes
registered in one batch renew in the same instant) and put hundreds of requests in flight together,
which costs the client more than the requests themselves (httpx's pool scans every queued request
against every connection). Here one task keeps every node's next beat in a heap: each node's first beat
is at a random point of its first interval and each following one an interval later minus a little
jitter (as the kubelet's lease controller jitters, 4%), so N nodes renew at a steady N / interval per
second; at most ``concurrency`` beats run at once. A beat is ``NodeHeartbeat.beat``: the same Lease
renewal and status write a lone agent does.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random

from controlplane.tasks import cancel

from .node import NodeHeartbeat

log = logging.getLogger(__name__)

JITTER = 0.04  # fraction of the interval a renewal may come early


class HeartbeatScheduler:
    def __init__(self, *, concurrency: int = 16, rng: random.Random | None = None) -> None:
        self.concurrency = concurrency
        self.beats = 0  # heartbeats done (for tests and benchmarks)
        self.failures = 0
        self.late = 0.0  # seconds the latest beat started after it was due (the loop falling behind)
        self._rng = rng or random.Random()
        self._heap: list[tuple[float, int, NodeHeartbeat]] = []
        # The heartbeats beating, each with the sequence number of its live heap entry: an entry of a
        # removed (or removed and added again) heartbeat is dropped when it comes due.
        self._members: dict[NodeHeartbeat, int] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, heartbeat: NodeHeartbeat) -> None:
        """Start beating for this node: first at a random point of its first lease interval."""
        loop = asyncio.get_running_loop()
        seq = self._members[heartbeat] = next(self._seq)
        due = loop.time() + self._rng.uniform(0.1, 1.0) * heartbeat.lease_interval
        heapq.heappush(self._heap, (due, seq, heartbeat))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heartbeats")

    def remove(self, heartbeat: NodeHeartbeat) -> None:
        """Stop beating for this node (its Lease then expires, as when an agent stops)."""
        self._members.pop(heartbeat, None)

    def __len__(self) -> int:
        return len(self._members)

    async def stop(self) -> None:
        self._members.clear()
        await cancel(self._task)
        self._task = None
        await cancel(list(self._running))
        self._running.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._heap[0][0]
            if due > loop.time():
                self._wake.clear()
                # An added node may be due earlier than the first one waiting: woken, look again.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - loop.time()):
                        await self._wake.wait()
                continue
            _, seq, heartbeat = heapq.heappop(self._heap)
            if self._members.get(heartbeat) != seq:
                continue
            await self._slots.acquire()
            self.late = loop.time() - due
            task = asyncio.create_task(self._beat(heartbeat), name=f"heartbeat-{heartbeat.name}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            step = heartbeat.lease_interval * (1 - self._rng.uniform(0, JITTER))
            # In phase while on time (the nodes stay spread); a beat run late renewed the Lease late, so the
            # next is at least half an interval later: a slow API never gets extra beats to catch up.
            next_due = max(due + step, loop.time() + step / 2)
            seq = self._members[heartbeat] = next(self._seq)
            heapq.heappush(self._heap, (next_due, seq, heartbeat))

    async def _beat(self, heartbeat: NodeHeartbeat) -> None:
        try:
            await heartbeat.beat()
            self.beats += 1
        except Exception as exc:
            self.failures += 1
            log.warning("node %s heartbeat failed: %s", heartbeat.name, exc)
        finally:
            self._slots.release()
