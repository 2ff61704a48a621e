"""Memory benchmark: what the control plane, one real agent and one hollow node cost in RSS.

1. **Control plane.** ``pea controlplane`` (scheduler and controllers on, as a user runs it) in a child
   process on a temporary data dir. Its RSS is read idle and empty; then the benchmark creates ``--nodes``
   Node objects (Ready, with capacity, and their Leases) and ``--pods`` pods spread over ``--namespaces``
   namespaces (a Service selecting them in each), made already bound round-robin to the nodes (the
   scheduler's binding rate is another benchmark's figure, and at its present speed 10,000 pods would not
   fit this one's budget; the scheduler's cache holds bound pods all the same). Once the pods are in and
   the RSS has settled the benchmark reads RSS, peak RSS (``VmHWM``) and USS
   (private memory, from ``smaps_rollup``). The nodes are plain API objects, not hollow agents, so the
   figure is the control plane's alone and the run fits its time budget; ``--node-monitor-grace-period``
   is raised so the node-lifecycle controller does not mark the silent nodes unreachable mid-run (the
   agents' heartbeats are not part of this figure). Pods stay Pending-bound: nothing runs them.
2. **One real agent.** ``pea agent --runtime podman --network none --no-proxy`` against the same control
   plane, on a throwaway Podman service (its own root and runroot, started by this benchmark so its RSS is
   reported apart), idle and then with 20 pods running ``sleep``. Needs root and Podman; skipped otherwise.
3. **One hollow node.** ``pea hollow-nodes --count N`` for a few N against the same (loaded) control plane:
   RSS per process, and the slope between the smallest and the largest N in KiB per node.

Anchors are quoted, not run here: k3s server ~1.6 GB and k3s agent ~275 MB (k3s docs / resource profiling).

Run ``.venv/bin/python bench/bench_memory.py`` (about 2-3 min) or ``--quick`` (100 nodes, 1,000 pods,
no real agent, ~15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from bench_api import machine_info
from procstat import cpu_seconds
from summary import Figure, command, emit

from controlplane.api.coordination import Lease
from controlplane.api.core import Namespace, Node, Pod, Service
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, ClientError

PEA = str(Path(sys.executable).with_name("pea"))
K3S_SERVER_MB = 1600
K3S_AGENT_MB = 275
ANCHOR_SOURCE = "k3s docs / resource profiling"
GOAL_MB = 300
START_TIMEOUT = 60.0
#: 1,000 hollow nodes register 1,000 Nodes and Leases and list every pod before they report ready.
HOLLOW_START_TIMEOUT = 180.0
NODE_PREFIX = "mem-node-"
#: Room for a /24 per node for 1,000 bench nodes and the hollow ones (the default /16 has 256).
CLUSTER_CIDR = "10.128.0.0/10"
AGENT_NODE = "mem-agent"


# --- reading memory ---------------------------------------------------------------------------------


def memory_of(pid: int) -> dict[str, float]:
    """RSS, peak RSS (VmHWM) and USS of one process, in MiB (USS: private pages, from smaps_rollup)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) / 1024
    with contextlib.suppress(OSError):
        private = 0
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    private += int(line.split()[1])
        out["uss"] = private / 1024
    return out


async def settled_memory(pid: int, *, window: float = 3.0, limit: float = 20.0) -> dict[str, float]:
    """Sample every 0.5 s until RSS has moved less than 1% over ``window`` seconds (or ``limit`` passed)."""
    samples: list[tuple[float, float]] = []
    began = time.monotonic()
    while True:
        now = time.monotonic()
        samples.append((now, memory_of(pid)["rss"]))
        recent = [rss for at, rss in samples if at >= now - window]
        if now - began >= window and (max(recent) - min(recent)) <= 0.01 * max(recent):
            break
        if now - began >= limit:
            break
        await asyncio.sleep(0.5)
    return memory_of(pid)


def conmon_memory(storage: Path) -> tuple[int, float]:
    """How many conmon processes (one per container, each watching it) serve this Podman storage, and
    their RSS together in MiB: they are not the service's children, so found by their command line."""
    count, rss = 0, 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if not argv[0].endswith(b"conmon") or str(storage).encode() not in b" ".join(argv):
                continue
            rss += memory_of(int(entry))["rss"]
            count += 1
        except (OSError, KeyError):
            continue  # gone meanwhile
    return count, rss


# --- child processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """One ``pea`` daemon in its own process group, its output in a log file; stopped with SIGTERM."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, ready_text: str, timeout: float = START_TIMEOUT) -> None:
        out = self.log.open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while ready_text not in self.log.read_text(errors="replace"):
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {timeout:g} s: {self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:].strip()

    async def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


