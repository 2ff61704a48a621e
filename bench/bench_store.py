"""Store benchmark: peapod's SQLite store beside etcd, in the same run, on the same disk.

Two figures, each measured on both stores, each store fresh for each phase:

creates/s
    up to ``--creates`` distinct keys, for at most ``--creates-seconds``, with ``--value-size`` byte values
    (1 KiB by default: a small Pod's JSON is about that size), by C concurrent writers for each C in
    ``--writers``. SQLite: ``SQLiteBackend.create``
    called from this process, so the writers share the store's group commit (one fsync per batch), exactly
    as the API server drives it. etcd: each writer has its own httpx client (its own connection) and sends
    ``POST /v3/kv/txn`` with "create_revision == 0 then put", the create the kube-apiserver sends, to
    etcd's JSON gRPC gateway. So etcd's figure includes HTTP/1.1 + JSON + base64 + the gateway's re-encoding
    to gRPC, and the client's own CPU on this 2-core machine; SQLite's includes aiosqlite's thread hand-off.
compaction at N revisions
    ``--keys`` keys each written ``--updates`` times in rounds (round n writes every key once), so the store
    holds keys x updates key versions; then everything before the last round is compacted (every key keeps
    only its latest value: (updates - 1) x keys versions go) and the compaction call is timed. SQLite fills
    with one create and then compare-and-swap updates per key, by ``--fill-writers`` writers, one revision
    each. etcd fills with txns of 500 puts (one revision holds 500 key versions) because filling 100,000
    revisions one HTTP request at a time takes minutes on this machine; compaction's work in etcd is per
    key version (bbolt holds one entry per version, deleted in batches) as it is in SQLite (one row per
    version), so the work compared is the same.
    SQLite: ``SQLiteBackend.compact`` (rows removed from the table, file + WAL size before and after). etcd:
    ``/v3/kv/compaction`` with ``physical: true`` (answers once the compaction is done on disk; etcd 3.4
    deletes 1,000 revisions per backend batch, ``--experimental-compaction-batch-limit``, pausing between
    batches), then ``/v3/maintenance/defragment``
    timed separately, since an etcd file only shrinks by defragmentation (SQLite's neither shrinks: freed
    pages are reused, ``VACUUM`` would return them). While compaction runs, one writer creates keys back to
    back and its latencies show how long writes wait for the compactor. Afterwards the stores are checked:
    every key reads its last value, and reading (SQLite: watching) from a compacted revision fails.

Both stores fsync every commit: SQLite runs with ``synchronous=FULL`` in WAL mode, etcd fsyncs its WAL
for every raft entry batch (not configurable in 3.4) and commits its bbolt backend every 100 ms or 10,000
writes (``--backend-batch-interval``/``--backend-batch-limit`` defaults), which is safe because the WAL
holds every acknowledged write. etcd runs as a single member with its defaults otherwise (snapshot count
100,000, no quota change, no auto compaction), started here in a temporary data directory on free ports.

Run ``python bench/bench_store.py --help`` for the knobs; ``--quick`` is a small run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bench_api import machine_info, percentile
from procstat import cpu_seconds
from summary import Figure, emit

from controlplane.store.backend import Compacted
from controlplane.store.sqlite import SQLiteBackend

ETCD_START_TIMEOUT = 30.0
ETCD_TXN_PUTS = 500  # puts per etcd fill txn (the compaction phase's etcd gets --max-txn-ops to allow it)
PHASE_TIMEOUT = 100.0  # bound on any one phase's writing (--phase-timeout); the counts bound the work


# --- values -------------------------------------------------------------------------------------------


def pod_value(key: str, n: int, size: int) -> bytes:
    """A Pod-like JSON document of ``size`` bytes (padded with an annotation), distinct per (key, n)."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": key.rsplit("/", 1)[-1],
            "namespace": "bench",
            "uid": f"{abs(hash(key)) % 10**12:012d}-{n:08d}",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"pad": ""},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "web", "image": "docker.io/library/nginx:1.25", "ports": [{"containerPort": 80}]}
            ],
        },
        "status": {"phase": "Running", "podIP": "10.88.0.7", "generation": n},
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    pad = max(0, size - len(body))
    doc["metadata"]["annotations"]["pad"] = "x" * pad
    return json.dumps(doc, separators=(",", ":")).encode()


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# --- processes and files ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Etcd:
    """One single-member etcd child process in its own temporary data directory."""

    binary: str
    workdir: Path
    extra: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None
    url: str = ""

    async def start(self) -> None:
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        log = (self.workdir / "etcd.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--name=bench",
            f"--data-dir={self.workdir / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=bench={peer_url}",
            "--log-level=warn",
            "--logger=zap",
            *self.extra,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.post(
                        f"{self.url}/v3/kv/put", json={"key": b64("/probe"), "value": b64("1")}
                    )
                    if r.status_code == 200:  # answers once a leader is elected
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"etcd did not answer within {ETCD_START_TIMEOUT} s: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "etcd.log").read_text(errors="replace")[-1500:]
        return ""

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid) if self.proc else None

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 5.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def status(self, http: httpx.AsyncClient) -> dict[str, Any]:
        r = await http.post(f"{self.url}/v3/maintenance/status", json={})
        r.raise_for_status()
        return dict(r.json())


