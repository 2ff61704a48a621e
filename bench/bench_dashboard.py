"""Dashboard benchmark: how far ``pea tui``'s pod table lags behind the API under a steady write load.

Setup: a fresh control plane (real SQLite, real HTTP on 127.0.0.1, scheduler and controllers off) in a
child process by default (``pea controlplane``; ``--in-process`` shares this process's loop instead), a
few Node objects, and ``--pods`` pods created with ``spec.nodeName`` set (no containers anywhere: the
pods stay Pending until the writer gives them a status).

Then the real ``PeapodApp(client, namespace=NS)`` runs headless in this process (``App.run_test``), on
its pods view. This process is the dashboard's: its RSS and CPU are the dashboard's (plus this script's
small bookkeeping). Two figures:

initial load
    From starting the app to the ResourceTable holding every pod (its ``reset`` with ``--pods`` rows),
    and to the next frame the screen composed after that; also when the header's pod Informer counted
    them all.
update lag
    A writer in a third process (this file with ``--writer-child``, so that its timestamps are not held
    up by the dashboard's loop) patches pod status ``--rate`` times a second for ``--seconds``: each
    write sets a fresh restart count (so the row's RESTARTS cell changes, and READY/STATUS with the first
    write to a pod) and records the time the server acknowledged it. In this process,
    ``ResourceTable.upsert`` is wrapped (from the outside; no product code changes) to record when a row
    with that key first holds that RESTARTS value. Lag = that time - the write's acknowledgement.
    ``perf_counter_ns`` is ``CLOCK_MONOTONIC``, the same clock in every process. The stream's decoding of
    the row (``TableStream._row``) and the screen's frames are timed too, to split the lag into "the API,
    the watch and the wait for the loop" and "the dashboard's queue and table"; a 10 ms timer task
    records event loop stalls (the time the UI was frozen).

At the end the table must equal a fresh server-side Table listing exactly (keys, and every cell but
AGE), both in ``rows_by_key`` and in the table's shown cells; otherwise the exit status is 1.

``--experiment`` patches sketches of fixes into this process only (never the product code) for A/B runs;
``--profile FILE`` writes cProfiles of the load and the writes.

Run ``.venv/bin/python bench/bench_dashboard.py`` (about 1.5 minutes on a 2-core machine) or ``--quick``;
``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import cProfile
import datetime as dt
import functools
import io
import json
import logging
import os
import pstats
import random
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import procstat
from bench_api import InProcessServer, SubprocessServer, machine_info, percentile
from summary import Figure, emit

from controlplane.api.core import Namespace, Node, Pod
from controlplane.api.meta import Table
from controlplane.api.registry import resolve
from controlplane.client import Client, ClientError
from tui.printers import cell_text

log = logging.getLogger("bench")

SCRIPT = Path(__file__).resolve()
NAMESPACE = "bench-dash"
NODES = 5
GOAL_P99_MS = 250.0
SIZE = (160, 50)
LOAD_TIMEOUT = 120.0  # seconds for the dashboard to show every pod
CATCH_UP_TIMEOUT = 30.0  # seconds after the last write for the dashboard to show every write
CREATE_CONCURRENCY = 32
DASH_DISTS = ("textual", "rich", "httpx", "msgspec", "uvicorn")


def pod_name(i: int) -> str:
    return f"bench-{i:05d}"


def write_order(pods: int, seed: int = 9) -> list[int]:
    """The pods the writer patches, in order: a shuffle, so consecutive writes hit scattered rows."""
    order = list(range(pods))
    random.Random(seed).shuffle(order)
    return order


def status_patch(restarts: int) -> dict[str, Any]:
    """A Running pod whose one container has restarted ``restarts`` times: RESTARTS shows the number."""
    return {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "started": True,
                    "restartCount": restarts,
                    "image": "busybox:1.36",
                    "imageID": "",
                    "state": {"running": {"startedAt": "2026-11-23T00:00:00Z"}},
                }
            ],
        }
    }


# --- memory and CPU ---------------------------------------------------------------------------------


def rss_mib() -> float:
    """This process's resident set now (VmRSS), in MiB."""
    rss = procstat.rss_mib()
    return float("nan") if rss is None else rss


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    return time.process_time()


# --- setup ------------------------------------------------------------------------------------------


