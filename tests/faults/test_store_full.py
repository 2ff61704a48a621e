"""A full store without root: SQLite's ``max_page_count`` makes the database "full" (SQLITE_FULL, what
ENOSPC on the data directory gives too; ``test_disk_full.py`` does the real thing on a tmpfs).

A batch that cannot be stored fails its writers with :class:`StorageFull` and nothing of it is visible;
reads, watches and later writes go on; the API answers a clear 500 InternalError Status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from controlplane.server.controlplane import ControlPlane
from controlplane.store.backend import StorageFull
from controlplane.store.sqlite import SQLiteBackend
from tests.support import eventually

UNLIMITED = 1_073_741_823  # SQLite's default max_page_count


async def limit_pages(backend: SQLiteBackend, pages: int | None) -> None:
    """Cap the database at its current size (None) or at ``pages``, between write batches."""
    async with backend._write_lock:
        conn = backend._writer_conn
        assert conn is not None
        if pages is None:
            pages = int((await conn.execute_fetchall("PRAGMA page_count"))[0][0])  # type: ignore[index]
        await conn.execute_fetchall(f"PRAGMA max_page_count = {pages}")


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    b = SQLiteBackend(tmp_path / "db")
    await b.start()
    yield b
    await b.close()


async def test_full_store_fails_the_batch_only(backend: SQLiteBackend) -> None:
    watch = backend.watch("/k/", await backend.current_revision())
    seen: list[str] = []

    async def follow() -> None:
        async for events in watch:
            seen.extend(e.kv.key for e in events)

    follower = asyncio.create_task(follow())
    try:
        kept = {f"/k/{i}": await backend.create(f"/k/{i}", b"x" * 100) for i in range(5)}
        await limit_pages(backend, None)
        # A batch of writers queued together: the big ones cannot fit, so the transaction fails whole.
        results = await asyncio.gather(
            *(backend.create(f"/k/big{i}", b"y" * 200_000) for i in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, StorageFull) for r in results), results
        assert "full" in str(results[0])
        # Nothing of the failed batch is visible; what was there still is.
        rev, items, _ = await backend.list("/k/")
        assert {kv.key for kv in items} == set(kept)
        assert await backend.get("/k/big0") is None
        assert await backend.get("/k/0") is not None
        # Space returns: the store is usable, the same write now succeeds.
        await limit_pages(backend, UNLIMITED)
        after = await backend.create("/k/big0", b"y" * 200_000)
        assert after > rev

        await eventually(lambda: asyncio.sleep(0, "/k/big0" in seen), "the watch sees the write", 30)
        assert seen == [*kept, "/k/big0"], "the watch saw a write that was never stored"
    finally:
        await watch.close()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    async with backend._reader() as conn:
        assert (await conn.execute_fetchall("PRAGMA integrity_check"))[0][0] == "ok"  # type: ignore[index]


async def test_full_store_is_a_500_status_and_reads_go_on(controlplane: ControlPlane) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    headers = {"content-type": "application/json"}
    body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s"},"data":{"k":"%s"}}'
    async with httpx.AsyncClient(base_url=controlplane.url, timeout=60) as http:
        assert (await http.post(path, content=body % ("before", "v"), headers=headers)).status_code == 201
        backend = controlplane.backend
        assert isinstance(backend, SQLiteBackend)
        await limit_pages(backend, None)
        try:
            resp = await http.post(path, content=body % ("big", "z" * 500_000), headers=headers)
            status = resp.json()
            print(f"\nstore full: {resp.status_code} {status['reason']}: {status['message']}")
            assert resp.status_code == 500
            assert status["kind"] == "Status" and status["reason"] == "InternalError"
            assert "disk is full" in status["message"] and "configmaps" in status["message"]
            assert (await http.get(f"{path}/before")).status_code == 200
            assert (await http.get(f"{path}/big")).status_code == 404
            assert [i["metadata"]["name"] for i in (await http.get(path)).json()["items"]] == ["before"]
            assert (await http.get("/readyz")).status_code == 200
        finally:
            await limit_pages(backend, UNLIMITED)
        assert (
            await http.post(path, content=body % ("big", "z" * 500_000), headers=headers)
        ).status_code == 201
