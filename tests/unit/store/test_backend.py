"""Contract tests for store backends: every backend must pass all of them.

The ``backend`` fixture is parametrised over backend names; a new backend (etcd) is added to ``BACKENDS``
and to :func:`_construct`. Options given to ``make_backend`` use the SQLite backend's keyword names;
another backend maps them to its own knobs. Tests that need a shared file and a second OS process are
SQLite-specific and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from controlplane.store.backend import (
    Backend,
    Compacted,
    Conflict,
    KeyExists,
    KeyNotFound,
    KeyValue,
    StoreEvent,
    Watch,
    WatchClosed,
)
from controlplane.store.sqlite import SQLiteBackend

BACKENDS = ["sqlite"]
REPO_ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 30.0  # only a guard against hanging; no test asserts on elapsed time

Factory = Callable[..., Awaitable[Backend]]


def _construct(name: str, tmp_path: Path, options: dict[str, Any]) -> Backend:
    if name == "sqlite":
        return SQLiteBackend(tmp_path / "store.db", **options)
    raise ValueError(f"unknown backend {name}")


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_backend(backend_name: str, tmp_path: Path) -> AsyncIterator[Factory]:
    """Start backends on the same storage (so a second one is a restart); close them all at teardown."""
    opened: list[Backend] = []

    async def factory(**options: Any) -> Backend:
        backend = _construct(backend_name, tmp_path, options)
        await backend.start()
        opened.append(backend)
        return backend

    yield factory
    for backend in reversed(opened):
        await backend.close()


@pytest.fixture
async def backend(make_backend: Factory) -> Backend:
    return await make_backend()


def _require_sqlite(backend_name: str) -> None:
    if backend_name != "sqlite":
        pytest.skip("needs a store file shared between processes")


async def collect(it: AsyncIterator[list[StoreEvent]], n: int) -> list[StoreEvent]:
    """Read batches until at least ``n`` events arrived (a timeout only guards against a hang)."""

    async def run() -> list[StoreEvent]:
        out: list[StoreEvent] = []
        while len(out) < n:
            out.extend(await anext(it))
        return out

    return await asyncio.wait_for(run(), TIMEOUT)


async def drain(watch: Watch) -> None:
    async for _ in watch:
        pass


# --------------------------------------------------------------------------- basic CRUD


async def test_create_and_get(backend: Backend) -> None:
    rev = await backend.create("/registry/pods/default/web-1", b"v1")
    assert rev > 0
    assert await backend.current_revision() == rev
    assert await backend.get("/registry/pods/default/web-1") == KeyValue(
        "/registry/pods/default/web-1", b"v1", rev, rev
    )
    assert await backend.get("/registry/pods/default/missing") is None
    with pytest.raises(KeyExists):
        await backend.create("/registry/pods/default/web-1", b"again")
    assert (await backend.get("/registry/pods/default/web-1")) == KeyValue(
        "/registry/pods/default/web-1", b"v1", rev, rev
    )


async def test_empty_store_revisions(backend: Backend) -> None:
    assert await backend.current_revision() == 0
    assert await backend.compacted_revision() == 0
    assert await backend.list("/") == (0, [], False)


async def test_update_with_current_and_stale_revision(backend: Backend) -> None:
    created = await backend.create("/k", b"v1")
    updated = await backend.update("/k", b"v2", created)
    assert updated > created
    assert await backend.get("/k") == KeyValue("/k", b"v2", created, updated)

    with pytest.raises(Conflict) as info:
        await backend.update("/k", b"v3", created)
    assert info.value.current == KeyValue("/k", b"v2", created, updated)
    assert (await backend.get("/k")) == KeyValue("/k", b"v2", created, updated)


async def test_update_missing_key(backend: Backend) -> None:
    with pytest.raises(KeyNotFound):
        await backend.update("/nope", b"v", 1)


async def test_delete_without_and_with_expected_revision(backend: Backend) -> None:
    a = await backend.create("/a", b"1")
    b = await backend.create("/b", b"1")
    deleted = await backend.delete("/a")
    assert deleted > b
    assert await backend.get("/a") is None
    with pytest.raises(KeyNotFound):
        await backend.delete("/a")

    b2 = await backend.update("/b", b"2", b)
    with pytest.raises(Conflict) as info:
        await backend.delete("/b", b)
    assert info.value.current == KeyValue("/b", b"2", b, b2)
    assert await backend.get("/b") is not None
    deleted_b = await backend.delete("/b", b2)
    assert deleted_b > b2
    assert await backend.get("/b") is None
    assert a < b < deleted


async def test_update_after_delete_is_not_found(backend: Backend) -> None:
    rev = await backend.create("/k", b"1")
    await backend.delete("/k")
    with pytest.raises(KeyNotFound):
        await backend.update("/k", b"2", rev)


async def test_create_after_delete(backend: Backend) -> None:
    first = await backend.create("/k", b"old")
    await backend.delete("/k")
    second = await backend.create("/k", b"new")
    assert second > first
    assert await backend.get("/k") == KeyValue("/k", b"new", second, second)


# --------------------------------------------------------------------------- list


async def test_list_prefix_excludes_siblings(backend: Backend) -> None:
    for key in ["/registry/pods/a", "/registry/pods/b", "/registry/podsx/a", "/registry/pod", "/registry/q"]:
        await backend.create(key, key.encode())
    rev, items, more = await backend.list("/registry/pods/")
    assert [kv.key for kv in items] == ["/registry/pods/a", "/registry/pods/b"]
    assert [kv.value for kv in items] == [b"/registry/pods/a", b"/registry/pods/b"]
    assert rev == await backend.current_revision()
    assert more is False
    assert await backend.count("/registry/pods/") == 2
    assert await backend.count("/registry/") == 5
    assert await backend.count("") == 5


async def test_list_at_older_revision(backend: Backend) -> None:
    a1 = await backend.create("/p/a", b"1")
    await backend.update("/p/a", b"2", a1)
    b1 = await backend.create("/p/b", b"1")
    await backend.delete("/p/b")

    rev, items, _ = await backend.list("/p/", revision=a1)
    assert rev == a1
    assert items == [KeyValue("/p/a", b"1", a1, a1)]

    _, items, _ = await backend.list("/p/", revision=b1)
    assert [(kv.key, kv.value) for kv in items] == [("/p/a", b"2"), ("/p/b", b"1")]

    _, items, _ = await backend.list("/p/")
    assert [(kv.key, kv.value) for kv in items] == [("/p/a", b"2")]


async def test_list_pagination(backend: Backend) -> None:
    for name in "abcde":
        await backend.create(f"/p/{name}", name.encode())
    await backend.delete("/p/c")
    assert await backend.count("/p/") == 4

    rev, page1, more = await backend.list("/p/", limit=2)
    assert [kv.key for kv in page1] == ["/p/a", "/p/b"]
    assert more is True

    # A write between pages must not show up when the next page is read at the first page's revision.
    await backend.create("/p/bb", b"late")
    rev2, page2, more = await backend.list("/p/", revision=rev, start_key=page1[-1].key + "\x00", limit=2)
    assert rev2 == rev
    assert [kv.key for kv in page2] == ["/p/d", "/p/e"]
    assert more is False

    _, items, more = await backend.list("/p/", start_key="/p/b", limit=10)
    assert [kv.key for kv in items] == ["/p/b", "/p/bb", "/p/d", "/p/e"]
    assert more is False

    _, items, more = await backend.list("/p/", limit=5)
    assert len(items) == 5
    assert more is False


# --------------------------------------------------------------------------- watch


async def test_watch_from_zero_replays_everything_in_order(backend: Backend) -> None:
    a = await backend.create("/w/a", b"1")
    a2 = await backend.update("/w/a", b"2", a)
    b = await backend.create("/w/b", b"1")
    bd = await backend.delete("/w/b")
    watch = backend.watch("/w/", 0)
    try:
        events = await collect(aiter(watch), 4)
    finally:
        await watch.close()
    assert [(e.type, e.kv.key, e.revision) for e in events] == [
        ("create", "/w/a", a),
        ("update", "/w/a", a2),
        ("create", "/w/b", b),
        ("delete", "/w/b", bd),
    ]
    assert events[0].prev is None
    assert events[1].prev == KeyValue("/w/a", b"1", a, a)
    assert events[1].kv == KeyValue("/w/a", b"2", a, a2)


async def test_watch_from_middle_revision(backend: Backend) -> None:
    revs = [await backend.create(f"/w/{i}", b"x") for i in range(5)]
    watch = backend.watch("/w/", revs[1])
    try:
        events = await collect(aiter(watch), 3)
    finally:
        await watch.close()
    assert [e.revision for e in events] == revs[2:]


async def test_watch_filters_by_prefix(backend: Backend) -> None:
    await backend.create("/registry/podsx/a", b"x")
    mine = await backend.create("/registry/pods/a", b"x")
    watch = backend.watch("/registry/pods/", 0)
    it = aiter(watch)
    try:
        first = await collect(it, 1)
        await backend.create("/registry/podsx/b", b"x")
        live = await backend.create("/registry/pods/b", b"x")
        second = await collect(it, 1)
    finally:
        await watch.close()
    assert [e.revision for e in first] == [mine]
    assert [(e.kv.key, e.revision) for e in second] == [("/registry/pods/b", live)]


async def test_delete_and_update_events_carry_prev(backend: Backend) -> None:
    start = await backend.current_revision()
    watch = backend.watch("/d/", start)
    it = aiter(watch)
    try:
        c = await backend.create("/d/k", b"v1")
        u = await backend.update("/d/k", b"v2", c)
        d = await backend.delete("/d/k", u)
        events = await collect(it, 3)
    finally:
        await watch.close()
    assert [e.type for e in events] == ["create", "update", "delete"]
    assert events[1].prev == KeyValue("/d/k", b"v1", c, c)
    delete = events[2]
    assert delete.kv == KeyValue("/d/k", b"v2", c, d)
    assert delete.prev == KeyValue("/d/k", b"v2", c, u)


@pytest.mark.parametrize("from_start", [True, False], ids=["from-zero", "from-middle"])
async def test_watch_history_then_live_without_gaps_or_duplicates(backend: Backend, from_start: bool) -> None:
    pre = [await backend.create(f"/race/pre-{i:03d}", b"p") for i in range(20)]
    start = 0 if from_start else pre[9]
    writers, per_writer = 4, 40

    async def writer(n: int) -> list[int]:
        revs: list[int] = []
        for i in range(per_writer // 2):
            created = await backend.create(f"/race/w{n}-{i:03d}", b"1")
            revs.append(created)
            await asyncio.sleep(0)
            revs.append(await backend.update(f"/race/w{n}-{i:03d}", b"2", created))
        return revs

    # Writers start as the watch opens and reads history, so live events overlap the history read.
    tasks = [asyncio.create_task(writer(n)) for n in range(writers)]
    watch = backend.watch("/race/", start)
    expected_count = len([r for r in pre if r > start]) + writers * per_writer
    try:
        events = await collect(aiter(watch), expected_count)
        written = [rev for revs in await asyncio.gather(*tasks) for rev in revs]
    finally:
        await watch.close()
    expected = sorted([r for r in pre if r > start] + written)
    got = [e.revision for e in events]
    assert got == expected
    assert all(a < b for a, b in itertools.pairwise(got))


async def test_watch_close_ends_iteration(backend: Backend) -> None:
    watch = backend.watch("/c/", await backend.current_revision())
    it = aiter(watch)
    pending: asyncio.Future[list[StoreEvent]] = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0.01)
    await watch.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, TIMEOUT)


async def test_backend_close_ends_live_watch(make_backend: Factory) -> None:
    backend = await make_backend()
    watch = backend.watch("/c/", 0)
    it = aiter(watch)
    await backend.create("/c/a", b"x")
    assert len(await collect(it, 1)) == 1
    pending: asyncio.Future[list[StoreEvent]] = asyncio.ensure_future(anext(it))
    await asyncio.sleep(0.01)
    await backend.close()
    with pytest.raises(WatchClosed):
        await asyncio.wait_for(pending, TIMEOUT)


async def test_slow_subscriber_is_dropped(make_backend: Factory) -> None:
    backend = await make_backend(subscriber_queue=5)
    watch = backend.watch("/slow/", await backend.current_revision())
    for i in range(50):
        await backend.create(f"/slow/{i:03d}", b"x")
    with pytest.raises(WatchClosed):
        await asyncio.wait_for(drain(watch), TIMEOUT)
    # The store itself is unaffected, and a fresh watch works.
    fresh = backend.watch("/slow/", 0)
    try:
        assert len(await collect(aiter(fresh), 5)) >= 5
    finally:
        await fresh.close()


# --------------------------------------------------------------------------- compaction


async def _history_rows(tmp_path: Path) -> int:
    async with aiosqlite.connect(tmp_path / "store.db") as conn:
        rows = list(await conn.execute_fetchall("SELECT COUNT(*) FROM kv"))
    return int(rows[0][0])


async def test_compaction_keeps_latest_and_drops_history(
    backend: Backend, backend_name: str, tmp_path: Path
) -> None:
    a1 = await backend.create("/c/a", b"1")
    a2 = await backend.update("/c/a", b"2", a1)
    a3 = await backend.update("/c/a", b"3", a2)
    b1 = await backend.create("/c/b", b"1")
    await backend.delete("/c/b", b1)
    c1 = await backend.create("/c/c", b"1")
    head = await backend.current_revision()

    removed = await backend.compact(head)
    assert await backend.compacted_revision() == head
    assert await backend.current_revision() == head
    if backend_name == "sqlite":
        assert removed == 4  # a1, a2, b1 and b's tombstone
        assert await _history_rows(tmp_path) == 2

    assert await backend.get("/c/a") == KeyValue("/c/a", b"3", a1, a3)
    assert await backend.get("/c/b") is None
    assert await backend.get("/c/c") == KeyValue("/c/c", b"1", c1, c1)
    _, items, _ = await backend.list("/c/", revision=head)
    assert [(kv.key, kv.value, kv.mod_revision) for kv in items] == [("/c/a", b"3", a3), ("/c/c", b"1", c1)]

    # The compacted key can be created again, and revisions keep growing.
    again = await backend.create("/c/b", b"again")
    assert again == head + 1
    assert await backend.get("/c/b") == KeyValue("/c/b", b"again", again, again)
    assert await backend.compact(head) == 0


async def test_list_at_compacted_revision_raises(backend: Backend) -> None:
    a1 = await backend.create("/c/a", b"1")
    a2 = await backend.update("/c/a", b"2", a1)
    await backend.update("/c/a", b"3", a2)
    await backend.compact(a2)
    with pytest.raises(Compacted) as info:
        await backend.list("/c/", revision=a1)
    assert info.value.compacted == a2
    _, items, _ = await backend.list("/c/", revision=a2)
    assert [kv.value for kv in items] == [b"2"]


async def test_watch_from_compacted_revision_raises(backend: Backend) -> None:
    a1 = await backend.create("/c/a", b"1")
    a2 = await backend.update("/c/a", b"2", a1)
    a3 = await backend.update("/c/a", b"3", a2)
    await backend.compact(a2)
    stale = backend.watch("/c/", a1)
    with pytest.raises(Compacted):
        await asyncio.wait_for(anext(aiter(stale)), TIMEOUT)
    await stale.close()
    # Watching from exactly the compacted revision still works.
    ok = backend.watch("/c/", a2)
    try:
        events = await collect(aiter(ok), 1)
    finally:
        await ok.close()
    assert [e.revision for e in events] == [a3]
    assert events[0].prev == KeyValue("/c/a", b"2", a1, a2)


async def test_compacting_newest_tombstone_keeps_revision(backend: Backend) -> None:
    await backend.create("/t/a", b"1")
    deleted = await backend.delete("/t/a")
    await backend.compact(deleted)
    assert await backend.current_revision() == deleted
    assert await backend.list("/t/") == (deleted, [], False)
    assert await backend.create("/t/a", b"2") == deleted + 1


async def test_background_compaction_respects_retention(make_backend: Factory) -> None:
    backend = await make_backend(compact_interval=0.02, keep_seconds=0.0, keep_revisions=5)
    rev = await backend.create("/bg/k", b"0")
    for i in range(1, 30):
        rev = await backend.update("/bg/k", str(i).encode(), rev)

    async def wait_compacted() -> int:
        # The compactor is a background task with no completion hook in the contract: poll for it.
        while True:
            compacted = await backend.compacted_revision()
            if compacted:
                return compacted
            await asyncio.sleep(0.02)

    compacted = await asyncio.wait_for(wait_compacted(), TIMEOUT)
    assert 0 < compacted <= rev - 5
    assert (await backend.get("/bg/k")) == KeyValue("/bg/k", b"29", 1, rev)
    watch = backend.watch("/bg/", rev - 5)
    try:
        events = await collect(aiter(watch), 5)
    finally:
        await watch.close()
    assert [e.revision for e in events] == list(range(rev - 4, rev + 1))


# --------------------------------------------------------------------------- restart and concurrency


async def test_restart_keeps_data_and_compacted_revision(make_backend: Factory) -> None:
    first = await make_backend()
    a = await first.create("/r/a", b"1")
    a2 = await first.update("/r/a", b"2", a)
    b = await first.create("/r/b", b"1")
    await first.compact(a2)
    head = await first.current_revision()
    await first.close()

    second = await make_backend()
    assert await second.current_revision() == head
    assert await second.compacted_revision() == a2
    assert await second.get("/r/a") == KeyValue("/r/a", b"2", a, a2)
    assert await second.get("/r/b") == KeyValue("/r/b", b"1", b, b)
    with pytest.raises(Compacted):
        await second.list("/r/", revision=a)
    assert await second.create("/r/c", b"1") == head + 1


async def test_concurrent_cas_exactly_one_wins(backend: Backend) -> None:
    rev = await backend.create("/cas", b"0")
    results = await asyncio.gather(
        *(backend.update("/cas", str(i).encode(), rev) for i in range(20)), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, int)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1
    assert len(conflicts) == 19
    current = await backend.get("/cas")
    assert current is not None and current.mod_revision == wins[0]
    assert all(c.current == current for c in conflicts)


async def test_failed_op_does_not_fail_its_batch(backend: Backend) -> None:
    await backend.create("/g/dup", b"x")
    keys = [f"/g/{i}" for i in range(10)]
    results = await asyncio.gather(
        *(backend.create(k, b"v") for k in keys[:5]),
        backend.create("/g/dup", b"y"),
        *(backend.create(k, b"v") for k in keys[5:]),
        return_exceptions=True,
    )
    assert isinstance(results[5], KeyExists)
    revs = [r for r in results if isinstance(r, int)]
    assert len(revs) == 10 and len(set(revs)) == 10
    assert await backend.count("/g/") == 11
    dup = await backend.get("/g/dup")
    assert dup is not None and dup.value == b"x"


# --------------------------------------------------------------------------- other processes

_CRASH_WRITER = """
import asyncio, sys
from controlplane.store.sqlite import SQLiteBackend

