"""The watch cache: one store watch fanned out; bounded per-watcher queues; ring replay without gaps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from controlplane.api import ConfigMap, ObjectMeta, for_type
from controlplane.server.storage import encode
from controlplane.server.watchcache import WatchCache
from controlplane.store import WatchClosed
from controlplane.store.sqlite import SQLiteBackend

CM = for_type(ConfigMap)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend(tmp_path / "db")
    await b.start()
    yield b
    await b.close()


def cm(name: str, value: str = "v") -> bytes:
    return encode(ConfigMap(metadata=ObjectMeta(name=name, namespace="default"), data={"k": value}))


async def wait_revision(cache: WatchCache, revision: int) -> None:
    for _ in range(500):
        if cache.revision >= revision:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"cache stuck at {cache.revision}, wanted {revision}")


async def test_slow_watcher_is_dropped_others_are_not(backend: SQLiteBackend) -> None:
    cache = WatchCache(backend, queue_size=3)
    await cache.start()
    try:
        slow = cache.subscribe(CM.prefix("default"), 0)
        fast = cache.subscribe(CM.prefix("default"), 0)
        got: list[int] = []
        last = 0
        for i in range(20):
            last = await backend.create(CM.key("default", f"c{i}"), cm(f"c{i}"))
            await wait_revision(cache, last)
            for change in await fast.next_batch(1):
                got.append(change.revision)
        assert got[-1] == last and len(got) == 20
        assert slow.dropped
        with pytest.raises(WatchClosed):
            for _ in range(10):
                await slow.next_batch(1)
        assert slow not in cache._subscribers
    finally:
        await cache.close()


async def test_ring_replay_then_live_without_gaps(backend: SQLiteBackend) -> None:
    cache = WatchCache(backend)
    await cache.start()
    try:
        revs = [await backend.create(CM.key("default", f"c{i}"), cm(f"c{i}")) for i in range(5)]
        await wait_revision(cache, revs[-1])
        sub = cache.subscribe(CM.prefix("default"), revs[1])
        more = await backend.update(CM.key("default", "c0"), cm("c0", "changed"), revs[0])
        seen: list[int] = []
        while len(seen) < 4:
            seen += [c.revision for c in await sub.next_batch(2)]
        assert seen == [*revs[2:], more]
        assert await sub.next_batch(0.05) == []
    finally:
        await cache.close()


async def test_version_older_than_ring_falls_back_to_store(backend: SQLiteBackend) -> None:
    first = await backend.create(CM.key("default", "early"), cm("early"))
    cache = WatchCache(backend, capacity=2)
    await cache.start()
    try:
        revs = [await backend.create(CM.key("default", f"c{i}"), cm(f"c{i}")) for i in range(4)]
        await wait_revision(cache, revs[-1])
        sub = cache.subscribe(CM.prefix("default"), first)
        seen: list[int] = []
        while len(seen) < 4:
            seen += [c.revision for c in await sub.next_batch(2)]
        assert seen == revs
        obj = (await cache.subscribe(CM.prefix("default"), revs[-2]).next_batch(2))[0].obj
        assert isinstance(obj, ConfigMap) and msgspec.to_builtins(obj)["data"] == {"k": "v"}
        await sub.close()
    finally:
        await cache.close()
