"""Pod workers: make each pod bound to this node real, keep it so, and report the truth about it.

Level-based, like every controller here: watch events, runtime events (a container died) and a periodic
resync only enqueue the pod's ``namespace/name``; ``sync(key)`` compares the API pod with what the
runtime has and acts — create the sandbox (or re-create it when its infra container died), create and
start missing containers, restart dead ones per restartPolicy with CrashLoopBackOff, stop everything
when the pod is being deleted and then finish the deletion — and finally writes the pod's status if it
changed. One key is never synced twice at once (the work queue guarantees it); different pods' syncs
run concurrently, up to ``workers`` of them, like the kubelet's per-pod workers.

A sync asks the runtime about its own pod only (``pod_sandboxes`` when the runtime has it: Podman then
locks that pod's containers only, not the node's), asks again only when it changed something, and
never waits for an event to be posted: events go out in order from one background task.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from controlplane.api.core import ConfigMap, Container, Pod, Secret, Service
from controlplane.api.meta import parse_time
from controlplane.client import Client, ClientError, EventRecorder, NotFound
from controlplane.controllers.workqueue import WorkQueue
from controlplane.tasks import cancel

from .network import Network, NoNetwork
from .probes import Prober, Target
from .runtime.base import ContainerInfo, ContainerSpec, Runtime, RuntimeFailure, SandboxInfo
from .service_env import service_env
from .static_pods import is_static
from .status import Waiting, pod_status, same_status
from .volumes import VolumeError, VolumeManager

log = logging.getLogger(__name__)

DEFAULT_GRACE = 30  # terminationGracePeriodSeconds when the pod says nothing
HOOK_TIMEOUT = 120.0  # a bound on postStart hooks (Kubernetes has none; a hung hook must not wedge a worker)
MAX_QUEUED_EVENTS = 1000  # client-go's broadcaster queue; beyond it events are dropped, as there
EVENT_FLUSH_TIMEOUT = 5.0  # what ``stop()`` gives the events still queued


@dataclass(frozen=True)
class BackOffPolicy:
    """CrashLoopBackOff: ``initial`` doubling to ``maximum``; forgotten after ``reset_after`` of running."""

    initial: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0


@dataclass
class _ContainerNotes:
    """What the agent remembers about one container of one pod between syncs."""

    delay: float = 0.0
    not_before: float = 0.0
    waiting: Waiting | None = None
    restarts: int = 0
    previous: ContainerInfo | None = None


@dataclass
class _PodNotes:
    containers: dict[str, _ContainerNotes] = field(default_factory=dict)
    ip: str | None = None  # what the network gave the current sandbox
    wired: str | None = None  # the sandbox ID the network attached
    changed: bool = False  # this sync created, started or stopped a container: the runtime is asked again

    def of(self, name: str) -> _ContainerNotes:
        return self.containers.setdefault(name, _ContainerNotes())


@runtime_checkable
class PodSandboxes(Protocol):
    """A runtime that can list the sandboxes of one API pod without listing the whole node's."""

    async def pod_sandboxes(self, namespace: str, name: str) -> list[SandboxInfo]: ...


class EnvError(Exception):
    """A referenced ConfigMap/Secret/key is missing: CreateContainerConfigError."""


