"""API benchmark for the peapod control plane: create throughput, single-object write latency and watch
delivery latency, against a real control plane (real SQLite with ``synchronous=FULL``, real HTTP on
127.0.0.1, scheduler and controllers off) started in a fresh temporary data directory.

Run ``python bench/bench_api.py --help`` for the knobs; ``bench/README.md`` says what each figure means.

Three phases, in this order, each bounded in count and in time:

creates
    ``--creates`` ConfigMaps (or Pods, ``--kind pod``) created through :class:`Client` by ``--concurrency``
    workers, each with its own client unless ``--create-clients`` says otherwise; throughput is creates /
    wall time from the first request to the last answer.
writes
    ``--writes`` sequential merge-patches of one ConfigMap from one client, after a short warm-up. Each
    answer means the write was committed (fsynced) to SQLite; the figure is the per-request round trip.
watch
    ``--watchers`` watch streams, each on its own :class:`Client` (so its own HTTP connection), on one
    namespace. Once every stream has seen a priming update, a writer issues ``--events`` merge-patches,
    one every ``--interval-ms`` (0: as fast as they are acknowledged), each carrying
    ``time.perf_counter_ns()`` taken just before the request was sent. Every watcher records receive time
    minus that send time for every event; p50/p99 are over all deliveries, and the delivered count is
    checked against watchers x events.

By default the server and the clients share this process's event loop (and so one core);
``--server-process`` runs the control plane in a child process (``pea controlplane ...``, or, if that
CLI cannot start, ``python -c`` running :class:`ControlPlane`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import importlib.metadata
import io
import json
import logging
import math
import os
import platform
import pstats
import re
import shlex
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from controlplane.api.core import ConfigMap, Container, Namespace, Pod, PodSpec
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, ClientError
from controlplane.server.controlplane import ControlPlane, Settings

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parent.parent
NS_CREATE = "bench"
NS_WATCH = "bench-watch"
WRITE_NAME = "bench-write"
WATCH_NAME = "bench-watch-target"

WARMUP_WRITES = 10
PHASE_TIMEOUT = 300.0  # seconds; no phase may take longer than this, whatever the arguments
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0
PRIME_TIMEOUT = 30.0  # seconds to get every watch stream to see a priming update
DRAIN_TIMEOUT = 15.0  # seconds after the last write for the watchers to receive everything
PRIME_WAIT = 1.0  # seconds to wait for the watchers after each priming update
PEA_URL = re.compile(r"(https?://[^\s()]+)")

DEFAULTS = {
    "creates": 2000,
    "concurrency": 32,
    "writes": 500,
    "watchers": 100,
    "events": 300,
    "interval_ms": 30.0,
    "kind": "configmap",
    "create_clients": 0,
}


# --- statistics -------------------------------------------------------------------------------------


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_ns: list[int]) -> dict[str, float | int | None]:
    """count, p50, p90, p99, max and mean of durations given in nanoseconds, in milliseconds (None when
    there are no samples, so that the JSON output stays valid)."""
    ordered = sorted(s / 1e6 for s in samples_ns)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 3),
        "p90_ms": round(percentile(ordered, 90), 3),
        "p99_ms": round(percentile(ordered, 99), 3),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(sum(ordered) / len(ordered), 3),
    }


# --- machine ----------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model"):
            return value.strip()
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """'fstype on device' for the mount holding ``path`` (from /proc/mounts), or 'unknown'."""
    target = os.path.realpath(path)
    best = ("", "unknown", "")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, fstype, device)
    return f"{best[1]} on {best[2]}" if best[2] else best[1]


API_STACK = ("uvicorn", "starlette", "httpx", "msgspec", "aiosqlite", "h11", "httptools", "uvloop")


def versions(dists: Iterable[str] = API_STACK) -> dict[str, str]:
    """SQLite's and the installed distributions' versions, for the report."""
    out = {"sqlite": sqlite3.sqlite_version}
    for dist in dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def machine_info(data_dir: Path, dists: Iterable[str] = API_STACK) -> dict[str, Any]:
    """What a figure depends on: CPUs, load, Python, the disk under ``data_dir``, library versions."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "data_dir_fs": filesystem_of(data_dir),
        "versions": versions(dists),
    }


