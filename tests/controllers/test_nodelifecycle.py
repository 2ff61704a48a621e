"""The node lifecycle controller against hollow nodes: a node whose agent stops becomes Ready=Unknown,
gets the unreachable taints and its pods go NotReady; NoExecute taints evict by tolerationSeconds; a
node that comes back loses the taints; the scheduler honours taints; and, end to end, an RC's pods on a
dead node are evicted and recreated on another node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.hollow import HollowNodes
from controlplane.api import Node, Pod
from controlplane.client import Client
from controlplane.server.controlplane import Settings
from tests.controllers.conftest import busybox_rc, hollow_nodes
from tests.support import UNREACHABLE, absent, busybox_pod, eventually, tolerate_unreachable_for


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return tolerate_unreachable_for(settings, 1, scheduler=True)


@pytest.fixture
async def started() -> AsyncIterator[list[HollowNodes]]:
    """Hollow node groups a test starts; whatever is still running is stopped at the end."""
    groups: list[HollowNodes] = []
    try:
        yield groups
    finally:
        for group in groups:
            await group.stop()


async def start(client: Client, started: list[HollowNodes], prefix: str, count: int = 1) -> HollowNodes:
    group = hollow_nodes(client, count, prefix)
    await group.start()
    started.append(group)
    return group


def condition(obj: Node | Pod, kind: str) -> Any:
    return next((c for c in obj.status.conditions or () if c.type == kind), None)


async def ready_pod(client: Client, name: str) -> Pod | None:
    p = await client.get(Pod, name, "default")
    ready = condition(p, "Ready")
    return p if ready is not None and ready.status == "True" else None


async def node_with(client: Client, name: str, ready: str, tainted: bool) -> Node | None:
    node = await client.get(Node, name)
    cond = condition(node, "Ready")
    keys = {(t.key, t.effect) for t in node.spec.taints or ()}
    has = {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")} <= keys
    ok = cond is not None and cond.status == ready and has == tainted
    return node if ok else None


async def test_dead_node_becomes_unknown_tainted_and_recovers(
    client: Client, started: list[HollowNodes]
) -> None:
    group = await start(client, started, "dead-")
    await client.create(busybox_pod("web", "dead-0"))
    await eventually(lambda: ready_pod(client, "web"), "pod web Ready")
    # Someone else's taint must survive the controller's taint updates.
    await client.patch(
        Node, "dead-0", {"spec": {"taints": [{"key": "example.com/team", "effect": "PreferNoSchedule"}]}}
    )

    await group.stop()
    started.remove(group)
    node = await eventually(lambda: node_with(client, "dead-0", "Unknown", True), "node Unknown + tainted")
    ready = condition(node, "Ready")
    assert ready.reason == "NodeStatusUnknown"
    assert ready.message == "Kubelet stopped posting node status."
    no_execute = next(t for t in node.spec.taints if t.key == UNREACHABLE and t.effect == "NoExecute")
    assert no_execute.time_added
    assert any(t.key == "example.com/team" for t in node.spec.taints)

    async def not_ready() -> Pod | None:
        p = await client.get(Pod, "web", "default")
        ready, containers = condition(p, "Ready"), condition(p, "ContainersReady")
        return p if ready.status == "False" and containers.status == "False" else None

    web = await eventually(not_ready, "pod web marked NotReady")
    # It tolerates unreachable for 1 s (the admission default in this module): evicted, and it stays
    # Terminating because no agent confirms the deletion.
    evicted = await eventually(lambda: _deleting(client, "web"), "pod web evicted from the unreachable node")
    assert evicted.metadata.uid == web.metadata.uid

    await start(client, started, "dead-")  # the node comes back under the same name
    node = await eventually(lambda: node_with(client, "dead-0", "True", False), "node Ready, untainted")
    assert [t.key for t in node.spec.taints or ()] == ["example.com/team"]

    await eventually(lambda: absent(client, Pod, "web"), "the returning agent finishes the eviction")


async def _deleting(client: Client, name: str) -> Pod | None:
    p = await client.get(Pod, name, "default")
    return p if p.metadata.deletion_timestamp is not None else None


async def test_toleration_seconds_decide_when_pods_are_evicted(
    client: Client, started: list[HollowNodes]
) -> None:
    group = await start(client, started, "ttl-")
    forever = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    brief = {**forever, "tolerationSeconds": 1}
    await client.create(busybox_pod("brief", "ttl-0", tolerations=[brief]))
    await client.create(busybox_pod("forever", "ttl-0", tolerations=[forever]))
    await eventually(lambda: ready_pod(client, "brief"), "pod brief Ready")
    await eventually(lambda: ready_pod(client, "forever"), "pod forever Ready")

    await group.stop()
    started.remove(group)
    await eventually(lambda: node_with(client, "ttl-0", "Unknown", True), "node tainted unreachable")
    await eventually(lambda: _deleting(client, "brief"), "pod brief evicted after its 1 s")
    # The controller has acted on this node (brief is gone); forever tolerates without a limit.
    by_name = {p.metadata.name: p for p in (await client.list(Pod, "default")).items}
    assert by_name["forever"].metadata.deletion_timestamp is None

    async def eviction_event() -> bool:
        events = (await client.request("GET", "/api/v1/namespaces/default/events")).json()["items"]
        return any(
            e["involvedObject"]["name"] == "brief" and e["reason"] == "TaintManagerEviction" for e in events
        )

    await eventually(eviction_event, "the TaintManagerEviction event (recorded after the delete)")


async def test_untolerated_no_execute_taint_evicts_at_once(
    client: Client, started: list[HollowNodes]
) -> None:
    await start(client, started, "taint-")
    await client.create(busybox_pod("plain", "taint-0"))
    tolerant = {"key": "example.com/drain", "operator": "Exists", "effect": "NoExecute"}
    await client.create(busybox_pod("tolerant", "taint-0", tolerations=[tolerant]))
    await eventually(lambda: ready_pod(client, "plain"), "pod plain Ready")
    await eventually(lambda: ready_pod(client, "tolerant"), "pod tolerant Ready")

    taint = {"key": "example.com/drain", "effect": "NoExecute"}
    await client.patch(Node, "taint-0", {"spec": {"taints": [taint]}})

    await eventually(lambda: absent(client, Pod, "plain"), "pod plain evicted and finished by its agent")
    kept = await client.get(Pod, "tolerant", "default")
    assert kept.metadata.deletion_timestamp is None
    node = await client.get(Node, "taint-0")
    assert [(t.key, t.effect) for t in node.spec.taints or ()] == [("example.com/drain", "NoExecute")]


async def test_scheduler_honours_taints(client: Client, started: list[HollowNodes]) -> None:
    await start(client, started, "sched-", 2)
    await client.patch(
        Node, "sched-0", {"spec": {"taints": [{"key": "example.com/gpu", "effect": "NoSchedule"}]}}
    )
    await client.patch(
        Node, "sched-1", {"spec": {"taints": [{"key": "example.com/slow", "effect": "PreferNoSchedule"}]}}
    )

    async def bound(name: str) -> str | None:
        return (await client.get(Pod, name, "default")).spec.node_name

    # Without tolerations: not on the NoSchedule node; the PreferNoSchedule one is only avoided.
    await client.create(busybox_pod("plain"))
    assert await eventually(lambda: bound("plain"), "plain scheduled") == "sched-1"
    gpu = {"key": "example.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    await client.create(busybox_pod("gpu", tolerations=[gpu]))
    # Both fit it; the untolerated PreferNoSchedule taint on sched-1 sends it to sched-0.
    assert await eventually(lambda: bound("gpu"), "gpu scheduled") == "sched-0"


async def test_rc_pods_on_a_dead_node_are_recreated_elsewhere(
    client: Client, started: list[HollowNodes]
) -> None:
    a = await start(client, started, "a-")
    await start(client, started, "b-")
    await client.patch(Node, "b-0", {"spec": {"unschedulable": True}})
    await client.create(busybox_rc("web", 2))

    async def pods(node: str) -> list[Pod] | None:
        items = (await client.list(Pod, "default", label_selector="app=web")).items
        active = [p for p in items if p.metadata.deletion_timestamp is None]
        running = [p for p in active if p.spec.node_name == node and p.status.phase == "Running"]
        return running if len(running) == 2 and len(active) == 2 else None

    first = await eventually(lambda: pods("a-0"), "2 pods Running on a-0")
    await client.patch(Node, "b-0", {"spec": {"unschedulable": None}})
    await a.stop()
    started.remove(a)
    second = await eventually(lambda: pods("b-0"), "2 replacement pods Running on b-0", timeout=30)
    assert not {p.metadata.uid for p in first} & {p.metadata.uid for p in second}
    items = (await client.list(Pod, "default", label_selector="app=web")).items
    stuck = [p for p in items if p.metadata.deletion_timestamp is not None]
    assert {p.metadata.uid for p in stuck} == {p.metadata.uid for p in first}