async def etcd_txn(http: httpx.AsyncClient, url: str, key: str, value: bytes, mod_revision: int) -> int:
    """Create (mod_revision 0: create_revision == 0) or compare-and-swap update; returns the new revision."""
    if mod_revision == 0:
        compare = {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
    else:
        compare = {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}
    body = {"compare": [compare], "success": [{"request_put": {"key": b64(key), "value": b64(value)}}]}
    r = await http.post(f"{url}/v3/kv/txn", json=body)
    r.raise_for_status()
    answer = r.json()
    if not answer.get("succeeded"):
        raise RuntimeError(f"etcd txn on {key} failed its comparison: {answer}")
    return int(answer["header"]["revision"])


# --- phases -------------------------------------------------------------------------------------------


_T0 = time.perf_counter()


def progress(line: str) -> None:
    """A progress line, stamped with the seconds since the start (the full run has a time budget)."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {line}", flush=True)


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def lat_ms(samples: list[float]) -> dict[str, float | None]:
    ordered = sorted(s * 1000 for s in samples)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
    }


async def run_workers(writers: int, count: int, seconds: float, work: Any) -> tuple[float, list[float]]:
    """Up to ``count`` calls of ``work(worker, i)`` spread over ``writers`` workers, none started after
    ``seconds``; returns (wall seconds, latencies), one latency per call made."""
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(w: int) -> None:
        for i in range(w, count, writers):
            t = time.perf_counter()
            if t > deadline:
                return
            await work(w, i)
            latencies.append(time.perf_counter() - t)

    await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(writers))), PHASE_TIMEOUT)
    return time.perf_counter() - start, latencies


def sqlite_files(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def sqlite_creates(
    workdir: Path, count: int, writers: int, size: int, seconds: float
) -> dict[str, Any]:
    store = SQLiteBackend(workdir / "store.db", compact_interval=3600)
    await store.start()
    try:
        values = [pod_value(f"/registry/pods/bench/c{i:06d}", 0, size) for i in range(count)]

        async def work(_w: int, i: int) -> None:
            await store.create(f"/registry/pods/bench/c{i:06d}", values[i])

        cpu0 = self_cpu()
        wall, lats = await run_workers(writers, count, seconds, work)
        cpu = self_cpu() - cpu0
        done = len(lats)
        if await store.count("/registry/pods/bench/") != done:
            raise RuntimeError(f"the SQLite store does not hold the {done} keys created")
    finally:
        await store.close()
    return {
        "writers": writers,
        "count": done,
        "seconds": round(wall, 3),
        "per_s": rate(done, wall),
        "latency": lat_ms(lats),
        "cpu_s": round(cpu, 2),
    }


async def etcd_creates(etcd: Etcd, count: int, writers: int, size: int, seconds: float) -> dict[str, Any]:
    prefix = f"/registry/pods/bench{writers}/"
    values = [pod_value(f"{prefix}c{i:06d}", 0, size) for i in range(count)]
    clients = [httpx.AsyncClient(timeout=30.0) for _ in range(writers)]
    try:
        for c in clients:  # connect before the clock starts, as the SQLite store is open before it
            await c.get(f"{etcd.url}/version")

        async def work(w: int, i: int) -> None:
            await etcd_txn(clients[w], etcd.url, f"{prefix}c{i:06d}", values[i], 0)

        cpu0, ecpu0 = self_cpu(), etcd.cpu()
        wall, lats = await run_workers(writers, count, seconds, work)
        cpu, ecpu1 = self_cpu() - cpu0, etcd.cpu()
        done = len(lats)
        r = await clients[0].post(
            f"{etcd.url}/v3/kv/range",
            json={"key": b64(prefix), "range_end": b64(prefix[:-1] + "0"), "count_only": True},
        )
        got = int(r.json().get("count", 0))
        if got != done:
            raise RuntimeError(f"etcd holds {got} keys under {prefix}, expected {done}")
    finally:
        for c in clients:
            await c.aclose()
    return {
        "writers": writers,
        "count": done,
        "seconds": round(wall, 3),
        "per_s": rate(done, wall),
        "latency": lat_ms(lats),
        "client_cpu_s": round(cpu, 2),
        "etcd_cpu_s": round(ecpu1 - ecpu0, 2) if ecpu0 is not None and ecpu1 is not None else None,
    }


async def probe_writes(create: Any, stop: asyncio.Event, limit: int = 10_000) -> list[float]:
    """Back-to-back creates until ``stop`` is set: how long a write waits while compaction runs."""
    lats: list[float] = []
    for i in range(limit):
        if stop.is_set():
            break
        t = time.perf_counter()
        await create(f"/registry/configmaps/probe/p{i:06d}", b"{}")
        lats.append(time.perf_counter() - t)
    return lats


async def sqlite_compaction(
    workdir: Path, keys: int, updates: int, writers: int, size: int
) -> dict[str, Any]:
    path = workdir / "store.db"
    store = SQLiteBackend(path, compact_interval=3600)
    await store.start()
    names = [f"/registry/pods/bench/k{i:05d}" for i in range(keys)]
    last: dict[str, bytes] = {}
    try:
        revs = dict.fromkeys(names, 0)

        async def fill(w: int, n: int) -> None:
            for k in names[w::writers]:
                v = pod_value(k, n, size)
                revs[k] = await (store.create(k, v) if n == 0 else store.update(k, v, revs[k]))
                last[k] = v

        async def fill_all() -> int:
            target = 0
            for n in range(updates):  # round n writes every key once; the last round is kept
                if n == updates - 1:
                    target = await store.current_revision()
                await asyncio.gather(*(fill(w, n) for w in range(writers)))
            return target

        t = time.perf_counter()
        target = await asyncio.wait_for(fill_all(), PHASE_TIMEOUT)
        fill_s = time.perf_counter() - t
        progress(f"sqlite filled: {keys * updates} revisions in {fill_s:.1f} s")
        head = await store.current_revision()
        before = sqlite_files(path)
        stop = asyncio.Event()
        probe = asyncio.create_task(probe_writes(store.create, stop))
        await asyncio.sleep(0.05)  # let the probe start writing
        cpu0 = self_cpu()
        t = time.perf_counter()
        removed = await store.compact(target)
        compact_s = time.perf_counter() - t
        cpu = self_cpu() - cpu0
        stop.set()
        probe_lats = await probe
        after = sqlite_files(path)
        # Correctness: latest values intact, history gone, a watch from a compacted revision refused.
        wrong = 0
        for k in names:
            kv = await store.get(k)
            wrong += kv is None or kv.value != last[k]
        watch = store.watch("/registry/pods/", target - 1)
        try:
            await asyncio.wait_for(anext(aiter(watch)), 10)
            refused = False
        except Compacted:
            refused = True
        finally:
            await watch.close()
        compacted = await store.compacted_revision()
    finally:
        await store.close()
    return {
        "revisions": head,
        "versions": head,
        "fill_seconds": round(fill_s, 2),
        "fill_per_s": rate(head, fill_s),
        "target": target,
        "compacted": compacted,
        "seconds": round(compact_s, 3),
        "cpu_s": round(cpu, 2),
        "removed": removed,
        "bytes_before": before,
        "bytes_after": after,
        "writes_during": lat_ms(probe_lats),
        "wrong_values": wrong,
        "watch_refused": refused,
    }


async def etcd_compaction(etcd: Etcd, keys: int, updates: int, writers: int, size: int) -> dict[str, Any]:
    names = [f"/registry/pods/bench/k{i:05d}" for i in range(keys)]
    last: dict[str, bytes] = {}
    chunks = [names[i : i + ETCD_TXN_PUTS] for i in range(0, len(names), ETCD_TXN_PUTS)]
    writers = min(writers, len(chunks))  # one txn per chunk and round: no more writers than chunks
    clients = [httpx.AsyncClient(timeout=60.0) for _ in range(writers)]
    try:

        async def fill(w: int, n: int) -> None:
            for chunk in chunks[w::writers]:
                values = [pod_value(k, n, size) for k in chunk]
                ops = [
                    {"request_put": {"key": b64(k), "value": b64(v)}}
                    for k, v in zip(chunk, values, strict=True)
                ]
                r = await clients[w].post(f"{etcd.url}/v3/kv/txn", json={"success": ops})
                r.raise_for_status()
                last.update(zip(chunk, values, strict=True))

        http = clients[0]

        async def fill_all() -> int:
            target = 0
            for n in range(updates):
                if n == updates - 1:
                    target = int((await etcd.status(http))["header"]["revision"])
                await asyncio.gather(*(fill(w, n) for w in range(writers)))
            return target

        t = time.perf_counter()
        target = await asyncio.wait_for(fill_all(), PHASE_TIMEOUT)
        fill_s = time.perf_counter() - t
        progress(f"etcd filled: {keys * updates} key versions in {fill_s:.1f} s")
        status = await etcd.status(http)
        head = int(status["header"]["revision"])
        before = int(status["dbSize"])
        probe_client = httpx.AsyncClient(timeout=60.0)
        probe_n = iter(range(10**9))

        async def create(key: str, value: bytes) -> int:
            return await etcd_txn(probe_client, etcd.url, f"{key}-{next(probe_n)}", value, 0)

        stop = asyncio.Event()
        probe = asyncio.create_task(probe_writes(create, stop))
        await asyncio.sleep(0.05)
        ecpu0 = etcd.cpu()
        t = time.perf_counter()
        r = await http.post(f"{etcd.url}/v3/kv/compaction", json={"revision": str(target), "physical": True})
        compact_s = time.perf_counter() - t
        ecpu1 = etcd.cpu()
        r.raise_for_status()
        stop.set()
        probe_lats = await probe
        await probe_client.aclose()
        after = int((await etcd.status(http))["dbSize"])
        t = time.perf_counter()
        r = await http.post(f"{etcd.url}/v3/maintenance/defragment", json={})
        defrag_s = time.perf_counter() - t
        r.raise_for_status()
        defragged = int((await etcd.status(http))["dbSize"])
        prefix = "/registry/pods/bench/"
        r = await http.post(
            f"{etcd.url}/v3/kv/range", json={"key": b64(prefix), "range_end": b64(prefix[:-1] + "0")}
        )
        r.raise_for_status()
        stored = {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]) for kv in r.json()["kvs"]
        }
        wrong = sum(1 for k in names if stored.get(k) != last[k])
        old = await http.post(
            f"{etcd.url}/v3/kv/range", json={"key": b64(names[0]), "revision": str(target - 1)}
        )
        refused = old.status_code != 200 and "compacted" in old.text
    finally:
        for c in clients:
            await c.aclose()
    return {
        "revisions": head,
        "versions": keys * updates,
        "fill_seconds": round(fill_s, 2),
        "fill_per_s": rate(keys * updates, fill_s),
        "target": target,
        "seconds": round(compact_s, 3),
        "etcd_cpu_s": round(ecpu1 - ecpu0, 2) if ecpu0 is not None and ecpu1 is not None else None,
        "bytes_before": before,
        "bytes_after": after,
        "defrag_seconds": round(defrag_s, 3),
        "bytes_after_defrag": defragged,
        "writes_during": lat_ms(probe_lats),
        "wrong_values": wrong,
        "read_refused": refused,
    }


# --- driver -------------------------------------------------------------------------------------------


def etcd_version(binary: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].split(":", 1)[1].strip() if out else "unknown"
    return "unknown"


async def with_etcd(binary: str, base: Path, name: str, body: Any, extra: tuple[str, ...] = ()) -> Any:
    workdir = base / name
    workdir.mkdir()
    etcd = Etcd(binary, workdir, extra)
    try:
        await etcd.start()
        return await body(etcd)
    finally:
        await etcd.stop()


async def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    etcd_bin = None if args.no_etcd else (args.etcd or shutil.which("etcd"))
    result: dict[str, Any] = {
        "sqlite": {"creates": [], "compaction": None},
        "etcd": {"creates": [], "compaction": None},
    }
    result["etcd_missing"] = (
        None if etcd_bin else ("--no-etcd given" if args.no_etcd else "no etcd binary on PATH")
    )
    if etcd_bin:
        result["etcd_version"] = etcd_version(etcd_bin)
    for i, writers in enumerate(args.writers):
        d = base / f"sqlite-creates-{i}"
        d.mkdir()
        result["sqlite"]["creates"].append(
            await sqlite_creates(d, args.creates, writers, args.value_size, args.creates_seconds)
        )
        progress(f"sqlite creates, {writers} writers: {result['sqlite']['creates'][-1]['per_s']}/s")
    if etcd_bin:

        async def creates(etcd: Etcd) -> None:
            for writers in args.writers:  # one etcd, a fresh key prefix per writer count
                figures = await etcd_creates(
                    etcd, args.creates, writers, args.value_size, args.creates_seconds
                )
                result["etcd"]["creates"].append(figures)
                progress(f"etcd creates, {writers} writers: {figures['per_s']}/s")

        try:
            await with_etcd(etcd_bin, base, "etcd-creates", creates)
        except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
            result["etcd_missing"] = f"etcd creates failed: {exc!r}"
            result["etcd"]["creates"].clear()
            progress(result["etcd_missing"])
    d = base / "sqlite-compaction"
    d.mkdir()
    result["sqlite"]["compaction"] = await sqlite_compaction(
        d, args.keys, args.updates, args.fill_writers, args.value_size
    )
    progress(f"sqlite compaction: {result['sqlite']['compaction']['seconds']} s")
    if etcd_bin and not result["etcd_missing"]:
        try:
            result["etcd"]["compaction"] = await with_etcd(
                etcd_bin,
                base,
                "etcd-compaction",
                lambda e: etcd_compaction(e, args.keys, args.updates, args.fill_writers, args.value_size),
                (f"--max-txn-ops={ETCD_TXN_PUTS}",),
            )
            progress(f"etcd compaction: {result['etcd']['compaction']['seconds']} s")
        except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
            result["etcd_missing"] = f"etcd compaction failed: {exc!r}"
            progress(result["etcd_missing"])
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def by_writers(rows: list[dict[str, Any]], writers: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["writers"] == writers), None)


def _lat(w: dict[str, Any]) -> str:
    return f"{w['count']} creates, p50 {w['p50_ms']} p99 {w['p99_ms']} max {w['max_ms']} ms"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def report(result: dict[str, Any], args: argparse.Namespace) -> list[Figure]:
    """Print the tables; return the summary figures."""
    sq, et = result["sqlite"], result["etcd"]
    print()
    print(f"values: {args.value_size} bytes of Pod-like JSON per key (a small Pod's JSON is about 1 KiB)")
    if result["etcd_missing"]:
        print(f"etcd: not measured ({result['etcd_missing']}); etcd figures are None")
    else:
        print(
            f"etcd {result.get('etcd_version')}: single member, defaults (WAL fsync per raft batch, backend"
            " commit every 100 ms / 10,000 writes, snapshot count 100,000), JSON gateway /v3/, txn per create"
        )
    print("sqlite: WAL, synchronous=FULL (fsync per commit), group commit of up to 256 writes, in-process")
    print()
    print("creates/s (distinct keys)           sqlite      etcd   sqlite/etcd   p50/p99 ms: sqlite | etcd")
    for s in sq["creates"]:
        e = by_writers(et["creates"], s["writers"])
        ep = e["per_s"] if e else None
        el = f"{e['latency']['p50_ms']}/{e['latency']['p99_ms']}" if e else "-"
        sl = f"{s['latency']['p50_ms']}/{s['latency']['p99_ms']}"
        head = f"  {s['writers']:>3} writers, {s['count']} keys"
        print(
            f"{head:<32}{s['per_s']:>10}{'-' if ep is None else ep:>10}"
            f"{ratio(s['per_s'], ep)!s:>13}x   {sl} | {el}"
        )
        if e:
            print(
                f"      CPU s: sqlite (store + callers) {s['cpu_s']}; etcd server {e['etcd_cpu_s']},"
                f" its httpx clients {e['client_cpu_s']}"
            )
    sc, ec = sq["compaction"], et["compaction"]
    print()
    print(
        f"compaction: {args.keys} keys x {args.updates} writes = {sc['versions']} key versions,"
        " compacted up to the last round (every key keeps its latest value only)"
    )
    print(
        f"  filled by {args.fill_writers} writers: sqlite {sc['fill_per_s']}/s (one revision per write, CAS"
        f" updates through the store), etcd {ec['fill_per_s'] if ec else '-'}/s (txns of {ETCD_TXN_PUTS}"
        f" puts: {ec['revisions'] if ec else '-'} revisions; fill speed is setup, not a figure)"
    )
    print(
        f"  sqlite: {sc['seconds'] * 1000:.0f} ms (CPU {sc['cpu_s']} s), {sc['removed']} rows removed,"
        f" file+WAL {_mb(sc['bytes_before'])} -> {_mb(sc['bytes_after'])} (freed pages kept for reuse)"
    )
    print(f"          a writer meanwhile: {_lat(sc['writes_during'])}")
    refused = "refused (Compacted)" if sc["watch_refused"] else "NOT refused"
    print(f"          check: {sc['wrong_values']} wrong values, watch from a compacted revision {refused}")
    if ec:
        print(
            f"  etcd:   {ec['seconds'] * 1000:.0f} ms (etcd CPU {ec['etcd_cpu_s']} s),"
            f" db {_mb(ec['bytes_before'])} -> {_mb(ec['bytes_after'])};"
            f" defragment {ec['defrag_seconds'] * 1000:.0f} ms -> {_mb(ec['bytes_after_defrag'])}"
        )
        print(f"          a writer meanwhile: {_lat(ec['writes_during'])}")
        refused = "refused" if ec["read_refused"] else "NOT refused"
        print(f"          check: {ec['wrong_values']} wrong values, read at a compacted revision {refused}")
    compaction_ratio = ratio(sc["seconds"], ec["seconds"]) if ec else None
    print(f"  ratio sqlite/etcd compaction time: {compaction_ratio}x (< 1: SQLite faster)")

    most = max(args.writers)
    s16, e16 = by_writers(sq["creates"], most), by_writers(et["creates"], most)
    e_rate = e16["per_s"] if e16 else None
    ok = sc["wrong_values"] == 0 and sc["watch_refused"]
    figures = [
        Figure(
            f"sqlite creates/s ({most} writers)",
            s16["per_s"] if s16 else None,
            "creates/s",
            anchor="etcd 3.4, same run",
        ),
        Figure(f"etcd creates/s ({most} writers)", e_rate, "creates/s"),
        Figure(
            "ratio sqlite/etcd creates",
            ratio(s16["per_s"] if s16 else None, e_rate),
            "x",
            anchor="etcd 3.4, same run",
        ),
    ]
    least = min(args.writers)
    if least != most:
        s1, e1 = by_writers(sq["creates"], least), by_writers(et["creates"], least)
        figures.append(
            Figure(
                f"sqlite creates/s ({least} writer{'s' if least > 1 else ''})",
                s1["per_s"] if s1 else None,
                "creates/s",
            )
        )
        figures.append(
            Figure(
                f"etcd creates/s ({least} writer{'s' if least > 1 else ''})",
                e1["per_s"] if e1 else None,
                "creates/s",
            )
        )
    label = f"{sc['versions'] // 1000}k revisions"
    figures += [
        Figure(f"sqlite compaction at {label}", round(sc["seconds"] * 1000, 1), "ms", anchor="etcd"),
        Figure(f"etcd compaction at {label}", round(ec["seconds"] * 1000, 1) if ec else None, "ms"),
        Figure(
            "ratio sqlite/etcd compaction time",
            compaction_ratio,
            "x (< 1: sqlite faster)",
            anchor="etcd 3.4, same run",
        ),
        Figure("sqlite write p99 during compaction", sc["writes_during"]["p99_ms"], "ms"),
        Figure("etcd write p99 during compaction", ec["writes_during"]["p99_ms"] if ec else None, "ms"),
        Figure("sqlite compaction keeps latest values", 1.0 if ok else 0.0, "bool", goal="yes", met=ok),
    ]
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="1,000 creates (at most 2 s), 10,000 revisions")
    p.add_argument(
        "--creates", type=int, default=None, help="most keys created per writer count (default 10,000)"
    )
    p.add_argument(
        "--creates-seconds",
        type=float,
        default=None,
        help="stop a creates run after this long (default 10, quick 2)",
    )
    p.add_argument(
        "--writers", default="1,16", help="comma-separated writer counts for creates (default 1,16)"
    )
    p.add_argument("--value-size", type=int, default=1024, help="bytes per value (default 1024)")
    p.add_argument("--keys", type=int, default=None, help="keys in the compaction phase (default 1,000)")
    p.add_argument(
        "--updates", type=int, default=None, help="writes per key in the compaction phase (default 100)"
    )
    p.add_argument(
        "--fill-writers", type=int, default=32, help="writers filling the compaction phase (default 32)"
    )
    p.add_argument("--etcd", default=None, help="etcd binary (default: etcd on PATH)")
    p.add_argument("--no-etcd", action="store_true", help="measure SQLite only")
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    p.add_argument(
        "--phase-timeout",
        type=float,
        default=None,
        help="seconds any one phase may write (default 100, quick 30)",
    )
    args = p.parse_args(argv)
    try:
        args.writers = sorted({int(x) for x in args.writers.split(",") if x.strip()})
    except ValueError:
        p.error("--writers takes comma-separated integers, e.g. 1,16")
    if args.phase_timeout is None:
        args.phase_timeout = 30.0 if args.quick else 100.0
    if args.creates_seconds is None:
        args.creates_seconds = 2.0 if args.quick else 10.0
    if args.creates is None:
        args.creates = 1000 if args.quick else 10_000
    if args.keys is None:
        args.keys = 500 if args.quick else 1000
    if args.updates is None:
        args.updates = 20 if args.quick else 100
    for name in ("creates", "value_size", "keys", "updates", "fill_writers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.writers or min(args.writers) < 1:
        p.error("--writers must be at least 1")
    if args.updates < 2:
        p.error("--updates must be at least 2 (the last round is what compaction keeps)")
    return args


def main(argv: list[str] | None = None) -> int:
    global PHASE_TIMEOUT
    args = parse_args(argv)
    PHASE_TIMEOUT = args.phase_timeout
    base = Path(tempfile.mkdtemp(prefix="peapod-bench-store-"))
    try:
        info = machine_info(base, dists=("aiosqlite", "httpx"))
        print(f"machine: {info['nproc']} CPUs, {info['cpu_model']}, {info['python']}, {info['platform']}")
        print(f"load average at start: {info['loadavg_at_start']}; data dir {base} on {info['data_dir_fs']}")
        print(f"versions: {info['versions']}")
        print(f"command: {' '.join(['.venv/bin/python', *sys.argv])}", flush=True)
        started = time.perf_counter()
        result = asyncio.run(run(args, base))
        result["machine"] = info
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        figures = report(result, args)
        print(f"\ntotal run time {result['wall_seconds']} s")
        if args.json:
            print(json.dumps(result, indent=2))
        emit("store", figures)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
