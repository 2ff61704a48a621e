"""Scheduler throughput: the scheduling algorithm alone, and end to end on hollow nodes.

Two measurements, then kube-scheduler's published figure beside them:

1. **Algorithm alone** (this process, no API): ``--algo-nodes`` nodes shaped like hollow nodes (4 CPU,
   16 GiB, 110 pods, labels, Ready) in the scheduler's :class:`~controlplane.scheduler.cache.Cache`,
   and ``--algo-pods`` pending pods decided one after the other through the scheduler's own decision
   path plus its assume bookkeeping (``PodInfo.of``, ``Cache.schedule``, ``Cache.assume``): pods/s and
   per-pod p50/p99. Run twice: with kube-scheduler's adaptive ``percentageOfNodesToScore`` (what the
   scheduler uses) and with every node examined.
2. **End to end**: ``pea controlplane`` (scheduler and controllers on, fresh temp data dir) in one child
   process, ``pea hollow-nodes --count N`` in another; once N nodes are Ready, ``--pods`` bare pods are
   created by ``--clients`` concurrent clients as fast as the API takes them (the closest shape to
   scheduler_perf's SchedulingBasic). A pod watch opened before the first create notes when each pod is
   first seen created, bound (``spec.nodeName``) and Running. Figures: creates/s, bound pods/s (first to
   last bind, and the steady middle 10%..90%), created-to-bound lag per pod, time from the first
   create to all bound and to all Running, and the CPU seconds of the control plane, the hollow nodes
   and this process. Creating stops and waiting ends ``--timeout`` seconds after the first create, so
   a slow machine reports what it reached instead of overrunning the suite's budget.
   ``--profile FILE`` samples the control plane with py-spy meanwhile and prints where its time went.
3. The anchor, quoted (it cannot run here): kube-scheduler's scheduler_perf threshold for
   ``SchedulingBasic/5000Nodes_10000Pods``, >= 680 pods/s (Go, against its own API server).

``--quick``: 100 hollow nodes, 200 pods, algorithm 500 pods on 1,000 nodes (about 15 s). Full: 1,000
hollow nodes, 10,000 pods, algorithm 10,000 pods (at most about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import procstat
from bench_api import machine_info, make_pod, percentile
from summary import Figure, command, emit

from controlplane.api.core import (
    Namespace,
    Node,
    NodeCondition,
    NodeSpec,
    NodeStatus,
    Pod,
)
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, ClientError, Gone
from controlplane.scheduler.cache import Cache
from controlplane.scheduler.plugins import PodInfo

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-sched"
GOAL_PODS_S = 500.0
ANCHOR = (
    "kube-scheduler scheduler_perf SchedulingBasic/5000Nodes_10000Pods threshold >= 680 pods/s "
    "(Go, quoted from kubernetes test/integration/scheduler_perf, not run here)"
)
SHORT_PATH = re.compile(r" \((?:.*/)?([^()/]*)\)$")  # py-spy frames: "fn (path/file.py:line)" -> file
URL_RE = re.compile(r"listening on (https?://\S+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


# --- 1. the algorithm alone -----------------------------------------------------------------------


def hollow_like_node(i: int) -> Node:
    """A node as ``pea hollow-nodes`` registers one: 4 CPU, 16 GiB, 110 pods, a few labels, Ready."""
    name = f"hollow-node-{i}"
    return Node(
        metadata=ObjectMeta(
            name=name,
            labels={
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "peapod.io/hollow": "true",
            },
        ),
        spec=NodeSpec(),
        status=NodeStatus(
            capacity={"cpu": "4", "memory": "16Gi", "pods": "110"},
            allocatable={"cpu": "4", "memory": "16Gi", "pods": "110"},
            conditions=[NodeCondition(type="Ready", status="True", reason="KubeletReady")],
        ),
    )


def bench_pod(i: int) -> Pod:
    pod = make_pod(f"bench-{i:06d}", NAMESPACE)
    pod.metadata.uid = f"uid-{i}"
    return pod


def algorithm(nodes: int, pods: int, percentage: int) -> dict[str, Any]:
    """Decide ``pods`` pending pods against ``nodes`` nodes in the scheduler's cache, assuming each."""
    cache = Cache(percentage_of_nodes_to_score=percentage)
    for i in range(nodes):
        cache.set_node(hollow_like_node(i))
    todo = [bench_pod(i) for i in range(pods)]
    per_pod: list[float] = []
    failed = 0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for pod in todo:
        t0 = time.perf_counter()
        info = PodInfo.of(pod)
        decision = cache.schedule(info)
        if decision.node is not None:
            cache.assume(decision.node, info)
        else:
            failed += 1
        per_pod.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    per_pod.sort()
    counts = sorted(n.pod_count for n in cache.nodes())
    return {
        "nodes": nodes,
        "pods": pods,
        "percentage": f"{percentage}%" if percentage else f"adaptive ({_adaptive(nodes)})",
        "unschedulable": failed,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "pods_per_s": round(pods / wall, 1) if wall > 0 else None,
        "pods_per_cpu_s": round(pods / cpu, 1) if cpu > 0 else None,
        "p50_us": round(percentile(per_pod, 50) * 1e6, 1),
        "p99_us": round(percentile(per_pod, 99) * 1e6, 1),
        "pods_per_node_min_max": [counts[0], counts[-1]] if counts else None,
    }