async def create_pods(url: str, pods: int, concurrency: int) -> dict[str, Any]:
    """Nodes, the namespace and ``pods`` pods bound to the nodes at create; one client per worker."""
    async with Client(url, user_agent="peapod-bench", verify=False) as client:
        await client.create(msgspec.convert({"metadata": {"name": NAMESPACE}}, Namespace))
        for n in range(NODES):
            await client.create(msgspec.convert({"metadata": {"name": f"hollow-{n}"}}, Node))
    indices = iter(range(pods))  # shared by the workers; next() never awaits
    errors: list[str] = []

    async def worker() -> None:
        async with Client(url, user_agent="peapod-bench", verify=False) as client:
            for i in indices:
                pod = msgspec.convert(
                    {
                        "metadata": {"name": pod_name(i), "namespace": NAMESPACE, "labels": {"app": "bench"}},
                        "spec": {
                            "nodeName": f"hollow-{i % NODES}",
                            "containers": [{"name": "main", "image": "busybox:1.36"}],
                        },
                    },
                    Pod,
                )
                for attempt in (1, 2):  # an idle keep-alive connection may race its close once
                    try:
                        await client.create(pod)
                        break
                    except ClientError as exc:
                        if attempt == 2:
                            errors.append(f"{pod_name(i)}: {exc}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(pods, 1)))))
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]}")
    return {"pods": pods, "wall_s": round(wall, 2), "per_s": round(pods / wall, 1) if wall else None}


# --- the writer (a child process) -------------------------------------------------------------------


async def writer_main(url: str, pods: int, rate: float, seconds: float) -> tuple[list[str], float]:
    """Patch pod status ``rate`` times a second for ``seconds``; one line per write: index, key, the
    RESTARTS value set, send and acknowledgement times (ns). Write *i* is due at start + i/rate; a late
    answer makes later writes go out back to back until the writer is on schedule again."""
    order = write_order(pods)
    total = int(rate * seconds)
    lines: list[str] = []
    async with Client(url, user_agent="peapod-bench-writer", verify=False) as client:
        await client.request("GET", "/version")  # open the connection before the clock starts
        first = time.perf_counter_ns()
        for i in range(total):
            delay = first + int(i * 1e9 / rate) - time.perf_counter_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            name = pod_name(order[i % pods])
            value = i + 1
            sent = time.perf_counter_ns()
            await client.patch(Pod, name, status_patch(value), NAMESPACE, subresource="status")
            acked = time.perf_counter_ns()
            lines.append(f"{i} {NAMESPACE}/{name} {value} {sent} {acked}")
        elapsed = (time.perf_counter_ns() - first) / 1e9
    return lines, elapsed


@dataclass
class Write:
    key: str
    value: str
    sent_ns: int
    acked_ns: int


def read_writes(path: Path) -> list[Write]:
    out = []
    for line in path.read_text().splitlines():
        _, key, value, sent, acked = line.split()
        out.append(Write(key, value, int(sent), int(acked)))
    return out


# --- instrumentation of the dashboard (from the outside) --------------------------------------------


