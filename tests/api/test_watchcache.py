"""The watch cache and streams: one store watch fanned out; bounded per-watcher queues; ring replay
without gaps; frames encoded once and shared; selectors and Tables still per watcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from controlplane.api import ConfigMap, ObjectMeta, for_type
from controlplane.client import Client
from controlplane.server.request import RequestInfo
from controlplane.server.storage import encode
from controlplane.server.watch import _CHUNK, WatchParams, _chunks, _Encoder
from controlplane.server.watchcache import Change, WatchCache
from controlplane.store import WatchClosed
from controlplane.store.sqlite import SQLiteBackend
from tests.support import collect

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
        assert not cache.subscribed(slow)
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


async def test_pending_batches_come_out_together_in_order(backend: SQLiteBackend) -> None:
    """A watcher that has fallen behind gets everything pending at once (one chunk on the wire)."""
    cache = WatchCache(backend)
    await cache.start()
    try:
        sub = cache.subscribe(CM.prefix("default"), cache.revision)
        revs = []
        for i in range(3):
            revs.append(await backend.create(CM.key("default", f"c{i}"), cm(f"c{i}")))
            await wait_revision(cache, revs[-1])
        assert [c.revision for c in await sub.next_batch(1)] == revs
        assert sub.idle()
    finally:
        await cache.close()


async def test_watchers_get_only_their_prefix_and_share_the_batch(backend: SQLiteBackend) -> None:
    cache = WatchCache(backend)
    await cache.start()
    try:
        start = cache.revision
        one = cache.subscribe(CM.prefix("default"), start)
        two = cache.subscribe(CM.prefix("default"), start)
        everywhere = cache.subscribe(CM.prefix(None), start)
        other = cache.subscribe(CM.prefix("other"), start)
        a = await backend.create(CM.key("default", "a"), cm("a"))
        b = await backend.create(CM.key("other", "b"), cm("b"))
        await wait_revision(cache, b)
        got_one, got_two = await one.next_batch(1), await two.next_batch(1)
        assert [c.revision for c in got_one] == [a]
        assert got_one[0] is got_two[0]  # decoded once, the same Change for both
        assert [c.revision for c in await everywhere.next_batch(1)] == [a, b]
        assert [c.revision for c in await other.next_batch(1)] == [b]
        await one.close()
        assert not cache.subscribed(one) and cache.subscribed(two)
    finally:
        await cache.close()


async def test_wait_times_out_and_still_wakes_for_later_changes(backend: SQLiteBackend) -> None:
    """The wait's timer is kept across calls; once it has fired, a new deadline must arm a new one."""
    cache = WatchCache(backend)
    await cache.start()
    try:
        sub = cache.subscribe(CM.prefix("default"), cache.revision)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.05
        assert await sub.next_batch_until(deadline) == []
        assert await sub.next_batch_until(deadline) == []  # already past: no wait at all
        assert await sub.next_batch(0.05) == []

        async def later() -> int:
            await asyncio.sleep(0.05)
            return await backend.create(CM.key("default", "late"), cm("late"))

        task = asyncio.create_task(later())
        batch = await sub.next_batch(5)
        assert [c.revision for c in batch] == [await task]
    finally:
        await cache.close()


async def test_dropped_watcher_gets_its_backlog_then_closed(backend: SQLiteBackend) -> None:
    cache = WatchCache(backend, queue_size=2)
    await cache.start()
    try:
        sub = cache.subscribe(CM.prefix("default"), cache.revision)
        revs = []
        for i in range(3):
            revs.append(await backend.create(CM.key("default", f"c{i}"), cm(f"c{i}")))
            await wait_revision(cache, revs[-1])
        assert sub.dropped and not cache.subscribed(sub)
        assert [c.revision for c in await sub.next_batch(1)] == revs[:2]
        with pytest.raises(WatchClosed):
            await sub.next_batch(1)
    finally:
        await cache.close()


