"""Scheduler tests: the pure filter/score functions, the assumed cache against a fake API (a watch that
lags on command), and the acceptance cases against a real control plane on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest

from controlplane.api.core import (
    Container,
    ContainerPort,
    Event,
    Node,
    NodeCondition,
    NodeSpec,
    NodeStatus,
    Pod,
    PodSpec,
    PodStatus,
    ResourceRequirements,
    Taint,
    Toleration,
)
from controlplane.api.meta import ObjectMeta, OwnerReference, Status
from controlplane.client import ApiError, Client, Conflict, ObjectList, WatchEvent
from controlplane.scheduler import Scheduler
from controlplane.scheduler.scheduler import (
    HostPort,
    NodeInfo,
    PodInfo,
    failure_message,
    least_requested,
    node_affinity,
    node_ports,
    node_ready,
    node_resources_fit,
    node_unschedulable,
    pod_requests,
    schedule,
    selector_spread,
    taint_toleration,
    tolerates,
)
from controlplane.server.controlplane import Settings
from tests.support import eventually

T = TypeVar("T")


# --- builders -------------------------------------------------------------------------------------


def make_node(
    name: str,
    cpu: str | None = "4",
    memory: str | None = "8Gi",
    pods: str | None = "110",
    *,
    ready: bool | None = True,
    labels: dict[str, str] | None = None,
    taints: list[Taint] | None = None,
    unschedulable: bool | None = None,
    field: str = "allocatable",
) -> Node:
    resources = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("pods", pods)) if v is not None}
    conditions = None if ready is None else [NodeCondition(type="Ready", status="True" if ready else "False")]
    status = NodeStatus(conditions=conditions, **{field: resources or None})
    return Node(
        metadata=ObjectMeta(name=name, labels=labels),
        spec=NodeSpec(taints=taints, unschedulable=unschedulable),
        status=status,
    )


def make_pod(
    name: str,
    cpu: str | None = None,
    memory: str | None = None,
    *,
    labels: dict[str, str] | None = None,
    owner: str | None = None,
    host_port: int | None = None,
    host_ip: str | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[Toleration] | None = None,
    node_name: str | None = None,
    namespace: str = "default",
) -> Pod:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    ports = [ContainerPort(container_port=80, host_port=host_port, host_ip=host_ip)] if host_port else None
    container = Container(
        name="app",
        image="nginx:1.27",
        ports=ports,
        resources=ResourceRequirements(requests=requests) if requests else None,
    )
    owners = (
        [
            OwnerReference(
                api_version="v1",
                kind="ReplicationController",
                name=owner,
                uid=f"uid-{owner}",
                controller=True,
            )
        ]
        if owner
        else None
    )
    return Pod(
        metadata=ObjectMeta(
            name=name, namespace=namespace, labels=labels, owner_references=owners, uid=f"uid-{name}"
        ),
        spec=PodSpec(
            containers=[container], node_selector=node_selector, tolerations=tolerations, node_name=node_name
        ),
        status=PodStatus(phase="Pending"),
    )


def for_server(pod: Pod) -> Pod:
    """The server assigns uids; a client-chosen one would be rejected or ignored."""
    pod.metadata.uid = None
    return pod


# --- pure functions ---------------------------------------------------------------------------------


def test_effective_requests_take_max_of_init_and_sum_of_app_containers() -> None:
    pod = make_pod("p")
    pod.spec.containers = [
        Container(name="a", resources=ResourceRequirements(requests={"cpu": "200m", "memory": "100Mi"})),
        Container(name="b", resources=ResourceRequirements(requests={"cpu": "300m", "memory": "100Mi"})),
    ]
    pod.spec.init_containers = [
        Container(name="i1", resources=ResourceRequirements(requests={"cpu": "1", "memory": "10Mi"})),
        Container(name="i2", resources=ResourceRequirements(limits={"memory": "150Mi"})),
    ]
    pod.spec.overhead = {"cpu": "10m"}
    req = pod_requests(pod)
    assert req.cpu == 1000 + 10  # the biggest init container wins over the 500m of app containers
    assert req.memory == 200 * 2**20  # the app containers' sum beats any single init container
    # A restartable init container (sidecar) keeps running next to the app containers.
    pod.spec.init_containers = [
        Container(
            name="side", restart_policy="Always", resources=ResourceRequirements(requests={"cpu": "100m"})
        ),
    ]
    assert pod_requests(pod).cpu == 500 + 100 + 10


def test_nonzero_requests_only_for_scoring() -> None:
    pod = make_pod("p")
    assert pod_requests(pod).cpu == 0
    assert pod_requests(pod, nonzero=True).cpu == 100
    assert pod_requests(pod, nonzero=True).memory == 200 * 2**20


def test_cpu_boundary_is_inclusive() -> None:
    node = NodeInfo.of(make_node("n", cpu="1"), [make_pod("a", cpu="600m", node_name="n")])
    assert node_resources_fit(PodInfo.of(make_pod("b", cpu="400m")), node) == []
    assert node_resources_fit(PodInfo.of(make_pod("c", cpu="401m")), node) == ["Insufficient cpu"]


def test_resources_fit_reports_every_shortage_and_pod_count() -> None:
    node = NodeInfo.of(make_node("n", cpu="1", memory="1Gi", pods="1"), [make_pod("a", node_name="n")])
    reasons = node_resources_fit(PodInfo.of(make_pod("b", cpu="2", memory="2Gi")), node)
    assert reasons == ["Too many pods", "Insufficient cpu", "Insufficient memory"]


def test_allocatable_falls_back_to_capacity_then_unlimited() -> None:
    from_capacity = NodeInfo.of(make_node("n", cpu="2", field="capacity"))
    assert from_capacity.allocatable.cpu == 2000
    bare = NodeInfo.of(make_node("n", cpu=None, memory=None, pods=None))
    assert bare.allowed_pods == 110
    assert node_resources_fit(PodInfo.of(make_pod("p", cpu="512", memory="1Ti")), bare) == []


def test_toleration_matching() -> None:
    taint = Taint(key="dedicated", value="gpu", effect="NoSchedule")
    assert tolerates(Toleration(operator="Exists"), taint)  # empty key + Exists tolerates everything
    assert tolerates(Toleration(key="dedicated", operator="Exists"), taint)
    assert tolerates(Toleration(key="dedicated", value="gpu"), taint)  # operator defaults to Equal
    assert tolerates(Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule"), taint)
    assert not tolerates(Toleration(key="dedicated", operator="Equal", value="cpu"), taint)
    assert not tolerates(Toleration(key="dedicated", operator="Exists", effect="NoExecute"), taint)
    assert not tolerates(Toleration(key="other", operator="Exists"), taint)


def test_taint_filter_ignores_prefer_no_schedule() -> None:
    soft = NodeInfo.of(make_node("n", taints=[Taint(key="k", value="v", effect="PreferNoSchedule")]))
    hard = NodeInfo.of(make_node("n", taints=[Taint(key="k", value="v", effect="NoExecute")]))
    plain = PodInfo.of(make_pod("p"))
    assert taint_toleration(plain, soft) == []
    assert taint_toleration(plain, hard) == ["node(s) had untolerated taint {k: v}"]
    tolerant = PodInfo.of(make_pod("p", tolerations=[Toleration(key="k", operator="Exists")]))
    assert taint_toleration(tolerant, hard) == []


def test_node_selector_and_required_affinity() -> None:
    node = NodeInfo.of(make_node("n", labels={"disk": "ssd", "gen": "5"}))
    assert node_affinity(PodInfo.of(make_pod("p", node_selector={"disk": "ssd"})), node) == []
    assert node_affinity(PodInfo.of(make_pod("p", node_selector={"disk": "hdd"})), node) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]
    pod = make_pod("p")
    pod.spec.affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
                    {
                        "matchExpressions": [
                            {"key": "gen", "operator": "Gt", "values": ["4"]},
                            {"key": "gpu", "operator": "DoesNotExist"},
                        ]
                    },
                ]
            }
        }
    }
    assert node_affinity(PodInfo.of(pod), node) == []  # the second term matches
    pod.spec.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ].pop()
    assert node_affinity(PodInfo.of(pod), node) != []


def test_host_port_conflicts() -> None:
    assert HostPort(8080).conflicts(HostPort(8080, ip="10.0.0.1"))  # the wildcard takes every address
    assert HostPort(8080, ip="10.0.0.1").conflicts(HostPort(8080, ip="10.0.0.1"))
    assert not HostPort(8080, ip="10.0.0.1").conflicts(HostPort(8080, ip="10.0.0.2"))
    assert not HostPort(8080, "UDP").conflicts(HostPort(8080, "TCP"))
    node = NodeInfo.of(make_node("n"), [make_pod("a", host_port=8080, host_ip="", node_name="n")])
    assert node_ports(PodInfo.of(make_pod("b", host_port=8080, host_ip="10.0.0.1")), node) == [
        "node(s) didn't have free ports for the requested pod ports"
    ]
    assert node_ports(PodInfo.of(make_pod("c", host_port=8081)), node) == []


def test_ready_and_cordoned_nodes_are_filtered() -> None:
    pod = PodInfo.of(make_pod("p"))
    assert node_ready(pod, NodeInfo.of(make_node("n", ready=False))) == ["node(s) were not ready"]
    assert node_ready(pod, NodeInfo.of(make_node("n", ready=None))) == ["node(s) were not ready"]
    assert node_ready(pod, NodeInfo.of(make_node("n"))) == []
    cordoned = NodeInfo.of(make_node("n", unschedulable=True))
    assert node_unschedulable(pod, cordoned) == ["node(s) were unschedulable"]
    tolerant = make_pod(
        "p", tolerations=[Toleration(key="node.kubernetes.io/unschedulable", operator="Exists")]
    )
    assert node_unschedulable(PodInfo.of(tolerant), cordoned) == []


def test_scores_prefer_emptier_nodes_and_fewer_siblings() -> None:
    empty = NodeInfo.of(make_node("a"))
    busy = NodeInfo.of(make_node("b"), [make_pod("x", cpu="2", memory="4Gi", node_name="b")])
    lr = least_requested(PodInfo.of(make_pod("p", cpu="100m")), [empty, busy])
    assert lr[0] > lr[1]
    sibling = make_pod("s", labels={"app": "web"}, owner="web", node_name="b")
    other = make_pod("o", labels={"app": "web"}, owner="db", node_name="a")
    spread = selector_spread(
        PodInfo.of(make_pod("p", labels={"app": "web"}, owner="web")),
        [NodeInfo.of(make_node("a"), [other]), NodeInfo.of(make_node("b"), [sibling])],
    )
    assert spread == [100.0, 0.0]  # a pod of another controller does not count, even with equal labels


def test_nine_replicas_spread_over_three_equal_nodes() -> None:
    nodes = {name: NodeInfo.of(make_node(name)) for name in ("n1", "n2", "n3")}
    for i in range(9):
        pod = make_pod(f"web-{i}", cpu="100m", memory="64Mi", labels={"app": "web"})
        decision = schedule(PodInfo.of(pod), list(nodes.values()))
        assert decision.node is not None
        pod.spec.node_name = decision.node
        info = nodes[decision.node]
        nodes[decision.node] = NodeInfo(info.node, [*info.pods, PodInfo.of(pod)])
    assert sorted(len(n.pods) for n in nodes.values()) == [3, 3, 3]


def test_spreading_beats_packing_onto_the_biggest_node() -> None:
    """Least-requested alone would put every replica on the big node; spreading keeps them apart."""
    nodes = {
        "big": NodeInfo.of(make_node("big", cpu="64", memory="256Gi")),
        "s1": NodeInfo.of(make_node("s1")),
        "s2": NodeInfo.of(make_node("s2")),
    }
    for i in range(3):
        pod = make_pod(f"web-{i}", cpu="100m", memory="64Mi", labels={"app": "web"})
        decision = schedule(PodInfo.of(pod), list(nodes.values()))
        assert decision.node is not None
        info = nodes[decision.node]
        nodes[decision.node] = NodeInfo(info.node, [*info.pods, PodInfo.of(pod)])
    assert [len(n.pods) for n in nodes.values()] == [1, 1, 1]
    # An unrelated pod (other labels) is not pushed away by them: it goes to the emptiest node.
    assert (
        schedule(PodInfo.of(make_pod("db", cpu="100m", labels={"app": "db"})), list(nodes.values())).node
        == "big"
    )


def test_decision_ties_go_to_the_first_examined_node_and_failures_count_per_node() -> None:
    nodes = [NodeInfo.of(make_node(n)) for n in ("a", "b", "c")]  # the cache keeps them in name order
    assert schedule(PodInfo.of(make_pod("p")), nodes).node == "a"
    assert schedule(PodInfo.of(make_pod("p")), nodes, start=1).node == "b"
    assert schedule(PodInfo.of(make_pod("p")), nodes, start=5).node == "c"  # start wraps round
    nodes = [
        NodeInfo.of(make_node("small", cpu="100m")),
        NodeInfo.of(make_node("other", labels={"zone": "b"})),
        NodeInfo.of(make_node("other2", labels={"zone": "b"})),
    ]
    assert schedule(PodInfo.of(make_pod("p", cpu="1", node_selector={"zone": "b"})), nodes).node == "other"
    decision = schedule(PodInfo.of(make_pod("p", cpu="8", node_selector={"zone": "b"})), nodes)
    assert decision.node is None
    assert decision.reasons == Counter(
        {"Insufficient cpu": 2, "node(s) didn't match Pod's node affinity/selector": 1}
    )
    assert decision.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
    )


def test_failure_message_wording() -> None:
    assert failure_message(0, Counter()) == "0/0 nodes are available: no nodes available to schedule pods."
    message = failure_message(
        3, Counter({"node(s) didn't match Pod's node affinity/selector": 2, "Insufficient cpu": 1})
    )
    assert (
        message
        == "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
    )


# --- the scheduler against a fake API (the watch only moves when the test says so) ---------------


class FakeAPI:
    """Just enough of Client for Scheduler: list, watch queues, bind, events and patches."""

    def __init__(self, nodes: list[Node], pods: list[Pod]) -> None:
        self.objects: dict[type, list[Any]] = {Node: nodes, Pod: pods}
        self.streams: dict[type, asyncio.Queue[WatchEvent[Any]]] = {
            Node: asyncio.Queue(),
            Pod: asyncio.Queue(),
        }
        self.binds: list[tuple[str, str]] = []
        self.bind_errors: list[Exception] = []
        self.events: list[Event] = []
        self.patches: list[tuple[str, Any]] = []

    async def list_all(self, cls: type, namespace: str | None = None, **_: Any) -> ObjectList[Any]:
        return ObjectList(list(self.objects[cls]), "1")

    async def watch(
        self, cls: type, namespace: str | None = None, **_: Any
    ) -> AsyncIterator[WatchEvent[Any]]:
        while True:
            yield await self.streams[cls].get()

    def emit(self, kind: str, obj: Pod | Node) -> None:
        self.streams[type(obj)].put_nowait(WatchEvent(kind, obj, "2"))

    async def bind(self, pod_name: str, namespace: str, node_name: str) -> None:
        self.binds.append((f"{namespace}/{pod_name}", node_name))
        if self.bind_errors:
            raise self.bind_errors.pop(0)

    async def create(self, obj: Event, namespace: str | None = None, **_: Any) -> Event:
        self.events.append(obj)
        return obj

    async def patch(self, cls: type, name: str, patch: Any, namespace: str | None = None, **_: Any) -> Any:
        self.patches.append((name, patch))
        return None


async def test_assumed_pods_count_until_the_watch_catches_up() -> None:
    node = make_node("n1", cpu="1")
    api = FakeAPI([node], [])
    sched = Scheduler(api, retry_interval=3600)  # type: ignore[arg-type]
    await sched.start()
    try:
        a, b = make_pod("a", cpu="600m"), make_pod("b", cpu="600m")
        api.emit("ADDED", a)
        api.emit("ADDED", b)

        async def reported() -> bool:
            return any(e.reason == "FailedScheduling" for e in api.events) and bool(api.patches)

        await eventually(reported, "FailedScheduling for b")
        # a was bound but the watch has not said so: it still holds its 600m, so b does not fit.
        assert api.binds == [("default/a", "n1")]
        assert sched.assumed == {"default/a": "n1"}
        failed = next(e for e in api.events if e.reason == "FailedScheduling")
        assert failed.involved_object.name == "b"
        assert failed.message == "0/1 nodes are available: 1 Insufficient cpu."
        scheduled = next(e for e in api.events if e.reason == "Scheduled")
        assert scheduled.message == "Successfully assigned default/a to n1"
        condition = api.patches[-1][1]["status"]["conditions"][0]
        assert (condition["type"], condition["status"], condition["reason"]) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        )

        bound = make_pod("a", cpu="600m", node_name="n1")
        api.emit("MODIFIED", bound)

        async def confirmed() -> bool:
            return not sched.assumed

        await eventually(confirmed, "the assumption to be confirmed")
        # a finishing frees its cpu; b (parked) is retried at once, not at the next retry tick.
        done = make_pod("a", cpu="600m", node_name="n1")
        done.status.phase = "Succeeded"
        api.emit("MODIFIED", done)

        async def b_bound() -> bool:
            return ("default/b", "n1") in api.binds

        await eventually(b_bound, "b to be bound after a finished")
    finally:
        await sched.stop()


async def test_bind_errors_retry_but_conflicts_drop_the_pod() -> None:
    api = FakeAPI([make_node("n1")], [make_pod("flaky"), make_pod("taken")])
    api.bind_errors = [ApiError(Status(code=500, message="boom"))]
    sched = Scheduler(api, retry_interval=3600)  # type: ignore[arg-type]
    await sched.start()
    try:

        async def retried() -> bool:
            return api.binds.count(("default/flaky", "n1")) == 2

        await eventually(retried, "the failed bind to be retried")
        assert api.binds.count(("default/taken", "n1")) == 1
        api.bind_errors = [Conflict(Status(code=409, reason="Conflict", message="already assigned"))]
        api.emit("ADDED", make_pod("raced"))

        async def raced() -> bool:
            return ("default/raced", "n1") in api.binds and "default/raced" not in sched.assumed

        await eventually(raced, "the conflicting bind to be dropped")
        api.emit("ADDED", make_pod("marker"))

        async def marker() -> bool:
            return ("default/marker", "n1") in api.binds

        await eventually(marker, "a later pod to be bound")
        assert api.binds.count(("default/raced", "n1")) == 1  # a 409 is final: no retry
    finally:
        await sched.stop()


async def test_pods_of_other_schedulers_and_bound_pods_are_left_alone() -> None:
    mine, theirs = make_pod("mine"), make_pod("theirs")
    theirs.spec.scheduler_name = "other-scheduler"
    placed = make_pod("placed", node_name="n1")
    api = FakeAPI([make_node("n1")], [theirs, placed, mine])
    sched = Scheduler(api, retry_interval=3600)  # type: ignore[arg-type]
    await sched.start()
    try:

        async def bound() -> bool:
            return bool(api.binds)

        await eventually(bound, "a bind")
        api.emit("ADDED", make_pod("last"))

        async def last() -> bool:
            return len(api.binds) == 2

        await eventually(last, "the second bind")
        assert api.binds == [("default/mine", "n1"), ("default/last", "n1")]
    finally:
        await sched.stop()


# --- against the real control plane ---------------------------------------------------------------


@pytest.fixture
def no_builtin_scheduler(settings: Settings) -> Settings:
    # No controllers either: the pods here name owners that do not exist, which the garbage collector
    # would rightly delete.
    settings.scheduler = False
    settings.controllers = False
    return settings


@pytest.fixture
async def bare_client(no_builtin_scheduler: Settings, client: Client) -> Client:
    """A client for a control plane that runs no scheduler: tests start their own."""
    return client


@contextlib.asynccontextmanager
async def running(client: Client, **kwargs: Any) -> AsyncIterator[Scheduler]:
    sched = Scheduler(client, **kwargs)
    await sched.start()
    try:
        yield sched
    finally:
        await sched.stop()


async def node_of(client: Client, name: str) -> str | None:
    return (await client.get(Pod, name, "default")).spec.node_name


async def wait_bound(client: Client, name: str) -> str:
    async def check() -> str | None:
        return await node_of(client, name)

    return await eventually(check, f"pod {name} to be bound")


async def events_for(client: Client, pod: str, reason: str) -> list[Event]:
    items = (await client.list(Event, "default")).items
    return [e for e in items if e.involved_object.name == pod and e.reason == reason]


async def wait_event(client: Client, pod: str, reason: str, containing: str = "") -> Event:
    """The first ``reason`` event for ``pod`` whose message contains ``containing``."""

    async def check() -> Event | None:
        found = [e for e in await events_for(client, pod, reason) if containing in (e.message or "")]
        return found[0] if found else None

    return await eventually(check, f"{reason} event for {pod}")


async def test_replicas_spread_evenly(bare_client: Client) -> None:
    for name in ("n1", "n2", "n3"):
        await bare_client.create(make_node(name))
    async with running(bare_client):
        for i in range(9):
            await bare_client.create(
                for_server(
                    make_pod(f"web-{i}", cpu="100m", memory="64Mi", labels={"app": "web"}, owner="web")
                )
            )
        placed = Counter([await wait_bound(bare_client, f"web-{i}") for i in range(9)])
    assert set(placed) == {"n1", "n2", "n3"}
    assert max(placed.values()) - min(placed.values()) <= 1


async def test_host_port_conflict(bare_client: Client) -> None:
    # The big node wins on resources every time, so only the port conflict can send a pod elsewhere.
    await bare_client.create(make_node("big", cpu="64", memory="256Gi"))
    async with running(bare_client):
        await bare_client.create(for_server(make_pod("web-a", cpu="100m", host_port=8080)))
        await bare_client.create(for_server(make_pod("web-b", cpu="100m", host_port=8080)))
        assert await wait_bound(bare_client, "web-a") == "big"
        failed = await wait_event(bare_client, "web-b", "FailedScheduling")
        assert failed.type == "Warning"
        assert failed.message == (
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
        )
        assert await node_of(bare_client, "web-b") is None
        # With a second node the two land apart.
        await bare_client.create(make_node("small", cpu="1", memory="1Gi"))
        assert await wait_bound(bare_client, "web-b") == "small"
        await bare_client.create(for_server(make_pod("no-port", cpu="100m")))
        assert await wait_bound(bare_client, "no-port") == "big"


async def test_exact_cpu_boundary_and_freed_resources(bare_client: Client) -> None:
    await bare_client.create(make_node("n1", cpu="1"))
    async with running(bare_client):
        await bare_client.create(for_server(make_pod("a", cpu="600m")))
        await bare_client.create(for_server(make_pod("b", cpu="400m")))
        await bare_client.create(for_server(make_pod("c", cpu="1m")))
        assert await wait_bound(bare_client, "a") == "n1"
        assert await wait_bound(bare_client, "b") == "n1"
        failed = await wait_event(bare_client, "c", "FailedScheduling")
        assert failed.message == "0/1 nodes are available: 1 Insufficient cpu."
        assert await node_of(bare_client, "c") is None
        # Deleting a frees 600m: the parked pod is retried at once.
        await bare_client.delete(Pod, "a", "default", grace_period_seconds=0)
        assert await wait_bound(bare_client, "c") == "n1"


async def test_unfittable_pod_waits_for_a_node_that_fits(client: Client) -> None:
    """Uses the control plane's own scheduler."""
    await client.create(make_node("tiny", cpu="500m", memory="1Gi"))
    await client.create(for_server(make_pod("big", cpu="2", memory="2Gi")))
    # The scheduler's node cache may not hold "tiny" yet at the first attempt ("0/0 nodes are available");
    # the node's arrival makes it try again.
    failed = await wait_event(client, "big", "FailedScheduling", "Insufficient")
    assert "Insufficient cpu" in (failed.message or "")
    assert "Insufficient memory" in (failed.message or "")

    async def unschedulable() -> bool:
        pod = await client.get(Pod, "big", "default")
        cond = next((c for c in pod.status.conditions or () if c.type == "PodScheduled"), None)
        return cond is not None and (cond.status, cond.reason) == ("False", "Unschedulable")

    await eventually(unschedulable, "PodScheduled=False/Unschedulable")
    await client.create(make_node("large", cpu="4", memory="8Gi"))
    assert await wait_bound(client, "big") == "large"
    pod = await client.get(Pod, "big", "default")
    cond = next(c for c in pod.status.conditions or () if c.type == "PodScheduled")
    assert cond.status == "True"


