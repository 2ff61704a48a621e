"""Load benchmark: many concurrent API users mixing writes, gets, lists and watches (issue 13).

``--clients`` users (50; each a distinct non-admin user from a static token file, so the per-user rate
limits apply as to any real client) run for ``--duration`` seconds (60) against ``pea controlplane``
in a child process on 127.0.0.1 (scheduler and controllers off), each with its own connection. Each
client loops over a mix of operations on ConfigMaps labelled with its own name: create, replace
(PUT), delete, get, list of its own objects by label selector, and list of everyone's by a shared
selector. Every ``--watch-every``-th client also keeps a watch open on its own objects (from the
resourceVersion of a first list) and must see an event for each of its own acknowledged writes, at
the revision the write answered with: a write acknowledged but never seen by its watcher is a
*missed* watch event. Bounded: in time (the duration, plus at most ``DRAIN_SECONDS`` for watchers to
catch up) and in count (``--max-requests`` per client).

A 429 (rate limited) is counted and honoured (the client sleeps ``Retry-After``, at most 5 s) and
is not an error; any other failure (a status other than the operation's success, a transport error)
is. The run fails (exit 1) on any error or missed watch event.

Printed: requests and p50/p99 latency by kind, errors, 429s, watch events expected/seen/missed, the
server's CPU seconds and peak RSS, and the machine. ``--quick``: 10 clients for 10 s. The server's
rate limit flags are passed through (``--max-requests-per-second``/``--max-request-burst``); by
default the server's own defaults apply, which this load should not reach.

``run_load`` is also a small library: ``tests/fuzz/test_load_smoke.py`` drives it against an
in-process control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procstat
from bench_api import PEA_URL, _open_log, _terminate, machine_info, percentile
from summary import Figure, command, emit

NAMESPACE = "default"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
SHARED_LABEL = "bench-load=1"
DRAIN_SECONDS = 15.0  # after the run: how long watchers may take to see the last writes
MAX_RETRY_AFTER = 5.0
# (operation, weight): writes about 45 %, reads 55 %.
MIX = [("create", 20), ("update", 15), ("delete", 10), ("get", 25), ("list-own", 20), ("list-all", 10)]
QUICK = {"clients": 10, "duration": 10.0}
DEFAULTS = {"clients": 50, "duration": 60.0}
MAX_REQUESTS = 20_000  # per client: the bound in count (the duration is the one in time)
WATCH_EVERY = 5
START_TIMEOUT = 60.0


@dataclass
class LoadResult:
    """What one load run measured (latencies in seconds, by operation)."""

    clients: int
    duration: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    throttled: int = 0
    watchers: int = 0
    watch_expected: int = 0
    watch_seen: int = 0
    watch_missed: int = 0
    watch_restarts: int = 0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def error(self, kind: str, text: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{kind}: {text[:200]}")


class Watcher:
    """One client's watch on its own ConfigMaps: every (name, revision) event it has seen."""

    def __init__(self, http: httpx.AsyncClient, owner: str, result: LoadResult) -> None:
        self.http = http
        self.owner = owner
        self.result = result
        self.seen: set[tuple[str, str]] = set()
        self.deleted: set[str] = set()
        self.revision = "0"
        self.task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        listed = await self.http.get(PATH, params={"labelSelector": f"owner={self.owner}"})
        listed.raise_for_status()
        self.revision = listed.json()["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._run(), name=f"watch-{self.owner}")

    async def _run(self) -> None:
        while True:
            params = {
                "watch": "1",
                "labelSelector": f"owner={self.owner}",
                "resourceVersion": self.revision,
                "allowWatchBookmarks": "true",
            }
            try:
                async with self.http.stream("GET", PATH, params=params, timeout=None) as response:
                    if response.status_code == 429:
                        await asyncio.sleep(_retry_after(response))
                        continue
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if line.strip():
                            self._event(json.loads(line))
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                self.result.error("watch", repr(exc))
                await asyncio.sleep(0.5)
            self.result.watch_restarts += 1  # the stream ended: resume from the last revision

    def _event(self, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        if event.get("type") == "ERROR":
            self.result.error("watch", json.dumps(obj))
            return
        if rv:
            self.revision = rv
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            self.seen.add((meta.get("name", ""), rv or ""))
            if event["type"] == "DELETED":
                self.deleted.add(meta.get("name", ""))
            self.changed.set()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER, max(0.05, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


async def _client_loop(
    url: str,
    token: str,
    index: int,
    deadline: float,
    max_requests: int,
    watch: bool,
    result: LoadResult,
) -> tuple[Watcher | None, set[tuple[str, str]], httpx.AsyncClient]:
    """One user's loop; returns its watcher (if any), the writes it expects that watcher to see, and
    its HTTP client (closed by the caller once the watcher is done)."""
    owner = f"client-{index}"
    rng = random.Random(index)
    http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    watcher = Watcher(http, owner, result) if watch else None
    expected: set[tuple[str, str]] = set()
    if watcher is not None:
        await watcher.start()
    mine: list[str] = []
    serial = 0
    ops, weights = zip(*MIX, strict=True)
    for _ in range(max_requests):
        if time.monotonic() >= deadline:
            break
        op = rng.choices(ops, weights)[0]
        if op in ("update", "delete", "get") and not mine:
            op = "create"
        body: dict[str, Any] | None = None
        if op == "create":
            serial += 1
            name = f"{owner}-{serial}"
            body = _configmap(name, owner, serial)
            method, path, ok = "POST", PATH, 201
        elif op == "update":
            name = rng.choice(mine)
            serial += 1
            body = _configmap(name, owner, serial)
            method, path, ok = "PUT", f"{PATH}/{name}", 200
        elif op == "delete":
            name = mine[rng.randrange(len(mine))]
            method, path, ok = "DELETE", f"{PATH}/{name}", 200
        elif op == "get":
            name = rng.choice(mine)
            method, path, ok = "GET", f"{PATH}/{name}", 200
        else:
            name = ""
            selector = f"owner={owner}" if op == "list-own" else SHARED_LABEL
            method, path, ok = "GET", f"{PATH}?labelSelector={selector}&limit=100", 200
        start = time.perf_counter()
        try:
            response = await http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            result.error(op, repr(exc))
            continue
        if response.status_code == 429:  # counted apart: its quick answer would flatter the latencies
            result.throttled += 1
            await asyncio.sleep(_retry_after(response))
            continue
        result.latencies.setdefault(op, []).append(time.perf_counter() - start)
        if response.status_code != ok:
            result.error(op, f"{response.status_code} {response.text}")
            continue
        if op == "create":
            mine.append(name)
        elif op == "delete":
            mine.remove(name)
        if op in ("create", "update", "delete") and watcher is not None:
            rv = response.json()["metadata"]["resourceVersion"] if op != "delete" else ""
            expected.add((name, rv) if rv else (name, "DELETED"))
    return watcher, expected, http


def _configmap(name: str, owner: str, serial: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"owner": owner, "bench-load": "1"}},
        "data": {"serial": str(serial), "payload": "x" * 200},
    }


def _missed(watcher: Watcher, expected: set[tuple[str, str]]) -> int:
    """Expected events the watcher has not seen: a create or update at the revision it answered
    with, a delete as a DELETED event for the name (names are never reused)."""
    missed = 0
    for name, rv in expected:
        if rv == "DELETED":
            missed += name not in watcher.deleted
        elif (name, rv) not in watcher.seen:
            missed += 1
    return missed


async def run_load(
    url: str,
    tokens: list[str],
    *,
    duration: float,
    max_requests: int = MAX_REQUESTS,
    watch_every: int = WATCH_EVERY,
) -> LoadResult:
    """``len(tokens)`` clients, one per token, for ``duration`` seconds (or ``max_requests`` each)."""
    result = LoadResult(clients=len(tokens))
    deadline = time.monotonic() + duration
    started = time.monotonic()
    loops = [
        _client_loop(url, token, i, deadline, max_requests, watch_every > 0 and i % watch_every == 0, result)
        for i, token in enumerate(tokens)
    ]
    outcomes = await asyncio.gather(*loops)
    result.duration = time.monotonic() - started
    # Watchers get a bounded time to see the last writes, then what they have not seen is missed.
    drain_deadline = time.monotonic() + DRAIN_SECONDS
    for watcher, expected, http in outcomes:
        if watcher is not None:
            result.watchers += 1
            while _missed(watcher, expected) and time.monotonic() < drain_deadline:
                watcher.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        watcher.changed.wait(), max(0.01, drain_deadline - time.monotonic())
                    )
            result.watch_expected += len(expected)
            missed = _missed(watcher, expected)
            result.watch_missed += missed
            result.watch_seen += len(expected) - missed
            await watcher.stop()
        await http.aclose()
    return result


