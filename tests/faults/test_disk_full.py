"""Disk full on the data directory (issue 13): a control plane whose data directory is an 8 MiB tmpfs.

After a few creates a filler file takes every byte left; large then small creates go on until they fail.
While the disk is full: writes fail with a clear 500 InternalError Status saying the disk is full (no
traceback, no hang), and GET, LIST, a new watch, the watch opened before and /readyz keep working.
Compaction on the full disk is refused cleanly. After the filler is removed, writes work again,
``PRAGMA integrity_check`` says ok, every acknowledged create is there with its data, and the watch has
seen exactly the acknowledged creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from controlplane.server.controlplane import ControlPlane, Settings
from controlplane.store.backend import StorageFull
from tests.support import eventually, serving

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount"),
]

PATH = "/api/v1/namespaces/default/configmaps"
BIG = 256 * 1024  # bytes of data per filling ConfigMap
MAX_FILL = 64  # creates tried to fill 8 MiB (bounded)
WAIT = 60.0


def cm(name: str, size: int) -> bytes:
    data = {"payload": (name * (size // len(name) + 1))[:size]}
    return msgspec.json.encode(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system says ENOSPC; returns the bytes written."""
    written = 0
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(block) or 0
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
            if len(block) > 4096 and written > 64 * 1024 * 1024:  # not our tmpfs: stop
                raise AssertionError("filler never hit ENOSPC")
    # Fill the last partial block too.
    with path.open("ab", buffering=0) as f:
        for _ in range(64):
            try:
                f.write(b"\0" * 1024)
            except OSError:
                break
    return written


async def watch(url: str, rv: int, events: list[tuple[str, str]], stop: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(WAIT, read=None)) as http,
        http.stream("GET", PATH, params={"watch": "1", "resourceVersion": str(rv)}) as resp,
    ):
        async for line in resp.aiter_lines():
            if line:
                ev: dict[str, Any] = msgspec.json.decode(line)
                events.append((ev["type"], ev["object"]["metadata"].get("name", "")))
            if stop.is_set():
                return


@contextlib.asynccontextmanager
async def controlplane(data_dir: Path) -> AsyncIterator[ControlPlane]:
    settings = Settings(
        data_dir=data_dir, listen="127.0.0.1:0", scheduler=False, controllers=False, event_sweep_interval=3600
    )
    async with serving(settings) as cp:
        yield cp


async def test_disk_full_refuses_writes_serves_reads(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        filler = disk / "filler"
        async with (
            controlplane(disk / "cp") as cp,
            httpx.AsyncClient(base_url=cp.url, timeout=WAIT) as http,
        ):
            rv = int((await http.get(PATH)).json()["metadata"]["resourceVersion"])
            events: list[tuple[str, str]] = []
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(cp.url, rv, events, stop))
            acked: dict[str, int] = {}  # name -> data size
            failure: httpx.Response | None = None
            refused: list[str] = []
            try:
                for n in range(8):  # some history before the disk fills
                    name = f"early-{n}"
                    resp = await http.post(
                        PATH, content=cm(name, 4096), headers={"content-type": "application/json"}
                    )
                    assert resp.status_code == 201, resp.text
                    acked[name] = 4096
                # A filler takes every byte left; then large creates go on until one fails (some fit in
                # the free pages of the database and its WAL).
                filled = await asyncio.to_thread(fill, filler)
                for n in range(MAX_FILL):
                    name = f"big-{n:02d}"
                    resp = await asyncio.wait_for(
                        http.post(PATH, content=cm(name, BIG), headers={"content-type": "application/json"}),
                        WAIT,
                    )
                    if resp.status_code == 201:
                        acked[name] = BIG
                        continue
                    failure = resp
                    refused.append(name)
                    break
                assert failure is not None, "8 MiB never filled up"
                # Small writes too, now that not a byte is left (a few may still fit in free pages).
                small_failure = None
                for n in range(200):
                    name = f"small-{n:03d}"
                    resp = await asyncio.wait_for(
                        http.post(PATH, content=cm(name, 64), headers={"content-type": "application/json"}),
                        WAIT,
                    )
                    if resp.status_code == 201:
                        acked[name] = 64
                    else:
                        small_failure = resp
                        refused.append(name)
                        break
                assert small_failure is not None, "small writes never failed on a full disk"
                for resp in (failure, small_failure):
                    status = resp.json()
                    print(f"\ndisk full: {resp.status_code} {status.get('reason')}: {status.get('message')}")
                    assert resp.status_code == 500
                    assert status["kind"] == "Status" and status["reason"] == "InternalError"
                    assert "disk is full" in status["message"]
                    assert "Traceback" not in resp.text
                # Reads keep working.
                name = next(iter(acked))
                got = await http.get(f"{PATH}/{name}")
                assert got.status_code == 200 and len(got.json()["data"]["payload"]) == acked[name]
                listed = await http.get(PATH)
                assert listed.status_code == 200
                assert {i["metadata"]["name"] for i in listed.json()["items"]} >= set(acked)
                assert (await http.get("/readyz")).status_code == 200
                fresh: list[tuple[str, str]] = []
                fresh_stop = asyncio.Event()
                fresh_watch = asyncio.create_task(watch(cp.url, rv, fresh, fresh_stop))
                try:
                    await eventually(
                        lambda: asyncio.sleep(0, len(fresh) >= len(acked)), "a new watch replays", WAIT
                    )
                finally:
                    fresh_stop.set()
                    fresh_watch.cancel()
                    await asyncio.gather(fresh_watch, return_exceptions=True)
                # A failed write on a full disk is not half-applied: nothing of it is visible.
                for name in refused:
                    assert (await http.get(f"{PATH}/{name}")).status_code == 404
                # Compaction (a write transaction and WAL checkpoints) on a full disk: postponed, not broken.
                head = await cp.backend.current_revision()
                try:
                    await cp.backend.compact(head)
                    compaction = "done"
                except StorageFull:
                    compaction = "refused: disk full"
                print(f"disk full: compaction while full {compaction}")

                # Space returns: writes work again.
                filler.unlink()
                resp = await http.post(
                    PATH, content=cm("after", 64), headers={"content-type": "application/json"}
                )
                assert resp.status_code == 201, resp.text
                acked["after"] = 64
                await eventually(
                    lambda: asyncio.sleep(0, len(events) >= len(acked)), "the watch catches up", WAIT
                )
                listed = await http.get(PATH)
                items = {i["metadata"]["name"]: i for i in listed.json()["items"]}
                lost = set(acked) - set(items)
                assert not lost, f"acknowledged creates lost: {sorted(lost)}"
                for name, size in acked.items():
                    assert (
                        items[name]["data"]["payload"]
                        == msgspec.json.decode(cm(name, size))["data"]["payload"]
                    )
                assert sorted(n for _, n in events) == sorted(acked), (
                    "the watch saw other than the acknowledged"
                )
                assert all(t == "ADDED" for t, _ in events)
                db = sqlite3.connect(disk / "cp" / "state.db")
                try:
                    check = db.execute("PRAGMA integrity_check").fetchone()[0]
                finally:
                    db.close()
                assert check == "ok"
                await cp.backend.compact(await cp.backend.current_revision())  # works again
                print(
                    f"disk full: {len(acked)} creates acknowledged, {len(refused)} refused, filler took "
                    f"{filled} bytes, 0 lost, integrity {check}"
                )
            finally:
                stop.set()
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