@dataclass
class Probe:
    """What the wrapped methods saw: when each (key, RESTARTS value) was decoded by the stream and
    applied to the table, when the table was reset (and with how many rows), and every frame."""

    column: str = "RESTARTS"
    received: dict[tuple[str, str], int] = field(default_factory=dict)
    shown: dict[tuple[str, str], int] = field(default_factory=dict)
    resets: list[tuple[int, int]] = field(default_factory=list)  # (time ns, rows)
    frames: list[int] = field(default_factory=list)
    frame_cost: list[int] = field(default_factory=list)  # ns spent composing each frame
    upserts: int = 0
    stream_col: int | None = None
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def install(self) -> None:
        from textual.screen import Screen

        from tui.dashboard.streams import TableStream
        from tui.dashboard.widgets import ResourceTable

        probe = self
        orig_upsert = ResourceTable.upsert
        orig_reset = ResourceTable.reset
        orig_row = TableStream._row
        orig_refresh = Screen._compositor_refresh

        def upsert(table: ResourceTable, key: str, cells: list[str], *rest: Any, **kw: Any) -> None:
            orig_upsert(table, key, cells, *rest, **kw)
            now = time.perf_counter_ns()
            probe.upserts += 1
            col = _index(table.columns_names, probe.column)
            if col is not None and col < len(cells):
                probe.shown.setdefault((key, cells[col].split(" ", 1)[0]), now)

        def reset(table: ResourceTable, columns: list[str], rows: list[Any], *rest: Any, **kw: Any) -> None:
            orig_reset(table, columns, rows, *rest, **kw)
            probe.resets.append((time.perf_counter_ns(), len(rows)))
            probe.stream_col = _index(columns, probe.column)

        def row(stream: TableStream, table_row: Any) -> tuple[str, list[str]]:
            key, cells = orig_row(stream, table_row)
            # The list's rows come through here too; writes never set 0, so they cannot be confused.
            # Before the first reset is applied, the pods' default layout: NAME READY STATUS RESTARTS
            # ..., after NAMESPACE in all namespaces.
            col = probe.stream_col
            if col is None:
                col = 4 if stream.all_namespaces else 3
            if col < len(cells):
                probe.received.setdefault((key, cells[col].split(" ", 1)[0]), time.perf_counter_ns())
            return key, cells

        def compositor_refresh(screen: Screen[Any]) -> None:
            began = time.perf_counter_ns()
            orig_refresh(screen)
            probe.frames.append(time.perf_counter_ns())
            probe.frame_cost.append(probe.frames[-1] - began)

        for cls, name, new, old in (
            (ResourceTable, "upsert", upsert, orig_upsert),
            (ResourceTable, "reset", reset, orig_reset),
            (TableStream, "_row", row, orig_row),
            (Screen, "_compositor_refresh", compositor_refresh, orig_refresh),
        ):
            setattr(cls, name, new)
            self._undo.append(functools.partial(setattr, cls, name, old))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def frame_after(self, t_ns: int) -> int | None:
        """The first frame composed at or after ``t_ns``."""
        i = bisect.bisect_left(self.frames, t_ns)
        return self.frames[i] if i < len(self.frames) else None


def _index(names: list[str], wanted: str) -> int | None:
    return names.index(wanted) if wanted in names else None


def _noop(*_: Any, **__: Any) -> None:
    return None


