"""The scheduler: binds pending pods to nodes, one pod at a time, the way kube-scheduler does.

Design
------
Two informers (all Pods, all Nodes) keep a local picture of the cluster. From it the scheduler keeps:

* an index of the pods that occupy each node (bound and not Succeeded/Failed), as :class:`PodInfo`
  whose requests and host ports are parsed once per pod event;
* the *assumed* pods: pods this scheduler decided to bind whose binding the watch has not shown yet.
  They count on their node exactly like bound pods, so a lagging watch never over-commits a node.
  An assumed pod is forgotten when the watch shows it bound (or deleted), or when the bind fails;
* a queue of pending pods (no ``nodeName``, our ``schedulerName``, not deleting, not finished, no
  scheduling gates) in three parts: *active* (FIFO, arrival order), *parked* (found unschedulable,
  waiting for a cluster change) and *backing off* (the bind failed; a timer brings it back).

A scheduling decision is a pure function (:func:`schedule`) of the pod and a snapshot of
:class:`NodeInfo`: every :class:`Filter` must pass (the first failing filter gives the node's reasons),
then the weighted :class:`Score` plugins rank the feasible nodes and the best wins (ties go to the lowest
node name, so results are deterministic). Adding a plugin is adding a ``Filter``/``Score`` to the lists.

Parked pods go back to the active queue when a node is added or changes in a way that matters
(allocatable, labels, taints, unschedulable, readiness), when a bound pod is deleted or finishes (it
frees resources), when the pod's own spec or labels change, and at least every ``retry_interval``.

Concurrency model
-----------------
Everything runs on one event loop. Informer handlers are synchronous and only update the index and
the queue. The scheduling loop pops one pod and takes the snapshot, decides and assumes (or parks)
without awaiting in between, so no event can slip between the decision and its bookkeeping, and each
decision sees the previous ones. All API I/O (binding, events, the PodScheduled condition) runs in
background tasks so the loop never waits on the network; the number of binds in flight is bounded,
which is the loop's only back-pressure. A bind answered with 409 means someone else bound the pod
(the watch will show it); any other failure forgets the assumption and retries with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.api.core import Container, Node, Pod, Taint
from controlplane.api.meta import now
from controlplane.client import Client, ClientError, Conflict, EventRecorder, Informer, NotFound, key_of
from controlplane.quantity import cpu_millis, memory_bytes
from controlplane.status import condition as find_condition
from controlplane.status import node_ready as node_is_ready
from controlplane.taints import NOT_READY, UNSCHEDULABLE, tolerated, tolerates

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_SCORES",
    "Decision",
    "Filter",
    "HostPort",
    "NodeInfo",
    "PodInfo",
    "Resources",
    "Scheduler",
    "Score",
    "failure_message",
    "schedule",
    "tolerates",
]

TERMINAL_PHASES = ("Succeeded", "Failed")
UNLIMITED = 2**63 - 1  # a node that advertises no cpu/memory: quantities are int64 in Kubernetes too
DEFAULT_MAX_PODS = 110  # the kubelet's default --max-pods
# Scoring counts a container without requests as this much (kube-scheduler's "non-zero" requests), so
# best-effort pods still spread instead of piling onto the first node.
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024
MAX_SCORE = 100.0
WILDCARD_IPS = frozenset({"", "0.0.0.0", "::"})
NOT_READY_TAINT = Taint(key=NOT_READY, effect="NoSchedule")
UNSCHEDULABLE_TAINT = Taint(key=UNSCHEDULABLE, effect="NoSchedule")

# --- resources and the per-pod / per-node views -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU in millicores, memory in bytes: the two resources requests are checked against."""

    cpu: int = 0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory)

    def max(self, other: Resources) -> Resources:
        return Resources(max(self.cpu, other.cpu), max(self.memory, other.memory))


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host port a pod occupies; an empty or wildcard IP means every address of the node."""

    port: int
    protocol: str = "TCP"
    ip: str = "0.0.0.0"

    def conflicts(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        return self.ip == other.ip or self.ip in WILDCARD_IPS or other.ip in WILDCARD_IPS


def _quantity(parse: Callable[[str | int | float], int], value: Any, default: int) -> int:
    """Parse a quantity leniently: validation rejects garbage, but one bad object must not stop the loop."""
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError:
        log.warning("ignoring unparsable quantity %r", value)
        return default


def _container_requests(c: Container, nonzero: bool) -> Resources:
    """A container's requests; limits stand in for missing requests (as API defaulting does)."""
    res = c.resources
    requests = (res.requests if res else None) or {}
    limits = (res.limits if res else None) or {}
    cpu = requests.get("cpu", limits.get("cpu"))
    memory = requests.get("memory", limits.get("memory"))
    return Resources(
        _quantity(cpu_millis, cpu, DEFAULT_CPU_MILLIS if nonzero else 0),
        _quantity(memory_bytes, memory, DEFAULT_MEMORY_BYTES if nonzero else 0),
    )