# --- objects ------------------------------------------------------------------------------------------


def node(i: int) -> Node:
    name = f"{NODE_PREFIX}{i}"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    capacity = {"cpu": "4", "memory": "16Gi", "pods": "110"}
    return msgspec.convert(
        {
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "peapod agent is posting ready status",
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": f"127.2.{i // 250}.{i % 250 + 1}"},
                    {"type": "Hostname", "address": name},
                ],
                "nodeInfo": {
                    "kernelVersion": "6.1.0",
                    "osImage": "peapod bench node",
                    "containerRuntimeVersion": "none",
                    "kubeletVersion": "v1.30.0",
                    "kubeProxyVersion": "v1.30.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            },
        },
        Node,
    )


def lease(i: int) -> Lease:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    name = f"{NODE_PREFIX}{i}"
    return msgspec.convert(
        {
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 40,
                "renewTime": now,
                "acquireTime": now,
            },
        },
        Lease,
    )


TEMPLATE_LABELS = {"app": "web", "tier": "frontend"}


POD_SPEC: dict[str, Any] = {
    "terminationGracePeriodSeconds": 0,
    "containers": [
        {
            "name": "web",
            "image": "docker.io/library/nginx:1.27",
            "ports": [{"name": "http", "containerPort": 80}],
            "env": [{"name": "MODE", "value": "bench"}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        }
    ],
}


def pod(namespace: str, i: int, node_name: str) -> Pod:
    """A pod as the scheduler would leave it: labelled (a Service selects it) and bound."""
    return msgspec.convert(
        {
            "metadata": {
                "name": f"web-{i:05d}",
                "namespace": namespace,
                "labels": TEMPLATE_LABELS,
            },
            "spec": {**POD_SPEC, "nodeName": node_name},
        },
        Pod,
    )


def service(namespace: str) -> Service:
    return msgspec.convert(
        {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 80}]},
        },
        Service,
    )


async def create_all(clients: list[Client], objects: list[Any]) -> None:
    """Create the objects, one worker per client (one shared client's connection pool halves the rate);
    refusals are not errors here: the caller counts what exists afterwards."""
    it = iter(objects)

    async def worker(client: Client) -> None:
        for obj in it:
            with contextlib.suppress(ClientError):
                await client.create(obj)

    await asyncio.gather(*(worker(c) for c in clients))


# --- 1. the control plane ---------------------------------------------------------------------------


async def count_bound(client: Client, namespaces: list[str]) -> tuple[int, int]:
    total = bound = 0
    for ns in namespaces:
        for pod in (await client.list_all(Pod, ns)).items:
            total += 1
            bound += bool(pod.spec.node_name)
    return total, bound


async def load_control_plane(
    client: Client, clients: list[Client], args: argparse.Namespace, out: dict[str, Any]
) -> list[str]:
    began = time.monotonic()
    await create_all(clients, [node(i) for i in range(args.nodes)])
    await create_all(clients, [lease(i) for i in range(args.nodes)])
    out["nodes_s"] = round(time.monotonic() - began, 1)
    out["nodes_made"] = len((await client.list_all(Node)).items)
    namespaces = [f"mem-{i}" for i in range(args.namespaces)]
    per_ns = [
        args.pods // args.namespaces + (i < args.pods % args.namespaces) for i in range(args.namespaces)
    ]
    began = time.monotonic()
    pods: list[Pod] = []
    index = 0
    for ns, count in zip(namespaces, per_ns, strict=True):
        with contextlib.suppress(ClientError):
            await client.create(Namespace(metadata=ObjectMeta(name=ns)))
        with contextlib.suppress(ClientError):
            await client.create(service(ns))
        for i in range(count):
            target = f"{NODE_PREFIX}{index % args.nodes}"
            pods.append(pod(ns, i, target))
            index += 1
    await create_all(clients, pods)
    out["pods_create_s"] = round(time.monotonic() - began, 1)
    deadline = time.monotonic() + args.settle_timeout
    total = bound = 0
    while time.monotonic() < deadline:
        total, bound = await count_bound(client, namespaces)
        if bound >= args.pods:
            break
        await asyncio.sleep(1.0)
    out["pods_total"], out["pods_bound"] = total, bound
    out["pods_s"] = round(time.monotonic() - began, 1)
    return namespaces


# --- 2. one real agent ----------------------------------------------------------------------------------