# --- control plane ----------------------------------------------------------------------------------


class InProcessServer:
    """The control plane on this process's event loop, as the tests run it."""

    mode = "in-process"
    launcher = "ControlPlane in the benchmark's event loop"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.cp: ControlPlane | None = None

    async def start(self) -> str:
        settings = Settings(
            data_dir=self.data_dir,
            listen="127.0.0.1:0",
            scheduler=False,
            controllers=False,
            event_sweep_interval=3600,
        )
        self.cp = ControlPlane(settings)
        await self.cp.start()
        return self.cp.url

    async def stop(self) -> None:
        if self.cp is not None:
            await asyncio.wait_for(self.cp.stop(), SERVER_STOP_TIMEOUT * 3)

    def cpu_seconds(self) -> float | None:
        return None  # counted in the benchmark process's own CPU time


_PYTHON_SERVER = """
import asyncio, signal, sys
from pathlib import Path
from controlplane.server.controlplane import ControlPlane, Settings

async def main():
    cp = ControlPlane(Settings(data_dir=Path(sys.argv[1]), listen="127.0.0.1:0", scheduler=False,
                               controllers=False, event_sweep_interval=3600))
    await cp.start()
    print(f"control plane listening on {cp.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await cp.stop()

profile = sys.argv[2] if len(sys.argv) > 2 else None
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
try:
    asyncio.run(main())
finally:
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
"""


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class SubprocessServer:
    """The control plane in a child process, so that it does not share a core with the clients."""

    mode = "server-process"

    def __init__(self, data_dir: Path, launcher: str, profile: str | None = None) -> None:
        self.data_dir = data_dir
        self.wanted = "python" if profile else launcher
        self.profile = profile
        self.launcher = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    def _commands(self) -> Iterator[tuple[str, list[str]]]:
        pea = Path(sys.executable).with_name("pea")
        if self.wanted in ("auto", "pea") and pea.exists():
            yield (
                "pea controlplane",
                [
                    str(pea),
                    "controlplane",
                    "--data-dir",
                    str(self.data_dir),
                    "--listen",
                    "127.0.0.1:0",
                    "--no-scheduler",
                    "--no-controllers",
                ],
            )
        if self.wanted in ("auto", "python"):
            argv = [sys.executable, "-c", _PYTHON_SERVER, str(self.data_dir)]
            yield "python -c ControlPlane", [*argv, self.profile] if self.profile else argv

    async def start(self) -> str:
        failures = []
        for name, argv in self._commands():
            url = await self._try(name, argv)
            if url:
                self.launcher = name
                return url
            failures.append(name)
        raise RuntimeError(
            f"could not start a control plane process (tried: {', '.join(failures) or 'none'})"
        )

    async def _try(self, name: str, argv: list[str]) -> str | None:
        log_path = self.data_dir.parent / f"server-{name.split()[0]}.log"
        with _open_log(log_path) as stderr:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        for _ in range(100):  # lines of output before the URL
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), remaining)
            except TimeoutError:
                break
            if not line:  # the process exited
                break
            match = PEA_URL.search(line.decode(errors="replace"))
            if match:
                url = match.group(1).rstrip(".,")
                break
        if url is None:
            await _terminate(proc)
            log.warning("%s did not start a control plane:\n%s", name, _tail(log_path))
            return None
        self.proc = proc
        self._drain = asyncio.create_task(_drain(proc.stdout))
        return url

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux /proc), None if unknown."""
        if self.proc is None:
            return None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        if self.proc is not None:
            await _terminate(self.proc)
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading the child's stdout so that it can never block on a full pipe."""
    while await stream.read(65536):
        pass


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the child we started, then SIGKILL it if it does not exit in time."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), SERVER_STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


# --- phases -----------------------------------------------------------------------------------------


