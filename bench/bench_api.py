"""API benchmark for the peapod control plane, against a real control plane (real SQLite with
``synchronous=FULL``, real HTTP on 127.0.0.1, scheduler and controllers off) started in a fresh temporary
data directory, by default in a child process so that the server's CPU and the clients' are separate.

Run ``python bench/bench_api.py --help`` for the knobs; ``bench/README.md`` says what each figure means.

Phases, in this order, each bounded in count and in time:

creates
    ``--pods`` Pods (a realistic object: labels, annotations, a container with ports, env, resources and a
    readiness probe). The first ``--sequential`` are created one after the other by one client; the rest
    by ``--clients`` concurrent workers, each with its own :class:`Client`. Throughput is creates / wall
    time from the first request to the last answer, for each part.
churn
    While a background task makes ``--churn-rate`` changes per second to OTHER pods (merge-patches of
    ``pods/status``, as node agents make), one client alternates a merge-patch of one pod (in a namespace
    of its own) and a GET of it, ``--ops`` requests in all after a short warm-up. Each write's answer means
    it was committed (fsynced). The achieved churn rate is reported beside the latencies.
list
    ``--list-repeats`` LISTs of the namespace holding the created pods: through ``client.list(Pod, ns)``
    (JSON decoded into Structs), as a raw HTTP GET (bytes only), and as a Table (``as=Table``). p50 of
    the repeats and the response sizes.
watch (off by default, ``--watch``)
    ``--watchers`` watch streams, each on its own client, on one namespace; a writer issues ``--events``
    merge-patches one every ``--interval-ms`` carrying its send time, and every watcher records receive
    time minus send time. (``bench/bench_watch.py`` measures watch fan-out at scale.)

``--in-process`` runs the server on the benchmark's own event loop instead (one core for both).
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

import httpx
import procstat
from summary import Figure, emit

from controlplane.api.core import (
    ConfigMap,
    Container,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    Namespace,
    Pod,
    PodSpec,
    Probe,
    ResourceRequirements,
)
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, ClientError
from controlplane.client.client import TABLE_ACCEPT
from controlplane.server.controlplane import ControlPlane, Settings

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parent.parent
NS_CREATE = "bench"
NS_WRITE = "bench-write"
NS_WATCH = "bench-watch"
WRITE_NAME = "bench-write"
WATCH_NAME = "bench-watch-target"

WARMUP_OPS = 20
PHASE_TIMEOUT = 300.0  # seconds; no phase may take longer than this, whatever the arguments
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0
PRIME_TIMEOUT = 30.0  # seconds to get every watch stream to see a priming update
DRAIN_TIMEOUT = 15.0  # seconds after the last write for the watchers to receive everything
PRIME_WAIT = 1.0  # seconds to wait for the watchers after each priming update
PEA_URL = re.compile(r"(https?://[^\s()]+)")
WRITE_GOAL_MS = 50.0  # issue 12: write p99 <= 50 ms under churn
SLO_ANCHOR = "Kubernetes API SLO: single-object call p99 <= 1 s"
LIST_ANCHOR = "Kubernetes API SLO: namespaced LIST p99 <= 5 s"

DEFAULTS: dict[str, Any] = {
    "pods": 10_000,
    "sequential": 1_000,
    "clients": 16,
    "ops": 1_000,
    "churn_rate": 20.0,
    "list_repeats": 5,
    "watchers": 100,
    "events": 300,
    "interval_ms": 30.0,
}
QUICK: dict[str, Any] = {"pods": 1_000, "sequential": 100, "ops": 300, "list_repeats": 3}


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
        return None if self.proc is None else procstat.cpu_seconds(self.proc.pid)

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


def make_pod(name: str, namespace: str = NS_CREATE) -> Pod:
    """A pod shaped like a real workload's: what a ReplicationController's template typically holds.
    (``bench_scheduler.py`` creates these too.)"""
    return Pod(
        metadata=ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"app": "bench", "tier": "web", "release": "stable", "pod-template-hash": "5d4f8c7b9"},
            annotations={"bench.peapod.dev/purpose": "api benchmark", "prometheus.io/scrape": "true"},
        ),
        spec=PodSpec(
            containers=[
                Container(
                    name="web",
                    image="registry.example.com/team/web:1.27.3",
                    args=["--port=8080", "--log-level=info"],
                    ports=[ContainerPort(container_port=8080, name="http", protocol="TCP")],
                    env=[
                        EnvVar(name="MODE", value="production"),
                        EnvVar(name="CACHE_SIZE", value="256"),
                        EnvVar(name="REGION", value="eu-west"),
                    ],
                    resources=ResourceRequirements(
                        requests={"cpu": "100m", "memory": "128Mi"},
                        limits={"cpu": "500m", "memory": "256Mi"},
                    ),
                    readiness_probe=Probe(
                        http_get=HTTPGetAction(port=8080, path="/healthz"), period_seconds=5
                    ),
                )
            ],
            restart_policy="Always",
            termination_grace_period_seconds=30,
        ),
    )


def pod_name(i: int) -> str:
    return f"bench-{i:06d}"


async def _setup(url: str) -> None:
    async with _client(url) as client:
        for ns in (NS_CREATE, NS_WRITE, NS_WATCH):
            await client.create(Namespace(metadata=ObjectMeta(name=ns)))


async def _create_many(url: str, indices: range, workers: int) -> dict[str, Any]:
    """Create the pods ``indices`` with ``workers`` concurrent workers, each with its own client."""
    latencies: list[int] = []
    errors: list[str] = []
    todo = iter(indices)  # shared by the workers: next() never awaits, so no lock is needed

    async def worker(client: Client) -> None:
        for i in todo:
            pod = make_pod(pod_name(i))
            start = time.perf_counter_ns()
            try:
                await client.create(pod)
            except ClientError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter_ns() - start)

    n = max(1, min(workers, len(indices)))
    clients = [_client(url) for _ in range(n)]
    wall = 0.0
    try:
        start = time.perf_counter_ns()
        async with asyncio.timeout(PHASE_TIMEOUT):
            await asyncio.gather(*(worker(c) for c in clients))
        wall = (time.perf_counter_ns() - start) / 1e9
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "count": len(indices),
        "clients": n,
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": round(wall, 3),
        "per_s": round(len(latencies) / wall, 1) if wall > 0 else None,
        "latency": summary_ms(latencies),
    }


async def bench_creates(url: str, pods: int, sequential: int, clients: int) -> dict[str, Any]:
    sequential = min(sequential, pods)
    out: dict[str, Any] = {"pods": pods}
    out["sequential"] = await _create_many(url, range(sequential), 1) if sequential else None
    out["concurrent"] = (
        await _create_many(url, range(sequential, pods), clients) if pods > sequential else None
    )
    return out


async def _churn(url: str, targets: int, rate: float, stop: asyncio.Event, stats: dict[str, Any]) -> None:
    """``rate`` pods/status merge-patches per second, round robin over the created pods, until ``stop``.
    Paced against a fixed schedule; when a patch is slow the next ones go at once to catch up."""
    interval = 1.0 / rate
    async with _client(url, "peapod-bench-churn") as client:
        first = time.perf_counter()
        i = 0
        while not stop.is_set():
            delay = first + i * interval - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            patch = {"status": {"phase": "Running", "message": f"churn {i}", "podIP": f"10.88.{i % 250}.7"}}
            stats["last_start_s"] = time.perf_counter() - first
            start = time.perf_counter_ns()
            try:
                await client.patch(Pod, pod_name(i % targets), patch, NS_CREATE, subresource="status")
                stats["latencies"].append(time.perf_counter_ns() - start)
            except ClientError as exc:
                stats["errors"].append(f"{type(exc).__name__}: {exc}")
            i += 1
        stats["elapsed_s"] = time.perf_counter() - first
        stats["changes"] = i


async def bench_churn(url: str, ops: int, rate: float, targets: int) -> dict[str, Any]:
    """Alternate a merge-patch and a GET of one pod while other pods churn in the background."""
    writes: list[int] = []
    gets: list[int] = []
    churn: dict[str, Any] = {"latencies": [], "errors": [], "elapsed_s": 0.0, "changes": 0}
    stop = asyncio.Event()
    async with _client(url) as client:
        await client.create(make_pod(WRITE_NAME, NS_WRITE))
        task = asyncio.create_task(_churn(url, targets, rate, stop, churn)) if rate > 0 and targets else None
        try:
            async with asyncio.timeout(PHASE_TIMEOUT):
                for i in range(-WARMUP_OPS, ops):
                    start = time.perf_counter_ns()
                    if i % 2 == 0:
                        patch = {"metadata": {"annotations": {"bench.peapod.dev/seq": str(i)}}}
                        await client.patch(Pod, WRITE_NAME, patch, NS_WRITE)
                        if i >= 0:
                            writes.append(time.perf_counter_ns() - start)
                    else:
                        await client.get(Pod, WRITE_NAME, NS_WRITE)
                        if i >= 0:
                            gets.append(time.perf_counter_ns() - start)
        finally:
            stop.set()
            if task is not None:
                await asyncio.wait_for(task, 30)
    # n changes started at 0, 1/rate, ..., so the rate is (n - 1) over the time to the last start
    changes, spread = churn["changes"], churn.get("last_start_s", 0.0)
    achieved = (changes - 1) / spread if changes > 1 and spread > 0 else 0.0
    return {
        "ops": ops,
        "warmup": WARMUP_OPS,
        "churn_target_per_s": rate,
        "churn_achieved_per_s": round(achieved, 1),
        "churn_s": round(churn["elapsed_s"], 2),
        "churn_changes": churn["changes"],
        "churn_errors": len(churn["errors"]),
        "churn_first_error": churn["errors"][0] if churn["errors"] else None,
        "churn_latency": summary_ms(churn["latencies"]),
        "write": summary_ms(writes),
        "get": summary_ms(gets),
    }


async def _timed(repeats: int, call: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Run ``call`` (returning a size or count) ``repeats`` times; p50 and the samples in ms."""
    samples: list[int] = []
    value = 0
    for _ in range(repeats):
        start = time.perf_counter_ns()
        value = await call()
        samples.append(time.perf_counter_ns() - start)
    s = summary_ms(samples)
    return {
        "p50_ms": s["p50_ms"],
        "max_ms": s["max_ms"],
        "samples_ms": [round(x / 1e6, 1) for x in samples],
        "value": value,
    }


