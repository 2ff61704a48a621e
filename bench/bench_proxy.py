"""Service proxy benchmark: how long the agent's proxy takes to write its nftables table, to apply an
Endpoints change, and what a ClusterIP costs a connection, in a real kernel (root) inside throwaway
network namespaces.

Run ``.venv/bin/python bench/bench_proxy.py --help`` (as root) for the knobs; ``bench/README.md`` says
what each figure means.

Two namespaces, the benchmark's own: "node" (the proxy's table; the client) and "pod" (a TCP server on
8080), joined by a veth (10.244.7.1 -- 10.244.7.2). No default routes; the node holds a blackhole for the
pod range (its /24 is more specific) and routes the service range onto the veth, so nothing leaves them.

tables
    For each ``--services`` count N: N Services (ClusterIP + NodePort, one port) with 2 endpoints each, as
    API objects in a :class:`ServiceProxy`'s informer caches (no control plane). "compute" is
    ``proxy.compute()`` (API objects -> table), "write" one full ``nftables.apply`` of it. Then
    ``--changes`` times: one service's Endpoints get one address replaced and ``proxy.sync()`` runs --
    recompute, compare, send the difference -- timed from the change to the kernel's ack of the batch
    ("rules in place"; the proxy's debounce, 50 ms by default, is not included).
connect
    With the largest table in place plus one Service whose endpoint is the real server: ``--connects``
    TCP connects from the node to the ClusterIP and as many straight to the pod IP, alternating, each
    timed from ``connect()`` to the completed handshake; p50/p99 and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# bench_api.py sits next to this file (this directory is sys.path[0] when run as a script).
from bench_api import cpu_model
from summary import Figure, emit

from agent.network import nftables
from agent.network.netns import run_in_netns
from agent.proxy import ServiceProxy
from controlplane.api.core import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    Service,
    ServicePort,
    ServiceSpec,
)
from controlplane.api.meta import ObjectMeta

CLUSTER_CIDR, POD_CIDR = "10.244.0.0/16", "10.244.7.0/24"
NODE_IP, POD_IP, TARGET_IP = "10.244.7.1", "10.244.7.2", "10.254.255.250"
CONNECT_TIMEOUT = 2.0  # seconds per connect; a handshake here takes tens of microseconds


def machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "nft": subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip(),
    }


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def service(i: int) -> Service:
    meta = ObjectMeta(name=f"s{i:05}", namespace="bench")
    port = ServicePort(port=80, name="http", node_port=30000 + i % 2768)
    spec = ServiceSpec(cluster_ip=f"10.254.{i // 250}.{i % 250 + 1}", type="NodePort", ports=[port])
    return Service(metadata=meta, spec=spec)


def endpoints(name: str, *ips: str, port: int = 8080) -> Endpoints:
    subset = EndpointSubset(
        addresses=[EndpointAddress(ip=a) for a in ips], ports=[EndpointPort(port, "http")]
    )
    return Endpoints(metadata=ObjectMeta(name=name, namespace="bench"), subsets=[subset])


def fake_ip(n: int) -> str:
    """Endpoint addresses of the synthetic services: in the pod range, never the real server."""
    return f"10.244.{100 + n // 250 % 150}.{n % 250 + 2}"


def serve(stop: threading.Event) -> socket.socket:
    """A listener in the calling thread's namespace, accepting (and closing) until ``stop``."""
    sock = socket.create_server(("0.0.0.0", 8080), backlog=1024)
    sock.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return sock


def connect_times(pairs: int) -> dict[str, list[float]]:
    """Alternating connects to the ClusterIP and to the pod; seconds each (runs in the node namespace)."""
    times: dict[str, list[float]] = {"cluster_ip": [], "pod_ip": []}
    for i in range(2 * pairs):
        which, addr = ("cluster_ip", (TARGET_IP, 80)) if i % 2 == 0 else ("pod_ip", (POD_IP, 8080))
        s = socket.socket()
        s.settimeout(CONNECT_TIMEOUT)
        try:
            started = time.perf_counter()
            s.connect(addr)
            times[which].append(time.perf_counter() - started)
        finally:
            s.close()
    return times


