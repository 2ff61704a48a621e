"""The node lifecycle controller: node health from heartbeats, condition taints, and taint-based
eviction (kube-controller-manager's node-lifecycle-controller and its NoExecuteTaintManager).

Health. A node's heartbeat is the newer of its Lease (``kube-node-lease/NAME`` ``spec.renewTime``) and
its Ready condition's ``lastHeartbeatTime``. Those are the agent's clock, so they are only compared for
*change*: the controller remembers, on its own monotonic clock, when it last saw either change (the
probe time, Kubernetes' ``nodeHealthData.probeTimestamp``); a node seen for the first time gets a fresh
probe time. When the probe time is older than ``node_monitor_grace_period`` every True/False condition
becomes Unknown (``NodeStatusUnknown``, "Kubelet stopped posting node status.") through the status
subresource, and the node's pods are marked Ready=False (MarkPodsNotReady) so Endpoints drop them.

Taints follow the Ready condition: Unknown → ``node.kubernetes.io/unreachable``, False →
``node.kubernetes.io/not-ready``, each with NoSchedule and NoExecute (the NoExecute one stamped with
``timeAdded``); True → neither. ``spec.taints`` is rewritten with a resourceVersion-guarded update that
keeps every other taint, retried on conflict.

Eviction. A pod bound to a node with NoExecute taints it does not tolerate is deleted at once (a normal
graceful delete, event ``TaintManagerEviction``); one that tolerates them all, some with
``tolerationSeconds``, is deleted when the smallest of those runs out, counted from the taint's
``timeAdded``; tolerating without seconds means never. A deadline is a timer that requeues the pod: the
worker re-checks the level at that moment, so a taint removed in time cancels the eviction.

Concurrency model: three informers (Nodes, the node Leases, Pods) feed two work queues. A monitor task
enqueues every node each ``node_monitor_period``; node workers run :meth:`sync_node` (health, conditions,
taints). Pod and node events enqueue the pods concerned into the eviction queue, whose workers run
:meth:`sync_pod`. Handlers only enqueue; all API I/O happens in workers, never on the informer tasks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from controlplane.api.coordination import Lease
from controlplane.api.core import Node, NodeCondition, Pod, Taint
from controlplane.api.meta import now, parse_time
from controlplane.client import Client, Conflict, EventRecorder, Informer, NotFound, key_of
from controlplane.client.informer import InformerUse, SharedInformerFactory
from controlplane.status import condition
from controlplane.taints import NOT_READY, UNREACHABLE, tolerates
from controlplane.tasks import cancel

from .workqueue import WorkQueue, run_workers

if TYPE_CHECKING:
    from .manager import ControllerSettings

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
CONDITION_TAINTS = {"Unknown": UNREACHABLE, "False": NOT_READY}
MANAGED_KEYS = frozenset(CONDITION_TAINTS.values())
UNKNOWN_REASON = "NodeStatusUnknown"
UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
NEVER_UPDATED_REASON = "NodeStatusNeverUpdated"
NEVER_UPDATED_MESSAGE = "Kubelet never posted node status."
TERMINAL_PHASES = ("Succeeded", "Failed")
UPDATE_ATTEMPTS = 5


@dataclass
class _Health:
    """What the controller last saw of a node's heartbeats, and when (its own monotonic clock)."""

    ready_heartbeat: str | None
    lease_renew: str | None
    probe: float


def _ready(node: Node) -> NodeCondition | None:
    return condition(node.status.conditions, "Ready")


def desired_taints(node: Node, stamp: str) -> list[Taint] | None:
    """The node's taints with the condition taints matching its Ready status; None if unchanged."""
    ready = _ready(node)
    want_key = CONDITION_TAINTS.get(ready.status) if ready is not None else None
    current = list(node.spec.taints or ())
    kept = [t for t in current if t.key not in MANAGED_KEYS or t.key == want_key]
    if want_key is not None:
        if not any(t.key == want_key and t.effect == "NoSchedule" for t in kept):
            kept.append(Taint(key=want_key, effect="NoSchedule"))
        if not any(t.key == want_key and t.effect == "NoExecute" for t in kept):
            kept.append(Taint(key=want_key, effect="NoExecute", time_added=stamp))
    return None if kept == current else kept


