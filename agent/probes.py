"""Container probes (liveness, readiness, startup) and the actions they share with lifecycle hooks.

As in the kubelet, every probe of every running container instance has its own worker (an asyncio task)
that waits ``initialDelaySeconds`` from the container's start, then runs the probe every
``periodSeconds`` with ``timeoutSeconds``, and flips its result only after ``successThreshold``
successes or ``failureThreshold`` failures in a row. Readiness starts out failed, liveness successful;
liveness and readiness wait until the startup probe (if any) has succeeded. Each failed run is an
``Unhealthy`` event. Workers never act on the container themselves: a flipped result only enqueues the
pod, and the pod's sync (which the work queue serializes) reads ``ready``/``started`` for the status
and ``unhealthy`` to kill and restart the container. A worker belongs to one container ID, so a
restarted container starts from scratch.

Network actions (httpGet, tcpSocket) connect from inside the pod's network namespace, to the pod's IP
(or ``host``), so they work whichever node namespace the agent runs in; without a pod IP they use the
pod's loopback. exec goes through the runtime; sleep (hooks only) sleeps in the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import httpx

from controlplane.api.core import Container, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction
from controlplane.api.meta import parse_time

from .network.netns import run_in_netns
from .runtime.base import ContainerInfo, Runtime, RuntimeFailure, SandboxInfo

log = logging.getLogger(__name__)

Kind = Literal["liveness", "readiness", "startup"]
USER_AGENT = "kube-probe/1.36"

# (pod, container name, event type, reason, message)
EventSink = Callable[[Pod, str, str, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    """Where a container's probes and hooks go."""

    pod: Pod
    container: Container
    info: ContainerInfo
    pod_ip: str | None
    netns: str | None  # the pod's network namespace; None: the agent's own (hollow runtime)


@runtime_checkable
class AnswersNetworkProbes(Protocol):
    """A runtime whose containers have no network to reach (the hollow runtime) answers httpGet and
    tcpSocket actions itself, as it answers exec: 1,000 hollow nodes' probes must not become thousands
    of loopback connections a second in one process."""

    def network_probe(self, target: Target, port: int) -> tuple[bool, str]: ...


class Actions:
    """One run of an exec, httpGet, tcpSocket or sleep action: (succeeded, what to tell the user)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def run(self, action: Probe | LifecycleHandler, target: Target, timeout: float) -> tuple[bool, str]:
        try:
            if action.exec is not None:
                return await self._exec(action.exec.command or [], target, timeout)
            network = action.http_get or action.tcp_socket
            if network is not None and isinstance(self.runtime, AnswersNetworkProbes):
                return self.runtime.network_probe(target, _port(network.port, target.container))
            if action.http_get is not None:
                return await self._http(action.http_get, target, timeout)
            if action.tcp_socket is not None:
                return await self._tcp(action.tcp_socket, target, timeout)
            if isinstance(action, LifecycleHandler) and action.sleep is not None:
                await asyncio.sleep(action.sleep.seconds)
                return True, ""
            if isinstance(action, Probe) and action.grpc is not None:
                return False, "grpc probes are not supported by this agent"
        except RuntimeFailure as exc:
            return False, exc.message
        return False, "no action given (exec, httpGet, tcpSocket or sleep)"

    async def _exec(self, command: list[str], target: Target, timeout: float) -> tuple[bool, str]:
        if not command:
            return False, "exec with no command"
        result = await self.runtime.exec(target.info, command, timeout=timeout)
        output = result.output.decode(errors="replace").strip()
        if result.exit_code == 0:
            return True, output
        return False, output or f"command {command!r} exited with {result.exit_code}"

    async def _http(self, action: HTTPGetAction, target: Target, timeout: float) -> tuple[bool, str]:
        port = _port(action.port, target.container)
        host = action.host or target.pod_ip or "127.0.0.1"
        scheme = (action.scheme or "HTTP").lower()
        path = action.path or "/"
        url = f"{scheme}://{_hostport(host, port)}{path if path.startswith('/') else '/' + path}"
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        headers.update({h.name: h.value for h in action.http_headers or ()})
        return await run_in_netns(target.netns, _http_get, url, headers, timeout)

    async def _tcp(self, action: TCPSocketAction, target: Target, timeout: float) -> tuple[bool, str]:
        port = _port(action.port, target.container)
        host = action.host or target.pod_ip or "127.0.0.1"
        return await run_in_netns(target.netns, _tcp_connect, host, port, timeout)


def _port(port: int | str, container: Container) -> int:
    """A number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.ports or ():
        if p.name == port:
            return p.container_port
    raise RuntimeFailure("ProbeError", f"port {port!r} is not a named port of container {container.name}")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.cache
