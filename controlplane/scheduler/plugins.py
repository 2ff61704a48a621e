"""The scheduling decision: per-pod and per-node views, the filter and score plugins, and :func:`schedule`.

Everything here is pure (no I/O, no event loop), so the decision can be tested and benchmarked alone.
The views are built for the hot path: a decision looks at hundreds of nodes, so whatever a filter or a
score needs from a node (free resources, host ports in use, hard and soft taints, readiness, sibling
counts per spreading key) is kept on its :class:`NodeInfo` and updated incrementally as pods come and
go, and whatever it needs from the pod is parsed once into its :class:`PodInfo`. A filter that cannot
fail for a pod (no host ports, no selector) says so up front and is skipped for every node.

:func:`schedule` is kube-scheduler's ``percentageOfNodesToScore``: in a large cluster it stops filtering
once enough feasible nodes are found (adaptive default: ``max(5, 50 - nodes/125)`` percent, never fewer
than 100 nodes), starting where the previous decision stopped, so successive pods look at different
nodes and the whole cluster is covered in turn.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from controlplane.api.core import Container, Node, Pod, Taint, Toleration
from controlplane.client import key_of
from controlplane.quantity import cpu_millis, memory_bytes
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
    "Score",
    "failure_message",
    "nodes_to_find",
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
HARD_EFFECTS = ("NoSchedule", "NoExecute")
# kube-scheduler's minFeasibleNodesToFind: below this many nodes every node is examined.
MIN_FEASIBLE_NODES = 100

# --- resources -----------------------------------------------------------------------------------


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


# Quantities repeat (every replica asks for the same "100m"), and exact decimal parsing costs microseconds:
# parse each distinct string once.
@functools.lru_cache(maxsize=4096)
def _cached(parse: Callable[[str | int | float], int], value: str | int | float) -> int:
    return parse(value)


def _quantity(parse: Callable[[str | int | float], int], value: Any, default: int) -> int:
    """Parse a quantity leniently: validation rejects garbage, but one bad object must not stop the loop."""
    if value is None:
        return default
    try:
        return _cached(parse, value)
    except (ValueError, TypeError):  # TypeError: an unhashable value, which is no quantity either
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


# Equal spreading keys are shared as one object, so the per-node sibling lookups (hundreds a decision)
# match by identity instead of comparing label sets. Bounded: cleared when it grows past the limit.
_SPREAD_KEYS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_SPREAD_KEYS_LIMIT = 65536


def _spread_key(pod: Pod) -> tuple[Any, ...] | None:
    """Which pods count as "the same" for spreading: same controller, else same labels."""
    ns = pod.metadata.namespace
    key: tuple[Any, ...] | None = None
    for ref in pod.metadata.owner_references or ():
        if ref.controller:
            key = ("owner", ns, ref.uid)
            break
    else:
        if pod.metadata.labels:
            key = ("labels", ns, frozenset(pod.metadata.labels.items()))
    if key is None:
        return None
    if len(_SPREAD_KEYS) >= _SPREAD_KEYS_LIMIT:
        _SPREAD_KEYS.clear()
    return _SPREAD_KEYS.setdefault(key, key)


def _required_affinity(pod: Pod) -> dict[str, Any] | None:
    node_affinity = (pod.spec.affinity or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required or None


# --- the per-pod and per-node views ----------------------------------------------------------------


@dataclass(slots=True)
class PodInfo:
    """A pod with what scheduling needs from it, computed once per pod event."""

    pod: Pod
    requests: Resources
    nonzero_requests: Resources
    host_ports: list[HostPort]
    spread_key: tuple[Any, ...] | None
    key: str = ""
    tolerations: list[Toleration] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    required_affinity: dict[str, Any] | None = None
    deleting: bool = False

    @classmethod
    def of(cls, pod: Pod) -> PodInfo:
        return cls(
            pod,
            pod_requests(pod),
            pod_requests(pod, nonzero=True),
            pod_host_ports(pod),
            _spread_key(pod),
            key_of(pod),
            pod.spec.tolerations or [],
            pod.spec.node_selector or {},
            _required_affinity(pod),
            pod.metadata.deletion_timestamp is not None,
        )

    @property
    def uid(self) -> str | None:
        return self.pod.metadata.uid


def _allocatable(node: Node, name: str) -> Any:
    value = (node.status.allocatable or {}).get(name)
    return value if value is not None else (node.status.capacity or {}).get(name)


class NodeInfo:
    """A node and the pods counted on it (bound and assumed), with running sums kept as pods are added
    and removed, so filters and scores read numbers instead of walking pods."""

    __slots__ = (
        "_pods",
        "alloc_cpu",
        "alloc_memory",
        "allowed_pods",
        "hard_taints",
        "labels",
        "name",
        "node",
        "npods",
        "nz_cpu",
        "nz_memory",
        "ready",
        "req_cpu",
        "req_memory",
        "restricted",
        "soft_taints",
        "spread",
        "unschedulable",
        "used_ports",
    )

    def __init__(self, node: Node, pods: Iterable[PodInfo] = ()) -> None:
        self._pods: dict[str, PodInfo] = {}
        self.req_cpu = self.req_memory = self.nz_cpu = self.nz_memory = self.npods = 0
        self.used_ports: Counter[HostPort] = Counter()
        self.spread: Counter[tuple[Any, ...]] = Counter()
        self.set_node(node)
        for p in pods:
            self.add(p)

    @classmethod
    def of(cls, node: Node, pods: Iterable[Pod] = ()) -> NodeInfo:
        return cls(node, [PodInfo.of(p) for p in pods])

    def set_node(self, node: Node) -> None:
        """Take a new version of the node: recompute everything that comes from the node itself."""
        self.node = node
        self.name = node.metadata.name or ""
        self.alloc_cpu = _quantity(cpu_millis, _allocatable(node, "cpu"), UNLIMITED)
        self.alloc_memory = _quantity(memory_bytes, _allocatable(node, "memory"), UNLIMITED)
        self.allowed_pods = _quantity(memory_bytes, _allocatable(node, "pods"), DEFAULT_MAX_PODS)
        self.ready = node_is_ready(node)
        self.unschedulable = bool(node.spec.unschedulable)
        taints = node.spec.taints or ()
        self.hard_taints = tuple(t for t in taints if t.effect in HARD_EFFECTS)
        self.soft_taints = tuple(t for t in taints if t.effect == "PreferNoSchedule")
        self.labels = node.metadata.labels or {}
        self.restricted = not self.ready or self.unschedulable or bool(self.hard_taints)

    def add(self, pod: PodInfo) -> None:
        """Count a pod on this node (replacing an earlier version of the same pod)."""
        if pod.key in self._pods:
            self.remove(pod.key)
        self._pods[pod.key] = pod
        self.npods += 1
        self.req_cpu += pod.requests.cpu
        self.req_memory += pod.requests.memory
        self.nz_cpu += pod.nonzero_requests.cpu
        self.nz_memory += pod.nonzero_requests.memory
        for hp in pod.host_ports:
            self.used_ports[hp] += 1
        if pod.spread_key is not None and not pod.deleting:
            self.spread[pod.spread_key] += 1

    def remove(self, key: str) -> PodInfo | None:
        """Stop counting a pod; returns it (None if it was not counted here)."""
        pod = self._pods.pop(key, None)
        if pod is None:
            return None
        self.npods -= 1
        self.req_cpu -= pod.requests.cpu
        self.req_memory -= pod.requests.memory
        self.nz_cpu -= pod.nonzero_requests.cpu
        self.nz_memory -= pod.nonzero_requests.memory
        for hp in pod.host_ports:
            self.used_ports[hp] -= 1
            if self.used_ports[hp] <= 0:
                del self.used_ports[hp]
        if pod.spread_key is not None and not pod.deleting:
            self.spread[pod.spread_key] -= 1
            if self.spread[pod.spread_key] <= 0:
                del self.spread[pod.spread_key]
        return pod

    def get(self, key: str) -> PodInfo | None:
        return self._pods.get(key)

    @property
    def pods(self) -> list[PodInfo]:
        return list(self._pods.values())

    @property
    def pod_count(self) -> int:
        return self.npods

    @property
    def allocatable(self) -> Resources:
        return Resources(self.alloc_cpu, self.alloc_memory)

    @property
    def requested(self) -> Resources:
        return Resources(self.req_cpu, self.req_memory)

    @property
    def nonzero_requested(self) -> Resources:
        return Resources(self.nz_cpu, self.nz_memory)


# --- filters -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """A predicate plugin: ``check`` returns why the pod cannot go on the node (empty: it can).

    Two shortcuts keep the per-node cost down. ``applies`` (kube-scheduler's PreFilter "skip") says
    whether the filter can fail for this pod at all; when it cannot, ``check`` is not called for any
    node. ``restricted_only`` says the filter only reads the node's readiness, cordon and hard taints,
    so it cannot fail on a node that is Ready, schedulable and untainted (``NodeInfo.restricted`` is
    False), and is only called for the others."""

    name: str
    check: Callable[[PodInfo, NodeInfo], list[str]]
    applies: Callable[[PodInfo], bool] | None = None
    restricted_only: bool = False


def node_ready(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Only Ready nodes run pods (unless the pod tolerates the not-ready taint, as DaemonSet pods do)."""
    if node.ready or (pod.tolerations and tolerated(pod.tolerations, NOT_READY_TAINT)):
        return []
    return ["node(s) were not ready"]


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> list[str]:
    """A cordoned node takes no new pods, except those tolerating the unschedulable taint."""
    if not node.unschedulable or (pod.tolerations and tolerated(pod.tolerations, UNSCHEDULABLE_TAINT)):
        return []
    return ["node(s) were unschedulable"]


def taint_toleration(pod: PodInfo, node: NodeInfo) -> list[str]:
    """NoSchedule and NoExecute taints repel pods that do not tolerate them (PreferNoSchedule only scores)."""
    for taint in node.hard_taints:
        if not tolerated(pod.tolerations, taint):
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


def _affinity_matches(required: dict[str, Any] | None, node: NodeInfo) -> bool:
    """Required node affinity: any term matches when all its expressions (and fields) match."""
    if not required:
        return True
    labels = node.labels
    fields = {"metadata.name": node.name}
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
    labels = node.labels
    if all(labels.get(k) == v for k, v in pod.node_selector.items()) and _affinity_matches(
        pod.required_affinity, node
    ):
        return []
    return ["node(s) didn't match Pod's node affinity/selector"]


def node_ports(pod: PodInfo, node: NodeInfo) -> list[str]:
    """A host port (port, protocol, IP) can be bound by one pod per node."""
    if node.used_ports:
        for want in pod.host_ports:
            if any(want.conflicts(used) for used in node.used_ports):
                return ["node(s) didn't have free ports for the requested pod ports"]
    return []


def node_resources_fit(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Requests of the pods on the node plus this pod's must fit allocatable (reporting every shortage)."""
    want = pod.requests
    if (
        node.npods < node.allowed_pods
        and want.cpu <= node.alloc_cpu - node.req_cpu
        and want.memory <= node.alloc_memory - node.req_memory
    ):
        return []  # the common case, without building a list of reasons
    reasons = []
    if node.npods + 1 > node.allowed_pods:
        reasons.append("Too many pods")
    if want.cpu > 0 and want.cpu > node.alloc_cpu - node.req_cpu:
        reasons.append("Insufficient cpu")
    if want.memory > 0 and want.memory > node.alloc_memory - node.req_memory:
        reasons.append("Insufficient memory")
    return reasons


def _has_host_ports(pod: PodInfo) -> bool:
    return bool(pod.host_ports)


def _has_node_constraints(pod: PodInfo) -> bool:
    return bool(pod.node_selector) or pod.required_affinity is not None


DEFAULT_FILTERS: tuple[Filter, ...] = (
    Filter("NodeReady", node_ready, restricted_only=True),
    Filter("NodeUnschedulable", node_unschedulable, restricted_only=True),
    Filter("TaintToleration", taint_toleration, restricted_only=True),
    Filter("NodeAffinity", node_affinity, _has_node_constraints),
    Filter("NodePorts", node_ports, _has_host_ports),
    Filter("NodeResourcesFit", node_resources_fit),
)

# --- scores --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """A priority plugin: ``rank`` scores every feasible node 0..100 at once (so it can normalise)."""

    name: str
    weight: float
    rank: Callable[[PodInfo, Sequence[NodeInfo]], list[float]]


def least_requested(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefer the emptiest node: mean free fraction of cpu and memory once the pod is placed."""
    want_cpu, want_memory = pod.nonzero_requests.cpu, pod.nonzero_requests.memory
    half = MAX_SCORE / 2
    scores: list[float] = []
    append = scores.append
    for n in nodes:
        free_cpu = n.alloc_cpu - n.nz_cpu - want_cpu  # > 0 implies allocatable > 0
        free_memory = n.alloc_memory - n.nz_memory - want_memory
        append(
            half
            * (
                (free_cpu / n.alloc_cpu if free_cpu > 0 else 0.0)
                + (free_memory / n.alloc_memory if free_memory > 0 else 0.0)
            )
        )
    return scores


def _normalised_fewest(counts: list[int]) -> list[float]:
    """The node with the most scores 0, one with none 100 (kube-scheduler's reverse normalisation)."""
    most = max(counts, default=0)
    if most == 0:
        return [MAX_SCORE] * len(counts)
    return [MAX_SCORE * (most - c) / most for c in counts]


def selector_spread(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefer nodes with fewer of the pod's siblings (same controller, else same labels), so replicas
    survive a node failure. Normalised over the candidates: the node with the most siblings scores 0."""
    key = pod.spread_key
    if key is None:
        return [MAX_SCORE] * len(nodes)
    return _normalised_fewest([n.spread.get(key, 0) for n in nodes])


def taint_toleration_score(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[float]:
    """Prefer nodes with fewer PreferNoSchedule taints the pod does not tolerate (kube-scheduler's
    TaintToleration score): the node with the most such taints scores 0, one without any 100."""
    tolerations = pod.tolerations
    counts = [
        sum(1 for t in n.soft_taints if not tolerated(tolerations, t)) if n.soft_taints else 0 for n in nodes
    ]
    return _normalised_fewest(counts)


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
    """Where a pod goes, or (``node is None``) why it fits nowhere: reason -> number of nodes.
    ``examined`` is how many nodes the filters looked at (the next decision starts after them)."""

    node: str | None
    total_nodes: int
    reasons: Counter[str] = field(default_factory=Counter)
    examined: int = 0

    @property
    def message(self) -> str:
        return failure_message(self.total_nodes, self.reasons)


def failure_message(total: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FailedScheduling wording: ``0/3 nodes are available: 1 Insufficient cpu, ...``."""
    if total == 0:
        return "0/0 nodes are available: no nodes available to schedule pods."
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


def nodes_to_find(total: int, percentage: int = 0) -> int:
    """kube-scheduler's numFeasibleNodesToFind: how many feasible nodes are enough to pick from.
    ``percentage`` 0 means adaptive (50% minus 1% per 125 nodes, at least 5%); never fewer than 100."""
    if total < MIN_FEASIBLE_NODES or percentage >= 100:
        return total
    if percentage <= 0:
        percentage = max(50 - total // 125, 5)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES)


def schedule(
    pod: PodInfo,
    nodes: Sequence[NodeInfo],
    filters: Sequence[Filter] = DEFAULT_FILTERS,
    scores: Sequence[Score] = DEFAULT_SCORES,
    *,
    start: int = 0,
    percentage: int = 0,
) -> Decision:
    """Filter from ``nodes[start]`` on (wrapping round) until enough nodes are feasible, then score the
    feasible ones; the highest total wins. Ties go to the node examined first: with the nodes in name
    order (as the cache keeps them) and a small cluster (start stays 0), the lowest name; in a large
    one the rotating start spreads equal choices over the cluster, where kube-scheduler picks at
    random among them."""
    total = len(nodes)
    if total == 0:
        return Decision(None, 0)
    want = nodes_to_find(total, percentage)
    applicable = [f for f in filters if f.applies is None or f.applies(pod)]
    restricted_checks = [f.check for f in applicable]
    checks = [f.check for f in applicable if not f.restricted_only]
    start %= total
    ordered: Iterable[NodeInfo] = chain(islice(nodes, start, None), islice(nodes, start)) if start else nodes
    feasible: list[NodeInfo] = []
    reasons: Counter[str] = Counter()
    examined = 0
    missing = want  # feasible nodes still to find
    for node in ordered:
        examined += 1
        for check in restricted_checks if node.restricted else checks:
            failed = check(pod, node)
            if failed:
                reasons.update(failed)
                break
        else:
            feasible.append(node)
            missing -= 1
            if not missing:
                break
    if not feasible:
        return Decision(None, total, reasons, examined)
    if len(feasible) == 1:
        return Decision(feasible[0].name, total, examined=examined)
    totals = [0.0] * len(feasible)
    for s in scores:
        weight = s.weight
        totals = [t + weight * v for t, v in zip(totals, s.rank(pod, feasible), strict=True)]
    best = max(range(len(totals)), key=totals.__getitem__)  # the first examined among equals
    return Decision(feasible[best].name, total, examined=examined)
