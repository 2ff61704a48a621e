"""Watch fan-out benchmark: one write, many watchers, the time until every watcher has the event.

The control plane runs in a child process (``pea controlplane --no-scheduler --no-controllers``, see
:class:`bench_api.SubprocessServer`) on a fresh data directory. The watchers run in ``--procs`` further
child processes (this script with ``--child``), each holding its share of ``--watchers`` watch
connections: a light asyncio HTTP/1.1 client on raw sockets (an ``asyncio.Protocol`` per connection)
that reads the chunked body, splits it into JSON lines and decodes only the ConfigMap's ``data`` with
msgspec. A full client such as httpx costs ~150 µs per event, so a thousand of them in one process
would measure the client, not the server. Every watch uses the URL real clients use::

    GET /api/v1/namespaces/NS/configmaps?watch=1&resourceVersion=RV

Once every watcher has seen a priming update (so every stream is live), the writer in this process
patches one ConfigMap ``--events`` times, one every ``--interval-ms`` (one write at a time: the figure is
fan-out, not queueing), each carrying ``time.monotonic_ns()`` taken just before the request was sent.
CLOCK_MONOTONIC is the same clock in every process on one machine, so a watcher's receive time minus
that send time is the delivery latency. Reported: p50/p99/max over all deliveries, per event the first
and the last watcher, delivered against expected (missing, duplicates, out of order), the CPU seconds
of the server and of the watcher processes during the measured phase, and the load average.

Full mode (1,000 watchers x 100 events, one every 200 ms) takes about 40 s;
``--quick`` (200 x 20, one every 150 ms) about 12 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
from procstat import cpu_seconds

if TYPE_CHECKING:
    from bench_api import SubprocessServer

# The watcher processes import only the standard library and msgspec (they start in a fraction of the
# time); the parent's heavier imports (the client, the control plane's launcher) are in its functions.

log = logging.getLogger("bench_watch")
SCRIPT = Path(__file__).resolve()

NS = "bench-watch"
NAME = "bench-watch-target"
GOAL_P99_MS = 100.0
SERVER_START_TIMEOUT = 90.0
CONNECT_TIMEOUT = 60.0  # for every watcher process to have all its connections open
PRIME_TIMEOUT = 30.0  # for every watcher to have seen a priming update
PHASE_TIMEOUT = 120.0  # the measured writes, whatever the arguments
DRAIN_TIMEOUT = 10.0  # after the last write, for the watchers to receive everything
RESULT_TIMEOUT = 30.0  # for a watcher process to report after being told to stop
FULL = {"watchers": 1000, "events": 100, "interval_ms": 200.0, "procs": 4}
QUICK = {"watchers": 200, "events": 20, "interval_ms": 150.0, "procs": 2}


# --- the watcher process ----------------------------------------------------------------------------


class _Data(msgspec.Struct):
    data: dict[str, str] | None = None


class _Event(msgspec.Struct):
    type: str
    object: _Data


_decode_event = msgspec.json.Decoder(_Event).decode


class WatchProtocol(asyncio.Protocol):
    """One watch connection: response head, then chunked transfer coding, then JSON lines. Receive time
    is taken once per ``data_received``, before any parsing, so parsing is not counted as delivery."""

    def __init__(self, index: int, events: int, report: WatcherProcess) -> None:
        self.index = index
        self.events = events
        self.report = report
        self.transport: asyncio.Transport | None = None
        self.head_done = False
        self.buf = bytearray()  # raw bytes not yet parsed as chunks
        self.line = bytearray()  # body bytes not yet ended by a newline
        self.latencies: list[tuple[int, int]] = []  # (seq, receive - send ns)
        self.seen: set[int] = set()
        self.primed = False
        self.duplicates = 0
        self.out_of_order = 0
        self.last_seq = -1
        self.error: str | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if len(self.seen) < self.events and self.error is None:
            self.error = f"connection closed early ({exc or 'EOF'})"
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buf += data
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").lower()
            del self.buf[: end + 4]
            if not head.startswith("http/1.1 200") or "transfer-encoding: chunked" not in head:
                self._fail(f"unexpected response: {head.splitlines()[0] if head else '?'}")
                return
            self.head_done = True
        self._chunks(now)

    def _chunks(self, now: int) -> None:
        buf = self.buf
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            if size == 0:
                self._fail("the watch stream ended")
                return
            start = eol + 2
            if len(buf) < start + size + 2:
                break
            self.line += buf[start : start + size]
            pos = start + size + 2
        if pos:
            del buf[:pos]
        if b"\n" in self.line:
            *lines, rest = bytes(self.line).split(b"\n")
            self.line = bytearray(rest)
            for line in lines:
                self._event(line, now)

    def _event(self, line: bytes, now: int) -> None:
        try:
            ev = _decode_event(line)
        except msgspec.DecodeError as exc:
            self._fail(f"bad frame: {exc}")
            return
        data = ev.object.data or {}
        if ev.type != "MODIFIED" or "seq" not in data:
            if ev.type == "ERROR":
                self._fail(f"ERROR frame: {line[:200]!r}")
            return
        seq = int(data["seq"])
        if seq < 0:
            if not self.primed:
                self.primed = True
                self.report.primed_one()
            return
        if seq in self.seen:
            self.duplicates += 1
            return
        if seq < self.last_seq:
            self.out_of_order += 1
        self.last_seq = max(self.last_seq, seq)
        self.seen.add(seq)
        self.latencies.append((seq, now - int(data["sent"])))
        if len(self.seen) == self.events:
            self.report.done_one()

    def _fail(self, why: str) -> None:
        self.error = self.error or why
        if self.transport is not None:
            self.transport.close()


class WatcherProcess:
    """This process's share of the watchers, and its lines to the parent on stdout."""

    def __init__(self, url: str, path: str, count: int, events: int) -> None:
        split = urlsplit(url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or 80
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {split.netloc}\r\nAccept: application/json\r\n"
            "User-Agent: peapod-bench-watch\r\n\r\n"
        ).encode()
        self.count = count
        self.events = events
        self.watchers: list[WatchProtocol] = []
        self.primed = 0
        self.done = 0

    @staticmethod
    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def primed_one(self) -> None:
        self.primed += 1
        if self.primed == self.count:
            self.say("PRIMED")

    def done_one(self) -> None:
        self.done += 1
        if self.done == self.count:
            self.say("DONE")

    async def connect(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        proto = WatchProtocol(index, self.events, self)
        transport, _ = await loop.create_connection(lambda: proto, self.host, self.port)
        transport.write(self.request)
        self.watchers.append(proto)

    async def run(self) -> None:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with sem:
                await self.connect(i)

        await asyncio.gather(*(one(i) for i in range(self.count)))
        self.say(f"CONNECTED {len(self.watchers)}")
        # The parent closes our stdin to say "stop and report".
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        cpu = time.process_time()
        result = {
            "watchers": [
                {
                    "latencies": w.latencies,
                    "duplicates": w.duplicates,
                    "out_of_order": w.out_of_order,
                    "error": w.error,
                }
                for w in self.watchers
            ],
            "cpu_s": cpu,
        }
        for w in self.watchers:
            if w.transport is not None:
                w.transport.close()
        self.say("RESULT " + json.dumps(result))


def child_main(args: argparse.Namespace) -> int:
    _raise_fd_limit(args.watchers + 256)
    asyncio.run(WatcherProcess(args.url, args.path, args.watchers, args.events).run())
    return 0


# --- the parent -------------------------------------------------------------------------------------


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


@dataclass
class Child:
    """One watcher process, seen from the parent: the lines it has said so far."""

    proc: asyncio.subprocess.Process
    count: int
    said: dict[str, asyncio.Event] = field(
        default_factory=lambda: {k: asyncio.Event() for k in ("CONNECTED", "PRIMED", "DONE", "RESULT")}
    )
    result: dict[str, Any] | None = None
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            word, _, rest = line.decode().strip().partition(" ")
            if word == "RESULT":
                self.result = json.loads(rest)
            if word in self.said:
                self.said[word].set()


async def _all(children: list[Child], word: str, timeout: float) -> bool:
    waits = [asyncio.ensure_future(c.said[word].wait()) for c in children]
    _, pending = await asyncio.wait(waits, timeout=timeout)
    for fut in pending:
        fut.cancel()
    return not pending


async def _spawn(url: str, path: str, count: int, events: int) -> Child:
    argv = [sys.executable, str(SCRIPT), "--child", "--url", url, "--path", path]
    argv += ["--watchers", str(count), "--events", str(events)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024
    )
    child = Child(proc, count)
    child.reader = asyncio.create_task(child.read())
    return child


async def _stop(child: Child) -> None:
    if child.proc.stdin is not None and not child.proc.stdin.is_closing():
        child.proc.stdin.close()
    try:
        await asyncio.wait_for(child.proc.wait(), RESULT_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.proc.kill()
        await child.proc.wait()
    if child.reader is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(child.reader, 5)


def split_evenly(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def measure(url: str, server: SubprocessServer, args: argparse.Namespace) -> dict[str, Any]:
    from controlplane.api.core import ConfigMap, Namespace
    from controlplane.api.meta import ObjectMeta
    from controlplane.client import Client

    client = Client(url, user_agent="peapod-bench-writer", verify=False)
    children: list[Child] = []
    acks: list[int] = []
    out: dict[str, Any] = {}
    try:
        await client.create(Namespace(metadata=ObjectMeta(name=NS)))
        target = await client.create(
            ConfigMap(metadata=ObjectMeta(name=NAME, namespace=NS), data={"seq": "-1", "sent": "0"})
        )
        rv = target.metadata.resource_version or "0"
        path = f"/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}"
        shares = split_evenly(args.watchers, args.procs)
        children = [await _spawn(url, path, n, args.events) for n in shares]
        t0 = time.monotonic()
        if not await _all(children, "CONNECTED", CONNECT_TIMEOUT):
            raise RuntimeError("the watcher processes did not connect in time")
        out["connect_s"] = round(time.monotonic() - t0, 2)

        # Priming: the watches start at ``rv``, so a late stream would get this from the server's ring;
        # waiting until every watcher has it means every stream is live before anything is timed.
        t0 = time.monotonic()
        primes = 0
        async with asyncio.timeout(PRIME_TIMEOUT):
            while True:
                primes += 1
                patch = {"data": {"seq": str(-primes), "sent": str(time.monotonic_ns())}}
                await client.patch(ConfigMap, NAME, patch, NS)
                if await _all(children, "PRIMED", 1.0):
                    break
        out["priming_writes"], out["priming_s"] = primes, round(time.monotonic() - t0, 2)
        await asyncio.sleep(0.5)  # let the priming fan-out settle

        cpu0 = server.cpu_seconds()
        kids0 = [cpu_seconds(c.proc.pid) or 0.0 for c in children]
        load0 = os.getloadavg()
        interval_ns = int(args.interval_ms * 1e6)
        first = time.monotonic_ns()
        async with asyncio.timeout(PHASE_TIMEOUT):
            for i in range(args.events):
                delay = first + i * interval_ns - time.monotonic_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                sent = time.monotonic_ns()
                await client.patch(ConfigMap, NAME, {"data": {"seq": str(i), "sent": str(sent)}}, NS)
                acks.append(time.monotonic_ns() - sent)
        await _all(children, "DONE", DRAIN_TIMEOUT)
        elapsed = (time.monotonic_ns() - first) / 1e9
        cpu1 = server.cpu_seconds()
        kids1 = [cpu_seconds(c.proc.pid) or 0.0 for c in children]
        out["phase_s"] = round(elapsed, 2)
        out["phase_monotonic_s"] = [round(first / 1e9, 3), round(time.monotonic_ns() / 1e9, 3)]
        out["cpu_s"] = {
            "server": round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None,
            "watchers": round(sum(kids1) - sum(kids0), 2),
        }
        out["loadavg"] = {
            "before": [round(x, 2) for x in load0],
            "after": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        await asyncio.gather(*(_stop(c) for c in children), return_exceptions=True)
        await client.close()

    return out | tally(children, args.watchers, args.events, acks)


def tally(children: list[Child], watchers: int, events: int, acks: list[int]) -> dict[str, Any]:
    """Every delivery, checked against watchers x events (nothing missing, doubled or reordered)."""
    from bench_api import summary_ms

    latencies: list[int] = []
    per_event: dict[int, list[int]] = {}
    duplicates = out_of_order = reported = 0
    errors: set[str] = set()
    for child in children:
        for w in (child.result or {}).get("watchers", []):
            reported += 1
            duplicates += w["duplicates"]
            out_of_order += w["out_of_order"]
            if w["error"]:
                errors.add(w["error"])
            for seq, lat in w["latencies"]:
                latencies.append(lat)
                per_event.setdefault(seq, []).append(lat)
    expected = watchers * events
    return {
        "watchers": watchers,
        "watchers_reporting": reported,
        "per_process": [c.count for c in children],
        "events": events,
        "expected": expected,
        "delivered": len(latencies),
        "missing": expected - len(latencies),
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "errors": sorted(errors)[:5],
        "delivery": summary_ms(latencies),
        "first_watcher": summary_ms([min(v) for v in per_event.values()]),
        "last_watcher": summary_ms([max(v) for v in per_event.values()]),
        "writer_ack": summary_ms(acks),
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bench_api import SubprocessServer, machine_info

    _raise_fd_limit(args.watchers + 512)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(workdir),
    }
    server = SubprocessServer(workdir / "cp", "auto", args.profile)
    url = await asyncio.wait_for(server.start(), SERVER_START_TIMEOUT)
    result["launcher"] = server.launcher
    try:
        result.update(await measure(url, server, args))
    finally:
        await server.stop()
    return result


def _ms(s: dict[str, Any]) -> str:
    if not s.get("count"):
        return "n/a"
    return f"p50 {s['p50_ms']:.1f} / p99 {s['p99_ms']:.1f} / max {s['max_ms']:.1f} ms"


def report(r: dict[str, Any], cmd: str) -> str:
    m = r["machine"]
    cpu = r.get("cpu_s", {})
    deliveries = max(1, r["delivered"])
    lines = [
        f"watch fan-out, {r['date']}: {r['watchers']} watchers in {len(r['per_process'])} processes "
        f"({', '.join(map(str, r['per_process']))} each) x {r['events']} events, one every "
        f"{r['interval_ms']:g} ms",
        f"machine: nproc {m['nproc']}, {m['cpu_model']}, {m['python']}, load at start "
        f"{m['loadavg_at_start']}, during the phase {r.get('loadavg')}; server: {r['launcher']}",
        f"command: {cmd}",
        f"delivery (write sent -> watcher has it): {_ms(r['delivery'])}",
        f"first watcher per event: {_ms(r['first_watcher'])}",
        f"last watcher per event:  {_ms(r['last_watcher'])}",
        f"writer ack: {_ms(r['writer_ack'])}",
        f"delivered / expected: {r['delivered']} / {r['expected']} (missing {r['missing']}, duplicates "
        f"{r['duplicates']}, out of order {r['out_of_order']}); watchers reporting "
        f"{r['watchers_reporting']}; errors {r['errors'] or 'none'}",
        f"CPU during the phase ({r.get('phase_s')} s): server {cpu.get('server')} s "
        f"({1e6 * (cpu.get('server') or 0) / deliveries:.1f} µs per delivery), watcher processes "
        f"{cpu.get('watchers')} s ({1e6 * (cpu.get('watchers') or 0) / deliveries:.1f} µs per delivery)",
        f"setup: connect {r.get('connect_s')} s, priming {r.get('priming_writes')} writes "
        f"in {r.get('priming_s')} s",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 watchers x 20 events (about 10 s)")
    p.add_argument("--watchers", type=int, help=f"watch connections in all (default {FULL['watchers']})")
    p.add_argument("--events", type=int, help=f"measured writes (default {FULL['events']})")
    p.add_argument("--interval-ms", type=float, help=f"between writes (default {FULL['interval_ms']:g})")
    p.add_argument("--procs", type=int, help=f"watcher processes (default {FULL['procs']})")
    p.add_argument("--profile", help="write a cProfile of the server process to this file")
    p.add_argument("--data-dir", help="parent of the temporary data directory")
    p.add_argument("--json", action="store_true", help="also print the raw result as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.watchers < 1 or args.events < 1 or args.procs < 1:
        p.error("--watchers, --events and --procs must be at least 1")
    if args.interval_ms < 0:
        p.error("--interval-ms must be >= 0")
    if args.watchers > 15000:
        p.error("--watchers above 15000 would exceed this machine's file limit")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from summary import Figure, emit

    if sys.platform != "linux":
        emit("watch", [], skipped="needs Linux (/proc for CPU times, shared CLOCK_MONOTONIC)")
        return 0
    with tempfile.TemporaryDirectory(prefix="peapod-bench-watch-", dir=args.data_dir) as tmp:
        try:
            result = asyncio.run(run(args, Path(tmp)))
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"bench_watch: {type(exc).__name__}: {exc}", file=sys.stderr)
            emit("watch", [], skipped=f"the run failed: {exc}")
            return 1
    result["interval_ms"] = args.interval_ms
    if args.profile and Path(args.profile).exists():
        from bench_api import print_profile

        print_profile("server process", args.profile)
    cmd = ".venv/bin/python bench/bench_watch.py" + (" --quick" if args.quick else "")
    if any(getattr(args, k) != (QUICK if args.quick else FULL)[k] for k in FULL):
        cmd += f" --watchers {args.watchers} --events {args.events} --interval-ms {args.interval_ms:g}"
        cmd += f" --procs {args.procs}"
    print(report(result, cmd))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    d = result["delivery"]
    p99 = d["p99_ms"]
    complete = result["missing"] == 0 and result["duplicates"] == 0 and result["out_of_order"] == 0
    n = result["watchers"]
    emit(
        "watch",
        [
            Figure(
                f"watch delivery p99, {n:,} watchers",
                p99,
                "ms",
                goal=f"<= {GOAL_P99_MS:g} ms",
                met=p99 is not None and p99 <= GOAL_P99_MS and complete,
            ),
            Figure(f"watch delivery p50, {n:,} watchers", d["p50_ms"], "ms"),
            Figure(
                f"watch last watcher per event p99, {n:,} watchers", result["last_watcher"]["p99_ms"], "ms"
            ),
            Figure(
                "watch deliveries delivered / expected",
                round(result["delivered"] / result["expected"], 4) if result["expected"] else None,
                "ratio",
                goal="1.0, none doubled or reordered",
                met=complete,
            ),
            Figure(
                "server CPU per delivery",
                round(1e6 * (result["cpu_s"]["server"] or 0) / max(1, result["delivered"]), 1),
                "µs",
            ),
        ],
        cmd=cmd,
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
