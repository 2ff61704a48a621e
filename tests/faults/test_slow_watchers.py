"""Watchers that stop reading are dropped without growing the server's memory (issue 13).

Fifty raw watch connections with a tiny receive buffer send their request and never read; then 5,000
updates of ConfigMaps holding about 1 KiB each go through a child ``pea controlplane``. The server must
drop the stalled watches (each stream ends: the socket reaches EOF or is reset once drained, before it
has seen every event), its resident memory must stay within a generous bound, and two fast watchers
alongside must receive every update.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from controlplane.api import ConfigMap, ObjectMeta, for_type
from controlplane.server.watchcache import Change, Subscription
from tests.support import eventually

from .child import ChildControlPlane, rss_bytes

SLOW = 50
FAST = 2
OBJECTS = 50
UPDATES = 5000
WRITERS = 4
PATH = "/api/v1/namespaces/default/configmaps"
WAIT = 60.0
_MODIFIED = b'"type":"MODIFIED"'
RSS_BOUND = 300 * 1024 * 1024  # generous: the stalled watchers must not each hold the whole stream


def _payload_size() -> int:
    """About 1 KiB, or more where the kernel's largest TCP send buffer could swallow half the stream:
    a stalled watcher must fall behind in the server's own queue, not only in kernel buffers."""
    try:
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        wmem_max = 4 * 1024 * 1024
    return max(1024, min(16384, 2 * wmem_max // UPDATES))


PAYLOAD = _payload_size()


def cm(i: int, version: int) -> bytes:
    data = {"version": str(version), "payload": (f"{i:02d}{version:06d}" * (PAYLOAD // 8 + 1))[:PAYLOAD]}
    return msgspec.json.encode(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"slow-{i:02d}"}, "data": data}
    )


def stalled_watch(port: int, rv: int) -> socket.socket:
    """A watch request on a socket that will not be read: a 4 KiB receive buffer, Connection: close so
    that a stream the server ends also ends the connection."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(
        f"GET {PATH}?watch=1&resourceVersion={rv} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return s


def drain(s: socket.socket, deadline: float) -> tuple[bool, int]:
    """Read until EOF or reset, or the deadline: (ended, MODIFIED events seen)."""
    s.settimeout(1.0)
    seen = 0
    tail = b""
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset: the server aborted the connection
            return True, seen
        if not data:
            return True, seen
        both = tail + data  # the tail is shorter than the pattern: no match is counted twice
        seen += both.count(_MODIFIED)
        tail = both[1 - len(_MODIFIED) :]
    return False, seen


async def fast_watch(url: str, rv: int, counts: list[int], k: int, stop: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(WAIT, read=None)) as http,
        http.stream("GET", PATH, params={"watch": "1", "resourceVersion": str(rv)}) as resp,
    ):
        async for line in resp.aiter_lines():
            if line and msgspec.json.decode(line)["type"] == "MODIFIED":
                counts[k] += 1
            if stop.is_set():
                return


async def writer(url: str, k: int) -> int:
    """Updates objects k, k+WRITERS, ... in turn; returns the updates it made."""
    done = 0
    mine = list(range(k, OBJECTS, WRITERS))
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        for n in range(UPDATES // WRITERS):
            i = mine[n % len(mine)]
            resp = await http.put(
                f"{PATH}/slow-{i:02d}", content=cm(i, n + 1), headers={"content-type": "application/json"}
            )
            assert resp.status_code == 200, resp.text
            done += 1
    return done


async def test_stalled_watchers_are_dropped(tmp_path: Path) -> None:
    server = ChildControlPlane(tmp_path / "data")
    sockets: list[socket.socket] = []
    stop = asyncio.Event()
    fast: list[asyncio.Task[Any]] = []
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            for i in range(OBJECTS):
                resp = await http.post(PATH, content=cm(i, 0), headers={"content-type": "application/json"})
                assert resp.status_code == 201, resp.text
            rv = int((await http.get(PATH)).json()["metadata"]["resourceVersion"])
        assert server.proc is not None
        pid = server.proc.pid
        rss_before = rss_bytes(pid)
        sockets = [stalled_watch(server.port, rv) for _ in range(SLOW)]
        counts = [0] * FAST
        fast = [asyncio.create_task(fast_watch(server.url, rv, counts, k, stop)) for k in range(FAST)]
        peak = rss_before

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_bytes(pid))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        try:
            made = sum(
                await asyncio.wait_for(
                    asyncio.gather(*(writer(server.url, k) for k in range(WRITERS))), WAIT * 3
                )
            )
            await eventually(
                lambda: asyncio.sleep(0, all(c >= made for c in counts)),
                "fast watchers got every update",
                WAIT,
            )
        finally:
            sampler.cancel()
        rss_after = rss_bytes(pid)
        stop.set()

        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + WAIT
        results = await asyncio.gather(*(loop.run_in_executor(None, drain, s, deadline) for s in sockets))
        ended = sum(1 for e, _ in results if e)
        delivered = [n for _, n in results]
        mib = 1024 * 1024
        print(
            f"\nslow watchers: {SLOW} stalled, {made} updates of {PAYLOAD} bytes, {ended} ended by the "
            f"server, events they got min {min(delivered)} max {max(delivered)} of {made}; fast watchers "
            f"got {counts}; server RSS before {rss_before / mib:.1f} MiB, peak {peak / mib:.1f} MiB, after "
            f"{rss_after / mib:.1f} MiB"
        )
        assert counts == [made] * FAST
        assert ended == SLOW
        assert max(delivered) < made, "a stalled watcher was not dropped: it got the whole stream"
        assert peak - rss_before < RSS_BOUND
    finally:
        stop.set()
        for s in sockets:
            s.close()
        for t in fast:
            t.cancel()
        await asyncio.gather(*fast, return_exceptions=True)
        await server.kill()


def change(rev: int) -> Change:
    obj = ConfigMap(metadata=ObjectMeta(name=f"c{rev}", namespace="default"))
    info = for_type(ConfigMap)
    return Change(rev, info.key("default", f"c{rev}"), info, "ADDED", obj, None)


async def test_queue_bound_counts_changes_not_batches() -> None:
    """A watcher holds at most ``queue_size`` changes plus one batch: a poll of a thousand changes is
    one batch, so counting batches let a stalled watcher pin a thousand times more."""
    sub = Subscription(None, "/registry/configmaps/", 0, queue_size=5)
    assert sub.offer([change(r) for r in range(1, 9)])  # an empty queue takes any batch (a replay)
    assert not sub.offer([change(9)])  # 8 queued >= 5: full, the cache drops it
    assert [c.revision for c in await sub.next_batch(1)] == list(range(1, 9))
    assert sub.offer([change(r) for r in range(9, 12)])
    assert sub.offer([change(12)])  # 3 queued < 5
    assert sub.offer([change(r) for r in range(13, 20)])  # 4 queued < 5: taken, now 11
    assert not sub.offer([change(20)])