def eviction_deadline(pod: Pod, taints: list[Taint], first_seen: dt.datetime) -> dt.datetime | None:
    """When ``pod`` must go because of the NoExecute ``taints``: now-ish (``first_seen`` or earlier) if
    one is not tolerated, else the earliest ``timeAdded + tolerationSeconds``; None means never."""
    deadline: dt.datetime | None = None
    for taint in taints:
        matching = [t for t in pod.spec.tolerations or () if tolerates(t, taint)]
        if not matching:
            return dt.datetime.min.replace(tzinfo=dt.UTC)
        seconds = [t.toleration_seconds for t in matching if t.toleration_seconds is not None]
        if not seconds:
            continue
        added = first_seen
        if taint.time_added:
            try:
                added = parse_time(taint.time_added)
            except ValueError:
                pass
        when = added + dt.timedelta(seconds=max(min(seconds), 0))
        deadline = when if deadline is None else min(deadline, when)
    return deadline


class NodeLifecycleController:
    def __init__(
        self,
        client: Client,
        settings: ControllerSettings,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        factory = informers or SharedInformerFactory(client)
        self.nodes: Informer[Node] = factory.informer(Node)
        self.leases: Informer[Lease] = factory.informer(Lease, LEASE_NAMESPACE)
        self.pods: Informer[Pod] = factory.informer(Pod)
        self.recorder = EventRecorder(client, "node-controller")
        self.node_queue = WorkQueue()
        self.pod_queue = WorkQueue()
        self._health: dict[str, _Health] = {}
        self._pods_on: dict[str, set[str]] = {}  # node name -> pod keys bound to it
        self._node_of: dict[str, str] = {}  # pod key -> node name
        self._taint_seen: dict[tuple[str, str], dt.datetime] = {}  # (node, taint key) -> first seen
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._use = InformerUse(
            self, (self.nodes, self.leases, self.pods), self._subscribe, private=informers is None
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def _subscribe(self) -> None:
        self.pods.on_add(self._pod_changed, owner=self)
        self.pods.on_update(lambda _old, new: self._pod_changed(new), owner=self)
        self.pods.on_delete(self._pod_deleted, owner=self)
        self.nodes.on_add(self._node_changed, owner=self)
        self.nodes.on_update(self._node_updated, owner=self)
        self.nodes.on_delete(self._node_deleted, owner=self)
        self.leases.on_add(lambda lease: self.node_queue.add(lease.metadata.name or ""), owner=self)
        self.leases.on_update(lambda _old, new: self.node_queue.add(new.metadata.name or ""), owner=self)

    async def start(self) -> None:
        self._use.start()
        workers = self.settings.workers
        self._tasks.append(
            asyncio.create_task(run_workers(self.node_queue, self.sync_node, workers, "node-lifecycle"))
        )
        self._tasks.append(
            asyncio.create_task(run_workers(self.pod_queue, self.sync_pod, workers, "taint-eviction"))
        )
        self._tasks.append(asyncio.create_task(self._monitor(), name="node-monitor"))

    async def stop(self) -> None:
        self.node_queue.shutdown()
        self.pod_queue.shutdown()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._use.stop()
        await cancel(self._tasks)
        self._tasks.clear()

    async def _monitor(self) -> None:
        """Every period, every node is looked at (a heartbeat that stops sends no event)."""
        await asyncio.gather(self.nodes.wait_synced(), self.leases.wait_synced(), self.pods.wait_synced())
        while True:
            for name in list(self.nodes.cache):
                self.node_queue.add(name)
            await asyncio.sleep(self.settings.node_monitor_period)

    # --- event handlers (enqueue only) -------------------------------------------------------------

    def _pod_changed(self, pod: Pod) -> None:
        key = key_of(pod)
        node = pod.spec.node_name
        old = self._node_of.get(key)
        if old is not None and old != node:
            self._pods_on.get(old, set()).discard(key)
        if node:
            self._node_of[key] = node
            self._pods_on.setdefault(node, set()).add(key)
            self.pod_queue.add(key)

    def _pod_deleted(self, pod: Pod) -> None:
        key = key_of(pod)
        node = self._node_of.pop(key, None)
        if node is not None:
            self._pods_on.get(node, set()).discard(key)
        self._cancel_timer(key)

    def _node_changed(self, node: Node) -> None:
        name = node.metadata.name or ""
        self.node_queue.add(name)
        self._enqueue_pods_of(name)

    def _node_updated(self, old: Node, new: Node) -> None:
        name = new.metadata.name or ""
        if _ready(old) != _ready(new) or old.spec.taints != new.spec.taints:
            self.node_queue.add(name)
        if _no_execute(old) != _no_execute(new):
            self._enqueue_pods_of(name)

    def _node_deleted(self, node: Node) -> None:
        name = node.metadata.name or ""
        self._health.pop(name, None)
        for key in list(self._taint_seen):
            if key[0] == name:
                del self._taint_seen[key]

    def _enqueue_pods_of(self, node: str) -> None:
        for key in self._pods_on.get(node, ()):
            self.pod_queue.add(key)

    # --- node health ------------------------------------------------------------------------------

    def _observe(self, node: Node) -> _Health:
        """Update the probe time if a heartbeat changed since last seen; new nodes get a fresh one."""
        name = node.metadata.name or ""
        ready = _ready(node)
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        heartbeat = ready.last_heartbeat_time if ready is not None else None
        renew = lease.spec.renew_time if lease is not None else None
        clock = asyncio.get_running_loop().time()
        health = self._health.get(name)
        if health is None:
            health = self._health[name] = _Health(heartbeat, renew, clock)
        elif health.ready_heartbeat != heartbeat or health.lease_renew != renew:
            health.ready_heartbeat, health.lease_renew, health.probe = heartbeat, renew, clock
        return health

    async def sync_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return
        health = self._observe(node)
        stale = asyncio.get_running_loop().time() - health.probe > self.settings.node_monitor_grace_period
        if stale:
            node = await self._mark_unknown(node)
            ready = _ready(node)
            if ready is not None and ready.status == "Unknown":
                await self._mark_pods_not_ready(name)
        tainted = {t.key for t in _no_execute(node)}
        for seen in [k for k in self._taint_seen if k[0] == name and k[1] not in tainted]:
            del self._taint_seen[seen]
        await self._update_taints(node)

    async def _mark_unknown(self, node: Node) -> Node:
        """Every True/False condition (and a missing Ready) becomes Unknown: nobody vouches for them."""
        name = node.metadata.name or ""
        stamp = now()
        conditions = [msgspec.structs.replace(c) for c in node.status.conditions or ()]
        changed = False
        for c in conditions:
            if c.status != "Unknown":
                c.status, c.reason, c.message = "Unknown", UNKNOWN_REASON, UNKNOWN_MESSAGE
                c.last_transition_time = stamp
                changed = True
        if not any(c.type == "Ready" for c in conditions):
            conditions.append(
                NodeCondition(
                    type="Ready",
                    status="Unknown",
                    reason=NEVER_UPDATED_REASON,
                    message=NEVER_UPDATED_MESSAGE,
                    last_transition_time=stamp,
                )
            )
            changed = True
        if not changed:
            return node
        updated = msgspec.structs.replace(node, status=msgspec.structs.replace(node.status))
        updated.status.conditions = conditions
        try:
            result = await self.client.replace_status(updated)
        except (Conflict, NotFound):
            return node  # changed meanwhile (maybe a heartbeat): the next period looks again
        log.info("node %s stopped posting status: conditions set to Unknown", name)
        await self.recorder.record(
            result, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady"
        )
        return result

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """Kubernetes' MarkPodsNotReady: Endpoints must stop sending traffic to an unreachable node."""
        for key in list(self._pods_on.get(node_name, ())):
            pod = self.pods.get(key)
            if pod is None or pod.spec.node_name != node_name or pod.status.phase in TERMINAL_PHASES:
                continue
            if not any(c.type == "Ready" and c.status != "False" for c in pod.status.conditions or ()):
                continue
            for _ in range(UPDATE_ATTEMPTS):
                stamp = now()
                conditions = []
                for c in pod.status.conditions or ():
                    c = msgspec.structs.replace(c)
                    if c.type in ("Ready", "ContainersReady") and c.status != "False":
                        c.status, c.last_transition_time = "False", stamp
                    conditions.append(c)
                updated = msgspec.structs.replace(pod, status=msgspec.structs.replace(pod.status))
                updated.status.conditions = conditions
                try:
                    await self.client.replace_status(updated)
                    break
                except Conflict:
                    pod = await self.client.get(Pod, pod.metadata.name or "", pod.metadata.namespace)
                except NotFound:
                    break

    async def _update_taints(self, node: Node) -> None:
        """Make the condition taints match the Ready condition, keeping everyone else's taints."""
        name = node.metadata.name or ""
        for _ in range(UPDATE_ATTEMPTS):
            taints = desired_taints(node, now())
            if taints is None:
                return
            updated = msgspec.structs.replace(node, spec=msgspec.structs.replace(node.spec))
            updated.spec.taints = taints or None
            try:
                await self.client.replace(updated)
            except Conflict:
                node = await self.client.get(Node, name)
                continue
            except NotFound:
                return
            keys = sorted({t.key for t in taints if t.key in MANAGED_KEYS})
            log.info("node %s taints now %s", name, keys or "without condition taints")
            return
        raise RuntimeError(f"could not update the taints of node {name}: it keeps changing")

    # --- taint eviction ---------------------------------------------------------------------------

    def _cancel_timer(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _schedule(self, key: str, delay: float) -> None:
        """Requeue ``key`` after ``delay`` (replacing an earlier timer: the deadline may have moved)."""
        self._cancel_timer(key)

        def fire() -> None:
            self._timers.pop(key, None)
            self.pod_queue.add(key)

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    def _first_seen(self, node: str, taints: list[Taint]) -> dt.datetime:
        """When this controller first saw the taints without ``timeAdded`` (the earliest of them)."""
        stamp = dt.datetime.now(dt.UTC)
        seen = [self._taint_seen.setdefault((node, t.key), stamp) for t in taints]
        return min(seen, default=stamp)

    async def sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if (
            pod is None
            or pod.metadata.deletion_timestamp is not None
            or not pod.spec.node_name
            or pod.status.phase in TERMINAL_PHASES
        ):
            self._cancel_timer(key)
            return
        node = self.nodes.get(pod.spec.node_name)
        taints = _no_execute(node) if node is not None else []
        if not taints:
            self._cancel_timer(key)
            return
        deadline = eviction_deadline(pod, taints, self._first_seen(pod.spec.node_name, taints))
        if deadline is None:
            self._cancel_timer(key)
            return
        remaining = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
        if remaining > 0:
            self._schedule(key, remaining)
            return
        self._cancel_timer(key)
        await self._evict(pod)

    async def _evict(self, pod: Pod) -> None:
        m = pod.metadata
        try:
            await self.client.delete(Pod, m.name or "", m.namespace, uid=m.uid)
        except (NotFound, Conflict):
            return  # already gone, or a new pod of the same name: nothing to evict
        log.info("evicting pod %s/%s from tainted node %s", m.namespace, m.name, pod.spec.node_name)
        await self.recorder.record(
            pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {m.namespace}/{m.name}"
        )


def _no_execute(node: Node | None) -> list[Taint]:
    if node is None:
        return []
    return [t for t in node.spec.taints or () if t.effect == "NoExecute"]