async def bench_list(url: str, repeats: int, table: bool) -> dict[str, Any]:
    path = f"/api/v1/namespaces/{NS_CREATE}/pods"
    async with _client(url) as client, httpx.AsyncClient(base_url=url) as http:

        async def typed() -> int:
            return len((await client.list(Pod, NS_CREATE)).items)

        async def raw() -> int:
            resp = await http.get(path, headers={"Accept": "application/json"})
            resp.raise_for_status()
            return len(resp.content)

        async def as_table() -> int:
            resp = await http.get(path, headers={"Accept": TABLE_ACCEPT})
            resp.raise_for_status()
            return len(resp.content)

        async with asyncio.timeout(PHASE_TIMEOUT):
            out: dict[str, Any] = {"repeats": repeats}
            out["client"] = await _timed(repeats, typed)
            out["raw"] = await _timed(repeats, raw)
            out["table"] = await _timed(repeats, as_table) if table else None
    out["items"] = out["client"]["value"]
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
    """Each client holds one socket (two when the server is in this process)."""
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
    return f"{args.profile}.server" if args.profile and not args.in_process else None


def reproduce_command(args: argparse.Namespace) -> str:
    def rel(path: str) -> str:
        with contextlib.suppress(ValueError):
            return os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else path
        return path

    argv = [rel(sys.executable), rel(str(Path(__file__).resolve()))]
    if args.quick:
        argv.append("--quick")
    defaults = {**DEFAULTS, **(QUICK if args.quick else {})}
    for name in ("pods", "sequential", "clients", "ops", "churn_rate", "list_repeats"):
        if getattr(args, name) != defaults[name]:
            value = getattr(args, name)
            argv += [f"--{name.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    if args.no_table:
        argv.append("--no-table")
    if args.watch:
        argv += ["--watch", "--watchers", str(args.watchers), "--events", str(args.events)]
        argv += ["--interval-ms", f"{args.interval_ms:g}"]
    if args.in_process:
        argv.append("--in-process")
    elif args.server_launcher != "auto":
        argv += ["--server-launcher", args.server_launcher]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return shlex.join(argv)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "cp"
    server: InProcessServer | SubprocessServer
    if args.in_process:
        server = InProcessServer(data_dir)
    else:
        server = SubprocessServer(data_dir, args.server_launcher, server_profile(args))
    _raise_fd_limit((args.watchers if args.watch else 0) * (2 if args.in_process else 1) + 512)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": reproduce_command(args),
        "mode": server.mode,
        "machine": machine_info(workdir),
    }
    sequential = min(args.sequential, args.pods)
    phases: list[tuple[str, bool, Callable[[str], Awaitable[dict[str, Any]]]]] = [
        ("creates", args.pods > 0, lambda url: bench_creates(url, args.pods, sequential, args.clients)),
        ("churn", args.ops > 0, lambda url: bench_churn(url, args.ops, args.churn_rate, args.pods)),
        ("list", args.list_repeats > 0, lambda url: bench_list(url, args.list_repeats, not args.no_table)),
        (
            "watch",
            args.watch and args.watchers > 0 and args.events > 0,
            lambda url: bench_watch(url, args.watchers, args.events, args.interval_ms),
        ),
    ]
    started = time.perf_counter()
    url = await asyncio.wait_for(server.start(), SERVER_START_TIMEOUT * 3)
    result["launcher"] = server.launcher
    if isinstance(server, SubprocessServer) and server.proc is not None:
        print(f"... server pid {server.proc.pid} at {url}", file=sys.stderr, flush=True)
    try:
        await _setup(url)
        for name, enabled, phase in phases:
            if enabled:
                print(f"... {name}", file=sys.stderr, flush=True)
                bench_cpu, server_cpu = time.process_time(), server.cpu_seconds()
                load = os.getloadavg()[0]
                result[name] = await phase(url)
                server_after = server.cpu_seconds()
                result[name]["loadavg_1m"] = round(load, 2)
                result[name]["cpu_s"] = {
                    "bench": round(time.process_time() - bench_cpu, 2),
                    "server": round(server_after - server_cpu, 2)
                    if server_cpu is not None and server_after is not None
                    else None,
                }
    finally:
        await server.stop()
    result["total_s"] = round(time.perf_counter() - started, 1)
    return result


