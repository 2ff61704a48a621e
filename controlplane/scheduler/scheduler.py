"""The scheduler: binds pending pods to nodes, one pod at a time, the way kube-scheduler does.

Design
------
Two informers (all Pods, all Nodes) keep a local picture of the cluster in a :class:`Cache`
(:mod:`.cache`): one :class:`NodeInfo` per node with the pods counted on it, bound or *assumed* (pods
this scheduler decided to bind whose binding the watch has not shown yet: they count exactly like bound
pods, so a lagging watch never over-commits a node). Informer events update the NodeInfos in place
(a pod's requests and host ports are parsed once per pod event), so a decision does no per-node setup.

A queue of pending pods (no ``nodeName``, our ``schedulerName``, not deleting, not finished, no
scheduling gates) has three parts: *active* (FIFO, arrival order), *parked* (found unschedulable,
waiting for a cluster change) and *backing off* (the bind failed; a timer brings it back).

A scheduling decision is a pure function (:func:`.plugins.schedule`) of the pod and the node infos:
every :class:`Filter` must pass (the first failing filter gives the node's reasons), then the weighted
:class:`Score` plugins rank the feasible nodes and the best wins (ties go to the node examined first:
the lowest name in a small cluster, where every node is examined from the first in name order).
Like kube-scheduler, a large cluster is not searched exhaustively: filtering stops once
``percentageOfNodesToScore`` of the nodes (adaptive: 42% of 1,000 nodes, at least 100) are feasible,
and the next pod starts where this one stopped, so pods spread over the whole cluster. Adding a plugin
is adding a ``Filter``/``Score`` to the lists.

Parked pods go back to the active queue when a node is added or changes in a way that matters
(allocatable, labels, taints, unschedulable, readiness), when a bound pod is deleted or finishes (it
frees resources), when the pod's own spec or labels change, and at least every ``retry_interval``.

Concurrency model
-----------------
Everything runs on one event loop. Informer handlers are synchronous and only update the cache and
the queue. The scheduling loop pops one pod, decides and assumes (or parks) without awaiting in
between, so no event can slip between the decision and its bookkeeping, and each decision sees the
previous ones. All API I/O runs in background tasks so the loop never waits on the network; the number
of binds in flight is bounded, which is the loop's only back-pressure. Per pod, the API sees what
kube-scheduler sends: the binding and a ``Scheduled`` event (the binding itself sets PodScheduled=True);
an unschedulable pod gets a FailedScheduling event and a PodScheduled=False status patch. Scheduled
events wait in a bounded queue for two writers (kube-scheduler's event broadcaster also queues at most
1,000 and drops past that), so binds never queue behind events in a burst. A bind
answered with 409 means someone else bound the pod (the watch will show it); any other failure forgets
the assumption and retries with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

from controlplane.api.core import Node, Pod
from controlplane.api.meta import now
from controlplane.client import Client, ClientError, Conflict, EventRecorder, Informer, NotFound, key_of
from controlplane.client.informer import InformerUse, SharedInformerFactory
from controlplane.status import condition as find_condition
from controlplane.status import node_ready as node_is_ready

from .cache import Cache
from .plugins import (
    DEFAULT_FILTERS,
    DEFAULT_SCORES,
    TERMINAL_PHASES,
    Decision,
    Filter,
    HostPort,
    NodeInfo,
    PodInfo,
    Resources,
    Score,
    failure_message,
    least_requested,
    node_affinity,
    node_ports,
    node_ready,
    node_resources_fit,
    node_unschedulable,
    nodes_to_find,
    pod_requests,
    schedule,
    selector_spread,
    taint_toleration,
    taint_toleration_score,
    tolerates,
)

log = logging.getLogger(__name__)

# Scheduled events are written by a few background writers from a bounded queue, after the binds, so a
# burst of pods never waits for its events and thousands of event requests never pile up in the HTTP
# pool. kube-scheduler's event broadcaster queues 1,000 too and drops the incoming event when full;
# this drops the oldest instead, so the latest pods' events are the ones that get written.
EVENT_QUEUE = 1000
EVENT_WRITERS = 2

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_SCORES",
    "Cache",
    "Decision",
    "Filter",
    "HostPort",
    "NodeInfo",
    "PodInfo",
    "Resources",
    "Scheduler",
    "Score",
    "failure_message",
    "least_requested",
    "node_affinity",
    "node_ports",
    "node_ready",
    "node_resources_fit",
    "node_unschedulable",
    "nodes_to_find",
    "pod_requests",
    "schedule",
    "selector_spread",
    "taint_toleration",
    "taint_toleration_score",
    "tolerates",
]

# --- the scheduler -------------------------------------------------------------------------------


def _scheduling_view(node: Node) -> tuple[Any, ...]:
    """The parts of a node that can change a scheduling decision (heartbeats are not among them)."""
    ready = node_is_ready(node)
    return (
        node.metadata.labels,
        node.spec.unschedulable,
        node.spec.taints,
        node.status.allocatable,
        node.status.capacity,
        ready,
    )


def _occupies_node(pod: Pod) -> bool:
    return bool(pod.spec.node_name) and pod.status.phase not in TERMINAL_PHASES


class Scheduler:
    """Watches pods and nodes and binds every pending pod that names this scheduler to a node."""

    def __init__(
        self,
        client: Client,
        *,
        name: str = "default-scheduler",
        retry_interval: float = 5.0,
        filters: Sequence[Filter] = DEFAULT_FILTERS,
        scores: Sequence[Score] = DEFAULT_SCORES,
        max_binds_in_flight: int = 16,
        percentage_of_nodes_to_score: int = 0,
        event_queue: int = EVENT_QUEUE,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        """``informers``: the process's shared informers (the control plane passes its factory, so the
        scheduler and the controllers hold one copy of every pod); without it the scheduler has its own."""
        self.client = client
        self.name = name
        self.retry_interval = retry_interval
        self.cache = Cache(filters, scores, percentage_of_nodes_to_score=percentage_of_nodes_to_score)
        factory = informers or SharedInformerFactory(client)
        self.pods: Informer[Pod] = factory.informer(Pod)
        self.nodes: Informer[Node] = factory.informer(Node)
        self.recorder = EventRecorder(client, name)
        self._active: dict[str, None] = {}
        self._parked: dict[str, None] = {}
        self._backoff: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._bind_slots = asyncio.Semaphore(max_binds_in_flight)
        self._io: set[asyncio.Task[None]] = set()
        self._events: deque[tuple[Pod, str]] = deque()
        self._event_queue = max(event_queue, 1)
        self._events_ready = asyncio.Event()
        self.events_dropped = 0
        self._loops: list[asyncio.Task[None]] = []
        self._use = InformerUse(self, (self.pods, self.nodes), self._subscribe, private=informers is None)

    def _subscribe(self) -> None:
        self.pods.on_add(lambda pod: self._pod_changed(None, pod), owner=self)
        self.pods.on_update(self._pod_changed, owner=self)
        self.pods.on_delete(self._pod_deleted, owner=self)
        self.nodes.on_add(self._node_added, owner=self)
        self.nodes.on_update(self._node_updated, owner=self)
        self.nodes.on_delete(self._node_deleted, owner=self)

    @property
    def assumed(self) -> dict[str, str]:
        """Pods bound (or being bound) by us that the watch has not shown bound yet: key -> node."""
        return self.cache.assumed_pods()

    async def start(self, timeout: float = 30.0) -> None:
        """Start the informers, wait until both have listed, then start the scheduling loop."""
        self._use.start()
        try:
            await asyncio.wait_for(asyncio.gather(self.pods.synced.wait(), self.nodes.synced.wait()), timeout)
        except BaseException:
            await self._stop_informers()
            raise
        self._loops.append(asyncio.create_task(self._run(), name=f"{self.name}-loop"))
        self._loops.append(asyncio.create_task(self._retry_parked(), name=f"{self.name}-retry"))
        for i in range(EVENT_WRITERS):
            self._loops.append(asyncio.create_task(self._write_events(), name=f"{self.name}-events-{i}"))

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel the loop, pending retries and in-flight I/O, then the informers."""
        for handle in self._backoff.values():
            handle.cancel()
        self._backoff.clear()
        tasks = [*self._loops, *self._io]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self._loops.clear()
        await self._stop_informers()

    async def _stop_informers(self) -> None:
        await self._use.stop()

    # --- informer handlers (synchronous: bookkeeping only) --------------------------------------

    def _wants(self, pod: Pod) -> bool:
        """Is this pod ours to schedule now?"""
        return (
            not pod.spec.node_name
            and (pod.spec.scheduler_name or "default-scheduler") == self.name
            and pod.metadata.deletion_timestamp is None
            and pod.status.phase not in TERMINAL_PHASES
            and not pod.spec.scheduling_gates
        )

    def _pod_changed(self, old: Pod | None, pod: Pod) -> None:
        key = key_of(pod)
        cache = self.cache
        assumed = cache.assumed(key)
        if assumed is not None and (pod.spec.node_name or pod.metadata.uid != assumed[1].uid):
            cache.confirm(key)  # the watch caught up (or it is another pod by the same name)
            assumed = None
        freed = False
        if _occupies_node(pod):
            cache.place(pod.spec.node_name or "", PodInfo.of(pod))
        elif assumed is None:
            freed = cache.unplace(key)
        if freed:
            self._unpark_all()
        if not self._wants(pod):
            self._forget_queued(key)
        elif key in self._parked:
            if old is None or old.spec != pod.spec or old.metadata.labels != pod.metadata.labels:
                self._activate(key)  # our own status writes must not make it spin
        elif key not in self._active and key not in self._backoff and assumed is None:
            self._activate(key)

    def _pod_deleted(self, pod: Pod) -> None:
        key = key_of(pod)
        self.cache.confirm(key)
        freed = self.cache.unplace(key)
        self._forget_queued(key)
        if freed:
            self._unpark_all()

    def _node_added(self, node: Node) -> None:
        self.cache.set_node(node)
        self._unpark_all()

    def _node_updated(self, old: Node, new: Node) -> None:
        info = self.cache.node(new.metadata.name or "")
        if info is None or _scheduling_view(old) != _scheduling_view(new):
            self.cache.set_node(new)
            self._unpark_all()
        else:
            info.node = new  # a heartbeat: nothing a decision reads has changed

    def _node_deleted(self, node: Node) -> None:
        self.cache.remove_node(node.metadata.name or "")

    # --- the queue --------------------------------------------------------------------------------

    def _activate(self, key: str) -> None:
        self._parked.pop(key, None)
        handle = self._backoff.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._active.setdefault(key, None)
        self._wakeup.set()

    def _unpark_all(self) -> None:
        """Something changed that might let parked pods fit: retry them all, in their original order."""
        for key in list(self._parked):
            self._activate(key)

    def _forget_queued(self, key: str) -> None:
        self._active.pop(key, None)
        self._parked.pop(key, None)
        self._failures.pop(key, None)
        handle = self._backoff.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _retry_later(self, key: str) -> None:
        """Exponential back-off after an error (not for unschedulable pods: those are parked)."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        previous = self._backoff.pop(key, None)
        if previous is not None:
            previous.cancel()
        delay = min(0.5 * 2**failures, max(self.retry_interval, 0.5))
        self._backoff[key] = asyncio.get_running_loop().call_later(delay, self._backoff_expired, key)

    def _backoff_expired(self, key: str) -> None:
        self._backoff.pop(key, None)
        pod = self.pods.get(key)
        if pod is not None and self._wants(pod) and self.cache.assumed(key) is None:
            self._activate(key)

    async def _next(self) -> str:
        while not self._active:
            self._wakeup.clear()
            await self._wakeup.wait()
        key = next(iter(self._active))
        del self._active[key]
        return key

    async def _retry_parked(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            self._unpark_all()

    # --- the scheduling loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._bind_slots.acquire()
            try:
                key = await self._next()
            except BaseException:
                self._bind_slots.release()
                raise
            bound = False
            try:
                bound = self._schedule_one(key)
            except Exception:
                log.exception("scheduling %s failed", key)
                self._retry_later(key)
            finally:
                if not bound:
                    self._bind_slots.release()
            await asyncio.sleep(0)  # let the informers and the I/O tasks run between decisions

    def _schedule_one(self, key: str) -> bool:
        """Decide for one pod and do the bookkeeping, with no await: returns True if a bind was started."""
        pod = self.pods.get(key)
        if pod is None or not self._wants(pod) or self.cache.assumed(key) is not None:
            return False
        info = PodInfo.of(pod)
        decision = self.cache.schedule(info)
        if decision.node is None:
            self._parked[key] = None
            log.debug("%s: %s", key, decision.message)  # the FailedScheduling event is the user-facing record
            self._spawn(self._report_unschedulable(pod, decision.message))
            return False
        self.cache.assume(decision.node, info)
        self._spawn(self._bind(info, decision.node))
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._io.add(task)
        task.add_done_callback(self._io.discard)

    # --- API I/O (background tasks) ---------------------------------------------------------------

    async def _bind(self, info: PodInfo, node: str) -> None:
        pod = info.pod
        key = info.key
        name, namespace = pod.metadata.name or "", pod.metadata.namespace or "default"
        try:
            await self.client.bind(name, namespace, node)
        except (Conflict, NotFound) as exc:
            # Bound by someone else, being deleted, or gone: the watch will tell; nothing to retry.
            log.info("binding %s to %s: %s", key, node, exc)
            self.cache.forget(key, info)
            return
        except ClientError as exc:
            log.warning("binding %s to %s failed: %s; retrying", key, node, exc)
            if self.cache.forget(key, info):
                self._retry_later(key)
            return
        finally:
            self._bind_slots.release()
        self._failures.pop(key, None)
        self._queue_event(pod, f"Successfully assigned {key} to {node}")

    def _queue_event(self, pod: Pod, message: str) -> None:
        """Queue a Scheduled event; when the queue is full the oldest queued event is dropped."""
        if len(self._events) >= self._event_queue:
            self._events.popleft()
            self.events_dropped += 1
            if self.events_dropped % 1000 == 1:
                log.warning("event queue full: %d Scheduled events dropped so far", self.events_dropped)
        self._events.append((pod, message))
        self._events_ready.set()

    async def _write_events(self) -> None:
        while True:
            while not self._events:
                self._events_ready.clear()
                await self._events_ready.wait()
            pod, message = self._events.popleft()
            try:
                await self.recorder.record(pod, "Normal", "Scheduled", message)
            except Exception:  # the recorder logs API errors itself; anything else must not stop the writer
                log.exception("recording the Scheduled event of %s failed", key_of(pod))

    async def _report_unschedulable(self, pod: Pod, message: str) -> None:
        """A FailedScheduling event (merged by the recorder when repeated) and PodScheduled=False."""
        await self.recorder.record(pod, "Warning", "FailedScheduling", message)
        current = find_condition(pod.status.conditions, "PodScheduled")
        if current is not None and (current.status, current.reason, current.message) == (
            "False",
            "Unschedulable",
            message,
        ):
            return
        since = current.last_transition_time if current is not None and current.status == "False" else None
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": since or now(),
        }
        # The resourceVersion precondition keeps a late report from overwriting a newer state (the pod
        # may have been bound meanwhile); the next attempt reports again from a fresher copy.
        patch = {
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "status": {"conditions": [condition]},
        }
        try:
            await self.client.patch(
                Pod,
                pod.metadata.name or "",
                patch,
                pod.metadata.namespace,
                patch_type="strategic",
                subresource="status",
            )
        except (NotFound, Conflict):
            pass
        except ClientError as exc:
            log.warning("could not set PodScheduled on %s: %s", key_of(pod), exc)