class StallMonitor:
    """How long the event loop was unable to run a 10 ms timer: the dashboard's frozen time."""

    def __init__(self) -> None:
        self.stalls: list[tuple[int, int]] = []  # (when it ended, ns beyond the 10 ms) over 50 ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            began = time.perf_counter_ns()
            await asyncio.sleep(0.01)
            now = time.perf_counter_ns()
            late = now - began - 10_000_000
            if late > 50_000_000:
                self.stalls.append((now, late))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def between(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        late = [ns for t, ns in self.stalls if start_ns <= t <= end_ns]
        return {
            "count": len(late),
            "max_ms": round(max(late) / 1e6, 1) if late else 0.0,
            "total_s": round(sum(late) / 1e9, 2),
        }


# --- statistics -------------------------------------------------------------------------------------


def summary_ms(samples_ns: list[int]) -> dict[str, Any]:
    ordered = sorted(s / 1e6 for s in samples_ns)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "min_ms": round(ordered[0], 2),
        "p50_ms": round(percentile(ordered, 50), 2),
        "p90_ms": round(percentile(ordered, 90), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(sum(ordered) / len(ordered), 2),
    }


# --- the run ----------------------------------------------------------------------------------------


async def wait_for(
    check: Callable[[], Any], timeout: float, step: float = 0.02, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Poll ``check`` (cheap) until it is truthy or ``timeout`` seconds pass (or ``alive`` is false)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or not alive():
            return False
        await asyncio.sleep(step)
    return True


async def compare_with_api(url: str, table: Any, all_namespaces: bool) -> dict[str, Any]:
    """The dashboard's rows against a fresh server-side listing, every column but AGE: its store
    (``rows_by_key``, every column) and the table's shown cells (the columns it shows). Returns counts
    and the first few differences."""
    info = resolve("pods")
    assert info is not None
    async with Client(url, user_agent="peapod-bench-check", verify=False) as client:
        listing: Table = await client.table(info, NAMESPACE)
    names = [c.name.upper() for c in listing.column_definitions]
    default = [n for n, c in zip(names, listing.column_definitions, strict=True) if c.priority == 0]
    api: dict[str, list[str]] = {}
    for r in listing.rows:
        meta = r.object.get("metadata", {}) if isinstance(r.object, dict) else {}
        api[f"{meta.get('namespace')}/{meta.get('name')}"] = [cell_text(c) for c in r.cells]
    if all_namespaces:
        names.insert(0, "NAMESPACE")
        default.insert(0, "NAMESPACE")
        api = {k: [k.split("/", 1)[0], *v] for k, v in api.items()}
    store_names = list(table.columns_names)
    shown_names = list(table.column_labels)
    diffs: list[str] = []
    for label, have, need in (("store", store_names, names), ("table", shown_names, default)):
        if lacking := [n for n in need if n not in have and n != "AGE"]:
            diffs.append(f"{label} lacks columns {lacking} (has {have})")
    if diffs:
        return {"equal": False, "api_rows": len(api), "rows": len(table.rows_by_key), "diffs": diffs}

    def project(cells: list[str], header: list[str], wanted: list[str]) -> list[str]:
        return [cells[header.index(n)] if header.index(n) < len(cells) else "" for n in wanted]

    store_cols = [n for n in names if n != "AGE"]
    shown_cols = [n for n in shown_names if n != "AGE" and n in names]
    store_keys, api_keys, shown_keys = set(table.rows_by_key), set(api), set(table.shown_keys)
    for label, keys in (("store", store_keys), ("table", shown_keys)):
        if missing := sorted(api_keys - keys):
            diffs.append(f"{label}: {len(missing)} rows missing, e.g. {missing[:3]}")
        if extra := sorted(keys - api_keys):
            diffs.append(f"{label}: {len(extra)} rows not in the API, e.g. {extra[:3]}")
    cell_diffs = 0
    for key in sorted(api_keys):
        checks = []
        if key in store_keys:
            checks.append(("store", store_cols, project(table.rows_by_key[key], store_names, store_cols)))
        if key in shown_keys:
            checks.append(("table", shown_cols, project(table.cells(key), shown_names, shown_cols)))
        for label, cols, got in checks:
            want = project(api[key], names, cols)
            if got != want:
                cell_diffs += 1
                if cell_diffs <= 5:
                    diffs.append(f"{label} {key}: {got} != API {want} (columns {cols})")
    if cell_diffs > 5:
        diffs.append(f"... {cell_diffs} rows with different cells in all")
    return {
        "equal": not diffs,
        "api_rows": len(api),
        "rows": len(store_keys),
        "shown_columns": shown_names,
        "diffs": diffs,
    }


async def run_dashboard(args: argparse.Namespace, url: str, server: Any, workdir: Path) -> dict[str, Any]:
    from tui.dashboard import PeapodApp
    from tui.dashboard.widgets import ClusterHeader, ResourceTable

    probe = Probe()
    probe.install()
    experiments = set(args.experiment.split(",")) - {"none"}
    if "no-header-pods" in experiments:
        from tui.dashboard.screens import ResourcesScreen

        # Without the header's pod Informer (a second watch of every pod, counting phases): what that
        # costs. Restored with the probe's other patches.
        old = ResourcesScreen._watch_pods
        setattr(ResourcesScreen, "_watch_pods", _noop)  # noqa: B010
        probe._undo.append(functools.partial(setattr, ResourcesScreen, "_watch_pods", old))
    out: dict[str, Any] = {}
    writes_file = workdir / "writes.txt"
    profiler = cProfile.Profile() if args.profile else None
    load_profiler = cProfile.Profile() if args.profile else None
    try:
        client = Client(url, user_agent="peapod-tui", verify=False)
        app = PeapodApp(client, namespace=None if args.all_namespaces else NAMESPACE)
        out["rss_before_mib"] = round(rss_mib(), 1)
        stalls = StallMonitor()
        stalls.start()
        if load_profiler is not None:
            load_profiler.enable()
        cpu0, t0 = cpu_s(), time.perf_counter_ns()
        async with app.run_test(size=args.size) as pilot:
            table = app.screen.query_one(ResourceTable)
            header = app.screen.query_one(ClusterHeader)
            loaded = await wait_for(
                lambda: any(n == args.pods for _, n in probe.resets) and len(table.rows_by_key) >= args.pods,
                LOAD_TIMEOUT,
                alive=lambda: app.is_running,
            )
            if not loaded:
                raise RuntimeError(f"the dashboard did not show {args.pods} rows in {LOAD_TIMEOUT:.0f} s")
            t_reset = next(t for t, n in probe.resets if n == args.pods)
            await wait_for(lambda: probe.frame_after(t_reset) is not None, 10)
            counted = "no-header-pods" not in experiments and await wait_for(
                lambda: sum(header.pod_phases.values()) >= args.pods, LOAD_TIMEOUT
            )
            t_header = time.perf_counter_ns()
            if load_profiler is not None:
                load_profiler.disable()
            frame = probe.frame_after(t_reset)
            out["load"] = {
                "rows_s": round((t_reset - t0) / 1e9, 3),
                "first_frame_s": round((frame - t0) / 1e9, 3) if frame else None,
                "header_counted_s": round((t_header - t0) / 1e9, 3) if counted else None,
                "cpu_s": round(cpu_s() - cpu0, 2),
                "stalls": stalls.between(t0, t_header),
            }
            await pilot.pause(1.0)  # let the load's tail (header, GC) settle
            out["rss_loaded_mib"] = round(rss_mib(), 1)

            # The writer, in its own process.
            cpu1, server_cpu1 = cpu_s(), server.cpu_seconds()
            if profiler is not None:
                profiler.enable()
            argv = [
                sys.executable,
                str(SCRIPT),
                "--writer-child",
                str(writes_file),
                "--url",
                url,
                "--pods",
                str(args.pods),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
            ]
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
            )
            stdout, _ = await asyncio.wait_for(proc.communicate(), args.seconds * 3 + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"the writer failed (exit {proc.returncode})")
            writer_info = json.loads(stdout.decode().strip().splitlines()[-1])
            writes = read_writes(writes_file)
            caught_up = await wait_for(
                lambda: all((w.key, w.value) in probe.shown for w in writes[-50:]), CATCH_UP_TIMEOUT, 0.05
            )
            if profiler is not None:
                profiler.disable()
            server_cpu2 = server.cpu_seconds()
            out["updates_cpu_s"] = {
                "dashboard": round(cpu_s() - cpu1, 2),
                "server": round(server_cpu2 - server_cpu1, 2)
                if server_cpu1 is not None and server_cpu2 is not None
                else None,
            }
            out["writer"] = {
                "writes": len(writes),
                "achieved_per_s": round(len(writes) / writer_info["elapsed_s"], 1),
                "ack": summary_ms([w.acked_ns - w.sent_ns for w in writes]),
            }
            out["caught_up"] = caught_up
            lags, api_lags, dash_lags, frame_lags, unseen = [], [], [], [], 0
            for w in writes:
                shown = probe.shown.get((w.key, w.value))
                if shown is None:
                    unseen += 1
                    continue
                lags.append(shown - w.acked_ns)
                received = probe.received.get((w.key, w.value))
                if received is not None:
                    api_lags.append(received - w.acked_ns)
                    dash_lags.append(shown - received)
                if (painted := probe.frame_after(shown)) is not None:
                    frame_lags.append(painted - w.acked_ns)
            out["lag"] = summary_ms(lags)
            out["lag_received"] = summary_ms(api_lags)
            out["lag_received_to_shown"] = summary_ms(dash_lags)
            out["lag_next_frame"] = summary_ms(frame_lags)
            out["unseen"] = unseen
            out["upserts"] = probe.upserts
            during = [
                cost
                for f, cost in zip(probe.frames, probe.frame_cost, strict=True)
                if writes and writes[0].sent_ns <= f <= writes[-1].acked_ns
            ]
            out["frames_during_updates"] = len(during)
            out["stalls_during_updates"] = (
                stalls.between(writes[0].sent_ns, writes[-1].acked_ns) if writes else {}
            )
            out["frame_cost"] = summary_ms(during)
            await pilot.pause(0.5)
            out["check"] = await compare_with_api(url, table, args.all_namespaces)
            out["rss_end_mib"] = round(rss_mib(), 1)
            out["maxrss_mib"] = round(max_rss_mib(), 1)
        await stalls.stop()
        await client.close()
    finally:
        probe.uninstall()
    if profiler is not None and load_profiler is not None:
        profiler.dump_stats(args.profile)
        load_profiler.dump_stats(f"{args.profile}.load")
    return out


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "cp"
    server: InProcessServer | SubprocessServer
    server = InProcessServer(data_dir) if args.in_process else SubprocessServer(data_dir, "auto")
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": reproduce_command(),
        "machine": machine_info(workdir, DASH_DISTS),
        "pods": args.pods,
        "rate": args.rate,
        "seconds": args.seconds,
        "all_namespaces": args.all_namespaces,
        "experiment": args.experiment,
        "size": list(args.size),
    }
    url = await asyncio.wait_for(server.start(), 90)
    result["server"] = f"{server.mode}: {server.launcher}"
    try:
        print(f"... creating {args.pods} pods", file=sys.stderr, flush=True)
        result["create"] = await create_pods(url, args.pods, CREATE_CONCURRENCY)
        print("... dashboard", file=sys.stderr, flush=True)
        result.update(await run_dashboard(args, url, server, workdir))
    finally:
        await server.stop()
    return result