def pod_requests(pod: Pod, *, nonzero: bool = False) -> Resources:
    """Effective requests as Kubernetes computes them: the app containers (plus restartable init
    "sidecars") run together, each other init container runs alone beside the sidecars started before
    it, so the pod needs the larger of the two, plus the runtime overhead."""
    total = Resources()
    for c in pod.spec.containers:
        total = total + _container_requests(c, nonzero)
    sidecars = Resources()
    init_peak = Resources()
    for c in pod.spec.init_containers or ():
        r = _container_requests(c, nonzero)
        if c.restart_policy == "Always":
            sidecars = sidecars + r
            total = total + r
            init_peak = init_peak.max(sidecars)
        else:
            init_peak = init_peak.max(sidecars + r)
    total = total.max(init_peak)
    overhead = pod.spec.overhead or {}
    return total + Resources(
        _quantity(cpu_millis, overhead.get("cpu"), 0), _quantity(memory_bytes, overhead.get("memory"), 0)
    )


def pod_host_ports(pod: Pod) -> list[HostPort]:
    """The host ports a pod binds; with hostNetwork every container port is a host port."""
    ports = []
    for c in pod.spec.containers:
        for p in c.ports or ():
            port = p.host_port or (p.container_port if pod.spec.host_network else 0)
            if port > 0:
                ports.append(HostPort(port, p.protocol or "TCP", p.host_ip or "0.0.0.0"))
    return ports


def _spread_key(pod: Pod) -> tuple[Any, ...] | None:
    """Which pods count as "the same" for spreading: same controller, else same labels."""
    ns = pod.metadata.namespace
    for ref in pod.metadata.owner_references or ():
        if ref.controller:
            return ("owner", ns, ref.uid)
    if pod.metadata.labels:
        return ("labels", ns, frozenset(pod.metadata.labels.items()))
    return None


@dataclass(slots=True)
class PodInfo:
    """A pod with what scheduling needs from it, computed once per pod event."""

    pod: Pod
    requests: Resources
    nonzero_requests: Resources
    host_ports: list[HostPort]
    spread_key: tuple[Any, ...] | None

    @classmethod
    def of(cls, pod: Pod) -> PodInfo:
        return cls(
            pod, pod_requests(pod), pod_requests(pod, nonzero=True), pod_host_ports(pod), _spread_key(pod)
        )

    @property
    def key(self) -> str:
        return key_of(self.pod)


def _allocatable(node: Node, name: str) -> Any:
    value = (node.status.allocatable or {}).get(name)
    return value if value is not None else (node.status.capacity or {}).get(name)


@dataclass(slots=True)
class NodeInfo:
    """A node and the pods counted on it (bound and assumed), with their sums."""

    node: Node
    pods: list[PodInfo] = field(default_factory=list)
    allocatable: Resources = field(init=False)
    allowed_pods: int = field(init=False)
    requested: Resources = field(init=False)
    nonzero_requested: Resources = field(init=False)

    def __post_init__(self) -> None:
        self.allocatable = Resources(
            _quantity(cpu_millis, _allocatable(self.node, "cpu"), UNLIMITED),
            _quantity(memory_bytes, _allocatable(self.node, "memory"), UNLIMITED),
        )
        self.allowed_pods = _quantity(memory_bytes, _allocatable(self.node, "pods"), DEFAULT_MAX_PODS)
        self.requested = Resources()
        self.nonzero_requested = Resources()
        for p in self.pods:
            self.requested = self.requested + p.requests
            self.nonzero_requested = self.nonzero_requested + p.nonzero_requests

    @classmethod
    def of(cls, node: Node, pods: Iterable[Pod] = ()) -> NodeInfo:
        return cls(node, [PodInfo.of(p) for p in pods])

    @property
    def name(self) -> str:
        return self.node.metadata.name or ""