def agent_missing_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed"
    if os.geteuid() != 0:
        return "needs root (rootful Podman)"
    return None


async def remove_everything(socket_path: Path) -> None:
    """Force-remove every pod and container of the throwaway Podman service (all of them are ours)."""
    import httpx

    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://podman/v4.0.0/libpod", timeout=30
    ) as api:
        for pod in (await api.get("/pods/json")).json() or []:
            await api.delete(f"/pods/{pod['Id']}", params={"force": "true"})
        for ctr in (await api.get("/containers/json", params={"all": "true"})).json() or []:
            await api.delete(f"/containers/{ctr['Id']}", params={"force": "true"})


async def measure_agent(pea: str, url: str, tmp: Path, out: dict[str, Any], pods: int = 20) -> None:
    """``pea agent`` on a Podman service of its own storage: idle, then with ``pods`` pods Running."""
    from agent.runtime.images import BUSYBOX_IMAGE, build_busybox_image
    from agent.runtime.podman_service import PodmanService

    base = Path(tempfile.mkdtemp(prefix="peapod-mem-podman-"))  # short: unix socket paths are limited
    service = PodmanService(base / "data", root=base / "root", runroot=base / "runroot")
    agent = Child(
        "pea agent",
        [
            pea, "agent", "--server", url, "--node-name", AGENT_NODE, "--runtime", "podman",
            "--podman-socket", str(service.socket_path), "--network", "none", "--no-proxy",
            "--data-dir", str(tmp / "agent"), "--resolv-conf", "",
        ],
        tmp / "agent.log",
    )  # fmt: skip
    try:
        await service.start()
        await build_busybox_image(service.socket_path)
        await agent.start("running; Ctrl-C stops it")
        podman_pid = service.pid
        if podman_pid is None:
            raise RuntimeError("the Podman service is not running")
        await asyncio.sleep(3)
        out["agent_idle"] = await settled_memory(agent.pid)
        out["podman_idle"] = memory_of(podman_pid)
        async with Client(url) as client:
            with contextlib.suppress(ClientError):
                await client.create(Namespace(metadata=ObjectMeta(name="mem-agent")))
            for i in range(pods):
                pod = msgspec.convert(
                    {
                        "metadata": {"name": f"sleep-{i}", "namespace": "mem-agent"},
                        "spec": {
                            "nodeName": AGENT_NODE,
                            "terminationGracePeriodSeconds": 0,
                            "containers": [
                                {"name": "c", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"]}
                            ],
                        },
                    },
                    Pod,
                )
                await client.create(pod)
            deadline = time.monotonic() + 90
            running = 0
            while time.monotonic() < deadline:
                items = (await client.list(Pod, "mem-agent")).items
                running = sum(p.status.phase == "Running" for p in items)
                if running >= pods:
                    break
                await asyncio.sleep(1)
            out["agent_pods_running"] = running
            out["agent_busy"] = await settled_memory(agent.pid)
            out["podman_busy"] = memory_of(podman_pid)
            out["conmon_count"], out["conmon_rss"] = conmon_memory(base)
            await client.delete_collection(Pod, "mem-agent")
            for _ in range(60):  # the agent stops the containers; bounded
                if not (await client.list(Pod, "mem-agent")).items:
                    break
                await asyncio.sleep(1)
    finally:
        await agent.stop()
        try:
            if service.running:
                with contextlib.suppress(Exception):
                    await remove_everything(service.socket_path)
        finally:
            await service.stop()
            with contextlib.suppress(Exception):
                await service.unmount_storage()
            shutil.rmtree(base, ignore_errors=True)


# --- 3. hollow nodes ---------------------------------------------------------------------------------------


async def measure_hollow(
    pea: str, url: str, tmp: Path, counts: list[int], window: float, out: dict[str, Any]
) -> dict[int, dict[str, float]]:
    """All the counts at once, one process each (their memory is their own; it saves the wall time).
    A count whose process does not come up in time is reported in ``out["hollow_error"]``; the others
    are measured all the same."""
    children = {
        n: Child(
            f"pea hollow-nodes --count {n}",
            [pea, "hollow-nodes", "--server", url, "--count", str(n), "--prefix", f"hollow-{n}-"],
            tmp / f"hollow-{n}.log",
        )
        for n in counts
    }
    try:
        started = await asyncio.gather(
            *(c.start("hollow nodes running", timeout=HOLLOW_START_TIMEOUT) for c in children.values()),
            return_exceptions=True,
        )
        failed = {n: exc for n, exc in zip(counts, started, strict=True) if isinstance(exc, BaseException)}
        if failed:
            out["hollow_error"] = "; ".join(f"--count {n}: {exc}" for n, exc in failed.items())
        ready = [n for n in counts if n not in failed]
        found = await asyncio.gather(
            *(settled_memory(children[n].pid, window=window, limit=5 * window) for n in ready)
        )
    finally:
        await asyncio.gather(*(c.stop() for c in children.values()))
    return dict(zip(ready, found, strict=True))


# --- the run ---------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command(),
        "machine": machine_info(tmp),
        "nodes": args.nodes,
        "pods": args.pods,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cp = Child(
        "pea controlplane",
        [
            args.pea, "controlplane", "--data-dir", str(tmp / "cp"), "--listen", f"127.0.0.1:{port}",
            "--node-monitor-grace-period", "3600", "--cluster-cidr", CLUSTER_CIDR,
        ],
        tmp / "controlplane.log",
    )  # fmt: skip
    began = time.monotonic()
    await cp.start("control plane listening on")
    try:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(Client(url, timeout=60))
            clients = [await stack.enter_async_context(Client(url, timeout=60)) for _ in range(args.clients)]
            out["cp_idle"] = await settled_memory(cp.pid, window=args.window, limit=5 * args.window)
            cpu0, own0 = cpu_seconds(cp.pid), time.process_time()
            namespaces = await load_control_plane(client, clients, args, out)
            out["cp_loaded"] = await settled_memory(cp.pid, window=2 * args.window, limit=10 * args.window)
            out["cp_cpu_s"] = round(cpu_seconds(cp.pid) - cpu0, 1)
            out["bench_cpu_s"] = round(time.process_time() - own0, 1)
            out["namespaces"] = len(namespaces)
        out["load_phase_s"] = round(time.monotonic() - began, 1)
        # The agent and the hollow nodes run side by side: each figure is one process's own memory.
        await asyncio.gather(agent_phase(args, url, tmp, out), hollow_phase(args, url, tmp, out))
    finally:
        await cp.stop()
    out["elapsed_s"] = round(time.monotonic() - began, 1)
    return out


async def agent_phase(args: argparse.Namespace, url: str, tmp: Path, out: dict[str, Any]) -> None:
    began = time.monotonic()
    reason = agent_missing_reason() if args.agent else "not asked for (--quick or --no-agent)"
    if reason is None:
        try:
            await measure_agent(args.pea, url, tmp, out)
        except Exception as exc:  # a broken Podman must not lose the other figures
            reason = f"the agent run failed: {exc}"
    out["agent_skipped"] = reason
    out["agent_phase_s"] = round(time.monotonic() - began, 1)


async def hollow_phase(args: argparse.Namespace, url: str, tmp: Path, out: dict[str, Any]) -> None:
    began = time.monotonic()
    try:
        out["hollow"] = await measure_hollow(args.pea, url, tmp, args.hollow, args.window, out)
    except Exception as exc:  # report what was measured before
        out["hollow"] = {}
        out["hollow_error"] = f"{out.get('hollow_error', '')} {exc}".strip()
    out["hollow_phase_s"] = round(time.monotonic() - began, 1)


def hollow_slope_kib(hollow: dict[int, dict[str, float]]) -> float | None:
    if len(hollow) < 2:
        return None
    lo, hi = min(hollow), max(hollow)
    return round((hollow[hi]["rss"] - hollow[lo]["rss"]) * 1024 / (hi - lo), 1)


def fmt(m: dict[str, float] | None) -> str:
    if not m:
        return "-"
    return f"RSS {m['rss']:.0f} MiB (peak {m['peak']:.0f}, USS {m.get('uss', 0):.0f})"


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"peapod memory benchmark, {r['date']}",
        f"machine   nproc {m['nproc']}, {m['cpu_model']}, {m['python']}, {m['platform']}; "
        f"load average at start {m['loadavg_at_start']}",
        f"command   {r['command']}",
        "",
        f"control plane (pea controlplane, scheduler + controllers), idle and empty: {fmt(r['cp_idle'])}",
        f"  load: {r['nodes_made']}/{r['nodes']} Node objects + Leases in {r['nodes_s']} s; "
        f"{r['pods']} pods via "
        f"{r['namespaces']} namespaces (a Service selecting them in each), created bound in "
        f"{r['pods_create_s']} s ({r['pods_bound']}/{r['pods_total']} seen bound after {r['pods_s']} s); "
        f"CPU: control plane {r['cp_cpu_s']} s, this benchmark's clients {r['bench_cpu_s']} s",
        f"  at {r['nodes']} nodes / {r['pods']} pods: {fmt(r['cp_loaded'])}   "
        f"goal <= {GOAL_MB} MB; anchor k3s server ~{K3S_SERVER_MB} MB ({ANCHOR_SOURCE})",
    ]
    if r.get("agent_skipped"):
        lines.append(f"agent (pea agent, Podman): skipped, {r['agent_skipped']}")
    else:
        lines += [
            f"agent (pea agent, Podman, --network none --no-proxy), idle: {fmt(r['agent_idle'])}; "
            f"podman service {fmt(r['podman_idle'])}",
            f"  with {r['agent_pods_running']} pods Running: {fmt(r['agent_busy'])}; podman service "
            f"{fmt(r['podman_busy'])}; {r['conmon_count']} conmon processes, "
            f"RSS {r['conmon_rss']:.0f} MiB together",
            f"  anchor k3s agent ~{K3S_AGENT_MB} MB ({ANCHOR_SOURCE})",
        ]
    for n, mem in sorted(r["hollow"].items()):
        lines.append(f"hollow nodes, one process, --count {n}: {fmt(mem)}")
    slope = hollow_slope_kib(r["hollow"])
    if slope is not None:
        lines.append(f"  one hollow node costs {slope} KiB (RSS slope)")
    if r.get("hollow_error"):
        lines.append(f"hollow nodes: failed: {r['hollow_error']}")
    lines.append(
        f"elapsed {r['elapsed_s']} s (control plane start and load {r['load_phase_s']} s; then side by side: "
        f"agent {r['agent_phase_s']} s, hollow nodes {r['hollow_phase_s']} s)"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_memory.py", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1000, help="Node objects (default 1000)")
    p.add_argument("--pods", type=int, default=10_000, help="pods (default 10000)")
    p.add_argument("--namespaces", type=int, default=10, help="namespaces, a Service each (default 10)")
    p.add_argument("--settle-timeout", type=float, default=120.0, help="seconds to wait for all pods bound")
    p.add_argument(
        "--window", type=float, default=3.0, help="RSS counts as settled once steady this long (s)"
    )
    p.add_argument("--no-agent", dest="agent", action="store_false", help="skip the real agent")
    p.add_argument(
        "--hollow",
        default="1,100,1000",
        help="hollow-node counts to measure, comma-separated (default 1,100,1000)",
    )
    p.add_argument("--clients", type=int, default=12, help="clients creating the objects (default 12)")
    p.add_argument("--pea", default=PEA, help="the pea command to run (default: this venv's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    p.add_argument("--quick", action="store_true", help="100 nodes, 1,000 pods, no agent, hollow 1,100")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.pods, args.agent, args.hollow = 100, 1000, False, "1,100"
        args.settle_timeout, args.window = 30.0, 1.0
    try:
        args.hollow = sorted({int(x) for x in args.hollow.split(",") if x.strip()})
    except ValueError:
        p.error(f"--hollow: want counts like 1,100,1000, got {args.hollow!r}")
    if (
        any(n < 1 for n in args.hollow)
        or args.nodes < 1
        or args.pods < 0
        or args.namespaces < 1
        or args.clients < 1
    ):
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="peapod-bench-mem-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(report(result))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    scale = f"{args.nodes} nodes / {args.pods} pods"
    loaded = result["cp_loaded"]["rss"]
    figures = [
        Figure(
            f"control plane RSS at {scale}",
            round(loaded, 1),
            "MiB",
            goal=f"<= {GOAL_MB} MB" if args.nodes >= 1000 else None,
            met=(loaded * 1.048576 <= GOAL_MB) if args.nodes >= 1000 else None,
            anchor=f"k3s server ~{K3S_SERVER_MB} MB ({ANCHOR_SOURCE})",
        )
    ]
    if not result.get("agent_skipped"):
        anchor = f"k3s agent ~{K3S_AGENT_MB} MB ({ANCHOR_SOURCE})"
        figures += [
            Figure("agent RSS, idle", round(result["agent_idle"]["rss"], 1), "MiB", anchor=anchor),
            Figure("agent RSS, 20 pods", round(result["agent_busy"]["rss"], 1), "MiB", anchor=anchor),
        ]
    figures.append(Figure("hollow node cost (RSS slope)", hollow_slope_kib(result["hollow"]), "KiB"))
    emit("memory", figures)
    return 0 if result["pods_bound"] >= args.pods and result["nodes_made"] >= args.nodes else 1


if __name__ == "__main__":
    sys.exit(main())
