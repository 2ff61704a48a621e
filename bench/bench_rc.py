"""ReplicationController benchmark: how fast a scale-up turns into created, bound and Running pods.

A fresh control plane (real SQLite, real HTTP on 127.0.0.1, scheduler and controller-manager on) runs in
this process's event loop with ``--nodes`` hollow nodes (``agent.hollow.HollowNodes``: the real agent code
on the fake runtime, so pods go Running without containers). One RC is created with 0 replicas, then
scaled to ``--replicas`` through the scale subresource. A pod watch, opened before the scale call, notes
for every pod when it was first seen created, bound (``spec.nodeName`` set) and Running
(``status.phase``), measured from just before the scale request. Everything — server, scheduler,
controllers, agents and this watcher — shares one event loop, hence one core.

Run ``.venv/bin/python bench/bench_rc.py`` (about a minute on a 2-core machine); ``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from bench_api import machine_info, percentile
from summary import Figure, emit

from agent.hollow import HollowNodes
from controlplane.api.core import Namespace, Pod, ReplicationController
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, Gone
from controlplane.server.controlplane import ControlPlane, Settings

NAMESPACE = "bench-rc"
RC_NAME = "bench"
START_TIMEOUT = 60.0


@dataclass
class Milestones:
    """Seconds from the scale call at which each pod was first seen created, bound and Running."""

    t0: float = 0.0
    created: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, pod: Pod, want: int) -> None:
        name = pod.metadata.name or ""
        at = time.perf_counter() - self.t0
        self.created.setdefault(name, at)
        if pod.spec.node_name:
            self.bound.setdefault(name, at)
        if pod.status.phase == "Running":
            self.running.setdefault(name, at)
        if len(self.running) >= want:
            self.done.set()


async def watch_pods(client: Client, rv: str, marks: Milestones, want: int) -> None:
    while True:
        try:
            async for event in client.watch(Pod, NAMESPACE, resource_version=rv):
                rv = event.resource_version or rv
                if event.type in ("ADDED", "MODIFIED"):
                    marks.note(event.object, want)
        except Gone:
            page = await client.list(Pod, NAMESPACE)
            for pod in page.items:
                marks.note(pod, want)
            rv = page.resource_version


def rc(replicas: int) -> ReplicationController:
    return msgspec.convert(
        {
            "metadata": {"name": RC_NAME, "namespace": NAMESPACE},
            "spec": {
                "replicas": replicas,
                "selector": {"app": RC_NAME},
                "template": {
                    "metadata": {"labels": {"app": RC_NAME}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "c", "image": "busybox"}],
                    },
                },
            },
        },
        ReplicationController,
    )


def reproduce_command() -> str:
    def rel(path: str) -> str:
        return os.path.relpath(path) if Path(path).absolute().is_relative_to(Path.cwd()) else path

    return shlex.join([rel(sys.executable), rel(str(Path(__file__).resolve())), *sys.argv[1:]])


def summary(times: dict[str, float], want: int) -> dict[str, Any]:
    ordered = sorted(times.values())
    if not ordered:
        return {"count": 0, "want": want}
    last = ordered[-1]
    return {
        "count": len(ordered),
        "want": want,
        "first_s": round(ordered[0], 3),
        "p50_s": round(percentile(ordered, 50), 3),
        "last_s": round(last, 3),
        "per_s": round(len(ordered) / last, 1) if last > 0 else None,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=workdir / "cp", listen="127.0.0.1:0", event_sweep_interval=3600, scheduler=True
    )
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": reproduce_command(),
        "machine": machine_info(workdir),
        "nodes": args.nodes,
        "replicas": args.replicas,
    }
    cp = ControlPlane(settings)
    await asyncio.wait_for(cp.start(), START_TIMEOUT)
    try:
        async with Client(cp.url, cp.admin_token, user_agent="peapod-bench") as client:
            began = time.perf_counter()
            nodes = HollowNodes(client, args.nodes, lease_interval=10, status_interval=40)
            await asyncio.wait_for(nodes.start(), START_TIMEOUT)
            result["nodes_start_s"] = round(time.perf_counter() - began, 2)
            try:
                result.update(await scale_up(client, args))
            finally:
                await nodes.stop()
    finally:
        await cp.stop()
    return result


async def scale_up(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    await client.create(rc(0))
    marks = Milestones()
    rv = (await client.list(Pod, NAMESPACE)).resource_version
    watcher = asyncio.create_task(watch_pods(client, rv, marks, args.replicas))
    cpu = time.process_time()
    try:
        await asyncio.sleep(0.2)  # the watch is subscribed once its response has started
        marks.t0 = time.perf_counter()
        await client.scale(ReplicationController, RC_NAME, args.replicas, NAMESPACE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(marks.done.wait(), args.timeout)
        timed_out = not marks.done.is_set()
        ready_at = None
        if not timed_out:
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline:
                got = await client.get(ReplicationController, RC_NAME, NAMESPACE)
                if got.status.ready_replicas == args.replicas:
                    ready_at = round(time.perf_counter() - marks.t0, 3)
                    break
                await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    final = await client.get(ReplicationController, RC_NAME, NAMESPACE)
    pods = (await client.list(Pod, NAMESPACE)).items
    return {
        "timed_out": timed_out,
        "created": summary(marks.created, args.replicas),
        "bound": summary(marks.bound, args.replicas),
        "running": summary(marks.running, args.replicas),
        "rc_ready_replicas_s": ready_at,
        "rc_status": msgspec.to_builtins(final.status),
        "pods_total": len(pods),
        "nodes_used": len({p.spec.node_name for p in pods if p.spec.node_name}),
        "cpu_s": round(time.process_time() - cpu, 2),
    }


def _line(name: str, s: dict[str, Any]) -> str:
    if not s["count"]:
        return f"{name:<9} 0/{s['want']}"
    return (
        f"{name:<9} {s['count']}/{s['want']} pods: {s['per_s'] or 0:.0f} pods/s "
        f"(first {s['first_s']:.2f} s, half {s['p50_s']:.2f} s, last {s['last_s']:.2f} s "
        "after the scale call)"
    )


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    v = m["versions"]
    lines = [
        f"peapod RC scale-up benchmark, {r['date']}",
        f"machine   nproc {m['nproc']} ({m['cpu_count']} CPUs), {m['cpu_model']}, {m['python']}, "
        f"{m['platform']}; load average at start {m['loadavg_at_start']}",
        f"stack     SQLite {v.get('sqlite')} (data dir on {m['data_dir_fs']}), httpx {v.get('httpx', '?')}, "
        f"msgspec {v.get('msgspec', '?')}; server, scheduler, controllers and agents in one event loop",
        f"command   {r['command']}",
        "",
        f"setup     {r['nodes']} hollow nodes Ready in {r['nodes_start_s']:.2f} s; "
        f"RC scaled 0 -> {r['replicas']}",
        _line("created", r["created"]),
        _line("bound", r["bound"]),
        _line("Running", r["running"]),
    ]
    ready = r["rc_ready_replicas_s"]
    status = r["rc_status"]
    lines.append(
        f"rc status readyReplicas={status.get('readyReplicas', 0)} replicas={status.get('replicas', 0)}"
        + (f", all ready in the RC's status {ready:.2f} s after the scale call" if ready is not None else "")
    )
    lines.append(
        f"totals    {r['pods_total']} pods on {r['nodes_used']} nodes; CPU {r['cpu_s']:.1f} s "
        "(everything in this process)"
    )
    if r["timed_out"]:
        lines.append(f"TIMED OUT: not all {r['replicas']} pods were Running")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_rc.py", description=__doc__.split("\n\n")[0] if __doc__ else "")
    p.add_argument("--nodes", type=int, default=50, help="hollow nodes (default 50)")
    p.add_argument("--replicas", type=int, default=500, help="replicas to scale to (default 500)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for all pods Running")
    p.add_argument("--json", action="store_true", help="print the result as JSON too")
    p.add_argument("--quick", action="store_true", help="20 nodes, 100 replicas")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.replicas = 20, 100
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="peapod-bench-rc-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(report(result))
    if args.json:
        print(json.dumps(result, indent=2))
    n = f"{args.replicas} replicas on {args.nodes} hollow nodes, one process"
    emit(
        "rc",
        [
            Figure(f"RC scale-up, pods Running per second ({n})", result["running"].get("per_s"), "pods/s"),
            Figure(f"RC scale-up, last pod Running ({n})", result["running"].get("last_s"), "s"),
        ],
        cmd=result["command"],
    )
    return 1 if result["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