# --- filters -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """A predicate plugin: ``check`` returns why the pod cannot go on the node (empty: it can)."""

    name: str
    check: Callable[[PodInfo, NodeInfo], list[str]]


def _tolerated(pod: Pod, taint: Taint) -> bool:
    return tolerated(pod.spec.tolerations, taint)


def node_ready(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Only Ready nodes run pods (unless the pod tolerates the not-ready taint, as DaemonSet pods do)."""
    ready = node_is_ready(node.node)
    if ready or _tolerated(pod.pod, NOT_READY_TAINT):
        return []
    return ["node(s) were not ready"]


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> list[str]:
    """A cordoned node takes no new pods, except those tolerating the unschedulable taint."""
    if not node.node.spec.unschedulable or _tolerated(pod.pod, UNSCHEDULABLE_TAINT):
        return []
    return ["node(s) were unschedulable"]


def taint_toleration(pod: PodInfo, node: NodeInfo) -> list[str]:
    """NoSchedule and NoExecute taints repel pods that do not tolerate them (PreferNoSchedule only scores)."""
    for taint in node.node.spec.taints or ():
        if taint.effect in ("NoSchedule", "NoExecute") and not _tolerated(pod.pod, taint):
            return [f"node(s) had untolerated taint {{{taint.key}: {taint.value or ''}}}"]
    return []


def _requirement_matches(req: dict[str, Any], value: str | None) -> bool:
    """One node selector requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against a label value."""
    op, values = req.get("operator"), req.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, want = int(value), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _affinity_matches(pod: Pod, node: Node) -> bool:
    """Required node affinity: any term matches when all its expressions (and fields) match."""
    required = ((pod.spec.affinity or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    labels = node.metadata.labels or {}
    fields = {"metadata.name": node.metadata.name}
    for term in required.get("nodeSelectorTerms") or ():
        exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue  # an empty term matches nothing, as in Kubernetes
        if all(_requirement_matches(e, labels.get(e.get("key", ""))) for e in exprs) and all(
            _requirement_matches(e, fields.get(e.get("key", ""))) for e in field_exprs
        ):
            return True
    return False


def node_affinity(pod: PodInfo, node: NodeInfo) -> list[str]:
    """``nodeSelector`` labels must all match, and so must required node affinity if any."""
    labels = node.node.metadata.labels or {}
    selector = pod.pod.spec.node_selector or {}
    if all(labels.get(k) == v for k, v in selector.items()) and _affinity_matches(pod.pod, node.node):
        return []
    return ["node(s) didn't match Pod's node affinity/selector"]


def node_ports(pod: PodInfo, node: NodeInfo) -> list[str]:
    """A host port (port, protocol, IP) can be bound by one pod per node."""
    for want in pod.host_ports:
        for other in node.pods:
            if any(want.conflicts(used) for used in other.host_ports):
                return ["node(s) didn't have free ports for the requested pod ports"]
    return []


def node_resources_fit(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Requests of the pods on the node plus this pod's must fit allocatable (reporting every shortage)."""
    reasons = []
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append("Too many pods")
    want, used, alloc = pod.requests, node.requested, node.allocatable
    if want.cpu > 0 and want.cpu > alloc.cpu - used.cpu:
        reasons.append("Insufficient cpu")
    if want.memory > 0 and want.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
    return reasons


DEFAULT_FILTERS: tuple[Filter, ...] = (
    Filter("NodeReady", node_ready),
    Filter("NodeUnschedulable", node_unschedulable),
    Filter("TaintToleration", taint_toleration),
    Filter("NodeAffinity", node_affinity),
    Filter("NodePorts", node_ports),
    Filter("NodeResourcesFit", node_resources_fit),
)

# --- scores --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """A priority plugin: ``rank`` scores every feasible node 0..100 at once (so it can normalise)."""

    name: str
    weight: float
    rank: Callable[[PodInfo, Sequence[NodeInfo]], list[float]]


def _free_fraction(allocatable: int, used: int) -> float:
    return max(allocatable - used, 0) / allocatable if allocatable > 0 else 0.0


def least_requested(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefer the emptiest node: mean free fraction of cpu and memory once the pod is placed."""
    scores = []
    for n in nodes:
        used = n.nonzero_requested + pod.nonzero_requests
        cpu = _free_fraction(n.allocatable.cpu, used.cpu)
        memory = _free_fraction(n.allocatable.memory, used.memory)
        scores.append(MAX_SCORE * (cpu + memory) / 2)
    return scores


def selector_spread(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefer nodes with fewer of the pod's siblings (same controller, else same labels), so replicas
    survive a node failure. Normalised over the candidates: the node with the most siblings scores 0."""
    if pod.spread_key is None:
        return [MAX_SCORE] * len(nodes)
    counts = [
        sum(1 for p in n.pods if p.spread_key == pod.spread_key and p.pod.metadata.deletion_timestamp is None)
        for n in nodes
    ]
    most = max(counts, default=0)
    return [MAX_SCORE if most == 0 else MAX_SCORE * (most - c) / most for c in counts]


def taint_toleration_score(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefer nodes with fewer PreferNoSchedule taints the pod does not tolerate (kube-scheduler's
    TaintToleration score): the node with the most such taints scores 0, one without any 100."""
    counts = [
        sum(
            1
            for taint in n.node.spec.taints or ()
            if taint.effect == "PreferNoSchedule" and not _tolerated(pod.pod, taint)
        )
        for n in nodes
    ]
    most = max(counts, default=0)
    return [MAX_SCORE if most == 0 else MAX_SCORE * (most - c) / most for c in counts]


# Spreading weighs double (as PodTopologySpread does in kube-scheduler): replicas prefer distinct nodes
# over packing onto the largest one, while resources still decide between equally spread choices. An
# untolerated PreferNoSchedule taint weighs most (kube-scheduler's TaintToleration weight is 3 too).
DEFAULT_SCORES: tuple[Score, ...] = (
    Score("NodeResourcesLeastAllocated", 1.0, least_requested),
    Score("SelectorSpread", 2.0, selector_spread),
    Score("TaintToleration", 3.0, taint_toleration_score),
)

# --- the decision --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a pod goes, or (``node is None``) why it fits nowhere: reason -> number of nodes."""

    node: str | None
    total_nodes: int
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def message(self) -> str:
        return failure_message(self.total_nodes, self.reasons)


def failure_message(total: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FailedScheduling wording: ``0/3 nodes are available: 1 Insufficient cpu, ...``."""
    if total == 0:
        return "0/0 nodes are available: no nodes available to schedule pods."
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


def schedule(
    pod: PodInfo,
    nodes: Sequence[NodeInfo],
    filters: Sequence[Filter] = DEFAULT_FILTERS,
    scores: Sequence[Score] = DEFAULT_SCORES,
) -> Decision:
    """Filter, then score the feasible nodes; the highest total wins, ties go to the lowest name."""
    feasible: list[NodeInfo] = []
    reasons: Counter[str] = Counter()
    for node in nodes:
        for f in filters:
            failed = f.check(pod, node)
            if failed:
                reasons.update(failed)
                break
        else:
            feasible.append(node)
    if not feasible:
        return Decision(None, len(nodes), reasons)
    if len(feasible) == 1:
        return Decision(feasible[0].name, len(nodes))
    totals = [0.0] * len(feasible)
    for s in scores:
        for i, value in enumerate(s.rank(pod, feasible)):
            totals[i] += s.weight * value
    best = min(range(len(feasible)), key=lambda i: (-totals[i], feasible[i].name))
    return Decision(feasible[best].name, len(nodes))


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
    ) -> None:
        self.client = client
        self.name = name
        self.retry_interval = retry_interval
        self.filters = tuple(filters)
        self.scores = tuple(scores)
        self.pods: Informer[Pod] = Informer(client, Pod)
        self.nodes: Informer[Node] = Informer(client, Node)
        self.recorder = EventRecorder(client, name)
        self._by_node: dict[str, dict[str, PodInfo]] = {}
        self._node_of: dict[str, str] = {}
        self._assumed: dict[str, tuple[str, PodInfo]] = {}
        self._active: dict[str, None] = {}
        self._parked: dict[str, None] = {}
        self._backoff: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._bind_slots = asyncio.Semaphore(max_binds_in_flight)
        self._io: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.pods.on_add(lambda pod: self._pod_changed(None, pod))
        self.pods.on_update(self._pod_changed)
        self.pods.on_delete(self._pod_deleted)
        self.nodes.on_add(lambda _node: self._unpark_all())
        self.nodes.on_update(self._node_updated)

    @property
    def assumed(self) -> dict[str, str]:
        """Pods bound (or being bound) by us that the watch has not shown bound yet: key -> node."""
        return {key: node for key, (node, _) in self._assumed.items()}

    async def start(self, timeout: float = 30.0) -> None:
        """Start the informers, wait until both have listed, then start the scheduling loop."""
        self.pods.start()
        self.nodes.start()
        try:
            await asyncio.wait_for(asyncio.gather(self.pods.synced.wait(), self.nodes.synced.wait()), timeout)
        except BaseException:
            await self._stop_informers()
            raise
        self._loops.append(asyncio.create_task(self._run(), name=f"{self.name}-loop"))
        self._loops.append(asyncio.create_task(self._retry_parked(), name=f"{self.name}-retry"))

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
        await asyncio.gather(self.pods.stop(), self.nodes.stop())

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
        freed = self._unindex(key)
        if _occupies_node(pod):
            info = PodInfo.of(pod)
            self._by_node.setdefault(pod.spec.node_name or "", {})[key] = info
            self._node_of[key] = pod.spec.node_name or ""
            freed = False
        assumed = self._assumed.get(key)
        if assumed is not None and (pod.spec.node_name or pod.metadata.uid != assumed[1].pod.metadata.uid):
            del self._assumed[key]  # the watch caught up (or it is another pod by the same name)
        if freed:
            self._unpark_all()
        if not self._wants(pod):
            self._forget_queued(key)
        elif key in self._parked:
            if old is None or old.spec != pod.spec or old.metadata.labels != pod.metadata.labels:
                self._activate(key)  # our own status writes must not make it spin
        elif key not in self._active and key not in self._backoff and key not in self._assumed:
            self._activate(key)

    def _pod_deleted(self, pod: Pod) -> None:
        key = key_of(pod)
        freed = self._unindex(key)
        self._assumed.pop(key, None)
        self._forget_queued(key)
        if freed:
            self._unpark_all()

    def _unindex(self, key: str) -> bool:
        """Drop a pod from the node index; True if it was occupying a node."""
        node = self._node_of.pop(key, None)
        if node is None:
            return False
        pods = self._by_node.get(node, {})
        pods.pop(key, None)
        if not pods:
            self._by_node.pop(node, None)
        return True

    def _node_updated(self, old: Node, new: Node) -> None:
        if _scheduling_view(old) != _scheduling_view(new):
            self._unpark_all()

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
        if pod is not None and self._wants(pod) and key not in self._assumed:
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

    def _snapshot(self) -> list[NodeInfo]:
        assumed: dict[str, list[PodInfo]] = {}
        for node, info in self._assumed.values():
            assumed.setdefault(node, []).append(info)
        nodes = sorted(self.nodes.items(), key=lambda n: n.metadata.name or "")
        return [
            NodeInfo(
                n,
                [
                    *self._by_node.get(n.metadata.name or "", {}).values(),
                    *assumed.get(n.metadata.name or "", ()),
                ],
            )
            for n in nodes
        ]

    def _schedule_one(self, key: str) -> bool:
        """Decide for one pod and do the bookkeeping, with no await: returns True if a bind was started."""
        pod = self.pods.get(key)
        if pod is None or not self._wants(pod) or key in self._assumed:
            return False
        info = PodInfo.of(pod)
        decision = schedule(info, self._snapshot(), self.filters, self.scores)
        if decision.node is None:
            self._parked[key] = None
            log.debug("%s: %s", key, decision.message)  # the FailedScheduling event is the user-facing record
            self._spawn(self._report_unschedulable(pod, decision.message))
            return False
        self._assumed[key] = (decision.node, info)
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
            self._unassume(key, info)
            return
        except ClientError as exc:
            log.warning("binding %s to %s failed: %s; retrying", key, node, exc)
            if self._unassume(key, info):
                self._retry_later(key)
            return
        finally:
            self._bind_slots.release()
        self._failures.pop(key, None)
        await self.recorder.record(pod, "Normal", "Scheduled", f"Successfully assigned {key} to {node}")

    def _unassume(self, key: str, info: PodInfo) -> bool:
        """Forget an assumption if it is still this one; True if it was."""
        current = self._assumed.get(key)
        if current is None or current[1] is not info:
            return False
        del self._assumed[key]
        return True

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