# --- report -----------------------------------------------------------------------------------------


def reproduce_command() -> str:
    def rel(path: str) -> str:
        return os.path.relpath(path) if Path(path).absolute().is_relative_to(Path.cwd()) else path

    return shlex.join([rel(sys.executable), rel(str(Path(__file__).resolve())), *sys.argv[1:]])


def _fmt(s: dict[str, Any]) -> str:
    if not s.get("count"):
        return "no samples"
    return (
        f"p50 {s['p50_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  max {s['max_ms']:.1f} ms "
        f"(p90 {s['p90_ms']:.1f}, min {s['min_ms']:.1f}, n {s['count']})"
    )


def report(r: dict[str, Any]) -> Iterator[str]:
    m = r["machine"]
    v = m["versions"]
    yield f"peapod dashboard benchmark, {r['date']}"
    yield (
        f"machine   nproc {m['nproc']} ({m['cpu_count']} CPUs), {m['cpu_model']}, {m['python']}, "
        f"{m['platform']}; load average at start {m['loadavg_at_start']}"
    )
    yield (
        f"stack     textual {v.get('textual', '?')}, rich {v.get('rich', '?')}, httpx {v.get('httpx', '?')}, "
        f"msgspec {v.get('msgspec', '?')}; server {r['server']}; writer in its own process; "
        f"dashboard headless (run_test, {r['size'][0]}x{r['size'][1]}) in this process"
    )
    yield f"command   {r['command']}"
    if r["experiment"] != "none":
        yield (
            f"EXPERIMENT {r['experiment']}: the dashboard patched by the benchmark, not the product "
            f"({r['upserts']} upserts)"
        )
    yield ""
    c = r["create"]
    yield f"setup     {c['pods']} pods on {NODES} Node objects made in {c['wall_s']:.1f} s ({c['per_s']}/s)"
    ld = r["load"]
    where = "all namespaces" if r["all_namespaces"] else f"namespace {NAMESPACE}"
    yield (
        f"load      {r['pods']} pods ({where}) in the table {ld['rows_s']:.2f} s after the app started; "
        f"next frame {ld['first_frame_s']} s; header counted them at {ld['header_counted_s']} s; "
        f"CPU {ld['cpu_s']:.1f} s"
    )
    st = ld["stalls"]
    yield (
        f"          event loop stalls (> 50 ms) while loading: {st['count']}, longest {st['max_ms']:.0f} ms, "
        f"{st['total_s']:.1f} s in all"
    )
    w = r["writer"]
    yield (
        f"writes    {w['writes']} status patches, target {r['rate']:g}/s for {r['seconds']:g} s, achieved "
        f"{w['achieved_per_s']}/s; ack {_fmt(w['ack'])}"
    )
    goal = "met" if r["lag"].get("count") and r["lag"]["p99_ms"] <= GOAL_P99_MS else "MISSED"
    yield f"LAG       ack -> row updated in the table: {_fmt(r['lag'])}"
    yield f"          goal p99 <= {GOAL_P99_MS:g} ms: {goal}"
    yield f"          ack -> row decoded by the view stream: {_fmt(r['lag_received'])}"
    yield f"          decoded -> row updated (message queue + upsert): {_fmt(r['lag_received_to_shown'])}"
    yield f"          ack -> next frame composed after the update: {_fmt(r['lag_next_frame'])}"
    yield (
        f"          writes never shown: {r['unseen']}; caught up after the last write: {r['caught_up']}; "
        f"{r['upserts']} upserts, {r['frames_during_updates']} frames during the writes"
    )
    yield f"          time to compose one frame during the writes: {_fmt(r['frame_cost'])}"
    st = r["stalls_during_updates"]
    yield (
        f"          event loop stalls (> 50 ms) during the writes: {st.get('count', 0)}, longest "
        f"{st.get('max_ms', 0):.0f} ms, {st.get('total_s', 0):.1f} s in all"
    )
    cpu = r["updates_cpu_s"]
    server_cpu = f", server {cpu['server']:.1f} s" if cpu.get("server") is not None else " (server included)"
    yield f"CPU       during the writes: dashboard {cpu['dashboard']:.1f} s{server_cpu}"
    yield (
        f"memory    dashboard process RSS: {r['rss_before_mib']:.0f} MiB before the app, "
        f"{r['rss_loaded_mib']:.0f} MiB with {r['pods']} rows, {r['rss_end_mib']:.0f} MiB at the end "
        f"(max {r['maxrss_mib']:.0f} MiB)"
    )
    chk = r["check"]
    if chk["equal"]:
        yield f"table == API list: yes ({chk['rows']} rows)"
    else:
        yield f"table == API list: NO (dashboard {chk['rows']} rows, API {chk['api_rows']})"
        for d in chk["diffs"]:
            yield f"          {d}"