async def main() -> None:
    backend = SQLiteBackend(sys.argv[1])
    await backend.start()

    async def one(i: int) -> None:
        key = f"/crash/{i:06d}"
        await backend.create(key, b"v" * 64)
        print(key, flush=True)

    i = 0
    while True:
        await asyncio.gather(*(one(i + j) for j in range(8)))
        i += 8

asyncio.run(main())
"""

_OTHER_WRITER = """
import asyncio, sys
from controlplane.store.sqlite import SQLiteBackend

async def main() -> None:
    backend = SQLiteBackend(sys.argv[1])
    await backend.start()
    for i in range(int(sys.argv[2])):
        await backend.create(f"/other/{i:04d}", b"x")
    await backend.close()

asyncio.run(main())
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    return env


async def test_acknowledged_writes_survive_sigkill(
    make_backend: Factory, backend_name: str, tmp_path: Path
) -> None:
    _require_sqlite(backend_name)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASH_WRITER,
        str(tmp_path / "store.db"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    acknowledged: list[str] = []

    async def read_until(n: int) -> None:
        assert proc.stdout is not None
        while len(acknowledged) < n:
            line = await proc.stdout.readline()
            if not line:
                break
            acknowledged.append(line.decode().strip())

    try:
        await asyncio.wait_for(read_until(300), TIMEOUT)
    finally:
        proc.send_signal(signal.SIGKILL)
    rest, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    acknowledged.extend(line for line in rest.decode().splitlines() if line)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert len(acknowledged) >= 300, err.decode()

    backend = await make_backend()
    missing = [key for key in acknowledged if await backend.get(key) is None]
    assert missing == []
    assert await backend.count("/crash/") >= len(acknowledged)


async def test_watch_sees_writes_from_another_process(
    make_backend: Factory, backend_name: str, tmp_path: Path
) -> None:
    _require_sqlite(backend_name)
    backend = await make_backend(poll_interval=0.05)
    watch = backend.watch("/other/", await backend.current_revision())
    it = aiter(watch)
    try:
        # Once the local marker arrives the watch is live, so the child's writes must come via polling.
        marker = await backend.create("/other/marker", b"m")
        assert [e.revision for e in await collect(it, 1)] == [marker]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OTHER_WRITER,
            str(tmp_path / "store.db"),
            "20",
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
        )
        events = await collect(it, 20)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        await watch.close()
    assert proc.returncode == 0, err.decode()
    assert [e.kv.key for e in events] == [f"/other/{i:04d}" for i in range(20)]
    assert all(e.type == "create" for e in events)
    revs = [e.revision for e in events]
    assert revs == sorted(revs) and revs[0] > marker
