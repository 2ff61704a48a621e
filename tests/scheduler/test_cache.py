"""The scheduler at scale: the incremental cache (sums kept as pods come and go, assumptions, pods on
unknown nodes), kube-scheduler's percentageOfNodesToScore with a rotating start, the per-pod filter
shortcuts, and the bounded Scheduled-event queue."""

from __future__ import annotations

import asyncio
from collections import Counter

from controlplane.api.core import Event, Taint
from controlplane.scheduler import Scheduler
from controlplane.scheduler.cache import Cache
from controlplane.scheduler.plugins import NodeInfo, PodInfo, nodes_to_find, schedule
from tests.scheduler.test_scheduler import FakeAPI, make_node, make_pod
from tests.support import eventually


def same_sums(a: NodeInfo, b: NodeInfo) -> bool:
    return (a.requested, a.nonzero_requested, a.pod_count, a.used_ports, a.spread) == (
        b.requested,
        b.nonzero_requested,
        b.pod_count,
        b.used_ports,
        b.spread,
    )


def test_node_info_sums_follow_adds_and_removes() -> None:
    pods = [
        make_pod("a", cpu="250m", memory="64Mi", labels={"app": "web"}, owner="web", host_port=8080),
        make_pod("b", cpu="1", labels={"app": "web"}, owner="web"),
        make_pod("c", memory="1Gi"),
    ]
    info = NodeInfo(make_node("n"))
    for p in pods:
        info.add(PodInfo.of(p))
    info.add(PodInfo.of(pods[0]))  # the same pod again replaces, never double counts
    assert same_sums(info, NodeInfo.of(make_node("n"), pods))
    assert info.requested.cpu == 1250
    assert info.spread[("owner", "default", "uid-web")] == 2
    removed = info.remove("default/a")
    assert removed is not None and removed.key == "default/a"
    assert info.remove("default/a") is None
    assert same_sums(info, NodeInfo.of(make_node("n"), pods[1:]))
    assert not info.used_ports


def test_equal_spreading_keys_are_one_object() -> None:
    """Sibling counts are looked up by identity first: replicas must share their key object."""
    a = PodInfo.of(make_pod("a", labels={"app": "web", "tier": "1"}))
    b = PodInfo.of(make_pod("b", labels={"tier": "1", "app": "web"}))
    assert a.spread_key is not None and a.spread_key is b.spread_key
    assert PodInfo.of(make_pod("c", labels={"app": "db"})).spread_key != a.spread_key


def test_assumed_pod_counts_once_and_the_bound_version_replaces_it() -> None:
    cache = Cache()
    cache.set_node(make_node("n1", cpu="1"))
    info = PodInfo.of(make_pod("a", cpu="600m"))
    cache.assume("n1", info)
    node = cache.node("n1")
    assert node is not None and node.requested.cpu == 600
    assert cache.assumed_pods() == {"default/a": "n1"}
    # The watch shows it bound: the scheduler confirms and places the bound version.
    cache.confirm("default/a")
    cache.place("n1", PodInfo.of(make_pod("a", cpu="600m", node_name="n1")))
    assert node.requested.cpu == 600 and node.pod_count == 1
    assert cache.assumed_pods() == {}
    # A late bind failure for the old assumption must not take the bound pod away.
    assert not cache.forget("default/a", info)
    assert node.pod_count == 1


def test_forgetting_a_failed_bind_frees_the_node() -> None:
    cache = Cache()
    cache.set_node(make_node("n1", cpu="1"))
    info = PodInfo.of(make_pod("a", cpu="600m"))
    cache.assume("n1", info)
    assert cache.schedule(PodInfo.of(make_pod("b", cpu="600m"))).node is None
    assert cache.forget("default/a", info)
    assert cache.schedule(PodInfo.of(make_pod("b", cpu="600m"))).node == "n1"


def test_pods_on_unknown_nodes_count_once_the_node_appears() -> None:
    cache = Cache()
    cache.place("late", PodInfo.of(make_pod("a", cpu="3", node_name="late")))
    cache.set_node(make_node("late", cpu="4"))
    node = cache.node("late")
    assert node is not None and node.requested.cpu == 3000
    cache.remove_node("late")
    assert cache.nodes() == []
    cache.set_node(make_node("late", cpu="4"))  # it comes back with its pods still counted
    node = cache.node("late")
    assert node is not None and node.requested.cpu == 3000
    assert cache.unplace("default/a")
    assert node.requested.cpu == 0


def test_node_changes_are_seen_by_the_next_decision() -> None:
    cache = Cache()
    cache.set_node(make_node("n1"))
    cache.set_node(make_node("n1", taints=[Taint(key="k", effect="NoSchedule")]))
    decision = cache.schedule(PodInfo.of(make_pod("p")))
    assert decision.node is None
    assert decision.message == "0/1 nodes are available: 1 node(s) had untolerated taint {k: }."