def print_profile(path: str, what: str) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(path, stream=buf)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(r"tui|textual|controlplane", 40)
    print(f"=== profile of the dashboard {what} ({path}) ===\n{buf.getvalue()}", file=sys.stderr)


def _size(text: str) -> tuple[int, int]:
    cols, _, rows = text.partition("x")
    try:
        size = (int(cols), int(rows))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS, got {text!r}") from None
    if min(size) < 10:
        raise argparse.ArgumentTypeError(f"too small: {text!r}")
    return size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_dashboard.py", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000, help="pods in the table (default 10000)")
    p.add_argument("--rate", type=float, default=50.0, help="status patches per second (default 50)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to write (default 30)")
    p.add_argument("--quick", action="store_true", help="1000 pods, 10 s (other flags still apply)")
    p.add_argument("--all-namespaces", action="store_true", help="show all namespaces, not the pods' own")
    p.add_argument(
        "--size",
        type=_size,
        default=SIZE,
        help=f"terminal COLSxROWS (default {SIZE[0]}x{SIZE[1]}; from 150 columns the -o wide columns show)",
    )
    p.add_argument("--in-process", action="store_true", help="run the control plane in this process")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the dashboard while loading (FILE.load) and during the writes (FILE)",
    )
    p.add_argument(
        "--experiment",
        default="none",
        help="comma-separated sketches of fixes, patched into this process only (not the product): "
        "no-header-pods = no pod Informer for the header (a second watch of every pod)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    p.add_argument("--writer-child", metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if unknown := set(args.experiment.split(",")) - {"none", "no-header-pods"}:
        p.error(f"unknown --experiment {', '.join(sorted(unknown))}")
    if args.quick:
        given = {a.split("=", 1)[0] for a in (argv if argv is not None else sys.argv[1:])}
        if "--pods" not in given:
            args.pods = 1000
        if "--seconds" not in given:
            args.seconds = 10.0
    if args.pods < 1 or args.rate <= 0 or args.seconds <= 0:
        p.error("--pods, --rate and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if args.writer_child:
        lines, elapsed = asyncio.run(writer_main(args.url, args.pods, args.rate, args.seconds))
        Path(args.writer_child).write_text("\n".join(lines) + "\n")
        print(json.dumps({"writes": len(lines), "elapsed_s": elapsed}), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="peapod-bench-dash-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    for line in report(result):
        print(line)
    if args.json:
        print(json.dumps(result, indent=2))
    if args.profile:
        print_profile(f"{args.profile}.load", "while loading")
        print_profile(args.profile, "during the writes")
    ok = result["check"]["equal"] and not result["unseen"] and result["caught_up"]
    lag = result["lag"]
    p99 = lag.get("p99_ms")
    emit(
        "dashboard",
        [
            Figure(
                f"write acknowledged -> row updated p99, {result['pods']:,} pods",
                p99,
                "ms",
                goal=f"<= {GOAL_P99_MS:g} ms",
                met=p99 is not None and p99 <= GOAL_P99_MS,
            ),
            Figure(f"load of {result['pods']:,} pods into the table", result["load"]["rows_s"], "s"),
            Figure("dashboard RSS, loaded", round(result["rss_loaded_mib"]), "MiB"),
            Figure("table == API list", 1.0 if result["check"]["equal"] else 0.0, "bool"),
        ],
        cmd=result["command"],
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