def test_plain_frames_are_encoded_once_and_shared() -> None:
    """Every watcher without selectors gets the very same bytes; a selector's ADDED/DELETED view of a
    MODIFIED change gets its own frame."""
    obj = ConfigMap(metadata=ObjectMeta(name="a", namespace="default", resource_version="7"), data={"k": "v"})
    change = Change(revision=7, key=CM.key("default", "a"), info=CM, type="MODIFIED", obj=obj, prev_kv=None)
    ri = RequestInfo(info=CM, namespace="default", name=None, subresource=None, all_namespaces=False)
    params = WatchParams("7", 60, False, 1, as_table=False, include_object="Metadata")
    first, second = _Encoder(ri, params), _Encoder(ri, params)
    frame_a = first.change_frame(change, "MODIFIED")
    assert second.change_frame(change, "MODIFIED") is frame_a
    assert msgspec.json.decode(frame_a)["type"] == "MODIFIED"
    added = second.change_frame(change, "ADDED")
    assert msgspec.json.decode(added) == {
        "type": "ADDED",
        "object": msgspec.json.decode(change.encoded or b""),
    }
    table = _Encoder(ri, WatchParams("7", 60, False, 1, as_table=True, include_object="Metadata"))
    assert msgspec.json.decode(table.change_frame(change, "MODIFIED"))["object"]["kind"] == "Table"
    assert first.change_frame(change, "MODIFIED") is frame_a  # the Table did not replace it


async def test_plain_and_selector_watchers_see_their_own_events(client: Client) -> None:
    """Through HTTP: a plain watcher sees every change as it is; a label-selector watcher on the same
    object sees it enter and leave as ADDED and DELETED; a Table watcher gets one row per event."""
    made = await client.create(
        ConfigMap(metadata=ObjectMeta(name="a", namespace="default", labels={"app": "web"}), data={})
    )
    rv = made.metadata.resource_version
    plain = client.watch(ConfigMap, "default", resource_version=rv, bookmarks=False)
    tables = client.watch_table(CM, "default", resource_version=rv)
    selected = client.watch(
        ConfigMap, "default", resource_version=rv, label_selector="app=web", bookmarks=False
    )
    await client.patch(ConfigMap, "a", {"metadata": {"labels": {"app": "db"}}}, "default")
    await client.patch(ConfigMap, "a", {"data": {"x": "1"}}, "default")
    await client.patch(ConfigMap, "a", {"metadata": {"labels": {"app": "web"}}}, "default")
    await client.patch(ConfigMap, "a", {"data": {"x": "2"}}, "default")
    await client.delete(ConfigMap, "a", "default")
    got_plain = await collect(plain, 5)
    got_selected = await collect(selected, 4)
    got_tables = await collect(tables, 5)
    assert [e.type for e in got_plain] == ["MODIFIED"] * 4 + ["DELETED"]
    assert [e.type for e in got_selected] == ["DELETED", "ADDED", "MODIFIED", "DELETED"]
    assert {e.object.metadata.name for e in got_selected} == {"a"}
    assert got_selected[2].object.data == {"x": "2"}
    # Leaving the selector: the object as it last matched, at the change's resourceVersion.
    assert got_selected[0].object.metadata.labels == {"app": "web"}
    assert got_selected[0].resource_version == got_plain[0].resource_version
    assert [t for t, _ in got_tables] == [e.type for e in got_plain]
    assert [len(table.rows) for _, table in got_tables] == [1] * 5
    assert got_tables[0][1].column_definitions and not got_tables[1][1].column_definitions
    revisions = [int(e.resource_version) for e in got_plain]
    assert revisions == sorted(revisions) and len(set(revisions)) == 5
    for it in (plain, selected, tables):
        await it.aclose()  # type: ignore[attr-defined]


async def test_watch_without_version_sends_current_state_in_chunks_then_live(client: Client) -> None:
    """More than one chunk's worth of current objects (64 KiB), every one ADDED once, then live events."""
    names = [f"big-{i:02d}" for i in range(40)]
    for name in names:
        await client.create(
            ConfigMap(metadata=ObjectMeta(name=name, namespace="default"), data={"blob": "x" * 3000})
        )
    it = client.watch(ConfigMap, "default", bookmarks=False)
    first = await collect(it, len(names))
    assert [e.type for e in first] == ["ADDED"] * len(names)
    assert sorted(e.object.metadata.name for e in first) == names
    await client.create(ConfigMap(metadata=ObjectMeta(name="later", namespace="default"), data={}))
    (live,) = await collect(it, 1)
    assert (live.type, live.object.metadata.name) == ("ADDED", "later")
    await it.aclose()  # type: ignore[attr-defined]


def test_ready_frames_are_joined_into_bounded_chunks() -> None:
    frames = [bytes([65 + i % 26]) * (1000 + i) + b"\n" for i in range(200)]
    chunks = list(_chunks(frames))
    assert b"".join(chunks) == b"".join(frames)
    assert 1 < len(chunks) < len(frames)
    assert all(len(c) >= _CHUNK for c in chunks[:-1])
    assert all(len(c) < _CHUNK + 2000 for c in chunks)
    assert list(_chunks([])) == []
