"""Pod start latency on real Podman: peapod against Podman alone, in the same run, on the same service.

Run ``python bench/bench_pods.py --help`` for the knobs; ``bench/README.md`` says what each figure means.

One ``podman system service`` on throwaway storage (a temporary directory, as the e2e tests use) serves
three modes, each doing the same work: pods of one busybox container running
``sleep 3600``, ``terminationGracePeriodSeconds: 0``, no network (an infra container holding shared
net/ipc/uts namespaces with only ``lo``):

peapod
    A control plane (real SQLite, real HTTP on 127.0.0.1, scheduler on) and an agent with the Podman
    runtime, all in this process's event loop, as the e2e tests run them. A pod's latency is from just
    before ``Client.create`` to the moment a watch on the namespace delivers it Running with every
    container running.
podman
    The same libpod REST calls peapod's runtime makes, straight to the same socket and nothing else:
    pod create (same body: no network, shared net/ipc/uts, infra), pod start, container create (the body
    from ``build_container_body``), container start. Latency: from the first call to the answer of the
    container start, which libpod sends once the container is running.
kube
    ``POST /libpod/play/kube?network=none`` with an equivalent Pod YAML. Latency: the call, which returns
    once the pod and its container are started. The burst is ``--burst`` concurrent calls of one document
    each (``--kube-burst concurrent``, the default) or one call with ``--burst`` documents
    (``--kube-burst one-file``; then every pod's latency is that call's duration).

All modes are set up first (peapod's control plane and agent idle while the others measure). Each runs
``--warmup`` unmeasured pods. Then ``--repeat`` rounds of single pods: in each round every mode starts one
pod and removes it before the next mode's turn, and the mode that goes first rotates, so that a change in
the machine's load (it may be shared) hits every mode alike. Then each mode in turn starts ``--burst``
pods at once. Removals are not timed; before each burst everything left is removed. In the peapod mode
the runtime, the agent's API client and its pod workers are instrumented (a subclass and wrappers,
nothing in peapod changes), so the report says where peapod's time goes: the libpod and API requests
per pod and when each step happened.

Everything created (pods, containers, the Podman service, the control plane, the temporary directory and
its mounts) is removed at the end, also after a failure, Ctrl-C or SIGTERM.

The default run (10 rounds, 20 pods at once, all three modes) takes about 80 s on the 2-core machine;
``--quick`` (3 rounds, 5 pods at once, Podman REST and peapod only) about 12 s. The last line of the
output is the suite's summary (``bench/summary.py``): peapod over Podman REST and over kube play, for
one pod (p50) and for the whole burst (first create to last Running; goal <= 1.3x), and those times in
ms. Without root or Podman the summary says why it was skipped, and the exit status is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import io
import json
import logging
import math
import os
import pstats
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import yaml

# bench_api.py sits next to this file (this directory is sys.path[0] when run as a script).
from bench_api import machine_info, summary_ms
from procstat import cpu_seconds
from summary import Figure, emit

from agent.agent import Agent, AgentSettings
from agent.runtime.base import (
    LABEL_NAME,
    LABEL_NAMESPACE,
    LABEL_NODE,
    LABEL_UID,
    ContainerInfo,
    ContainerSpec,
    SandboxInfo,
)
from agent.runtime.images import BUSYBOX_IMAGE, build_busybox_image
from agent.runtime.podman import PodmanRuntime, build_container_body, pod_sandbox_name
from agent.runtime.podman_service import PodmanService
from controlplane.api.core import Namespace, Pod
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, ClientError, Conflict, Gone, NotFound, TransportError
from controlplane.server.controlplane import ControlPlane, Settings

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parent.parent
NS = "bench-pods"
NODE = "bench-node"  # peapod's node; the podman mode labels its pods with a different node name
RAW_NODE = "bench-podman"
GRACE = 0
API = "/v4.0.0/libpod"

POD_TIMEOUT = 60.0  # seconds for one pod to run, or to be gone after its removal
RUN_TIMEOUT = 600.0  # the measurements never take longer than this, whatever the arguments
START_TIMEOUT = 60.0  # Podman service, image build, control plane, agent
CLEANUP_TIMEOUT = 120.0
REMOVE_CONCURRENCY = 4
WATCH_RECONNECTS = 50

MODES = ("podman", "kube", "peapod")
TITLES = {
    "peapod": "peapod (API create -> Running on a watch)",
    "podman": "Podman REST (pod create+start, ctr create+start)",
    "kube": "podman kube play (REST)",
}
DEFAULTS = {"repeat": 10, "burst": 20, "warmup": 1, "kube_burst": "concurrent", "modes": ",".join(MODES)}
# --quick: a few single rounds and a small burst, peapod beside Podman REST only (well under 15 s).
QUICK = {"repeat": 3, "burst": 5, "warmup": 1, "modes": "podman,peapod"}
GOAL_RATIO = 1.3  # the goal: pod start at most 1.3x Podman alone

# Steps of a peapod pod start, in order, as marks relative to the create request (see Trace).
STEPS = (
    ("created", "API create answered"),
    ("scheduled", "watch: spec.nodeName set"),
    ("sync", "agent: first sync of the pod starts"),
    ("sandbox_begin", "runtime: create_sandbox called"),
    ("sandbox", "runtime: sandbox created and started"),
    ("container_begin", "runtime: create_container called"),
    ("container_created", "runtime: container created"),
    ("container_started", "runtime: container started"),
    ("status_written", "agent: status PUT answered"),
    ("running", "watch: pod Running"),
)


def now_ns() -> int:
    return time.perf_counter_ns()


# --- the pod, as a manifest ---------------------------------------------------------------------------


def manifest(name: str) -> dict[str, Any]:
    """The pod every mode starts; peapod gets it as an API object, kube play as YAML."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": GRACE,
            "restartPolicy": "Always",
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }


def api_pod(name: str, *, uid: str | None = None) -> Pod:
    pod = msgspec.convert(manifest(name), Pod)
    pod.metadata.namespace = NS
    pod.metadata.uid = uid
    return pod