async def tables(node: str, counts: list[int], changes: int) -> list[dict[str, Any]]:
    """Each count's table written whole, then ``changes`` Endpoints changes; the last table stays."""
    results = []
    for n in counts:
        proxy = ServiceProxy(None, "n1", CLUSTER_CIDR, pod_cidr=POD_CIDR, netns=node)  # type: ignore[arg-type]
        for i in range(n):
            proxy.services.cache[f"bench/s{i:05}"] = service(i)
            proxy.endpoints.cache[f"bench/s{i:05}"] = endpoints(
                f"s{i:05}", fake_ip(2 * i), fake_ip(2 * i + 1)
            )
        target = Service(
            metadata=ObjectMeta(name="target", namespace="bench"),
            spec=ServiceSpec(cluster_ip=TARGET_IP, ports=[ServicePort(port=80, name="http")]),
        )
        proxy.services.cache["bench/target"] = target
        proxy.endpoints.cache["bench/target"] = endpoints("target", POD_IP)
        started = time.perf_counter()
        table, _ = proxy.compute()
        computed = time.perf_counter()
        await nftables.apply(table, node)
        written = time.perf_counter()
        proxy.last = table
        rules = sum(len(c.rules) for c in table.chains)
        elements = sum(len(s.verdicts) for s in table.sets)
        latencies = []
        for k in range(changes):
            i = k * 7919 % n
            replaced = endpoints(f"s{i:05}", fake_ip(2 * i), fake_ip(100_000 + 2 * n * k + i))
            started_change = time.perf_counter()
            proxy.endpoints.cache[f"bench/s{i:05}"] = replaced
            assert await proxy.sync()
            latencies.append(time.perf_counter() - started_change)
        assert proxy.full_syncs == 0, "a change needed a full rewrite"
        results.append(
            {
                "services": n,
                "chains": len(table.chains),
                "rules": rules,
                "map_elements": elements,
                "compute_ms": (computed - started) * 1e3,
                "write_ms": (written - computed) * 1e3,
                "change_p50_ms": statistics.median(latencies) * 1e3,
                "change_p99_ms": percentile(latencies, 99) * 1e3,
                "changes": changes,
            }
        )
    return results


def make_namespaces(node: str, pod: str, tag: str) -> None:
    for ns in (node, pod):
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    ip("link", "add", f"pb{tag}n", "netns", node, "type", "veth", "peer", "name", f"pb{tag}p", "netns", pod)
    ip("-n", node, "addr", "add", f"{NODE_IP}/24", "dev", f"pb{tag}n")
    ip("-n", pod, "addr", "add", f"{POD_IP}/24", "dev", f"pb{tag}p")
    ip("-n", node, "link", "set", f"pb{tag}n", "up")
    ip("-n", pod, "link", "set", f"pb{tag}p", "up")
    ip("-n", node, "route", "add", "blackhole", "10.244.0.0/16")
    ip("-n", node, "route", "add", "10.254.0.0/16", "dev", f"pb{tag}n")  # connect() needs a route


async def bench(args: argparse.Namespace, node: str, pod: str) -> dict[str, Any]:
    stop = threading.Event()
    listener = await run_in_netns(pod, serve, stop)
    try:
        results = await tables(node, args.services, args.changes)
        times = await run_in_netns(node, connect_times, args.connects)
    finally:
        stop.set()
        listener.close()
    connect: dict[str, Any] = {
        which: {"p50_us": statistics.median(v) * 1e6, "p99_us": percentile(v, 99) * 1e6, "count": len(v)}
        for which, v in times.items()
    }
    connect["ratio_p50"] = connect["cluster_ip"]["p50_us"] / connect["pod_ip"]["p50_us"]
    connect["ratio_p99"] = connect["cluster_ip"]["p99_us"] / connect["pod_ip"]["p99_us"]
    return {"tables": results, "connect": connect, "table_services": args.services[-1]}