def _fmt(s: dict[str, Any]) -> str:
    if not s["count"]:
        return "no samples"
    return (
        f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  (p90 {s['p90_ms']:.2f}, max {s['max_ms']:.2f})"
    )


def _cpu(phase: dict[str, Any]) -> str:
    cpu = phase.get("cpu_s") or {}
    load = f"load average {phase.get('loadavg_1m', math.nan):.2f} at start"
    if cpu.get("server") is None:
        return f"CPU {cpu.get('bench', math.nan):.1f} s (server and clients together); {load}"
    return f"CPU: benchmark process {cpu['bench']:.1f} s, server process {cpu['server']:.1f} s; {load}"


def _create_line(label: str, c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    lines = [
        f"{label}{c['ok']}/{c['count']} pods, {c['clients']} client{'s' if c['clients'] > 1 else ''}: "
        f"{c['per_s'] or 0:.0f} creates/s ({c['wall_s']:.2f} s); per create {_fmt(c['latency'])}"
    ]
    if c["errors"]:
        lines.append(f"          {c['errors']} errors, first: {c['first_error']}")
    return lines


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    v = m["versions"]
    lines = [
        f"peapod API benchmark, {result['date']} ({result.get('total_s', math.nan):.0f} s)",
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
        lines += _create_line("creates   ", c["sequential"])
        lines += _create_line("          ", c["concurrent"])
        lines.append(f"          {_cpu(c)}")
    if w := result.get("churn"):
        lines.append(
            f"churn     background {w['churn_achieved_per_s']:.1f} changes/s achieved (target "
            f"{w['churn_target_per_s']:g}/s; {w['churn_changes']} pods/status patches, "
            f"{w['churn_errors']} errors; each {_fmt(w['churn_latency'])})"
        )
        lines.append(f"          write (merge-patch of one pod) {_fmt(w['write'])}")
        lines.append(f"          get   (one pod)                {_fmt(w['get'])}")
        lines.append(f"          {w['ops']} requests alternating after {w['warmup']} warm-up; {_cpu(w)}")
        if w["churn_first_error"]:
            lines.append(f"          first churn error: {w['churn_first_error']}")
    if x := result.get("list"):
        lines.append(f"list      {x['items']} pods in one namespace, p50 of {x['repeats']} (samples in ms):")
        lines.append(f"          client.list(Pod) {x['client']['p50_ms']:.0f} ms {x['client']['samples_ms']}")
        lines.append(
            f"          raw HTTP GET     {x['raw']['p50_ms']:.0f} ms {x['raw']['samples_ms']}, "
            f"{x['raw']['value'] / 1e6:.2f} MB"
        )
        if t := x.get("table"):
            lines.append(
                f"          as=Table         {t['p50_ms']:.0f} ms {t['samples_ms']}, "
                f"{t['value'] / 1e6:.2f} MB"
            )
        lines.append(f"          {_cpu(x)}")
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


def figures(result: dict[str, Any]) -> list[Figure]:
    """The headline figures for the suite's table."""
    out: list[Figure] = []
    if c := result.get("creates"):
        for part, label in (("sequential", "creates/s, 1 client"), ("concurrent", "creates/s")):
            if p := c.get(part):
                name = label if part == "sequential" else f"creates/s, {p['clients']} clients"
                out.append(Figure(name, p["per_s"], "pods/s"))
    if w := result.get("churn"):
        rate = w["churn_target_per_s"]  # the target, so that the name is the same from run to run
        p99 = w["write"]["p99_ms"]
        out.append(
            Figure(
                f"write p99 under {rate:g} changes/s churn",
                p99,
                "ms",
                goal=f"<= {WRITE_GOAL_MS:g} ms",
                # only a run whose churn kept (nearly) to its rate can meet the goal
                met=p99 is not None and p99 <= WRITE_GOAL_MS and w["churn_achieved_per_s"] >= 0.9 * rate,
                anchor=SLO_ANCHOR,
            )
        )
        out.append(
            Figure(f"get p99 under {rate:g} changes/s churn", w["get"]["p99_ms"], "ms", anchor=SLO_ANCHOR)
        )
    if x := result.get("list"):
        out.append(
            Figure(
                f"list {x['items']} pods, client.list p50", x["client"]["p50_ms"], "ms", anchor=LIST_ANCHOR
            )
        )
        out.append(Figure(f"list {x['items']} pods, raw GET p50", x["raw"]["p50_ms"], "ms"))
    if x := result.get("watch"):
        out.append(Figure(f"watch delivery p99, {x['watchers']} watchers", x["delivery"]["p99_ms"], "ms"))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_api.py",
        description="Create throughput, write and get latency under churn, and LIST time of a fresh "
        "control plane.",
    )
    p.add_argument("--quick", action="store_true", help=f"smaller counts for the quick suite: {QUICK}")
    p.add_argument("--pods", type=int, help=f"pods to create, and then list (default {DEFAULTS['pods']})")
    p.add_argument(
        "--sequential",
        type=int,
        help=f"of those, created one at a time by one client (default {DEFAULTS['sequential']})",
    )
    p.add_argument(
        "--clients",
        type=int,
        help=f"concurrent creators for the rest, one client each ({DEFAULTS['clients']})",
    )
    p.add_argument(
        "--ops",
        type=int,
        help=f"requests under churn, alternating write and get ({DEFAULTS['ops']}; 0: skip)",
    )
    p.add_argument(
        "--churn-rate", type=float, help=f"background changes/s to other pods ({DEFAULTS['churn_rate']:g})"
    )
    p.add_argument(
        "--list-repeats", type=int, help=f"LISTs of each kind ({DEFAULTS['list_repeats']}; 0: skip)"
    )
    p.add_argument("--no-table", action="store_true", help="skip the as=Table LIST")
    p.add_argument("--watch", action="store_true", help="also run the watch delivery phase (off by default)")
    p.add_argument("--watchers", type=int, default=DEFAULTS["watchers"], help="with --watch: watch streams")
    p.add_argument("--events", type=int, default=DEFAULTS["events"], help="with --watch: updates sent")
    p.add_argument(
        "--interval-ms",
        type=float,
        default=DEFAULTS["interval_ms"],
        help="with --watch: pace of the watched updates (0: as fast as acknowledged)",
    )
    p.add_argument(
        "--in-process", action="store_true", help="run the control plane on this process's event loop"
    )
    p.add_argument("--server-process", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument(
        "--server-launcher",
        choices=("auto", "pea", "python"),
        default="auto",
        help="the child process: `pea controlplane`, `python -c`, or the first that starts",
    )
    p.add_argument(
        "--data-dir", help="parent of the temporary data directory (default: the system's temp dir)"
    )
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile this process into FILE (and the server into FILE.server) and print the top entries",
    )
    args = p.parse_args(argv)
    defaults = {**DEFAULTS, **(QUICK if args.quick else {})}
    for name in ("pods", "sequential", "clients", "ops", "churn_rate", "list_repeats"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    for name in ("pods", "sequential", "ops", "list_repeats", "watchers", "events"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.clients < 1:
        p.error("--clients must be >= 1")
    if args.churn_rate < 0 or args.churn_rate > 1000:
        p.error("--churn-rate must be between 0 and 1000")
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
    cmd = reproduce_command(args)
    try:
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
    except (RuntimeError, OSError, TimeoutError, ClientError) as exc:
        print(f"bench_api: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit("api", [], cmd=cmd, skipped=f"the benchmark failed: {type(exc).__name__}: {exc}")
        return 1
    print(report(result))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    emit("api", figures(result), cmd=cmd)
    watch = result.get("watch") or {}
    creates = result.get("creates") or {}
    failed = any((creates.get(part) or {}).get("errors") for part in ("sequential", "concurrent"))
    return 1 if watch.get("missing") or failed else 0


if __name__ == "__main__":
    sys.exit(main())