async def test_racing_binds(bare_client: Client) -> None:
    await bare_client.create(make_node("n1"))
    await bare_client.create(make_node("n2"))
    await bare_client.create(for_server(make_pod("contested")))
    results = await asyncio.gather(
        bare_client.bind("contested", "default", "n1"),
        bare_client.bind("contested", "default", "n2"),
        return_exceptions=True,
    )
    winners = [node for node, r in zip(("n1", "n2"), results, strict=True) if r is None]
    losers = [r for r in results if r is not None]
    assert len(winners) == 1
    assert len(losers) == 1
    assert isinstance(losers[0], Conflict)
    assert losers[0].code == 409
    assert await node_of(bare_client, "contested") == winners[0]


async def test_node_selector_and_taints(bare_client: Client) -> None:
    await bare_client.create(make_node("plain"))
    await bare_client.create(make_node("ssd", labels={"disk": "ssd"}))
    # The tainted node is by far the emptiest: only the taint keeps ordinary pods away from it.
    await bare_client.create(
        make_node(
            "gpu", cpu="64", memory="256Gi", taints=[Taint(key="dedicated", value="gpu", effect="NoSchedule")]
        )
    )
    async with running(bare_client):
        await bare_client.create(for_server(make_pod("wants-ssd", cpu="100m", node_selector={"disk": "ssd"})))
        for i in range(3):
            await bare_client.create(for_server(make_pod(f"plain-{i}", cpu="100m")))
        tolerant = make_pod(
            "tolerant",
            cpu="100m",
            tolerations=[Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule")],
        )
        await bare_client.create(for_server(tolerant))
        await bare_client.create(for_server(make_pod("wants-nvme", node_selector={"disk": "nvme"})))

        assert await wait_bound(bare_client, "wants-ssd") == "ssd"
        for i in range(3):
            assert await wait_bound(bare_client, f"plain-{i}") in ("plain", "ssd")
        assert await wait_bound(bare_client, "tolerant") == "gpu"
        failed = await wait_event(bare_client, "wants-nvme", "FailedScheduling")
        assert failed.message == (
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
            "2 node(s) didn't match Pod's node affinity/selector."
        )


async def test_not_ready_and_cordoned_nodes_are_skipped(bare_client: Client) -> None:
    await bare_client.create(make_node("down", cpu="64", memory="256Gi", ready=False))
    await bare_client.create(make_node("cordoned", cpu="64", memory="256Gi", unschedulable=True))
    async with running(bare_client):
        await bare_client.create(for_server(make_pod("p0", cpu="100m")))
        failed = await wait_event(bare_client, "p0", "FailedScheduling")
        assert failed.message == (
            "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."
        )
        await bare_client.create(make_node("up"))
        for i in range(1, 4):
            await bare_client.create(for_server(make_pod(f"p{i}", cpu="100m")))
        for i in range(4):
            assert await wait_bound(bare_client, f"p{i}") == "up"
        # Uncordoning is a node change that matters: new pods may use the node again.
        await bare_client.patch(Node, "cordoned", {"spec": {"unschedulable": None}})
        await bare_client.create(for_server(make_pod("p4", cpu="100m")))
        assert await wait_bound(bare_client, "p4") == "cordoned"


async def test_scheduled_event(client: Client) -> None:
    """Uses the control plane's own scheduler."""
    await client.create(make_node("n1"))
    await client.create(for_server(make_pod("hello", cpu="10m")))
    assert await wait_bound(client, "hello") == "n1"
    event = await wait_event(client, "hello", "Scheduled")
    assert event.type == "Normal"
    assert event.message == "Successfully assigned default/hello to n1"
    assert event.source is not None and getattr(event.source, "component", None) == "default-scheduler"


async def test_repeated_failures_merge_into_one_event(bare_client: Client) -> None:
    async with running(bare_client, retry_interval=0.1):
        await bare_client.create(for_server(make_pod("lonely")))

        async def repeated() -> bool:
            found = await events_for(bare_client, "lonely", "FailedScheduling")
            return bool(found) and isinstance(found[0].count, int) and found[0].count >= 3

        await eventually(repeated, "the FailedScheduling event to be counted up")
        events = await events_for(bare_client, "lonely", "FailedScheduling")
        assert len(events) == 1
        assert events[0].message == "0/0 nodes are available: no nodes available to schedule pods."