def running(pod: Pod) -> bool:
    statuses = pod.status.container_statuses or []
    return (
        pod.status.phase == "Running"
        and len(statuses) == len(pod.spec.containers)
        and all(s.state is not None and s.state.running is not None for s in statuses)
    )


# --- measurements ---------------------------------------------------------------------------------


@dataclass
class Sample:
    name: str
    start_ns: int
    end_ns: int | None = None
    error: str | None = None

    @property
    def latency_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns


def _ms(ns: float | None) -> float | None:
    return None if ns is None or math.isnan(ns) else round(ns / 1e6, 3)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    ok = [s for s in samples if s.latency_ns is not None and s.error is None]
    errors = [f"{s.name}: {s.error}" for s in samples if s.error]
    out: dict[str, Any] = {
        "pods": len(samples),
        "ok": len(ok),
        "failed": len(samples) - len(ok),
        "errors": errors[:5],
        "latency": summary_ms([s.latency_ns for s in ok if s.latency_ns is not None]),
    }
    return out


@dataclass
class Trace:
    """What happened during the measured intervals: per-pod step times and every request made."""

    enabled: bool = False
    marks: dict[str, dict[str, int]] = field(default_factory=dict)
    # (start ns, duration ns, source, kind, label): source is the mode that made the call; kind
    # "libpod" (-> Podman), "api" (agent -> API server) or "sync" (one PodWorkers.sync, label = pod).
    calls: list[tuple[int, int, str, str, str]] = field(default_factory=list)

    def mark(self, pod: str, step: str, when: int | None = None) -> None:
        if self.enabled:
            self.marks.setdefault(pod, {}).setdefault(step, now_ns() if when is None else when)

    def call(self, start: int, source: str, kind: str, label: str) -> None:
        if self.enabled:
            self.calls.append((start, now_ns() - start, source, kind, label))

    def reset(self) -> None:
        self.marks.clear()
        self.calls.clear()

    def report(self, source: str, samples: list[Sample], windows: list[tuple[int, int]]) -> dict[str, Any]:
        """Step times (after each pod's create) and ``source``'s requests started inside ``windows``."""
        ok = [s for s in samples if s.end_ns is not None]
        steps: dict[str, Any] = {}
        for step, _ in STEPS:
            values = [
                self.marks[s.name][step] - s.start_ns
                for s in ok
                if step in self.marks.get(s.name, {}) and self.marks[s.name][step] >= s.start_ns
            ]
            steps[step] = summary_ms(values)
        inside = [c[1:] for c in self.calls if c[2] == source and any(a <= c[0] <= b for a, b in windows)]
        per_kind: dict[str, dict[str, dict[str, float]]] = {}
        pods = max(1, len(ok))
        for kind in ("libpod", "api"):
            labels: dict[str, list[int]] = {}
            for dur, _, k, label in inside:
                if k == kind:
                    labels.setdefault(label, []).append(dur)
            per_kind[kind] = {
                label: {
                    "per_pod": round(len(durs) / pods, 2),
                    "mean_ms": round(sum(durs) / len(durs) / 1e6, 2),
                    "total_ms_per_pod": round(sum(durs) / pods / 1e6, 2),
                }
                for label, durs in sorted(labels.items(), key=lambda kv: -len(kv[1]))
            }
        syncs = [dur for dur, _, k, _ in inside if k == "sync"]
        return {
            "steps_ms": steps,
            "libpod": per_kind["libpod"],
            "api": per_kind["api"],
            "libpod_per_pod": round(sum(v["per_pod"] for v in per_kind["libpod"].values()), 2),
            "api_per_pod": round(sum(v["per_pod"] for v in per_kind["api"].values()), 2),
            "syncs_per_pod": round(len(syncs) / pods, 2),
            "sync": summary_ms(syncs),
        }