class PodWorkers:
    def __init__(
        self,
        client: Client,
        runtime: Runtime,
        node_name: str,
        node_ip: str,
        recorder: EventRecorder,
        get_pod: Callable[[str], Pod | None],
        *,
        backoff: BackOffPolicy | None = None,
        workers: int = 4,
        network: Network | None = None,
        volumes: VolumeManager | None = None,
        services: Callable[[], Iterable[Service]] | None = None,
    ) -> None:
        """``volumes`` None: pods' volumes are not set up (hollow nodes run no containers to mount into).
        ``services``: every Service the agent knows (an informer's cache), for the containers' service
        variables; None: no service variables at all (like a kubelet without an API server)."""
        self.client = client
        self.services = services
        self.volumes = volumes
        self.runtime = runtime
        self.network: Network = network or NoNetwork()
        self.node_name = node_name
        self.node_ip = node_ip
        self.recorder = recorder
        self.get_pod = get_pod
        self.backoff = backoff or BackOffPolicy()
        self.workers = workers
        self.queue = WorkQueue()
        self._notes: dict[str, _PodNotes] = {}
        self._lookup = runtime if isinstance(runtime, PodSandboxes) else None
        # Events wait here for one background task that posts them in order, so that a sync never waits
        # on the API server for a best-effort event (client-go's recorder does the same).
        self._events: deque[tuple[Pod, str, str, str, str | None]] = deque()
        self._poster: asyncio.Task[None] | None = None
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None
        self.prober = Prober(runtime, self.enqueue, self._container_event)
        # Where a static pod's status goes (it has no API object of its own; see static_pods.py).
        self.static_status: Callable[[Pod], Awaitable[None]] | None = None

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"pods-{self.node_name}")
        return self._task

    async def _run(self) -> None:
        """Up to ``workers`` syncs at once, each in a task of its own that exists only while it runs
        (the work queue's guarantees hold: one key is never synced twice at once). An idle node has no
        worker task at all, which matters with a thousand hollow nodes in one process."""
        gate = asyncio.Semaphore(self.workers)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await gate.acquire()
                try:
                    key = await self.queue.get()
                except BaseException:
                    gate.release()
                    raise
                task = asyncio.create_task(self._work(key, gate), name=f"pods-{self.node_name}-{key}")
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            for task in list(running):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _work(self, key: str, gate: asyncio.Semaphore) -> None:
        try:
            await self.sync(key)
            self.queue.forget(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pods-%s: sync %s failed: %s; retrying", self.node_name, key, exc)
            self.queue.add_rate_limited(key)
        finally:
            self.queue.done(key)
            gate.release()

    async def stop(self) -> None:
        self.queue.shutdown()
        await cancel(self._task)
        await self.prober.stop()
        if self._poster is not None:  # what is queued still goes out, within a bound
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._poster), EVENT_FLUSH_TIMEOUT)
            await cancel(self._poster)

    # --- the reconcile step ---------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        pod = self.get_pod(key)
        mine = await self._sandboxes_of(namespace, name)
        uid = pod.metadata.uid if pod is not None else None
        for stale in [s for s in mine if s.uid != uid]:
            # The API pod is gone (or was re-created under the same name): its sandbox goes too.
            await self.prober.forget(stale.uid)
            await self._remove_sandbox(stale, 0)
            await self._remove_volumes(stale.uid)
            self._notes.pop(stale.uid, None)
        if pod is None or uid is None:
            return
        sandbox = next((s for s in mine if s.uid == uid), None)
        if pod.metadata.deletion_timestamp is not None:
            await self.prober.forget(uid)
            await self._terminate(pod, sandbox)
            return
        if pod.status.phase in ("Succeeded", "Failed"):
            await self.prober.forget(uid)
            return
        notes = self._notes.setdefault(uid, _PodNotes())
        notes.changed = False
        if not await self._prepare_volumes(pod, notes):
            await self._report(pod, sandbox, notes)
            return
        sandbox = await self._ensure_sandbox(pod, sandbox, notes)
        if sandbox is not None and self.volumes is not None and not pod.spec.host_network:
            try:
                await self.volumes.write_hosts(pod, notes.ip)
            except VolumeError as exc:
                log.warning("hosts file of %s: %s", key, exc.message)
        # No container starts on the wrong DNS set-up: while the file cannot be written, retried.
        if sandbox is not None and await self._write_resolv_conf(pod):
            if await self._init_containers(pod, sandbox, notes):
                for container in pod.spec.containers:
                    await self._ensure_container(pod, sandbox, container, notes)
            if notes.changed:  # else what was listed at the start (or just created) is still the truth
                sandbox = await self._pod_sandbox(pod)
            self.prober.ensure(pod, sandbox, notes.ip)
        await self._report(pod, sandbox, notes)

    async def _prepare_volumes(self, pod: Pod, notes: _PodNotes) -> bool:
        """Set up (or refresh: a changed ConfigMap reaches its files here) the pod's volumes before its
        containers need them; False, with the pod waiting and a FailedMount event, while that fails."""
        if self.volumes is None or not pod.spec.volumes:
            return True
        try:
            await self.volumes.prepare(pod)
        except VolumeError as exc:
            self._record(pod, "Warning", exc.reason, f"MountVolume.SetUp failed: {exc.message}")
            for c in [*(pod.spec.init_containers or ()), *pod.spec.containers]:
                n = notes.of(c.name)
                if n.waiting is None or n.waiting.reason == "ContainerCreating":
                    n.waiting = Waiting("ContainerCreating", exc.message)
            self.queue.add_rate_limited(_key(pod))
            return False
        return True

    async def _write_resolv_conf(self, pod: Pod) -> bool:
        """The pod's /etc/resolv.conf, written before its containers start (they bind-mount it). Its
        Warning events (MissingClusterDNS, DNSConfigForming) are recorded when the file is first
        written or changes, as the kubelet records them when it makes the sandbox. False while it
        cannot be written: the pod is retried with back-off."""
        if self.volumes is None:
            return True
        try:
            dns, written = await self.volumes.write_resolv_conf(pod)
        except VolumeError as exc:
            self._record(pod, "Warning", exc.reason, exc.message)
            self.queue.add_rate_limited(_key(pod))
            return False
        if written:
            for reason, message in dns.events:
                self._record(pod, "Warning", reason, message)
        return True

    async def _remove_volumes(self, uid: str) -> None:
        if self.volumes is None:
            return
        try:
            await self.volumes.remove(uid)
        except VolumeError as exc:
            log.warning("%s", exc.message)

    async def _sandboxes_of(self, namespace: str, name: str) -> list[SandboxInfo]:
        """The sandboxes of one API pod name (any uid), asking the runtime for that pod's only if it can."""
        if self._lookup is not None:
            return await self._lookup.pod_sandboxes(namespace, name)
        return [s for s in await self.runtime.list_sandboxes() if s.namespace == namespace and s.name == name]

    async def _pod_sandbox(self, pod: Pod) -> SandboxInfo | None:
        mine = await self._sandboxes_of(pod.metadata.namespace or "", pod.metadata.name or "")
        return next((s for s in mine if s.uid == pod.metadata.uid), None)

    async def _sandbox(self, uid: str) -> SandboxInfo | None:
        """The sandbox of a pod uid, from the whole node's (tests look pods up this way)."""
        return next((s for s in await self.runtime.list_sandboxes() if s.uid == uid), None)

    async def _ensure_sandbox(
        self, pod: Pod, sandbox: SandboxInfo | None, notes: _PodNotes
    ) -> SandboxInfo | None:
        """A running, wired sandbox for the pod (None, with the pod waiting, while that fails)."""
        if notes.wired is not None and (sandbox is None or sandbox.id != notes.wired):
            # The sandbox this agent wired vanished behind its back (``podman pod rm``): its address goes.
            gone = SandboxInfo(pod.metadata.uid or "", pod.metadata.namespace or "", pod.metadata.name or "",
                               notes.wired, infra_running=False)  # fmt: skip
            await self.network.detach(gone.uid, gone)
            notes.wired = notes.ip = None
        if sandbox is not None and not sandbox.infra_running:
            # The infra container died: the namespaces are gone, so the whole sandbox is re-created.
            self._record(
                pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created."
            )
            for c in pod.spec.containers:
                latest = sandbox.latest(c.name)
                if latest is not None:
                    n = notes.of(c.name)
                    n.restarts = max(n.restarts, latest.attempt + 1)
                    n.previous = latest
            await self._remove_sandbox(sandbox, 0)
            sandbox = None
        try:
            if sandbox is None:
                sandbox = await self.runtime.create_sandbox(pod)
            if notes.wired != sandbox.id:
                # New, or adopted after an agent restart (attach then finds its address again).
                notes.ip = self.node_ip if pod.spec.host_network else await self.network.attach(pod, sandbox)
                notes.wired = sandbox.id
            return sandbox
        except RuntimeFailure as exc:
            self._record(
                pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc.message}"
            )
            for c in pod.spec.containers:
                notes.of(c.name).waiting = Waiting("ContainerCreating", exc.message)
            self.queue.add_rate_limited(_key(pod))
            return None

    async def _init_containers(self, pod: Pod, sandbox: SandboxInfo, notes: _PodNotes) -> bool:
        """Init containers run one at a time, in order, each to success, before any app container
        starts; True once all have. A failed one is retried with back-off unless restartPolicy is Never
        (then the pod has failed: the status says so and nothing more starts)."""
        never = (pod.spec.restart_policy or "Always") == "Never"
        for c in pod.spec.init_containers or ():
            latest = sandbox.latest(c.name)
            if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                notes.of(c.name).waiting = None
                continue
            if latest is not None and latest.state == "exited" and never:
                return False
            await self._ensure_container(pod, sandbox, c, notes, init=True)
            return False
        return True

    async def _ensure_container(
        self, pod: Pod, sandbox: SandboxInfo, c: Container, notes: _PodNotes, *, init: bool = False
    ) -> None:
        n = notes.of(c.name)
        latest = sandbox.latest(c.name)
        if latest is not None:
            n.restarts = max(n.restarts, latest.attempt)
        if (
            latest is not None
            and latest.state == "running"
            and (why := self.prober.unhealthy(pod, c.name, latest.id))
        ):
            # A liveness (or startup) probe failed: kill it now; the next sync restarts it with back-off.
            await self._container_event(pod, c.name, "Normal", "Killing", why)
            await self._kill(pod, sandbox, c, latest, notes)
            self.queue.add(_key(pod))
            return
        if latest is not None and latest.state == "running":
            if latest.started_at and n.delay and _age(latest.started_at) >= self.backoff.reset_after:
                n.delay = 0.0
            n.waiting = None
            return
        if latest is not None and latest.state == "exited":
            policy = pod.spec.restart_policy or "Always"
            if policy == "Never" or (policy == "OnFailure" and latest.exit_code == 0):
                n.waiting = None
                return
        if latest is not None and latest.state in ("exited", "created") and not self._may_start(n):
            wait = n.not_before - time.monotonic()
            n.waiting = Waiting(
                "CrashLoopBackOff",
                f"back-off {_seconds(n.delay)} restarting failed container={c.name} "
                f"pod={pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})",
            )
            await self._container_event(
                pod,
                c.name,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod "
                f"{pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})",
            )
            self.queue.add_after(_key(pod), max(wait, 0.01))
            return
        attempt = n.restarts + 1 if latest is not None else n.restarts
        await self._start_container(pod, sandbox, c, attempt, latest, n, init=init)

    def _may_start(self, n: _ContainerNotes) -> bool:
        return time.monotonic() >= n.not_before

    def _back_off(self, n: _ContainerNotes) -> None:
        n.delay = self.backoff.initial if n.delay == 0 else min(n.delay * 2, self.backoff.maximum)
        n.not_before = time.monotonic() + n.delay

    async def _start_container(
        self,
        pod: Pod,
        sandbox: SandboxInfo,
        c: Container,
        attempt: int,
        old: ContainerInfo | None,
        n: _ContainerNotes,
        *,
        init: bool = False,
    ) -> None:
        key = _key(pod)
        image = c.image or ""
        try:
            await self.runtime.ensure_image(image, c.image_pull_policy or "IfNotPresent")
        except RuntimeFailure as exc:
            first = n.waiting is None or n.waiting.reason not in ("ErrImagePull", "ImagePullBackOff")
            n.waiting = Waiting("ErrImagePull" if first else "ImagePullBackOff", exc.message)
            await self._container_event(
                pod, c.name, "Warning", "Failed", f'Failed to pull image "{image}": {exc.message}'
            )
            await self._container_event(pod, c.name, "Warning", "Failed", f"Error: {exc.reason}")
            self._back_off(n)
            self.queue.add_after(key, n.delay)
            return
        if c.image_pull_policy == "Always":
            await self._container_event(
                pod,
                c.name,
                "Normal",
                "Pulled",
                f'Container image "{image}" already present on machine '
                "(no registry is configured, so Always acts as IfNotPresent)",
            )
        else:
            await self._container_event(
                pod, c.name, "Normal", "Pulled", f'Container image "{image}" already present on machine'
            )
        try:
            env = await self._env(pod, c)
            mounts = self.volumes.mounts(pod, c) if self.volumes is not None else []
        except VolumeError as exc:
            n.waiting = Waiting("CreateContainerConfigError", exc.message)
            await self._container_event(pod, c.name, "Warning", "Failed", f"Error: {exc.message}")
            self.queue.add_after(key, 1.0)
            return
        except EnvError as exc:
            n.waiting = Waiting("CreateContainerConfigError", str(exc))
            await self._container_event(pod, c.name, "Warning", "Failed", f"Error: {exc}")
            self.queue.add_after(key, 1.0)
            return
        notes = self._notes.get(pod.metadata.uid or "")
        if notes is not None:
            notes.changed = True
        if old is not None:
            n.previous = old
            # Keep the last dead attempt (for `logs --previous`), drop older ones.
            for info in sandbox.containers:
                if info.name == c.name and info.attempt < old.attempt:
                    await self.runtime.remove_container(info)
            self._back_off(n)
        try:
            spec = ContainerSpec(c, env, attempt, init, mounts)
            created = await self.runtime.create_container(sandbox, pod, spec)
        except RuntimeFailure as exc:
            n.waiting = Waiting(exc.reason, exc.message)
            await self._container_event(pod, c.name, "Warning", "Failed", f"Error: {exc.message}")
            self._back_off(n)
            self.queue.add_after(key, n.delay)
            return
        await self._container_event(pod, c.name, "Normal", "Created", f"Created container {c.name}")
        try:
            await self.runtime.start_container(created)
        except RuntimeFailure as exc:
            n.waiting = Waiting(exc.reason, exc.message)
            await self._container_event(pod, c.name, "Warning", "Failed", f"Error: {exc.message}")
            self._back_off(n)
            self.queue.add_after(key, n.delay)
            return
        n.restarts = attempt
        n.waiting = None
        await self._container_event(pod, c.name, "Normal", "Started", f"Started container {c.name}")
        if c.lifecycle is not None and c.lifecycle.post_start is not None:
            created.state = "running"
            target = Target(pod, c, created, self._ip(pod), sandbox.netns)
            ok, message = await self.prober.actions.run(c.lifecycle.post_start, target, HOOK_TIMEOUT)
            if not ok:
                # Kubernetes kills a container whose postStart hook failed; it restarts per policy.
                await self._container_event(
                    pod, c.name, "Warning", "FailedPostStartHook", f"PostStartHook failed: {message}"
                )
                await self._container_event(pod, c.name, "Normal", "Killing", "FailedPostStartHook")
                await self._kill(
                    pod, sandbox, c, created, self._notes.get(pod.metadata.uid or ""), hook=False
                )
                self.queue.add(key)

    def _ip(self, pod: Pod) -> str | None:
        notes = self._notes.get(pod.metadata.uid or "")
        return notes.ip if notes is not None else None

    def _grace(self, pod: Pod) -> int:
        grace = pod.metadata.deletion_grace_period_seconds
        if grace is None:
            grace = pod.spec.termination_grace_period_seconds
        return DEFAULT_GRACE if grace is None else max(0, grace)

    async def _kill(
        self,
        pod: Pod,
        sandbox: SandboxInfo,
        c: Container,
        info: ContainerInfo,
        notes: _PodNotes | None,
        *,
        hook: bool = True,
    ) -> None:
        """Stop one container as the kubelet does: its preStop hook first, then SIGTERM, within the grace."""
        if notes is not None:
            notes.changed = True
        grace = self._grace(pod)
        spent = await self._pre_stop(pod, sandbox, [(c, info)], grace) if hook else 0.0
        try:
            await self.runtime.stop_container(info, _remaining(grace, spent))
        except RuntimeFailure as exc:
            log.warning("stopping %s of %s: %s", c.name, _key(pod), exc.message)

    async def _pre_stop(
        self, pod: Pod, sandbox: SandboxInfo, running: list[tuple[Container, ContainerInfo]], grace: int
    ) -> float:
        """Every preStop hook of ``running`` at once, bounded by the grace period; the seconds spent."""
        started = time.monotonic()

        async def one(c: Container, info: ContainerInfo) -> None:
            handler = c.lifecycle.pre_stop if c.lifecycle is not None else None
            if handler is None:
                return
            target = Target(pod, c, info, self._ip(pod), sandbox.netns)
            try:
                ok, message = await asyncio.wait_for(
                    self.prober.actions.run(handler, target, grace or 1), grace
                )
            except TimeoutError:
                ok, message = False, f"did not finish within the grace period of {grace}s"
            if not ok:
                await self._container_event(
                    pod, c.name, "Warning", "FailedPreStopHook", f"PreStopHook failed: {message}"
                )

        await asyncio.gather(*(one(c, info) for c, info in running))
        return time.monotonic() - started

    async def _remove_sandbox(self, sandbox: SandboxInfo, grace: int) -> None:
        await self.network.detach(sandbox.uid, sandbox)
        await self.runtime.remove_sandbox(sandbox, grace)

    async def _container_event(self, pod: Pod, container: str, type_: str, reason: str, message: str) -> None:
        """An event about one container: its fieldPath keeps two containers' events apart."""
        self._record(pod, type_, reason, message, field_path=f"spec.containers{{{container}}}")

    def _record(
        self, pod: Pod, type_: str, reason: str, message: str, *, field_path: str | None = None
    ) -> None:
        """Queue an event for the background poster (started when needed, gone when idle)."""
        if len(self._events) >= MAX_QUEUED_EVENTS:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("%d events dropped: the API server does not keep up", self._dropped)
            return
        self._events.append((pod, type_, reason, message, field_path))
        if self._poster is None:
            self._poster = asyncio.create_task(self._post_events(), name=f"events-{self.node_name}")

    async def _post_events(self) -> None:
        try:
            while self._events:
                pod, type_, reason, message, field_path = self._events.popleft()
                try:
                    await self.recorder.record(pod, type_, reason, message, field_path=field_path)
                except Exception as exc:  # best effort, like the recorder itself
                    log.warning("could not record event %s for %s: %s", reason, _key(pod), exc)
        finally:
            self._poster = None

    async def _terminate(self, pod: Pod, sandbox: SandboxInfo | None) -> None:
        """Graceful deletion: stop the containers within the grace period, remove the sandbox, then
        finish the API deletion (a delete with grace 0, guarded by the uid)."""
        grace = self._grace(pod)
        if sandbox is not None:
            specs = {c.name: c for c in [*(pod.spec.init_containers or ()), *pod.spec.containers]}
            running = [
                (specs[info.name], info)
                for info in sandbox.containers
                if info.state == "running" and info.name in specs
            ]
            for c, _ in running:
                await self._container_event(pod, c.name, "Normal", "Killing", f"Stopping container {c.name}")
            spent = await self._pre_stop(pod, sandbox, running, grace)
            await self._remove_sandbox(sandbox, _remaining(grace, spent))
        await self._remove_volumes(pod.metadata.uid or "")
        self._notes.pop(pod.metadata.uid or "", None)
        try:
            await self.client.delete(
                Pod,
                pod.metadata.name or "",
                pod.metadata.namespace,
                grace_period_seconds=0,
                uid=pod.metadata.uid,
            )
        except NotFound:
            pass

    async def _report(self, pod: Pod, sandbox: SandboxInfo | None, notes: _PodNotes) -> None:
        waiting = {name: n.waiting for name, n in notes.containers.items() if n.waiting is not None}
        restarts = {name: n.restarts for name, n in notes.containers.items()}
        previous = {name: n.previous for name, n in notes.containers.items() if n.previous is not None}
        if sandbox is not None and sandbox.ip is None:
            sandbox.ip = notes.ip
        ready: dict[str, bool] = {}
        started: dict[str, bool] = {}
        for c in pod.spec.containers:
            latest = sandbox.latest(c.name) if sandbox is not None else None
            if latest is not None and latest.state == "running":
                ready[c.name] = self.prober.ready(pod, c, latest.id)
                started[c.name] = self.prober.started(pod, c, latest.id)
        status = pod_status(pod, sandbox, waiting, restarts, previous, self.node_ip, ready, started)
        if same_status(status, pod.status):
            return
        fresh = Pod(metadata=pod.metadata, spec=pod.spec, status=status)
        if self.static_status is not None and is_static(pod):
            await self.static_status(fresh)
            return
        try:
            await self.client.replace_status(fresh)
        except ClientError as exc:
            # A stale resourceVersion (the pod changed meanwhile): the watch brings it back here.
            log.debug("status of %s not written: %s", _key(pod), exc)
            self.queue.add_after(_key(pod), 0.2)

    # --- environment ----------------------------------------------------------------------------

    async def _env(self, pod: Pod, c: Container) -> dict[str, str]:
        """The container's environment with every reference resolved, in Kubernetes' order: the service
        variables first (envFrom and env override them; ``$(VAR)`` may refer to them), then envFrom,
        then env."""
        ns = pod.metadata.namespace or "default"
        env: dict[str, str] = {}
        if self.services is not None:
            env.update(service_env(self.services(), ns, pod.spec.enable_service_links is not False))
        for source in c.env_from or ():
            prefix = source.prefix or ""
            if source.config_map_ref is not None:
                data = await self._data(
                    "ConfigMap", ns, source.config_map_ref.name or "", bool(source.config_map_ref.optional)
                )
                env.update({prefix + k: v for k, v in data.items()})
            if source.secret_ref is not None:
                data = await self._data(
                    "Secret", ns, source.secret_ref.name or "", bool(source.secret_ref.optional)
                )
                env.update({prefix + k: v for k, v in data.items()})
        for var in c.env or ():
            if var.value_from is None:
                env[var.name] = _expand(var.value or "", env)
                continue
            ref = var.value_from
            if ref.field_ref is not None:
                env[var.name] = _field(pod, ref.field_ref.field_path, self.node_ip)
            else:
                selector = ref.config_map_key_ref or ref.secret_key_ref
                if selector is None:
                    continue
                kind = "ConfigMap" if ref.config_map_key_ref is not None else "Secret"
                data = await self._data(kind, ns, selector.name or "", bool(selector.optional))
                if selector.key in data:
                    env[var.name] = data[selector.key]
                elif not selector.optional:
                    raise EnvError(f"couldn't find key {selector.key} in {kind} {ns}/{selector.name}")
        return env

    async def _data(self, kind: str, ns: str, name: str, optional: bool) -> dict[str, str]:
        """The data of a ConfigMap or (decoded) Secret; a missing one is an error unless optional."""
        try:
            if kind == "ConfigMap":
                return dict((await self.client.get(ConfigMap, name, ns)).data or {})
            secret = await self.client.get(Secret, name, ns)
        except NotFound:
            if optional:
                return {}
            raise EnvError(f'{kind.lower()} "{name}" not found') from None
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}