def _unverified_tls() -> ssl.SSLContext:
    """Probes never check certificates (the kubelet's rule). One context for every probe: building one
    (what ``verify=False`` does per client) costs about 5 ms of CPU, more than the probe itself."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_get(url: str, headers: dict[str, str], timeout: float) -> tuple[bool, str]:
    """In a thread inside the pod's namespace: the kubelet's rule, 200 <= status < 400 is success."""
    try:
        # No proxies from the environment (the kubelet's prober uses none), and reading them costs most of
        # a client's creation.
        with httpx.Client(
            verify=_unverified_tls(), timeout=timeout, follow_redirects=True, trust_env=False
        ) as http:
            r = http.get(url, headers=headers)
    except httpx.TimeoutException:
        return (
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        )
    except httpx.HTTPError as exc:
        return False, f'Get "{url}": {exc}'
    if 200 <= r.status_code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {r.status_code}"


def _tcp_connect(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"dial tcp {_hostport(host, port)}: {exc.strerror or exc}"


@dataclass
class _Worker:
    kind: Kind
    container_id: str
    result: bool  # the current result (after thresholds)
    task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


@dataclass
class _Unhealthy:
    container_id: str
    kind: Kind
    message: str


@dataclass
class _PodProbes:
    workers: dict[tuple[str, Kind], _Worker] = field(default_factory=dict)  # (container, kind)
    unhealthy: dict[str, _Unhealthy] = field(default_factory=dict)  # by container name


class Prober:
    """The probe workers of every pod on this node, and their current results."""

    def __init__(self, runtime: Runtime, enqueue: Callable[[str], None], event: EventSink) -> None:
        self.actions = Actions(runtime)
        self.enqueue = enqueue
        self.event = event
        self._pods: dict[str, _PodProbes] = {}  # by pod uid

    # --- what the pod sync reads ----------------------------------------------------------------

    def ready(self, pod: Pod, container: Container, container_id: str) -> bool:
        """Readiness as the status shows it: the probe's result, True without a readiness probe."""
        if container.readiness_probe is None:
            return self.started(pod, container, container_id)
        return self._result(pod, container.name, "readiness", container_id, False)

    def started(self, pod: Pod, container: Container, container_id: str) -> bool:
        if container.startup_probe is None:
            return True
        return self._result(pod, container.name, "startup", container_id, False)

    def unhealthy(self, pod: Pod, container: str, container_id: str) -> str | None:
        """Why a running container must be killed (a liveness or startup probe failed), once."""
        probes = self._pods.get(pod.metadata.uid or "")
        found = probes.unhealthy.pop(container, None) if probes is not None else None
        if found is None or found.container_id != container_id:
            return None
        return f"Container {container} failed {found.kind} probe, will be restarted"

    def _result(self, pod: Pod, container: str, kind: Kind, container_id: str, default: bool) -> bool:
        probes = self._pods.get(pod.metadata.uid or "")
        worker = probes.workers.get((container, kind)) if probes is not None else None
        return worker.result if worker is not None and worker.container_id == container_id else default

    # --- workers ----------------------------------------------------------------------------------

    def ensure(self, pod: Pod, sandbox: SandboxInfo | None, pod_ip: str | None) -> None:
        """A worker for each probe of each running container; none for anything else."""
        uid = pod.metadata.uid or ""
        probes = self._pods.setdefault(uid, _PodProbes())
        wanted: set[tuple[str, Kind]] = set()
        for c in pod.spec.containers:
            latest = sandbox.latest(c.name) if sandbox is not None else None
            if latest is None or latest.state != "running":
                continue
            kinds: tuple[tuple[Kind, Probe | None], ...] = (
                ("startup", c.startup_probe),
                ("liveness", c.liveness_probe),
                ("readiness", c.readiness_probe),
            )
            for kind, probe in kinds:
                if probe is None:
                    continue
                key = (c.name, kind)
                wanted.add(key)
                current = probes.workers.get(key)
                if current is not None and current.container_id == latest.id:
                    continue
                if current is not None:
                    current.cancel()
                target = Target(pod, c, latest, pod_ip, sandbox.netns if sandbox else None)
                worker = _Worker(kind, latest.id, result=kind == "liveness")
                worker.task = asyncio.create_task(
                    self._run(worker, probe, target), name=f"probe-{kind}-{pod.metadata.name}-{c.name}"
                )
                probes.workers[key] = worker
        for key in [k for k in probes.workers if k not in wanted]:
            probes.workers.pop(key).cancel()

    async def forget(self, pod_uid: str) -> None:
        """The pod is gone: stop its workers."""
        probes = self._pods.pop(pod_uid, None)
        if probes is None:
            return
        tasks = [w.task for w in probes.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop(self) -> None:
        for uid in list(self._pods):
            await self.forget(uid)

    async def _run(self, worker: _Worker, probe: Probe, target: Target) -> None:
        pod, c = target.pod, target.container
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        period = max(1, probe.period_seconds or 10)
        timeout = max(1, probe.timeout_seconds or 1)
        need_ok = max(1, probe.success_threshold or 1)
        need_fail = max(1, probe.failure_threshold or 3)
        await asyncio.sleep(max(0.0, (probe.initial_delay_seconds or 0) - _running_for(target.info)))
        oks = fails = 0
        while True:
            if worker.kind != "startup" and not self.started(pod, c, worker.container_id):
                await asyncio.sleep(min(period, 1))
                continue
            ok, message = await self.actions.run(probe, target, timeout)
            oks, fails = (oks + 1, 0) if ok else (0, fails + 1)
            if not ok:
                label = worker.kind.capitalize()
                await self.event(pod, c.name, "Warning", "Unhealthy", f"{label} probe failed: {message}")
            if ok and not worker.result and oks >= need_ok:
                worker.result = True
                self.enqueue(key)
                if worker.kind == "startup":
                    return  # done for this container's life
            elif not ok and (worker.result or worker.kind != "readiness") and fails >= need_fail:
                worker.result = False
                if worker.kind == "readiness":
                    self.enqueue(key)
                else:
                    probes = self._pods.get(pod.metadata.uid or "")
                    if probes is not None:
                        probes.unhealthy[c.name] = _Unhealthy(worker.container_id, worker.kind, message)
                    self.enqueue(key)
                    return  # the container is killed; its replacement gets a new worker
            await asyncio.sleep(period)


def _running_for(info: ContainerInfo) -> float:
    if not info.started_at:
        return 0.0
    try:
        return (dt.datetime.now(dt.UTC) - parse_time(info.started_at)).total_seconds()
    except ValueError:
        return 0.0