def _client(url: str, user_agent: str = "peapod-bench") -> Client:
    """A client for the plain-HTTP loopback server. ``verify=False`` only skips loading the CA bundle
    (about 30 ms per client here), which matters with a hundred watch clients; no TLS is involved."""
    return Client(url, user_agent=user_agent, verify=False)


def _object(kind: str, name: str) -> ConfigMap | Pod:
    meta = ObjectMeta(name=name, namespace=NS_CREATE, labels={"app": "bench"})
    if kind == "pod":
        return Pod(metadata=meta, spec=PodSpec(containers=[Container(name="main", image="busybox:1.36")]))
    return ConfigMap(metadata=meta, data={"key": "value", "name": name})


async def _setup(url: str) -> None:
    async with _client(url) as client:
        for ns in (NS_CREATE, NS_WATCH):
            await client.create(Namespace(metadata=ObjectMeta(name=ns)))


async def bench_creates(url: str, count: int, concurrency: int, n_clients: int, kind: str) -> dict[str, Any]:
    latencies: list[int] = []
    errors: list[str] = []
    indices = iter(range(count))  # shared by the workers: next() never awaits, so no lock is needed

    async def worker(client: Client) -> None:
        for i in indices:
            obj = _object(kind, f"bench-{i:06d}")
            start = time.perf_counter_ns()
            try:
                await client.create(obj)
            except ClientError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter_ns() - start)

    workers = max(1, min(concurrency, count))
    clients = [_client(url) for _ in range(max(1, min(n_clients or workers, workers)))]
    try:
        start = time.perf_counter_ns()
        async with asyncio.timeout(PHASE_TIMEOUT):
            await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(workers)))
        wall = (time.perf_counter_ns() - start) / 1e9
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "kind": kind,
        "count": count,
        "concurrency": concurrency,
        "clients": len(clients),
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": round(wall, 3),
        "per_s": round(len(latencies) / wall, 1) if wall > 0 else None,
        "latency": summary_ms(latencies),
    }


async def bench_writes(url: str, count: int) -> dict[str, Any]:
    latencies: list[int] = []
    async with _client(url) as client:
        await client.create(ConfigMap(metadata=ObjectMeta(name=WRITE_NAME, namespace=NS_CREATE), data={}))
        async with asyncio.timeout(PHASE_TIMEOUT):
            for i in range(-WARMUP_WRITES, count):
                start = time.perf_counter_ns()
                await client.patch(ConfigMap, WRITE_NAME, {"data": {"n": str(i)}}, NS_CREATE)
                if i >= 0:
                    latencies.append(time.perf_counter_ns() - start)
    out: dict[str, Any] = {"count": count, "warmup": WARMUP_WRITES}
    out.update(summary_ms(latencies))
    out["per_s"] = round(len(latencies) / (sum(latencies) / 1e9), 1) if latencies else None
    return out


@dataclass
class _Watcher:
    expected: int
    primed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: dict[int, int] = field(default_factory=dict)  # seq -> receive - send, in ns
    duplicates: int = 0
    out_of_order: int = 0
    last_seq: int = -1
    error: str | None = None

    async def run(self, client: Client, resource_version: str) -> None:
        try:
            async for ev in client.watch(
                ConfigMap, NS_WATCH, resource_version=resource_version, bookmarks=False
            ):
                received = time.perf_counter_ns()
                data = ev.object.data if isinstance(ev.object.data, dict) else {}
                if ev.type != "MODIFIED" or "seq" not in data:
                    continue
                seq = int(data["seq"])
                if seq < 0:
                    self.primed.set()
                    continue
                if seq in self.latencies:
                    self.duplicates += 1
                    continue
                if seq < self.last_seq:
                    self.out_of_order += 1
                self.last_seq = max(self.last_seq, seq)
                self.latencies[seq] = received - int(data["sent"])
                if len(self.latencies) >= self.expected:
                    break
            else:
                self.error = "the watch stream ended early"
        except ClientError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()