def test_nodes_to_find_follows_kube_scheduler() -> None:
    assert nodes_to_find(50) == 50  # small clusters: every node
    assert nodes_to_find(100) == 100
    assert nodes_to_find(200) == 100  # 48% of 200 is 96, but never fewer than 100
    assert nodes_to_find(1000) == 420  # 50 - 1000/125 = 42%
    assert nodes_to_find(5000) == 500  # 10%
    assert nodes_to_find(10000) == 500  # the 5% floor
    assert nodes_to_find(1000, 100) == 1000
    assert nodes_to_find(1000, 20) == 200


def test_search_stops_early_and_rotates_over_the_whole_cluster() -> None:
    cache = Cache()
    for i in range(1000):
        cache.set_node(make_node(f"n{i:04d}"))
    first = cache.schedule(PodInfo.of(make_pod("p0")))
    assert first.examined == 420  # every node fits: it stops at 42% of them
    # Every pod is assumed where it goes; after enough pods every node has been used once or twice.
    placed: Counter[str] = Counter()
    for i in range(1000):
        info = PodInfo.of(make_pod(f"p{i}", cpu="10m", labels={"app": "web"}, owner="web"))
        decision = cache.schedule(info)
        assert decision.node is not None
        cache.assume(decision.node, info)
        placed[decision.node] += 1
    assert len(placed) == 1000  # spreading plus the rotating start: one pod per node
    assert max(placed.values()) == 1


def test_an_unschedulable_pod_examines_every_node() -> None:
    nodes = [NodeInfo(make_node(f"n{i:03d}", cpu="1")) for i in range(300)]
    decision = schedule(PodInfo.of(make_pod("big", cpu="2")), nodes, start=123)
    assert decision.node is None
    assert decision.examined == 300
    assert decision.reasons == Counter({"Insufficient cpu": 300})


def test_restricted_nodes_are_still_filtered_among_clean_ones() -> None:
    """The ready/cordon/taint filters are skipped only on clean nodes."""
    nodes = [NodeInfo(make_node(f"n{i:03d}")) for i in range(150)]
    nodes[0] = NodeInfo(make_node("n000", cpu="64", ready=False))
    nodes[1] = NodeInfo(make_node("n001", cpu="64", unschedulable=True))
    nodes[2] = NodeInfo(make_node("n002", cpu="64", taints=[Taint(key="k", effect="NoExecute")]))
    nodes[3] = NodeInfo(make_node("n003", cpu="32"))
    assert schedule(PodInfo.of(make_pod("p", cpu="100m")), nodes).node == "n003"


def test_filters_that_cannot_fail_are_skipped() -> None:
    """A pod without host ports or node constraints never calls those filters; one with them does."""
    from controlplane.scheduler.plugins import DEFAULT_FILTERS, Filter

    calls: Counter[str] = Counter()

    def counting(f: Filter) -> Filter:
        def check(pod: PodInfo, node: NodeInfo) -> list[str]:
            calls[f.name] += 1
            return f.check(pod, node)

        return Filter(f.name, check, f.applies, f.restricted_only)

    filters = [counting(f) for f in DEFAULT_FILTERS]
    nodes = [NodeInfo(make_node(f"n{i}", labels={"disk": "ssd"})) for i in range(5)]
    assert schedule(PodInfo.of(make_pod("plain")), nodes, filters).node == "n0"
    assert calls == Counter({"NodeResourcesFit": 5})
    calls.clear()
    picky = make_pod("picky", host_port=8080, node_selector={"disk": "ssd"})
    assert schedule(PodInfo.of(picky), nodes, filters).node == "n0"
    assert calls == Counter({"NodeResourcesFit": 5, "NodePorts": 5, "NodeAffinity": 5})


class SlowEvents(FakeAPI):
    """Event creation waits for a gate, so events pile up behind the two writers."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.gate = asyncio.Event()

    async def create(self, obj: Event, namespace: str | None = None, **kw: object) -> Event:
        await self.gate.wait()
        return await super().create(obj, namespace)


async def test_scheduled_events_are_queued_and_the_oldest_dropped_when_full() -> None:
    api = SlowEvents([make_node("n1")], [])
    sched = Scheduler(api, retry_interval=3600, event_queue=2)  # type: ignore[arg-type]
    await sched.start()
    try:
        for i in range(6):
            api.emit("ADDED", make_pod(f"p{i}"))

        async def all_bound() -> bool:
            return len(api.binds) == 6

        await eventually(all_bound, "every pod bound while events wait")
        assert sched.events_dropped >= 1  # binds never waited for events
        api.gate.set()

        async def written() -> bool:
            return len(api.events) + sched.events_dropped == 6

        await eventually(written, "the queued events to be written")
        messages = {e.message for e in api.events}
        assert "Successfully assigned default/p5 to n1" in messages  # the newest is never the one dropped
    finally:
        await sched.stop()
