"""SQLite compaction in windows of keys: many revisions, many windows, the store stays exact.

The contract tests in ``test_backend.py`` compact a handful of rows in one window; these force tiny
windows so that every path of the windowing (a run of keys, one key alone, the tail) is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from controlplane.store import sqlite as sqlite_store
from controlplane.store.backend import Compacted, KeyValue
from controlplane.store.sqlite import SQLiteBackend

TIMEOUT = 30.0  # only a guard against hanging


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(tmp_path / "store.db", compact_interval=3600)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture
def tiny_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of a few rows, and no growth: every compaction takes many transactions."""
    monkeypatch.setattr(sqlite_store, "_COMPACT_ROWS", 5)
    monkeypatch.setattr(sqlite_store, "_next_compact_rows", lambda rows, elapsed: 5)


async def _rows(tmp_path: Path) -> list[tuple[str, int]]:
    async with aiosqlite.connect(tmp_path / "store.db") as conn:
        rows = await conn.execute_fetchall("SELECT name, id FROM kv ORDER BY name, id")
    return [(str(r[0]), int(r[1])) for r in rows]


@pytest.mark.usefixtures("tiny_windows")
async def test_compacting_many_revisions_keeps_only_the_latest(store: SQLiteBackend, tmp_path: Path) -> None:
    keys = [f"/registry/pods/ns/p{i:02d}" for i in range(12)]
    revs = {k: await store.create(k, b"0") for k in keys}
    created = dict(revs)
    for n in range(1, 8):  # round robin, like status updates of many pods
        for k in keys:
            revs[k] = await store.update(k, str(n).encode(), revs[k])
    hot = "/registry/leases/hot"  # far more rows than a window: compacted alone
    hot_rev = await store.create(hot, b"0")
    hot_created = hot_rev
    for n in range(1, 30):
        hot_rev = await store.update(hot, str(n).encode(), hot_rev)
    gone = keys[3]
    await store.delete(gone, revs[gone])
    reborn = keys[5]
    await store.delete(reborn, revs[reborn])
    reborn_rev = await store.create(reborn, b"again")
    head = await store.current_revision()

    removed = await asyncio.wait_for(store.compact(head), TIMEOUT)

    live = [k for k in keys if k != gone]
    assert await store.compacted_revision() == head
    assert removed == head - len(live) - 1  # every row but one per live key (and the hot key)
    assert sorted(await _rows(tmp_path)) == sorted(
        [(k, revs[k]) for k in live if k != reborn] + [(reborn, reborn_rev), (hot, hot_rev)]
    )
    for k in live:
        if k == reborn:
            assert await store.get(k) == KeyValue(k, b"again", reborn_rev, reborn_rev)
        else:
            assert await store.get(k) == KeyValue(k, b"7", created[k], revs[k])
    assert await store.get(gone) is None
    assert await store.get(hot) == KeyValue(hot, b"29", hot_created, hot_rev)
    _, items, _ = await store.list("/registry/pods/")
    assert [kv.key for kv in items] == live
    # The writer checkpoints on its own again (compaction turns that off while it runs).
    assert store._writer_conn is not None
    pages = await store._writer_conn.execute_fetchall("PRAGMA wal_autocheckpoint")
    assert list(pages) == [(sqlite_store._AUTOCHECKPOINT_PAGES,)]
    # History below the compacted revision is refused, not silently skipped.
    stale = store.watch("/registry/", head - 1)
    with pytest.raises(Compacted):
        await asyncio.wait_for(anext(aiter(stale)), TIMEOUT)
    await stale.close()


@pytest.mark.usefixtures("tiny_windows")
async def test_compaction_keeps_history_above_the_target(store: SQLiteBackend, tmp_path: Path) -> None:
    revs: dict[str, int] = {}
    for k in ("/a", "/b", "/c"):
        revs[k] = await store.create(k, b"0")
        for n in range(1, 6):
            revs[k] = await store.update(k, str(n).encode(), revs[k])
    target = await store.current_revision()
    after = []
    for n in range(6, 9):  # newer writes of /a: the history a watch from the target needs
        revs["/a"] = await store.update("/a", str(n).encode(), revs["/a"])
        after.append(revs["/a"])
    await store.delete("/c")

    await asyncio.wait_for(store.compact(target), TIMEOUT)

    assert await store.compacted_revision() == target
    watch = store.watch("/", target)
    events: list = []
    try:

        async def collect() -> None:
            async for batch in watch:
                events.extend(batch)
                if len(events) >= 4:
                    return

        await asyncio.wait_for(collect(), TIMEOUT)
    finally:
        await watch.close()
    assert [(e.type, e.kv.key, e.revision) for e in events] == [
        ("update", "/a", after[0]),
        ("update", "/a", after[1]),
        ("update", "/a", after[2]),
        ("delete", "/c", after[2] + 1),
    ]
    assert events[0].prev is not None and events[0].prev.value == b"5"  # prev comes from the kept row
    # Per key: its latest row at the target, plus every row above it.
    ids = {k: [i for name, i in await _rows(tmp_path) if name == k] for k in ("/a", "/b", "/c")}
    assert len(ids["/a"]) == 4 and len(ids["/b"]) == 1 and len(ids["/c"]) == 2

    # A second compaction removes what the first kept, including the tombstone written in between.
    head = await store.current_revision()
    assert await asyncio.wait_for(store.compact(head), TIMEOUT) == 3 + 2
    assert sorted(await _rows(tmp_path)) == [("/a", revs["/a"]), ("/b", revs["/b"])]
    assert await store.get("/c") is None
    assert await store.create("/c", b"new") == head + 1


def test_next_window_is_scaled_toward_the_time_budget() -> None:
    budget = sqlite_store._COMPACT_TXN_SECONDS
    low, high = sqlite_store._COMPACT_MIN_ROWS, sqlite_store._COMPACT_MAX_ROWS
    assert sqlite_store._next_compact_rows(1000, budget) == 1000
    assert sqlite_store._next_compact_rows(1000, budget / 10) == 2000  # at most doubles
    assert sqlite_store._next_compact_rows(1000, budget * 10) == 500  # at most halves
    assert sqlite_store._next_compact_rows(1000, 0.0) == 2000
    assert sqlite_store._next_compact_rows(low, budget * 10) == low  # never below the floor
    assert sqlite_store._next_compact_rows(high, 0.0) == high  # nor above the ceiling