def _key(pod: Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _field(pod: Pod, path: str, node_ip: str) -> str:
    m = pod.metadata
    values = {
        "metadata.name": m.name or "",
        "metadata.namespace": m.namespace or "",
        "metadata.uid": m.uid or "",
        "spec.nodeName": pod.spec.node_name or "",
        "spec.serviceAccountName": pod.spec.service_account_name or "",
        "status.hostIP": node_ip,
        "status.podIP": pod.status.pod_ip or "",
    }
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return (m.labels or {}).get(path[17:-2], "")
    if path.startswith("metadata.annotations['") and path.endswith("']"):
        return (m.annotations or {}).get(path[22:-2], "")
    return values.get(path, "")


def _expand(value: str, env: dict[str, str]) -> str:
    """``$(VAR)`` references to earlier variables, as Kubernetes expands them (``$$`` escapes)."""
    out = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and (end := value.find(")", i)) != -1:
            name = value[i + 2 : end]
            out.append(env.get(name, value[i : end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _age(timestamp: str) -> float:
    return (dt.datetime.now(dt.UTC) - parse_time(timestamp)).total_seconds()


def _remaining(grace: int, spent: float) -> int:
    """What is left of the grace period after preStop hooks; like the kubelet, at least 2 s for SIGTERM
    when hooks ran over (0 stays 0: an immediate kill was asked for)."""
    if grace == 0:
        return 0
    return max(2, grace - int(spent)) if spent >= grace else grace - int(spent)


def _seconds(delay: float) -> str:
    if delay >= 60:
        minutes, seconds = divmod(int(delay), 60)
        return f"{minutes}m{seconds}s"
    return f"{delay:g}s"