def _libpod_label(method: str, path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[1] not in ("json", "create", "load"):
        parts[1] = "{id}"
    return f"{method} /{'/'.join(parts)}"


_NAMED = frozenset({"pods", "events", "nodes", "leases", "configmaps", "secrets", "namespaces"})


def _api_label(method: str, path: str) -> str:
    parts = path.split("/")
    out = [
        ("{ns}" if prev == "namespaces" else "{name}") if prev in _NAMED else part
        for prev, part in zip(["", *parts[:-1]], parts, strict=True)
    ]
    return f"{method} {'/'.join(out)}"


class TimedRuntime(PodmanRuntime):
    """PodmanRuntime that notes every libpod request and when each step of a pod start happened."""

    def __init__(self, socket_path: Path, node_name: str, trace: Trace) -> None:
        super().__init__(socket_path, node_name)
        self.trace = trace
        self._pod_of: dict[str, str] = {}

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        start = now_ns()
        try:
            return await super()._call(method, path, **kwargs)
        finally:
            self.trace.call(start, "peapod", "libpod", _libpod_label(method, path))

    async def create_sandbox(self, pod: Pod) -> SandboxInfo:
        name = pod.metadata.name or ""
        self.trace.mark(name, "sandbox_begin")
        sandbox = await super().create_sandbox(pod)
        self.trace.mark(name, "sandbox")
        return sandbox

    async def create_container(self, sandbox: SandboxInfo, pod: Pod, spec: ContainerSpec) -> ContainerInfo:
        name = pod.metadata.name or ""
        self.trace.mark(name, "container_begin")
        info = await super().create_container(sandbox, pod, spec)
        self._pod_of[info.id] = name
        self.trace.mark(name, "container_created")
        return info

    async def start_container(self, container: ContainerInfo) -> None:
        await super().start_container(container)
        self.trace.mark(self._pod_of.get(container.id, ""), "container_started")


class TimedClient(Client):
    """The agent's API client, noting every request (and when a pod's status write was answered)."""

    def __init__(self, server: str, trace: Trace) -> None:
        super().__init__(server, user_agent="peapod-agent-bench", verify=False)
        self.trace = trace

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        start = now_ns()
        try:
            return await super().request(method, path, **kwargs)
        finally:
            self.trace.call(start, "peapod", "api", _api_label(method, path))
            parts = path.split("/")
            if method == "PUT" and len(parts) >= 3 and parts[-1] == "status" and parts[-3] == "pods":
                self.trace.mark(parts[-2], "status_written")


def _time_syncs(agent: Agent, trace: Trace) -> None:
    """Wrap the pod workers' reconcile step (before ``agent.start()``, which hands it to the workers)."""
    inner = agent.workers.sync

    async def sync(key: str) -> None:
        name = key.partition("/")[2]
        start = now_ns()
        trace.mark(name, "sync", start)
        try:
            await inner(key)
        finally:
            trace.call(start, "peapod", "sync", name)

    agent.workers.sync = sync  # type: ignore[method-assign]


# --- Podman plumbing ------------------------------------------------------------------------------


def libpod_client(socket_path: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
        base_url="http://podman" + API,
        timeout=httpx.Timeout(60.0, connect=5.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
    )


def _error(r: httpx.Response) -> str | None:
    if r.status_code < 300:
        return None
    try:
        data = r.json()
        message = data.get("message") if isinstance(data, dict) else None
    except ValueError:
        message = None
    return f"HTTP {r.status_code}: {message or r.text.strip()[:200]}"


async def remove_pods(api: httpx.AsyncClient, names: Iterable[str]) -> None:
    """SIGKILL then force-remove (``sleep`` as PID 1 ignores SIGTERM; a stop would wait out a timeout)."""
    gate = asyncio.Semaphore(REMOVE_CONCURRENCY)

    async def one(name: str) -> None:
        async with gate:
            with contextlib.suppress(httpx.HTTPError):
                await api.post(f"/pods/{name}/kill", params={"signal": "SIGKILL"})
            with contextlib.suppress(httpx.HTTPError):
                await api.delete(f"/pods/{name}", params={"force": "true"})

    await asyncio.gather(*(one(n) for n in names))


async def remove_everything(api: httpx.AsyncClient) -> int:
    """Remove every pod and container of the service (all are ours: its storage is). Returns how many
    pods there were."""
    pods = (await api.get("/pods/json")).json() or []
    await remove_pods(api, [p["Id"] for p in pods])
    for ctr in (await api.get("/containers/json", params={"all": "true"})).json() or []:
        with contextlib.suppress(httpx.HTTPError):
            await api.delete(f"/containers/{ctr['Id']}", params={"force": "true", "timeout": 0})
    return len(pods)


async def cli_remove_everything(service: PodmanService) -> None:
    """The fallback when the service does not answer: the podman CLI on the same storage and config."""
    for args in (["pod", "rm", "--all", "--force", "--time", "0"], ["rm", "--all", "--force", "--time", "0"]):
        proc = await asyncio.create_subprocess_exec(
            service.podman, *service.global_args(), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=service.env(),
        )  # fmt: skip
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def service_cpu(service: PodmanService) -> float | None:
    """User + system CPU seconds of the podman service and of the children it has reaped (/proc)."""
    return None if service.pid is None else cpu_seconds(service.pid, children=True)


# --- the three modes ------------------------------------------------------------------------------


class Mode:
    key = ""
    traced = False  # whether its requests go into the Trace

    async def open(self) -> None:
        """Untimed set-up before the mode's first pod."""

    async def close(self) -> None:
        """Untimed tear-down after its last pod, also after a failure."""

    async def start_pod(self, name: str) -> Sample:
        raise NotImplementedError

    async def start_burst(self, names: list[str]) -> list[Sample]:
        return list(await asyncio.gather(*(self.start_pod(n) for n in names)))

    async def remove(self, names: list[str]) -> None:
        raise NotImplementedError


class PodmanMode(Mode):
    """The libpod calls of PodmanRuntime.create_sandbox/create_container/start_container, and nothing
    else (no list, no image lookup, no status)."""

    key = "podman"
    traced = True

    def __init__(self, api: httpx.AsyncClient, trace: Trace) -> None:
        self.api = api
        self.trace = trace

    async def _post(self, path: str, label: str, body: Any = None) -> httpx.Response:
        start = now_ns()
        try:
            return await self.api.post(path, json=body)
        finally:
            self.trace.call(start, "podman", "libpod", label)

    async def start_pod(self, name: str) -> Sample:
        pod = api_pod(name, uid=str(uuid.uuid4()))
        sandbox = pod_sandbox_name(pod)
        meta = pod.metadata
        pod_body = {
            "name": sandbox,
            "labels": {
                LABEL_UID: meta.uid or "",
                LABEL_NAME: name,
                LABEL_NAMESPACE: NS,
                LABEL_NODE: RAW_NODE,
            },
            "hostname": name[:63],
            "shared_namespaces": ["net", "ipc", "uts"],
            "netns": {"nsmode": "none"},
            "infra_name": f"{sandbox}_infra",
            "exit_policy": "continue",
        }
        info = SandboxInfo(uid=meta.uid or "", namespace=NS, name=name, id=sandbox, infra_running=True)
        ctr_body = build_container_body(
            info, pod, ContainerSpec(pod.spec.containers[0], {}, 0), BUSYBOX_IMAGE, RAW_NODE
        )
        start = now_ns()
        try:
            r = await self._post("/pods/create", "POST /pods/create", pod_body)
            if err := _error(r):
                return Sample(name, start, error=f"pod create: {err}")
            r = await self._post(f"/pods/{sandbox}/start", "POST /pods/{id}/start")
            if err := _error(r):
                return Sample(name, start, error=f"pod start: {err}")
            r = await self._post("/containers/create", "POST /containers/create", ctr_body)
            if err := _error(r):
                return Sample(name, start, error=f"container create: {err}")
            r = await self._post(f"/containers/{r.json()['Id']}/start", "POST /containers/{id}/start")
            if err := _error(r):
                return Sample(name, start, error=f"container start: {err}")
        except httpx.HTTPError as exc:
            return Sample(name, start, error=f"{type(exc).__name__}: {exc}")
        return Sample(name, start, now_ns())

    async def remove(self, names: list[str]) -> None:
        pods = (await self.api.get("/pods/json")).json() or []
        wanted = set(names)
        await remove_pods(
            self.api, [p["Id"] for p in pods if (p.get("Labels") or {}).get(LABEL_NAME) in wanted]
        )


class KubeMode(Mode):
    """``POST /libpod/play/kube?network=none``; the answer comes once the pod has been started."""

    key = "kube"

    def __init__(self, api: httpx.AsyncClient, one_file: bool) -> None:
        self.api = api
        self.one_file = one_file

    async def _play(self, names: list[str]) -> str | None:
        text = yaml.safe_dump_all([manifest(n) for n in names], sort_keys=False)
        r = await self.api.post(
            "/play/kube",
            params={"network": "none", "start": "true"},
            content=text.encode(),
            headers={"Content-Type": "application/x-yaml"},
        )
        if err := _error(r):
            return err
        reports = r.json().get("Pods") or []
        problems = [e for p in reports for e in p.get("ContainerErrors") or []]
        if len(reports) != len(names) or problems:
            return f"{len(reports)} pods reported for {len(names)}; errors: {problems[:3]}"
        return None

    async def start_pod(self, name: str) -> Sample:
        start = now_ns()
        try:
            err = await self._play([name])
        except httpx.HTTPError as exc:
            err = f"{type(exc).__name__}: {exc}"
        return Sample(name, start, None if err else now_ns(), err)

    async def start_burst(self, names: list[str]) -> list[Sample]:
        if not self.one_file:
            return await super().start_burst(names)
        start = now_ns()
        try:
            err = await self._play(names)
        except httpx.HTTPError as exc:
            err = f"{type(exc).__name__}: {exc}"
        end = None if err else now_ns()
        return [Sample(n, start, end, err) for n in names]

    async def remove(self, names: list[str]) -> None:
        await remove_pods(self.api, names)  # kube play names the Podman pod after metadata.name


class PodWatcher:
    """One watch on the benchmark namespace: resolves a future when a pod is first seen Running (with
    the receive time), or deleted; notes when its nodeName and first container statuses show up."""

    def __init__(self, client: Client, trace: Trace) -> None:
        self.client = client
        self.trace = trace
        self.running: dict[str, asyncio.Future[int]] = {}
        self.deleted: dict[str, asyncio.Future[int]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rv = (await self.client.list(Pod, NS)).resource_version
        self._task = asyncio.create_task(self._run(rv), name="bench-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def expect(self, table: dict[str, asyncio.Future[int]], name: str) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        table[name] = fut
        return fut

    async def _run(self, rv: str) -> None:
        for _ in range(WATCH_RECONNECTS):
            try:
                async for ev in self.client.watch(Pod, NS, resource_version=rv):
                    received = now_ns()
                    rv = ev.resource_version or rv
                    if ev.type != "BOOKMARK":
                        self._handle(ev.type, ev.object, received)
            except Gone:
                rv = (await self.client.list(Pod, NS)).resource_version
            except ClientError as exc:
                log.warning("benchmark watch broke (%s); watching again", exc)
                await asyncio.sleep(0.2)
        log.error("benchmark watch gave up after %d reconnects", WATCH_RECONNECTS)

    def _handle(self, kind: str, pod: Pod, received: int) -> None:
        name = pod.metadata.name or ""
        if kind == "DELETED":
            self._resolve(self.deleted, name, received)
            return
        if pod.spec.node_name:
            self.trace.mark(name, "scheduled", received)
        if running(pod):
            self.trace.mark(name, "running", received)
            self._resolve(self.running, name, received)

    @staticmethod
    def _resolve(table: dict[str, asyncio.Future[int]], name: str, when: int) -> None:
        fut = table.pop(name, None)
        if fut is not None and not fut.done():
            fut.set_result(when)


class PeapodMode(Mode):
    """Control plane + agent (PodmanRuntime) in this event loop; pods through the API."""

    key = "peapod"
    traced = True

    def __init__(
        self,
        workdir: Path,
        service: PodmanService,
        api: httpx.AsyncClient,
        trace: Trace,
        pod_workers: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.pod_workers = pod_workers
        self.service = service
        self.api = api
        self.trace = trace
        self.stack = contextlib.AsyncExitStack()
        self.client: Client | None = None
        self.watcher: PodWatcher | None = None
        self.uids: dict[str, str] = {}

    async def open(self) -> None:
        settings = Settings(data_dir=self.workdir / "cp", listen="127.0.0.1:0", event_sweep_interval=3600)
        cp = ControlPlane(settings)
        self.stack.push_async_callback(cp.stop)  # before start: an interrupted start is undone too
        await cp.start()
        self.client = Client(cp.url, user_agent="peapod-bench", verify=False)
        self.stack.push_async_callback(self.client.close)
        await self.client.create(Namespace(metadata=ObjectMeta(name=NS)))
        agent_client = TimedClient(cp.url, self.trace)
        self.stack.push_async_callback(agent_client.close)
        runtime = TimedRuntime(self.service.socket_path, NODE, self.trace)
        agent = Agent(agent_client, runtime, AgentSettings(node_name=NODE, node_ip="127.0.0.1", listen=None))
        if self.pod_workers is not None:
            agent.workers.workers = self.pod_workers
        _time_syncs(agent, self.trace)
        self.stack.push_async_callback(agent.stop)  # also closes the runtime
        await agent.start()
        watch_client = Client(cp.url, user_agent="peapod-bench-watch", verify=False)
        self.stack.push_async_callback(watch_client.close)
        self.watcher = PodWatcher(watch_client, self.trace)
        self.stack.push_async_callback(self.watcher.stop)
        await self.watcher.start()

    async def close(self) -> None:
        await self.stack.aclose()

    async def start_pod(self, name: str) -> Sample:
        assert self.client is not None and self.watcher is not None
        seen = self.watcher.expect(self.watcher.running, name)
        start = now_ns()
        self.trace.mark(name, "create", start)
        try:
            created = await self._create(name)
        except ClientError as exc:
            self.watcher.running.pop(name, None)
            return Sample(name, start, error=f"create: {exc}")
        self.trace.mark(name, "created")
        self.uids[name] = created.metadata.uid or ""
        try:
            return Sample(name, start, await asyncio.wait_for(seen, POD_TIMEOUT))
        except TimeoutError:
            return Sample(name, start, error=f"not Running within {POD_TIMEOUT:g} s")

    async def _create(self, name: str) -> Pod:
        """One create; retried once when the connection broke (uvicorn closes idle keep-alive connections
        after 5 s, the time httpx keeps them: a request can race the close). A retry that finds the pod
        there means the first attempt got through."""
        assert self.client is not None
        try:
            return await self.client.create(api_pod(name))
        except TransportError as exc:
            log.warning("create %s: %s; retrying once", name, exc)
        try:
            return await self.client.create(api_pod(name))
        except Conflict:
            return await self.client.get(Pod, name, NS)

    async def remove(self, names: list[str]) -> None:
        """Delete through the API (grace 0: the API object goes at once, the agent then removes the
        sandbox) and wait until Podman has no pod left for any of them."""
        assert self.client is not None and self.watcher is not None
        client = self.client
        gone = [self.watcher.expect(self.watcher.deleted, n) for n in names]

        async def delete(name: str) -> None:
            for attempt in range(3):  # see _create about broken keep-alive connections
                try:
                    await client.delete(Pod, name, NS, grace_period_seconds=GRACE)
                    return
                except NotFound:
                    return
                except TransportError as exc:
                    log.warning("delete %s: %s (attempt %d)", name, exc, attempt + 1)
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(delete(n) for n in names))
        _, late = await asyncio.wait(gone, timeout=POD_TIMEOUT)
        for fut in late:
            fut.cancel()
        uids = {self.uids.pop(n, None) for n in names} - {None, ""}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + POD_TIMEOUT
        pods: list[dict[str, Any]] = []
        flt = json.dumps({"label": [f"{LABEL_NODE}={NODE}"]})
        while loop.time() < deadline:
            pods = (await self.api.get("/pods/json", params={"filters": flt})).json() or []
            if not any((p.get("Labels") or {}).get(LABEL_UID) in uids for p in pods):
                return
            await asyncio.sleep(0.1)
        log.warning("the agent did not remove the sandboxes of %s in time; removing them", names)
        await remove_pods(self.api, [p["Id"] for p in pods if (p.get("Labels") or {}).get(LABEL_UID) in uids])


# --- driver -----------------------------------------------------------------------------------------


class Cpu:
    """CPU seconds of this process and of the podman service, summed over the ``with`` blocks."""

    def __init__(self, service: PodmanService) -> None:
        self.service = service
        self.bench = 0.0
        self.podman: float | None = 0.0
        self._b = 0.0
        self._p: float | None = None

    def __enter__(self) -> Cpu:
        self._b, self._p = time.process_time(), service_cpu(self.service)
        return self

    def __exit__(self, *exc: object) -> None:
        self.bench += time.process_time() - self._b
        after = service_cpu(self.service)
        if self.podman is not None and after is not None and self._p is not None:
            self.podman += after - self._p
        else:
            self.podman = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "bench_process": round(self.bench, 2),
            "podman_service": None if self.podman is None else round(self.podman, 2),
        }


@contextlib.contextmanager
def measured(cpu: Cpu, profiler: cProfile.Profile | None) -> Iterator[None]:
    """A measured interval: CPU counted, and the profiler on (for the peapod mode only)."""
    with cpu:
        if profiler is not None:
            profiler.enable()
        try:
            yield
        finally:
            if profiler is not None:
                profiler.disable()


async def run_modes(
    modes: list[Mode],
    args: argparse.Namespace,
    service: PodmanService,
    api: httpx.AsyncClient,
    trace: Trace,
    profiler: cProfile.Profile | None,
) -> dict[str, dict[str, Any]]:
    """Every mode set up at once; warm-up pods; the single pods in rounds (one pod of each mode per
    round, the mode that goes first rotating), so that a change in the machine's load hits every mode
    alike; then the bursts, one mode after the other. The trace records from the first create to the
    last removal (a status write or a sync may end after the watch saw the pod Running); only what
    started inside the measured intervals is reported."""
    out: dict[str, dict[str, Any]] = {m.key: {"mode": m.key} for m in modes}
    prof = {m.key: profiler if isinstance(m, PeapodMode) else None for m in modes}
    async with contextlib.AsyncExitStack() as stack:
        for mode in modes:
            stack.push_async_callback(mode.close)  # before open: a half-done set-up is undone too
            await mode.open()
        for mode in modes:
            for i in range(args.warmup):
                name = f"{mode.key}-warm-{i}"
                sample = await mode.start_pod(name)
                if sample.error:
                    raise RuntimeError(f"{mode.key}: warm-up pod failed: {sample.error}")
                await mode.remove([name])

        print("... single pods", file=sys.stderr, flush=True)
        singles: dict[str, list[Sample]] = {m.key: [] for m in modes}
        cpus = {m.key: Cpu(service) for m in modes}
        trace.reset()
        trace.enabled = True
        for i in range(args.repeat):
            first = i % len(modes)
            for mode in modes[first:] + modes[:first]:
                name = f"{mode.key}-1-{i:03d}"
                with measured(cpus[mode.key], prof[mode.key]):
                    sample = await mode.start_pod(name)
                singles[mode.key].append(sample)
                await mode.remove([name])
        trace.enabled = False
        for mode in modes:
            samples = singles[mode.key]
            out[mode.key]["single"] = summarize(samples)
            out[mode.key]["single"]["cpu_s"] = cpus[mode.key].as_dict()
            if mode.traced:
                windows = [(s.start_ns, s.end_ns) for s in samples if s.end_ns is not None]
                out[mode.key]["single"]["trace"] = trace.report(mode.key, samples, windows)

        for mode in modes if args.burst else []:
            print(f"... {args.burst} {mode.key} pods at once", file=sys.stderr, flush=True)
            if left := await remove_everything(api):  # the reset (normally nothing is left)
                out[mode.key]["left_behind"] = left
            names = [f"{mode.key}-b-{i:03d}" for i in range(args.burst)]
            cpu = Cpu(service)
            trace.reset()
            trace.enabled = True
            with measured(cpu, prof[mode.key]):
                begin = now_ns()
                burst = await mode.start_burst(names)
            await mode.remove(names)
            trace.enabled = False
            ends = [s.end_ns for s in burst if s.end_ns is not None]
            result = summarize(burst)
            complete = len(ends) == len(burst)
            result["all_running_ms"] = _ms(max(ends) - begin) if complete and ends else None
            result["cpu_s"] = cpu.as_dict()
            if mode.traced:
                result["trace"] = trace.report(mode.key, burst, [(begin, max(ends, default=now_ns()))])
            out[mode.key]["burst"] = result
    return out


async def podman_versions(api: httpx.AsyncClient) -> dict[str, Any]:
    info = (await api.get("/info")).json()
    host = info.get("host") or {}
    runc = ((host.get("ociRuntime") or {}).get("version") or "").splitlines()
    return {
        "podman": (info.get("version") or {}).get("Version"),
        "oci_runtime": runc[0] if runc else str((host.get("ociRuntime") or {}).get("name")),
        "conmon": (host.get("conmon") or {}).get("version"),
        "cgroup": f"{host.get('cgroupVersion')} ({host.get('cgroupManager')})",
        "storage_driver": (info.get("store") or {}).get("graphDriverName"),
        "kernel": host.get("kernel"),
    }


POD_STACK = ("httpx", "httpcore", "msgspec", "uvicorn", "starlette", "aiosqlite", "h11", "httptools")


async def cleanup(service: PodmanService, api: httpx.AsyncClient | None) -> None:
    """Remove every pod and container, stop the service, unmount its storage. Never raises."""
    try:
        if service.running and api is not None:
            try:
                await asyncio.wait_for(remove_everything(api), CLEANUP_TIMEOUT)
            except (httpx.HTTPError, TimeoutError, ValueError) as exc:
                log.warning(
                    "the podman service does not answer (%s; a Ctrl-C reaches it too); "
                    "removing everything with the podman CLI",
                    exc,
                )
                await cli_remove_everything(service)
        elif service.pid is not None:  # the service died under us: its containers live on
            await cli_remove_everything(service)
    finally:
        if api is not None:
            await api.aclose()
        await service.stop()
        # conmon runs `podman ... container cleanup` when a container dies; such a late process mounts
        # the storage again, so wait for them before unmounting.
        for _ in range(100):
            if not processes_using(service.root):
                break
            await asyncio.sleep(0.2)
        try:
            await service.unmount_storage()
        except Exception as exc:
            log.warning("could not unmount the benchmark's storage: %s", exc)


def processes_using(path: Path | None) -> list[int]:
    """Other processes whose command line names ``path`` (conmon, podman cleanup helpers)."""
    if path is None:
        return []
    needle = os.fsencode(path)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def remove_workdir(workdir: Path) -> None:
    """Delete the temporary directory; a mount that reappeared under it is unmounted first (bounded)."""
    base = os.fsencode(workdir.resolve())
    for _ in range(5):
        with contextlib.suppress(OSError):
            with open("/proc/self/mountinfo", "rb") as f:
                points = [line.split()[4] for line in f if len(line.split()) > 4]
            mine = [p for p in points if p == base or p.startswith(base + b"/")]
            for point in sorted(set(mine), key=len, reverse=True):
                subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
        if not workdir.exists():
            return
        time.sleep(1)
    print(f"bench_pods.py: could not remove {workdir} completely", file=sys.stderr)


async def run(args: argparse.Namespace, workdir: Path, profiler: cProfile.Profile | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": reproduce_command(args),
        "machine": machine_info(workdir, POD_STACK),
        "settings": {
            "repeat": args.repeat,
            "burst": args.burst,
            "warmup": args.warmup,
            "kube_burst": args.kube_burst,
            "modes": args.modes,
            "pod_workers": args.pod_workers,
        },
    }
    service = PodmanService(workdir / "data", root=workdir / "root", runroot=workdir / "runroot")
    api: httpx.AsyncClient | None = None
    trace = Trace()
    started = time.monotonic()
    try:
        print("... podman service and busybox image", file=sys.stderr, flush=True)
        await asyncio.wait_for(service.start(), START_TIMEOUT)
        api = libpod_client(service.socket_path)
        await build_busybox_image(service.socket_path, timeout=START_TIMEOUT)
        result["podman_versions"] = await podman_versions(api)
        factories: dict[str, Callable[[httpx.AsyncClient], Mode]] = {
            "podman": lambda a: PodmanMode(a, trace),
            "kube": lambda a: KubeMode(a, args.kube_burst == "one-file"),
            "peapod": lambda a: PeapodMode(workdir, service, a, trace, args.pod_workers),
        }
        print(f"... setting up {', '.join(args.modes)}", file=sys.stderr, flush=True)
        modes = [factories[key](api) for key in args.modes]
        async with asyncio.timeout(RUN_TIMEOUT):  # in this task, so the modes' teardown runs before cleanup
            result.update(await run_modes(modes, args, service, api, trace, profiler))
    except asyncio.CancelledError:
        # Interrupted: what the control plane and the agent log while being torn down is noise.
        for name in ("uvicorn.error", "controlplane", "agent", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        raise
    finally:
        await cleanup(service, api)
    result["total_s"] = round(time.monotonic() - started, 1)
    return result


# --- report -------------------------------------------------------------------------------------------


def reproduce_command(args: argparse.Namespace) -> str:
    def rel(path: str) -> str:
        with contextlib.suppress(ValueError):
            return os.path.relpath(path) if Path(path).is_relative_to(Path.cwd()) else path
        return path

    argv = [rel(sys.executable), rel(str(Path(__file__).resolve()))]
    argv += ["--repeat", str(args.repeat), "--burst", str(args.burst), "--warmup", str(args.warmup)]
    argv += ["--kube-burst", args.kube_burst, "--modes", ",".join(args.modes)]
    if args.pod_workers is not None:
        argv += ["--pod-workers", str(args.pod_workers)]
    if args.work_dir:
        argv += ["--work-dir", args.work_dir]
    return shlex.join(argv)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def _figures(phase: dict[str, Any] | None) -> tuple[float | None, float | None]:
    if not phase or not phase["latency"]["count"]:
        return None, None
    return phase["latency"]["p50_ms"], phase["latency"]["p99_ms"]


def table(result: dict[str, Any], modes: list[str]) -> list[str]:
    burst = result["settings"]["burst"]
    repeat = result["settings"]["repeat"]
    head = (
        f"{'mode':<50} {'1 pod p50':>10} {'p99':>8}   {f'{burst} pods p50':>12} {'p99':>8} "
        f"{f'all {burst}':>9}   ok"
    )
    lines = [head, "-" * len(head)]
    rows: dict[str, tuple[float | None, ...]] = {}
    for key in modes:
        r = result.get(key)
        if not r:
            continue
        s50, s99 = _figures(r.get("single"))
        b50, b99 = _figures(r.get("burst"))
        everything = (r.get("burst") or {}).get("all_running_ms")
        rows[key] = (s50, s99, b50, b99, everything)
        ok = f"{r['single']['ok']}/{repeat}"
        if "burst" in r:
            ok += f", {r['burst']['ok']}/{burst}"
        title = TITLES[key]
        if key == "kube":
            title += " one file" if result["settings"]["kube_burst"] == "one-file" else f", {burst} calls"
        lines.append(
            f"{title:<50} {_num(s50):>10} {_num(s99):>8}   {_num(b50):>12} {_num(b99):>8} "
            f"{_num(everything):>9}   {ok}"
        )
    for other in ("podman", "kube"):
        if "peapod" in rows and other in rows:
            p, o = rows["peapod"], rows[other]
            label = f"ratio peapod / {'Podman REST' if other == 'podman' else 'kube play'}"
            lines.append(
                f"{label:<50} {_ratio(p[0], o[0]):>10} {_ratio(p[1], o[1]):>8}   {_ratio(p[2], o[2]):>12} "
                f"{_ratio(p[3], o[3]):>8} {_ratio(p[4], o[4]):>9}"
            )
    return lines


def _trace_lines(title: str, t: dict[str, Any]) -> list[str]:
    lines = [f"  {title}"]
    steps = [(what, t["steps_ms"][step]) for step, what in STEPS if t["steps_ms"][step]["count"]]
    if steps:
        lines.append(f"    {'step reached, ms after the create request':<50} {'p50':>8} {'p99':>8}")
        lines += [f"    {what:<50} {v['p50_ms']:8.1f} {v['p99_ms']:8.1f}" for what, v in steps]
    summary = f"    per pod: {t['libpod_per_pod']:g} libpod requests"
    if t["syncs_per_pod"] or t["api_per_pod"]:
        summary += (
            f", {t['api_per_pod']:g} API requests by the agent, {t['syncs_per_pod']:g} syncs "
            f"(p50 {_num(t['sync']['p50_ms'], 1)} ms)"
        )
    lines.append(summary + "; started before the pod was Running:")
    for kind in ("libpod", "api"):
        for label, v in t[kind].items():
            lines.append(
                f"      {kind:<6} {label:<50} {v['per_pod']:5.2f}/pod  mean {v['mean_ms']:7.1f} ms"
                f"  = {v['total_ms_per_pod']:6.1f} ms/pod"
            )
    return lines


def report(result: dict[str, Any]) -> str:
    m, v, pv = result["machine"], result["machine"]["versions"], result.get("podman_versions") or {}
    s = result["settings"]
    lines = [
        f"peapod pod start benchmark, {result['date']}",
        f"machine   nproc {m['nproc']} ({m['cpu_count']} CPUs), {m['cpu_model']}, {m['python']}, "
        f"{m['platform']}; load average at start {m['loadavg_at_start']}",
        f"podman    {pv.get('podman')}, {pv.get('oci_runtime')}, {pv.get('conmon')}, "
        f"cgroup {pv.get('cgroup')}, {pv.get('storage_driver')} storage on {m['data_dir_fs']}",
        f"stack     SQLite {v.get('sqlite')}, uvicorn {v.get('uvicorn', '?')}, httpx {v.get('httpx', '?')}, "
        f"msgspec {v.get('msgspec', '?')}; control plane, agent and benchmark in one process",
        f"command   {result['command']}",
        f"settings  {s['warmup']} warm-up pod(s) per mode; {s['repeat']} rounds of one single pod per mode "
        f"(first mode rotating); then {s['burst']} at once, in this order: {', '.join(s['modes'])}; "
        f"agent pod workers: {s.get('pod_workers') or 'default'}",
        "",
        "pod start latency in ms (p99 over few samples is close to the maximum)",
        *table(result, s["modes"]),
    ]
    for key in s["modes"]:
        r = result.get(key) or {}
        for phase in ("single", "burst"):
            p = r.get(phase)
            if p and p["errors"]:
                lines.append(f"{key} {phase}: {p['failed']} failed, first: {p['errors'][0]}")
    lines.append("")
    lines.append("CPU seconds while pods were being started: benchmark process (control plane, agent and")
    lines.append("clients) / podman service process (with the children it reaped)")
    for key in s["modes"]:
        r = result.get(key) or {}
        parts = []
        for phase in ("single", "burst"):
            if p := r.get(phase):
                c = p["cpu_s"]
                parts.append(f"{phase}: {_num(c['bench_process'], 1)} / {_num(c['podman_service'], 1)}")
        lines.append(f"  {key:<8} " + ";  ".join(parts))
    for key in ("podman", "peapod"):
        r = result.get(key) or {}
        if not r:
            continue
        lines.append("")
        lines.append(f"where the time goes: {TITLES[key]}")
        for phase, title in (("single", "1 pod"), ("burst", f"{s['burst']} pods at once")):
            if (p := r.get(phase)) and p.get("trace"):
                lines += _trace_lines(title, p["trace"])
    lines.append(f"\ntotal run time {result.get('total_s', 0):.0f} s")
    return "\n".join(lines)


def summary_figures(result: dict[str, Any]) -> list[Figure]:
    """The headline figures: peapod's pod start over Podman alone (REST, and kube play when it ran)
    for one pod (p50) and for the whole burst (first create to last Running), and the times in ms."""
    burst = result["settings"]["burst"]
    peapod = result.get("peapod") or {}
    figures: list[Figure] = []

    def times(r: dict[str, Any]) -> tuple[float | None, float | None]:
        single = _figures(r.get("single"))[0]
        everything = (r.get("burst") or {}).get("all_running_ms")
        return single, everything

    mine = times(peapod)
    for other, anchor in (("podman", "Podman REST (pod create+start, ctr create+start)"),
                          ("kube", "podman kube play (REST)")):  # fmt: skip
        if other not in result or not peapod:
            continue
        theirs = times(result[other])
        short = "Podman REST" if other == "podman" else "kube play"
        parts = [("1 pod p50", mine[0], theirs[0])]
        if burst:
            parts.append((f"all {burst} running", mine[1], theirs[1]))
        for what, a, b in parts:
            value = round(a / b, 2) if a is not None and b else None
            figures.append(
                Figure(
                    f"pod start {what}, peapod / {short}",
                    value,
                    "x",
                    goal=f"<= {GOAL_RATIO}x",
                    met=None if value is None else value <= GOAL_RATIO,
                    anchor=anchor,
                )
            )
    for key in ("peapod", "podman", "kube"):
        if key not in result:
            continue
        single, everything = times(result[key])
        figures.append(Figure(f"pod start 1 pod p50, {key}", single, "ms"))
        if burst:
            figures.append(Figure(f"pod start all {burst} running, {key}", everything, "ms"))
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench_pods.py",
        description="Pod start latency of peapod on real Podman, against Podman's REST API and kube play.",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="rounds of single pods (one pod per mode per round)",
    )
    p.add_argument("--burst", type=int, default=None, help="pods started at once (0: skip)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured pods per mode first")
    p.add_argument(
        "--kube-burst",
        choices=("concurrent", "one-file"),
        default=DEFAULTS["kube_burst"],
        help="kube play burst: one call per pod, all at once, or one call with every pod in one YAML",
    )
    p.add_argument(
        "--modes",
        default=None,
        help=f"comma-separated modes; bursts run in this order (default {DEFAULTS['modes']})",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['repeat']} single rounds and a {QUICK['burst']}-pod burst, modes {QUICK['modes']} "
        "(explicit --repeat/--burst/--warmup/--modes still win)",
    )
    p.add_argument(
        "--pod-workers",
        type=int,
        help="the agent's concurrent pod syncs (default: the agent's own default)",
    )
    p.add_argument("--work-dir", help="parent of the temporary directory (default: the system's temp dir)")
    p.add_argument(
        "--keep-dir",
        action="store_true",
        help="keep the temporary directory (Podman and control-plane logs and state; pods are still removed)",
    )
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    p.add_argument(
        "--profile", metavar="FILE", help="cProfile the measured peapod phases into FILE and print the top"
    )
    args = p.parse_args(argv)
    preset = {**DEFAULTS, **QUICK} if args.quick else DEFAULTS
    for key in ("repeat", "burst", "warmup", "modes"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.pod_workers is not None and not 1 <= args.pod_workers <= 200:
        p.error("--pod-workers must be between 1 and 200")
    if not 1 <= args.repeat <= 1000:
        p.error("--repeat must be between 1 and 1000")
    if not 0 <= args.burst <= 200:
        p.error("--burst must be between 0 and 200")
    if not 0 <= args.warmup <= 10:
        p.error("--warmup must be between 0 and 10")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes or len(set(args.modes)) != len(args.modes):
        p.error(f"--modes: a comma-separated list of distinct modes among {', '.join(MODES)}")
    return args


def print_profile(path: str) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(path, stream=buf)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(r"agent|controlplane|httpx|httpcore", 30)
    print(f"=== profile of the measured peapod phases ({path}) ===\n{buf.getvalue()}", file=sys.stderr)


def missing_reason() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman runc catatonit busybox-static)"
    if os.geteuid() != 0:
        return "this benchmark needs root (rootful Podman with runc)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cmd = reproduce_command(args)
    if reason := missing_reason():
        print(f"bench_pods.py: {reason}", file=sys.stderr)
        emit("pods", [], cmd=cmd, skipped=reason)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="peapod-bp-", dir=args.work_dir))
    profiler = cProfile.Profile() if args.profile else None
    try:
        result = asyncio.run(run(args, workdir, profiler))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; pods, containers and the podman service were removed", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, TimeoutError, httpx.HTTPError, ClientError) as exc:
        # Podman would not start, the image would not build, a warm-up pod failed...: said in one line.
        print(f"bench_pods.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        emit("pods", [], cmd=cmd, skipped=f"the benchmark failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if args.keep_dir:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            remove_workdir(workdir)
        if profiler is not None and args.profile:
            profiler.dump_stats(args.profile)
            print_profile(args.profile)
    print(report(result))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    emit("pods", summary_figures(result), cmd=cmd)
    failed = any(
        (result.get(k) or {}).get(phase, {}).get("failed")
        for k in args.modes
        for phase in ("single", "burst")
    )
    return 1 if failed else 0


def exit_now(code: int) -> None:
    """Exit even if a component could not be stopped (an interrupted start can leave an aiosqlite
    thread behind, and the interpreter would wait for it forever)."""
    stray = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in stray:
        thread.join(5)
    if alive := [t.name for t in stray if t.is_alive()]:
        print(f"bench_pods.py: threads still running at exit ({', '.join(alive)})", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_now(main())