def _adaptive(nodes: int) -> str:
    from controlplane.scheduler.plugins import nodes_to_find

    return f"{nodes_to_find(nodes)} of {nodes} nodes"


# --- 2. end to end --------------------------------------------------------------------------------


class Child:
    """A ``pea`` child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    async def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def wait_output(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait until the child's output matches ``pattern``; fails if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.log_path.read_text(errors="replace"))
            if match:
                return match
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; its output ends:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the child so far (Linux /proc)."""
        return None if self.proc is None else procstat.cpu_seconds(self.proc.pid)

    def rss_mb(self) -> float | None:
        rss = None if self.proc is None else procstat.rss_mib(self.proc.pid)
        return None if rss is None else round(rss, 1)

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()


@dataclass
class Milestones:
    """Seconds (from the first create) at which each pod was first seen created, bound and Running."""

    t0: float = 0.0
    want: int = 0
    created: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    all_bound: asyncio.Event = field(default_factory=asyncio.Event)
    all_running: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, pod: Pod) -> None:
        name = pod.metadata.name or ""
        at = time.perf_counter() - self.t0
        self.created.setdefault(name, at)
        if pod.spec.node_name and name not in self.bound:
            self.bound[name] = at
            if len(self.bound) >= self.want:
                self.all_bound.set()
        if pod.status.phase == "Running" and name not in self.running:
            self.running[name] = at
            if len(self.running) >= self.want:
                self.all_running.set()


async def watch_pods(client: Client, rv: str, marks: Milestones) -> None:
    while True:
        try:
            async for event in client.watch(Pod, NAMESPACE, resource_version=rv):
                rv = event.resource_version or rv
                if event.type in ("ADDED", "MODIFIED"):
                    marks.note(event.object)
        except Gone:
            page = await client.list(Pod, NAMESPACE)
            for pod in page.items:
                marks.note(pod)
            rv = page.resource_version
        except ClientError:  # a dropped stream: resume from where we were
            await asyncio.sleep(0.5)


async def wait_nodes_ready(client: Client, count: int, timeout: float, hollow: Child) -> tuple[float, int]:
    """Poll until ``count`` nodes are Ready: the seconds it took and how many are Ready. A loaded machine
    may not get them all up in time; 90% will do (the report says how many there were)."""
    start = time.perf_counter()
    deadline = start + timeout
    ready = 0
    while time.perf_counter() < deadline:
        if hollow.proc is not None and hollow.proc.returncode is not None:
            raise RuntimeError(f"pea hollow-nodes exited ({hollow.proc.returncode}): {hollow.tail(3)}")
        with contextlib.suppress(ClientError):
            nodes = (await client.list(Node)).items
            ready = sum(
                1
                for n in nodes
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
            )
            if ready >= count:
                return time.perf_counter() - start, ready
        await asyncio.sleep(1.0)
    if ready >= 0.9 * count:
        return time.perf_counter() - start, ready
    raise RuntimeError(f"only {ready} of {count} nodes Ready after {timeout:.0f} s")


async def create_pods(url: str, pods: int, clients: int, deadline: float) -> dict[str, Any]:
    """Create ``pods`` bare pods with ``clients`` concurrent clients, each with its own connection;
    the workers stop at ``deadline`` (perf_counter) if the API is slower than that."""
    todo = iter(range(pods))  # shared: next() never awaits, so no lock
    errors: list[str] = []
    ok = 0

    async def worker(client: Client) -> None:
        nonlocal ok
        for i in todo:
            if time.perf_counter() > deadline:
                return
            pod = bench_pod(i)
            pod.metadata.uid = None
            try:
                await client.create(pod)
                ok += 1
            except ClientError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    conns = [Client(url, user_agent="bench-scheduler", verify=False) for _ in range(clients)]
    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    wall = time.perf_counter() - start
    return {
        "ok": ok,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": round(wall, 2),
        "per_s": round(ok / wall, 1) if wall > 0 else None,
    }