async def _wait_all(events: list[asyncio.Event], timeout: float) -> bool:
    """Wait until every event is set or ``timeout`` passes; True when all are set."""
    pending = [asyncio.ensure_future(e.wait()) for e in events if not e.is_set()]
    if not pending:
        return True
    _, not_done = await asyncio.wait(pending, timeout=timeout)
    for fut in not_done:
        fut.cancel()
    return not not_done


async def bench_watch(url: str, watchers: int, events: int, interval_ms: float) -> dict[str, Any]:
    writer = _client(url, "peapod-bench-writer")
    clients: list[Client] = []
    tasks: list[asyncio.Task[None]] = []
    states = [_Watcher(events) for _ in range(watchers)]
    acks: list[int] = []
    primes = 0
    prime_s = math.nan
    rate = math.nan
    try:
        target = await writer.create(
            ConfigMap(
                metadata=ObjectMeta(name=WATCH_NAME, namespace=NS_WATCH), data={"seq": "-1", "sent": "0"}
            )
        )
        rv = target.metadata.resource_version or "0"
        for state in states:
            client = _client(url, "peapod-bench-watch")
            clients.append(client)
            tasks.append(asyncio.create_task(state.run(client, rv)))

        # Priming: a watch stream is only subscribed once the server starts its body, so keep writing
        # marked updates until every stream has seen one; none of these count.
        prime_start = time.perf_counter()
        async with asyncio.timeout(PRIME_TIMEOUT):
            while True:
                primes += 1
                patch = {"data": {"seq": str(-primes), "sent": str(time.perf_counter_ns())}}
                await writer.patch(ConfigMap, WATCH_NAME, patch, NS_WATCH)
                if await _wait_all([s.primed for s in states], PRIME_WAIT):
                    break
        prime_s = time.perf_counter() - prime_start

        interval_ns = int(interval_ms * 1e6)
        first = time.perf_counter_ns()
        async with asyncio.timeout(PHASE_TIMEOUT):
            for i in range(events):
                delay = first + i * interval_ns - time.perf_counter_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                sent = time.perf_counter_ns()
                await writer.patch(
                    ConfigMap, WATCH_NAME, {"data": {"seq": str(i), "sent": str(sent)}}, NS_WATCH
                )
                acks.append(time.perf_counter_ns() - sent)
        elapsed = (time.perf_counter_ns() - first) / 1e9
        rate = events / elapsed if elapsed > 0 else math.nan
        await _wait_all([s.done for s in states], DRAIN_TIMEOUT)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in [*clients, writer]), return_exceptions=True)

    latencies = [lat for s in states for lat in s.latencies.values()]
    per_event: dict[int, list[int]] = {}
    for s in states:
        for seq, lat in s.latencies.items():
            per_event.setdefault(seq, []).append(lat)
    expected = watchers * events
    short = [(i, events - len(s.latencies)) for i, s in enumerate(states) if len(s.latencies) < events]
    errors = sorted({s.error for s in states if s.error})
    return {
        "watchers": watchers,
        "events": events,
        "interval_ms": interval_ms,
        "achieved_events_per_s": round(rate, 1),
        "priming_writes": primes,
        "priming_s": round(prime_s, 3),
        "expected": expected,
        "delivered": len(latencies),
        "missing": expected - len(latencies),
        "watchers_short": len(short),
        "missing_by_watcher": dict(short[:10]),
        "duplicates": sum(s.duplicates for s in states),
        "out_of_order": sum(s.out_of_order for s in states),
        "watch_errors": errors[:5],
        "delivery": summary_ms(latencies),
        "first_watcher": summary_ms([min(v) for v in per_event.values()]),
        "last_watcher": summary_ms([max(v) for v in per_event.values()]),
        "writer_ack": summary_ms(acks),
    }


# --- driver -----------------------------------------------------------------------------------------