def reproduce(args: argparse.Namespace) -> str:
    script = os.path.relpath(Path(__file__).resolve())
    argv = [os.path.relpath(sys.executable), script, "--services", ",".join(map(str, args.services))]
    argv += ["--changes", str(args.changes), "--connects", str(args.connects)]
    return shlex.join(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--services", default="10,100,1000", help="comma-separated service counts (2 endpoints each)"
    )
    p.add_argument("--changes", type=int, default=20, help="Endpoints changes timed per count")
    p.add_argument(
        "--connects", type=int, default=500, help="connects to the ClusterIP (and as many to the pod)"
    )
    p.add_argument("--json", action="store_true", help="also print every figure as one JSON line")
    p.add_argument("--quick", action="store_true", help="10 and 100 services, 10 changes, 100 connects")
    args = p.parse_args(argv)
    if args.quick:
        args.services, args.changes, args.connects = "10,100", 10, 100
    args.services = [int(n) for n in args.services.split(",")]
    if os.geteuid() != 0:
        print("bench_proxy needs root (network namespaces, nftables)", file=sys.stderr)
        emit("proxy", [], cmd=reproduce(args), skipped="needs root (network namespaces, nftables)")
        return 0
    if not (0 < args.changes <= 1000 and 0 < args.connects <= 100_000 and max(args.services) <= 30_000):
        print("bounds: 0 < changes <= 1000, 0 < connects <= 100000, services <= 30000", file=sys.stderr)
        return 2
    m = machine()
    tag = secrets.token_hex(3)
    node, pod = f"peabench-pxn-{tag}", f"peabench-pxp-{tag}"
    try:
        make_namespaces(node, pod, tag)
        result = asyncio.run(bench(args, f"/run/netns/{node}", f"/run/netns/{pod}"))
    finally:
        for ns in (node, pod):
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)
    print(f"machine   nproc {m['nproc']}, {m['cpu_model']}, kernel {m['kernel']}, {m['python']}, {m['nft']}")
    print(f"command   {reproduce(args)}   (as root)")
    print("services  chains   rules  map elems  compute ms  write ms  change->in place p50 / p99 ms")
    for r in result["tables"]:
        print(
            f"{r['services']:>8}  {r['chains']:>6}  {r['rules']:>6}  {r['map_elements']:>9}  "
            f"{r['compute_ms']:>10.1f}  {r['write_ms']:>8.1f}  "
            f"{r['change_p50_ms']:>9.1f} / {r['change_p99_ms']:.1f}  (n={r['changes']})"
        )
    c = result["connect"]
    print(
        f"connect   with {result['table_services']} services in the table: ClusterIP p50 "
        f"{c['cluster_ip']['p50_us']:.0f} us p99 {c['cluster_ip']['p99_us']:.0f} us; pod IP p50 "
        f"{c['pod_ip']['p50_us']:.0f} us p99 {c['pod_ip']['p99_us']:.0f} us; ratio p50 {c['ratio_p50']:.2f} "
        f"p99 {c['ratio_p99']:.2f} (n={c['cluster_ip']['count']} each)"
    )
    if args.json:
        print(json.dumps({"machine": m, "command": reproduce(args), **result}))
    emit("proxy", summary_figures(result), cmd=reproduce(args) + "   (as root)")
    return 0


def summary_figures(result: dict[str, Any]) -> list[Figure]:
    """The largest table's change-to-rules time (the issue's goal: <= 100 ms at 1,000 services), its full
    rebuild, and the ClusterIP connect overhead."""
    biggest = max(result["tables"], key=lambda r: r["services"])
    n = f"{biggest['services']:,} services"
    p99 = biggest["change_p99_ms"]
    return [
        Figure(f"Endpoints change -> rules in place p99, {n}", p99, "ms", goal="<= 100 ms", met=p99 <= 100),
        Figure(f"Endpoints change -> rules in place p50, {n}", biggest["change_p50_ms"], "ms"),
        Figure(f"full rebuild (compute + write), {n}", biggest["compute_ms"] + biggest["write_ms"], "ms"),
        Figure(
            "connect via ClusterIP / via pod IP, p50",
            result["connect"]["ratio_p50"],
            "x",
            anchor="the same connect straight to the pod IP",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
