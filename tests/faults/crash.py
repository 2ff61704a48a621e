"""The kill -9 scenario shared by ``test_controlplane_crash.py`` and ``bench/bench_faults.py``.

A child ``pea controlplane`` (no scheduler or controllers: ConfigMaps need neither, and the revision
stream then is the scenario's own writes) takes ``total`` ConfigMap creates from ``clients`` clients while
``watchers`` watchers record every event. Each time another share of the creates is acknowledged (201)
the server gets SIGKILL; the SQLite file is checked (``PRAGMA integrity_check``) and the server restarted
on the same data directory and port; before any client retries, the objects are compared with what the
clients know: every acknowledged create present and whole, every create that was in flight either whole
or absent, nothing nobody sent. Then the clients retry what was not acknowledged (AlreadyExists on a
retry is a create acknowledged late) and the watchers resume from the last resourceVersion they saw. At
the end each watcher must have seen every object of the final LIST exactly once, in revision order.

Nothing here asserts; :class:`CrashResult` holds the counts and the caller decides.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from .child import ChildControlPlane

PATH = "/api/v1/namespaces/default/configmaps"
WAIT = 60.0  # bound of every wait (a loaded machine); never a timing assertion
_JSON = {"content-type": "application/json"}


def name_of(i: int) -> str:
    return f"crash-{i:05d}"


def index_of(name: str) -> int:
    return int(name.split("-")[1])


def data_of(i: int) -> dict[str, str]:
    """What the client sends for object ``i``: enough bytes that a torn write would show."""
    return {"index": str(i), "payload": f"{i:05d}-" * 40}


def body_of(i: int) -> bytes:
    return msgspec.json.encode(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name_of(i)}, "data": data_of(i)}
    )


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@dataclass
class CrashResult:
    total: int
    clients: int
    watchers: int
    kills: int
    acked_at_kill: list[int] = field(default_factory=list)  # acknowledged so far, at each kill
    in_flight: list[int] = field(default_factory=list)  # creates without an answer, at each kill
    in_flight_committed: list[int] = field(default_factory=list)  # of those, found stored after restart
    restart_seconds: list[float] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)  # after each kill, and at the end
    lost: int = 0  # acknowledged creates missing after a restart
    torn: int = 0  # objects whose data is not what their client sent
    stray: int = 0  # objects nobody sent (or not yet sent) before the kill
    acked_late: int = 0  # AlreadyExists on a retry: committed before the kill, answer lost
    final: int = 0  # objects in the final LIST
    duplicates: int = 0  # events a watcher saw twice, over all watchers
    gaps: int = 0  # creates of the final LIST a watcher never saw, over all watchers
    out_of_order: int = 0  # watchers whose revisions did not strictly increase
    reconnects: list[int] = field(default_factory=list)
    client_errors: list[str] = field(default_factory=list)
    watch_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def ok(self) -> bool:
        return (
            not (self.lost or self.torn or self.stray or self.duplicates or self.gaps or self.out_of_order)
            and self.final == self.total
            and all(i == "ok" for i in self.integrity)
            and not self.client_errors
            and not self.watch_errors
        )

    def summary(self) -> str:
        return (
            f"{self.kills} kill -9 during {self.total} creates from {self.clients} clients: acknowledged "
            f"before each kill {self.acked_at_kill}, in flight {self.in_flight} (committed "
            f"{self.in_flight_committed}), lost {self.lost}, torn {self.torn}, stray {self.stray}, "
            f"acknowledged late {self.acked_late}, final {self.final}; {self.watchers} watchers: "
            f"duplicates {self.duplicates}, gaps {self.gaps}, out of order {self.out_of_order}, reconnects "
            f"{self.reconnects}; integrity {sorted(set(self.integrity))}; restarts "
            f"{[round(s, 2) for s in self.restart_seconds]} s; {self.seconds:.1f} s in all"
        )


@dataclass
class _Shared:
    """What the clients and the orchestrator share (one event loop: no locks)."""

    acked: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)  # sent, no answer: in flight at a kill
    acked_late: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    resume: asyncio.Event = field(default_factory=asyncio.Event)  # set while the server may be used
    epoch_ended: asyncio.Event = field(default_factory=asyncio.Event)  # set once the current server died
    waiting: int = 0  # clients parked after a broken request


@dataclass
class _Watcher:
    since: int
    events: list[tuple[str, str, int]] = field(default_factory=list)  # (type, name, resourceVersion)
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


async def _create_loop(k: int, url: str, total: int, clients: int, s: _Shared) -> None:
    todo = list(range(k, total, clients))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        while todo:
            i = todo[0]
            if not s.resume.is_set():
                s.waiting += 1
                try:
                    await asyncio.wait_for(s.resume.wait(), WAIT * 2)
                finally:
                    s.waiting -= 1
            ended = s.epoch_ended
            try:
                resp = await http.post(PATH, content=body_of(i), headers=_JSON)
            except httpx.TransportError:
                s.unknown.add(i)
                s.waiting += 1
                try:
                    await asyncio.wait_for(ended.wait(), WAIT)
                    await asyncio.wait_for(s.resume.wait(), WAIT * 2)
                finally:
                    s.waiting -= 1
                continue
            if resp.status_code == 429:  # a rate limit: back off as told
                await asyncio.sleep(min(float(resp.headers.get("retry-after", "1")), 5.0))
                continue
            if resp.status_code == 201:
                s.acked.add(i)
            elif resp.status_code == 409 and i in s.unknown:
                s.acked.add(i)
                s.acked_late.add(i)
            else:
                s.errors.append(f"{name_of(i)}: {resp.status_code} {resp.text[:200]}")
            s.unknown.discard(i)
            todo.pop(0)


async def _watch_loop(url: str, w: _Watcher, stop: asyncio.Event) -> None:
    """Watch from ``w.since``; after the stream breaks, resume from the last resourceVersion seen."""
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(WAIT, read=None)) as http:
        while not stop.is_set():
            params = {"watch": "1", "resourceVersion": str(w.since), "allowWatchBookmarks": "true"}
            try:
                async with http.stream("GET", PATH, params=params) as resp:
                    if resp.status_code != 200:
                        w.errors.append(f"watch from {w.since} answered {resp.status_code}")
                        return
                    async for line in resp.aiter_lines():
                        if not line:
                            continue
                        ev: dict[str, Any] = msgspec.json.decode(line)
                        if ev["type"] == "ERROR":
                            w.errors.append(f"ERROR frame: {ev['object'].get('message')}")
                            return
                        meta = ev["object"]["metadata"]
                        rv = int(meta["resourceVersion"])
                        if ev["type"] != "BOOKMARK":
                            w.events.append((ev["type"], meta["name"], rv))
                        w.since = rv
            except httpx.TransportError:
                pass
            if not stop.is_set():
                w.reconnects += 1
                await asyncio.sleep(0.1)


async def _list(url: str) -> tuple[int, dict[str, dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        resp = await http.get(PATH)
        resp.raise_for_status()
        body = msgspec.json.decode(resp.content)
    items = {i["metadata"]["name"]: i for i in body["items"] if i["metadata"]["name"].startswith("crash-")}
    return int(body["metadata"]["resourceVersion"]), items


async def _until(check: Any, what: str, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def run_crash(workdir: Path, *, total: int, clients: int, watchers: int, kills: int) -> CrashResult:
    """Run the scenario in ``workdir`` (the data directory and the server's log go there)."""
    result = CrashResult(total, clients, watchers, kills)
    server = ChildControlPlane(workdir / "data")
    s = _Shared()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    try:
        await server.start()
        s.resume.set()
        start_rv, before = await _list(server.url)
        if before:
            raise RuntimeError(f"{workdir} already holds crash-* objects")
        ws = [_Watcher(start_rv) for _ in range(watchers)]
        tasks += [asyncio.create_task(_watch_loop(server.url, w, stop)) for w in ws]
        creators = [
            asyncio.create_task(_create_loop(k, server.url, total, clients, s)) for k in range(clients)
        ]
        tasks += creators
        for n in range(kills):
            threshold = total * (n + 1) // (kills + 1)
            await _until(lambda t=threshold: len(s.acked) >= t or all(c.done() for c in creators), "acks")
            s.resume.clear()
            await server.kill()
            ended, s.epoch_ended = s.epoch_ended, asyncio.Event()
            ended.set()
            # Every client with work left parks on its broken request; answers already received count.
            busy = sum(1 for c in creators if not c.done())
            try:
                await _until(lambda b=busy: s.waiting >= b or all(c.done() for c in creators), "clients", 10)
            except TimeoutError:
                pass
            acked, unknown = set(s.acked), set(s.unknown)
            result.acked_at_kill.append(len(acked))
            result.in_flight.append(len(unknown))
            result.integrity.append(await asyncio.to_thread(integrity, server.db_path))
            t0 = time.monotonic()
            await server.start()
            result.restart_seconds.append(time.monotonic() - t0)
            _, items = await _list(server.url)
            present = {index_of(name) for name in items}
            result.lost += len(acked - present)
            result.stray += len(present - acked - unknown)
            result.in_flight_committed.append(len(unknown & present))
            result.torn += sum(
                1 for name, item in items.items() if item.get("data") != data_of(index_of(name))
            )
            s.resume.set()
        await asyncio.wait_for(asyncio.gather(*creators), WAIT * 4)
        final_rv, final = await _list(server.url)
        result.final = len(final)
        result.torn += sum(1 for name, item in final.items() if item.get("data") != data_of(index_of(name)))
        expected = {(int(item["metadata"]["resourceVersion"]), name) for name, item in final.items()}

        def caught_up(w: _Watcher) -> bool:
            return w.since >= final_rv or expected <= {(rv, name) for _, name, rv in w.events}

        try:  # a watcher that misses an event never catches up: that is counted below as a gap
            await _until(lambda: all(map(caught_up, ws)) or any(w.errors for w in ws), "the watchers", WAIT)
        except TimeoutError:
            pass
        stop.set()
        for w in ws:
            seen = [(rv, name) for t, name, rv in w.events if name.startswith("crash-") and t == "ADDED"]
            result.duplicates += len(seen) - len(set(seen))
            result.gaps += len(expected - set(seen))
            revisions = [rv for rv, _ in seen]
            result.out_of_order += revisions != sorted(set(revisions))
            result.watch_errors += w.errors
            result.watch_errors += [f"unexpected {t} of {n}" for t, n, _ in w.events if t != "ADDED"]
        result.reconnects = [w.reconnects for w in ws]
        result.acked_late = len(s.acked_late)
        result.client_errors = s.errors
        await server.stop()
        result.integrity.append(await asyncio.to_thread(integrity, server.db_path))
        result.seconds = time.monotonic() - started
        return result
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.kill()