def _raise_fd_limit(needed: int) -> None:
    """Each watcher holds one socket (two when the server is in this process)."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def server_profile(args: argparse.Namespace) -> str | None:
    return f"{args.profile}.server" if args.profile and args.server_process else None


def reproduce_command(args: argparse.Namespace) -> str:
    def rel(path: str) -> str:
        with contextlib.suppress(ValueError):
            return os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else path
        return path

    argv = [rel(sys.executable), rel(str(Path(__file__).resolve()))]
    argv += ["--creates", str(args.creates), "--concurrency", str(args.concurrency), "--kind", args.kind]
    if args.create_clients:
        argv += ["--create-clients", str(args.create_clients)]
    argv += ["--writes", str(args.writes)]
    argv += ["--watchers", str(args.watchers), "--events", str(args.events)]
    argv += ["--interval-ms", f"{args.interval_ms:g}"]
    if args.server_process:
        argv.append("--server-process")
        if args.server_launcher != "auto":
            argv += ["--server-launcher", args.server_launcher]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return shlex.join(argv)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "cp"
    server: InProcessServer | SubprocessServer
    if args.server_process:
        server = SubprocessServer(data_dir, args.server_launcher, server_profile(args))
    else:
        server = InProcessServer(data_dir)
    _raise_fd_limit(args.watchers * (1 if args.server_process else 2) + 512)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": reproduce_command(args),
        "mode": server.mode,
        "machine": machine_info(workdir),
    }
    phases: list[tuple[str, bool, Callable[[str], Awaitable[dict[str, Any]]]]] = [
        (
            "creates",
            args.creates > 0,
            lambda url: bench_creates(url, args.creates, args.concurrency, args.create_clients, args.kind),
        ),
        ("writes", args.writes > 0, lambda url: bench_writes(url, args.writes)),
        (
            "watch",
            args.watchers > 0 and args.events > 0,
            lambda url: bench_watch(url, args.watchers, args.events, args.interval_ms),
        ),
    ]
    url = await asyncio.wait_for(server.start(), SERVER_START_TIMEOUT * 3)
    result["launcher"] = server.launcher
    try:
        await _setup(url)
        for name, enabled, phase in phases:
            if enabled:
                print(f"... {name}", file=sys.stderr, flush=True)
                bench_cpu, server_cpu = time.process_time(), server.cpu_seconds()
                result[name] = await phase(url)
                server_after = server.cpu_seconds()
                result[name]["cpu_s"] = {
                    "bench": round(time.process_time() - bench_cpu, 2),
                    "server": round(server_after - server_cpu, 2)
                    if server_cpu is not None and server_after is not None
                    else None,
                }
    finally:
        await server.stop()
    return result


def _fmt(s: dict[str, Any]) -> str:
    if not s["count"]:
        return "no samples"
    return (
        f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  (p90 {s['p90_ms']:.2f}, max {s['max_ms']:.2f})"
    )


def _cpu(phase: dict[str, Any]) -> str:
    cpu = phase.get("cpu_s") or {}
    if cpu.get("server") is None:
        return f"CPU {cpu.get('bench', math.nan):.1f} s (server and clients together)"
    return f"CPU: benchmark process {cpu['bench']:.1f} s, server process {cpu['server']:.1f} s"


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = m["versions"]
    lines = [
        f"peapod API benchmark, {result['date']}",
        f"machine   nproc {m['nproc']} ({m['cpu_count']} CPUs), {m['cpu_model']}, {m['python']}, "
        f"{m['platform']}; load average at start {m['loadavg_at_start']}",
        f"stack     SQLite {v.get('sqlite')} (synchronous=FULL, data dir on {m['data_dir_fs']}), "
        f"uvicorn {v.get('uvicorn', '?')} ({'httptools' if 'httptools' in v else 'h11'}), "
        f"httpx {v.get('httpx', '?')}, msgspec {v.get('msgspec', '?')}",
        f"mode      {result['mode']}: {result['launcher']}",
        f"command   {result['command']}",
        "",
    ]
    if c := result.get("creates"):
        lines.append(
            f"creates   {c['ok']}/{c['count']} {c['kind']}s, {c['concurrency']} workers: "
            f"{c['per_s'] or 0:.0f} creates/s ({c['wall_s']:.2f} s)"
        )
        lines.append(f"          per create {_fmt(c['latency'])}; {c['clients']} clients; {_cpu(c)}")
        if c["errors"]:
            lines.append(f"          {c['errors']} errors, first: {c['first_error']}")
    if w := result.get("writes"):
        lines.append(
            f"writes    {w['count']} sequential merge-patches of one ConfigMap: {_fmt(w)}; "
            f"{w['per_s'] or 0:.0f}/s"
        )
        lines.append(f"          {_cpu(w)}")
    if x := result.get("watch"):
        pace = f"one every {x['interval_ms']:g} ms" if x["interval_ms"] > 0 else "as fast as acknowledged"
        lines.append(
            f"watch     {x['watchers']} watchers x {x['events']} events ({pace}; achieved "
            f"{x['achieved_events_per_s']:.0f}/s): delivery {_fmt(x['delivery'])}"
        )
        lines.append(f"          first watcher per event {_fmt(x['first_watcher'])}")
        lines.append(f"          last watcher per event  {_fmt(x['last_watcher'])}")
        lines.append(
            f"          delivered {x['delivered']}/{x['expected']} (missing {x['missing']}, duplicates "
            f"{x['duplicates']}, out of order {x['out_of_order']}); writer ack {_fmt(x['writer_ack'])}"
        )
        lines.append(f"          priming {x['priming_s']:.2f} s ({x['priming_writes']} writes); {_cpu(x)}")
        if x["missing"]:
            lines.append(f"          short watchers: {x['watchers_short']} {x['missing_by_watcher']}")
        if x["watch_errors"]:
            lines.append(f"          watch errors: {x['watch_errors']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_api.py",
        description="Create throughput, write latency and watch delivery latency of a fresh control plane.",
    )
    p.add_argument("--creates", type=int, default=DEFAULTS["creates"], help="objects to create (0: skip)")
    p.add_argument("--concurrency", type=int, default=DEFAULTS["concurrency"], help="concurrent creators")
    p.add_argument(
        "--create-clients",
        type=int,
        default=DEFAULTS["create_clients"],
        help="Client instances the creators share (default: one per worker)",
    )
    p.add_argument("--kind", choices=("configmap", "pod"), default=DEFAULTS["kind"], help="what to create")
    p.add_argument("--writes", type=int, default=DEFAULTS["writes"], help="sequential patches (0: skip)")
    p.add_argument("--watchers", type=int, default=DEFAULTS["watchers"], help="watch streams (0: skip)")
    p.add_argument("--events", type=int, default=DEFAULTS["events"], help="updates sent to the watchers")
    p.add_argument(
        "--interval-ms",
        type=float,
        default=DEFAULTS["interval_ms"],
        help="pace of the watched updates (0: next one as soon as the previous is acknowledged)",
    )
    p.add_argument("--server-process", action="store_true", help="run the control plane in a child process")
    p.add_argument(
        "--server-launcher",
        choices=("auto", "pea", "python"),
        default="auto",
        help="with --server-process: `pea controlplane`, `python -c`, or the first that starts",
    )
    p.add_argument(
        "--data-dir", help="parent of the temporary data directory (default: the system's temp dir)"
    )
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    p.add_argument(
        "--profile", metavar="FILE", help="cProfile this process into FILE and print the top entries"
    )
    args = p.parse_args(argv)
    for name in ("creates", "writes", "watchers", "events"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0")
    if args.create_clients < 0:
        p.error("--create-clients must be >= 0")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    if args.interval_ms < 0:
        p.error("--interval-ms must be >= 0")
    return args


def print_profile(title: str, path: str) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(path, stream=buf)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(r"controlplane|aiosqlite|uvicorn|starlette|httpx|httpcore", 25)
    print(f"=== profile of the {title} ({path}) ===\n{buf.getvalue()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="peapod-bench-", dir=args.data_dir) as tmp:
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        try:
            result = asyncio.run(run(args, Path(tmp)))
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
                print_profile("benchmark process", args.profile)
                if (server_file := server_profile(args)) and Path(server_file).exists():
                    print_profile("server process", server_file)
    print(report(result))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    watch = result.get("watch") or {}
    creates = result.get("creates") or {}
    return 1 if watch.get("missing") or creates.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