# --- the server ---------------------------------------------------------------------------------


def write_token_file(path: Path, users: int) -> tuple[str, list[str]]:
    """An admin token and ``users`` user tokens (users ``bench-user-N``, not in system:masters)."""
    admin = secrets.token_urlsafe(24)
    tokens = [secrets.token_urlsafe(24) for _ in range(users)]
    lines = [f'{admin},bench-admin,bench-admin,"system:masters"']
    lines += [f'{t},bench-user-{i},bench-user-{i},"bench"' for i, t in enumerate(tokens)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return admin, tokens


class Server:
    """``pea controlplane`` in a child process with a token file, its CPU and peak RSS sampled."""

    def __init__(self, workdir: Path, extra: list[str]) -> None:
        self.workdir = workdir
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None
        self.peak_rss = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self, token_file: Path) -> str:
        pea = Path(sys.executable).with_name("pea")
        argv = [str(pea), "controlplane", "--data-dir", str(self.workdir / "cp"), "--listen", "127.0.0.1:0"]
        argv += ["--no-scheduler", "--no-controllers", "--token-file", str(token_file), *self.extra]
        with _open_log(self.workdir / "server.log") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=log, stdin=asyncio.subprocess.DEVNULL
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), deadline - time.monotonic())
            except TimeoutError:
                break
            if not line:
                break
            match = PEA_URL.search(line.decode(errors="replace"))
            if match:
                self._drain = asyncio.create_task(_drain(self.proc.stdout))
                self._sampler = asyncio.create_task(self._sample())
                return match.group(1).rstrip(".,")
        await self.stop()
        tail = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"pea controlplane did not start:\n{tail}")

    async def _sample(self) -> None:
        assert self.proc is not None
        while True:
            self.peak_rss = max(self.peak_rss, procstat.rss_mib(self.proc.pid) or 0.0)
            await asyncio.sleep(0.5)

    def cpu_seconds(self) -> float:
        return (procstat.cpu_seconds(self.proc.pid) or 0.0) if self.proc is not None else 0.0

    async def stop(self) -> None:
        for task in (self._sampler, self._drain):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.proc is not None:
            await _terminate(self.proc)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _ready(url: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("the control plane never became ready")


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    token_file = workdir / "tokens.csv"
    admin, tokens = write_token_file(token_file, args.clients)
    extra = []
    if args.max_requests_per_second is not None:
        extra += ["--max-requests-per-second", str(args.max_requests_per_second)]
    if args.max_request_burst is not None:
        extra += ["--max-request-burst", str(args.max_request_burst)]
    server = Server(workdir, extra)
    url = await server.start(token_file)
    try:
        await _ready(url, admin)
        cpu_before = server.cpu_seconds()
        result = await run_load(
            url, tokens, duration=args.duration, max_requests=args.max_requests, watch_every=args.watch_every
        )
        cpu = server.cpu_seconds() - cpu_before
    finally:
        await server.stop()
    return {"result": result, "server_cpu_seconds": cpu, "server_peak_rss_mib": server.peak_rss}


def report(out: dict[str, Any], machine: dict[str, Any]) -> str:
    r: LoadResult = out["result"]
    lines = [
        f"load: {r.clients} clients for {r.duration:.1f} s on loopback; {r.requests} requests "
        f"({r.requests / max(r.duration, 1e-9):.0f}/s); load average at start {machine['loadavg_at_start']}",
        f"{'operation':<10} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for op, _ in MIX:
        samples = sorted(r.latencies.get(op, []))
        lines.append(
            f"{op:<10} {len(samples):>7} {percentile(samples, 50) * 1e3:>8.1f} "
            f"{percentile(samples, 99) * 1e3:>8.1f} {(samples[-1] if samples else float('nan')) * 1e3:>8.1f}"
        )
    everything = sorted(x for v in r.latencies.values() for x in v)
    lines.append(f"{'all':<10} {len(everything):>7} {percentile(everything, 50) * 1e3:>8.1f} "
                 f"{percentile(everything, 99) * 1e3:>8.1f}")  # fmt: skip
    lines.append(
        f"errors: {sum(r.errors.values())} {dict(r.errors)}; 429s (counted, not errors): {r.throttled}"
    )
    lines += [f"  {sample}" for sample in r.error_samples]
    lines.append(
        f"watch: {r.watchers} watchers expected {r.watch_expected} events of their own writes, "
        f"saw {r.watch_seen}, missed {r.watch_missed} (streams resumed: {r.watch_restarts})"
    )
    lines.append(
        f"server: {out['server_cpu_seconds']:.1f} CPU s "
        f"({out['server_cpu_seconds'] / max(r.duration, 1e-9) * 100:.0f}% of a core), "
        f"peak RSS {out['server_peak_rss_mib']:.0f} MiB"
    )
    lines.append(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['python']}")
    return "\n".join(lines)


def figures(out: dict[str, Any]) -> list[Figure]:
    r: LoadResult = out["result"]
    writes = sorted(x for op in ("create", "update", "delete") for x in r.latencies.get(op, []))
    reads = sorted(x for op in ("get", "list-own", "list-all") for x in r.latencies.get(op, []))
    errors = sum(r.errors.values())
    return [
        Figure("requests", r.requests),
        Figure("errors (other than 429)", errors, goal="0", met=errors == 0),
        Figure("429s", r.throttled),
        Figure("write p99", round(percentile(writes, 99) * 1e3, 1), "ms"),
        Figure("read p99", round(percentile(reads, 99) * 1e3, 1), "ms"),
        Figure("watch events missed", r.watch_missed, goal="0", met=r.watch_missed == 0),
        Figure("server CPU", round(out["server_cpu_seconds"], 1), "s"),
        Figure("server peak RSS", round(out["server_peak_rss_mib"]), "MiB"),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help=f"a short run for the quick suite: {QUICK}")
    p.add_argument("--clients", type=int, help=f"concurrent users (default {DEFAULTS['clients']})")
    p.add_argument("--duration", type=float, help=f"seconds of load (default {DEFAULTS['duration']:.0f})")
    p.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help="per client, at most")
    p.add_argument("--watch-every", type=int, default=WATCH_EVERY, help="every Nth client watches")
    p.add_argument("--max-requests-per-second", type=float, help="the server's per-user rate (its default)")
    p.add_argument("--max-request-burst", type=int, help="the server's per-user burst (its default)")
    p.add_argument("--data-dir", help="where the temporary data directory goes (default: the system's)")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    args.clients = args.clients or base["clients"]
    args.duration = args.duration or base["duration"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = command()
    try:
        with tempfile.TemporaryDirectory(prefix="peapod-bench-load-", dir=args.data_dir) as tmp:
            machine = machine_info(Path(tmp))
            out = asyncio.run(run(args, Path(tmp)))
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        print(f"bench_load: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit("load", [], cmd=cmd, skipped=f"the benchmark failed: {type(exc).__name__}: {exc}")
        return 1
    print(report(out, machine))
    emit("load", figures(out), cmd=cmd)
    r: LoadResult = out["result"]
    return 1 if r.errors or r.watch_missed else 0


if __name__ == "__main__":
    sys.exit(main())