def lag_ms(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Per pod, from first seen in ``before`` to first seen in ``after`` (both on our watch): p50/p99 ms."""
    lags = sorted(after[k] - before[k] for k in after if k in before)
    if not lags:
        return {"p50": None, "p99": None}
    return {"p50": round(percentile(lags, 50) * 1000, 1), "p99": round(percentile(lags, 99) * 1000, 1)}


async def report_progress(marks: Milestones, every: float = 10.0) -> None:
    """A line on stderr every ``every`` seconds, so a slow run shows where it is."""
    while True:
        await asyncio.sleep(every)
        print(
            f"  {time.perf_counter() - marks.t0:5.0f} s: {len(marks.created)} created, "
            f"{len(marks.bound)} bound, {len(marks.running)} Running of {marks.want} "
            f"(load {os.getloadavg()[0]:.1f})",
            file=sys.stderr,
            flush=True,
        )


def rate(times: dict[str, float], want: int) -> dict[str, Any]:
    """First/last time, pods/s from first to last, and pods/s over the middle 10%..90%."""
    ordered = sorted(times.values())
    n = len(ordered)
    out: dict[str, Any] = {"count": n, "of": want}
    if n == 0:
        return out
    first, last = ordered[0], ordered[-1]
    out["first_s"] = round(first, 2)
    out["last_s"] = round(last, 2)
    out["per_s"] = round((n - 1) / (last - first), 1) if n > 1 and last > first else None
    lo, hi = int(n * 0.1), int(n * 0.9) - 1
    if hi > lo and ordered[hi] > ordered[lo]:
        out["steady_per_s"] = round((hi - lo) / (ordered[hi] - ordered[lo]), 1)
    return out


async def start_profile(pid: int, path: Path, seconds: float) -> asyncio.subprocess.Process | None:
    """py-spy (installed in the venv) sampling ``pid`` for ``seconds``, collapsed stacks into ``path``."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("--profile: py-spy is not installed in this venv; no profile", file=sys.stderr)
        return None
    argv = [str(spy), "record", "--nonblocking", "-f", "raw", "-r", "50", "-d", str(max(1, int(seconds)))]
    return await asyncio.create_subprocess_exec(
        *argv,
        "-o",
        str(path),
        "--pid",
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def profile_summary(path: Path, top: int = 25) -> list[str]:
    """From py-spy's collapsed stacks: the functions most often on the stack (inclusive share) and most
    often on top (self share), so the report says where the control plane's time went."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [SHORT_PATH.sub(r" (\1)", f) for f in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
            own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples; inclusive (on the stack):"]
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {frame}")
    lines.append("self (on top of the stack):")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {frame}")
    return lines


def cpu_now(cp: Child, hollow: Child) -> dict[str, float | None]:
    return {"controlplane": cp.cpu_seconds(), "hollow": hollow.cpu_seconds(), "bench": time.process_time()}


def cpu_delta(before: float | None, after: float | None) -> float | None:
    return round(after - before, 1) if before is not None and after is not None else None


def pea(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("pea")), *args]


async def end_to_end(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cp = Child(
        "pea controlplane",
        # A /12 cluster CIDR has room for 4,096 nodes' /24 pod ranges (the default fits 256).
        pea(
            "controlplane",
            "--data-dir",
            str(workdir / "cp"),
            "--listen",
            "127.0.0.1:0",
            "--cluster-cidr",
            "10.0.0.0/12",
        ),
        workdir / "controlplane.log",
    )
    hollow: Child | None = None
    out: dict[str, Any] = {"nodes": args.nodes, "pods": args.pods, "clients": args.clients}
    await cp.start()
    try:
        url = (await cp.wait_output(URL_RE, START_TIMEOUT)).group(1).rstrip(".,")
        out["url"] = url
        hollow = Child(
            "pea hollow-nodes",
            pea("-s", url, "hollow-nodes", "--count", str(args.nodes)),
            workdir / "hollow.log",
        )
        await hollow.start()
        async with Client(url, user_agent="bench-scheduler", verify=False) as client:
            ready_after, out["nodes_ready"] = await wait_nodes_ready(
                client, args.nodes, args.node_timeout, hollow
            )
            out["nodes_ready_s"] = round(ready_after, 1)
            out["rss_mb_idle"] = {"controlplane": cp.rss_mb(), "hollow": hollow.rss_mb()}
            await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
            page = await client.list(Pod, NAMESPACE)
            marks = Milestones(want=args.pods)
            watcher = asyncio.create_task(watch_pods(client, page.resource_version, marks))
            progress: asyncio.Task[None] | None = None
            spy = None
            try:
                await asyncio.sleep(0.2)  # let the watch open before the first create
                cpu0 = cpu_now(cp, hollow)
                load0 = os.getloadavg()
                if args.profile:
                    assert cp.proc is not None
                    spy = await start_profile(cp.proc.pid, args.profile, args.timeout)
                marks.t0 = time.perf_counter()
                progress = asyncio.create_task(report_progress(marks))
                deadline = marks.t0 + args.timeout
                out["create"] = await create_pods(url, args.pods, args.clients, deadline)
                remaining = args.timeout - (time.perf_counter() - marks.t0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(marks.all_bound.wait(), max(remaining, 0.1))
                out["all_bound_s"] = None
                remaining = args.timeout - (time.perf_counter() - marks.t0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(marks.all_running.wait(), max(remaining, 0.1))
                out["all_running_s"] = (
                    round(max(marks.running.values()), 2) if marks.all_running.is_set() else None
                )
                if marks.all_bound.is_set():
                    out["all_bound_s"] = round(max(marks.bound.values()), 2)
            finally:
                for task in (watcher, progress):
                    if task is None:
                        continue
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if spy is not None:
                    with contextlib.suppress(ProcessLookupError):
                        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(spy.wait(), 15)
                    if spy.returncode is None:
                        spy.kill()
                        await spy.wait()
            cpu1 = cpu_now(cp, hollow)
            out["cpu_s"] = {k: cpu_delta(cpu0[k], cpu1[k]) for k in cpu0}
            out["loadavg"] = [round(x, 2) for x in (*load0, *os.getloadavg())]
            out["rss_mb_end"] = {"controlplane": cp.rss_mb(), "hollow": hollow.rss_mb()}
            out["created"] = rate(marks.created, args.pods)
            out["bound"] = rate(marks.bound, args.pods)
            out["running"] = rate(marks.running, args.pods)
            out["bind_lag_ms"] = lag_ms(marks.created, marks.bound)
            if args.profile:
                out["profile"] = profile_summary(args.profile)
    except BaseException:
        print(f"control plane log tail:\n{cp.tail()}", file=sys.stderr)
        if hollow is not None:
            print(f"hollow nodes log tail:\n{hollow.tail()}", file=sys.stderr)
        raise
    finally:
        if hollow is not None:
            await hollow.stop()
        await cp.stop()
    return out


# --- report ---------------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    lines = ["Scheduler throughput", ""]
    m = r["machine"]
    lines.append(
        f"machine: nproc {m['nproc']}, {m['cpu_model']}, {m['python']}, load at start {m['loadavg_at_start']}"
    )
    lines.append("")
    lines.append("1. algorithm alone (PodInfo.of + Cache.schedule + Cache.assume, no API)")
    for a in r["algorithm"]:
        lines.append(
            f"   {a['pods']} pods on {a['nodes']} nodes, nodes examined: {a['percentage']}: "
            f"{a['pods_per_s']} pods/s ({a['pods_per_cpu_s']} per CPU s), per pod p50 {a['p50_us']} µs, "
            f"p99 {a['p99_us']} µs; pods per node {a['pods_per_node_min_max']}, "
            f"unschedulable {a['unschedulable']}"
        )
    e = r.get("e2e")
    lines.append("")
    if e is None:
        lines.append(f"2. end to end: {r.get('e2e_error') or 'skipped (--no-e2e)'}")
    else:
        c = e["create"]
        lines.append(
            f"2. end to end: {e['pods']} bare pods, {e['clients']} creating clients, "
            f"{e['nodes']} hollow nodes ({e['nodes_ready']} Ready after {e['nodes_ready_s']} s)"
        )
        lines.append(
            f"   created: {c['ok']} ok, {c['errors']} errors in {c['wall_s']} s = {c['per_s']} creates/s"
        )
        if c["first_error"]:
            lines.append(f"   first create error: {c['first_error']}")
        for stage in ("created", "bound", "running"):
            s = e[stage]
            lines.append(
                f"   {stage:8} {s['count']}/{s['of']}: first {s.get('first_s')} s, last {s.get('last_s')} s, "
                f"{s.get('per_s')} pods/s first..last, {s.get('steady_per_s')} pods/s steady (10%..90%)"
            )
        lines.append(
            f"   from the first create: all bound after {e['all_bound_s']} s, "
            f"all Running after {e['all_running_s']} s"
        )
        lag = e["bind_lag_ms"]
        lines.append(f"   created -> bound on the watch, per pod: p50 {lag['p50']} ms, p99 {lag['p99']} ms")
        lines.append(f"   CPU seconds over the run: {e['cpu_s']}; load average before/after {e['loadavg']}")
        lines.append(f"   RSS MB idle {e['rss_mb_idle']}, at the end {e['rss_mb_end']}")
        if e.get("profile"):
            lines.append("   control plane profile (py-spy, from the first create to all Running):")
            lines.extend("   " + line for line in e["profile"])
    lines.append("")
    lines.append(f"3. anchor (quoted): {ANCHOR}")
    lines.append("")
    lines.append(f"reproduce: {r['command']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_scheduler.py", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 nodes, 200 pods (about 15 s)")
    p.add_argument("--nodes", type=int, help="hollow nodes (default 1000, quick 100)")
    p.add_argument("--pods", type=int, help="pods to create end to end (default 10000, quick 200)")
    p.add_argument("--algo-nodes", type=int, help="nodes for the algorithm alone (default 1000)")
    p.add_argument("--algo-pods", type=int, help="pods for the algorithm alone (default 10000, quick 500)")
    p.add_argument("--clients", type=int, default=16, help="concurrent creating clients (default 16)")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds from the first create until creating stops and waiting ends (default 240, quick 8)",
    )
    p.add_argument("--node-timeout", type=float, default=120.0, help="seconds to wait for the nodes Ready")
    p.add_argument("--no-e2e", action="store_true", help="only the algorithm alone")
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    p.add_argument(
        "--profile", type=Path, help="py-spy the control plane during the run: collapsed stacks to this file"
    )
    args = p.parse_args(argv)
    args.nodes = args.nodes or (100 if args.quick else 1000)
    args.pods = args.pods or (200 if args.quick else 10000)
    args.algo_nodes = args.algo_nodes or 1000
    args.algo_pods = args.algo_pods or (500 if args.quick else 10000)
    args.timeout = args.timeout or (8.0 if args.quick else 240.0)
    for name in ("nodes", "pods", "algo_nodes", "algo_pods", "clients"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def summary_figures(r: dict[str, Any]) -> list[Figure]:
    adaptive = r["algorithm"][0]
    figures = [Figure(f"algorithm alone ({adaptive['nodes']} nodes)", adaptive["pods_per_s"], "pods/s")]
    e = r.get("e2e")
    if e is not None:
        bound = e["bound"].get("per_s")
        figures.append(Figure("creates/s end to end", e["create"]["per_s"], "creates/s"))
        figures.append(
            Figure(
                f"bound end to end ({e['nodes']} hollow nodes)",
                bound,
                "pods/s",
                goal=">= 500 pods/s",
                met=bound is not None and bound >= GOAL_PODS_S and e["bound"]["count"] == e["pods"],
            )
        )
        figures.append(Figure("time to all Running", e["all_running_s"], "s"))
    figures.append(Figure("kube-scheduler (quoted)", 680.0, "pods/s", anchor=ANCHOR))
    return figures


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM (the suite's timeout) still stops the children and removes the temp dir
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        workdir = Path(tmp)
        result: dict[str, Any] = {"machine": machine_info(workdir), "command": " ".join(sys.argv)}
        algo_pods = args.algo_pods
        result["algorithm"] = [
            algorithm(args.algo_nodes, algo_pods, 0),
            algorithm(args.algo_nodes, min(algo_pods, 100 if args.quick else 1000), 100),
        ]
        if not args.no_e2e:
            try:
                result["e2e"] = await end_to_end(args, workdir)
            except (RuntimeError, OSError, ClientError) as exc:  # still report the algorithm's figures
                print(f"bench_scheduler: end to end failed: {exc}", file=sys.stderr)
                result["e2e_error"] = str(exc)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = command()
    try:
        result = asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench_scheduler: interrupted", file=sys.stderr)
        return 1
    except (RuntimeError, OSError, ClientError) as exc:
        print(f"bench_scheduler: {exc}", file=sys.stderr)
        return 1
    result["command"] = cmd
    print(report(result))
    if args.json:
        print(json.dumps(result, indent=2))
    emit("scheduler", summary_figures(result), cmd=cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
