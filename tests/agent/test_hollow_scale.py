"""Hollow nodes as kubemark runs them, against the real control plane: dozens of nodes in one process
register and keep their Leases renewed from one heartbeat loop, report the status of the pods bound to
them, and each computes the service proxy table a real node would install (netlink faked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from agent.hollow import HollowNodes, hollow_ip
from agent.pods import BackOffPolicy
from controlplane.api import Lease, Node, Pod
from controlplane.api.core import Endpoints, Service
from controlplane.client import Client
from tests.support import eventually

COUNT = 30


@pytest.fixture
async def nodes(client: Client) -> AsyncIterator[HollowNodes]:
    hollow = HollowNodes(
        client,
        COUNT,
        lease_interval=0.5,
        status_interval=2,
        backoff=BackOffPolicy(initial=0.3, maximum=1.2),
        proxy_record=20,
    )
    await hollow.start(batch=10)
    try:
        yield hollow
    finally:
        await hollow.stop()


def ready(node: Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


async def test_all_register_ready_and_their_leases_are_renewed(client: Client, nodes: HollowNodes) -> None:
    listed = [
        n for n in (await client.list(Node)).items if (n.metadata.name or "").startswith("hollow-node-")
    ]
    assert len(listed) == COUNT and all(ready(n) for n in listed)
    assert {n.metadata.name: n.status.addresses[0].address for n in listed} == {  # type: ignore[index]
        f"hollow-node-{i}": hollow_ip(i) for i in range(COUNT)
    }
    first = {
        lease.metadata.name: lease.spec.renew_time
        for lease in (await client.list(Lease, "kube-node-lease")).items
    }
    assert set(first) >= set(nodes.agents)

    async def all_renewed() -> bool:
        now = {
            lease.metadata.name: lease.spec.renew_time
            for lease in (await client.list(Lease, "kube-node-lease")).items
        }
        return all(now[name] != first[name] for name in nodes.agents)

    await eventually(all_renewed, "every hollow node's Lease renewed", timeout=30)
    assert nodes.heartbeats.failures == 0 and len(nodes.heartbeats) == COUNT


async def test_a_pod_bound_to_node_k_runs_with_status_from_node_k(client: Client, nodes: HollowNodes) -> None:
    k = 17
    node = f"hollow-node-{k}"
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    await client.create(msgspec.convert({"metadata": {"name": "on-k"}, "spec": spec}, Pod))

    async def running() -> Pod | None:
        pod = await client.get(Pod, "on-k", "default")
        return pod if pod.status.phase == "Running" else None

    pod = await eventually(running, "the pod Running on node k", timeout=30)
    assert pod.status.host_ip == hollow_ip(k)  # reported by node k's own pod worker
    assert pod.status.container_statuses and pod.status.container_statuses[0].ready
    assert [s.name for s in nodes.agents[node].runtime.sandboxes.values()] == ["on-k"]  # type: ignore[attr-defined]
    others = [a for name, a in nodes.agents.items() if name != node]
    assert all(not a.runtime.sandboxes for a in others)  # type: ignore[attr-defined]


def service(name: str, **spec: Any) -> Service:
    ports = [{"name": "http", "port": 80, "targetPort": 8080}]
    return msgspec.convert({"metadata": {"name": name}, "spec": {"ports": ports, **spec}}, Service)


def endpoints(name: str, *ips: str, node: str | None = None) -> Endpoints:
    addresses = [{"ip": ip, **({"nodeName": node} if node else {})} for ip in ips]
    subsets = [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}]
    return msgspec.convert({"metadata": {"name": name}, "subsets": subsets}, Endpoints)


async def test_each_node_holds_its_own_cluster_ip_and_node_port_rules(
    client: Client, nodes: HollowNodes
) -> None:
    svc = await client.create(service("web", type="NodePort"))  # no selector: we write its Endpoints
    cluster_ip, node_port = svc.spec.cluster_ip, svc.spec.ports[0].node_port  # type: ignore[index]
    assert cluster_ip and node_port
    await client.create(endpoints("web", "10.244.3.5", "10.244.7.9"))
    k, j = 5, 23
    mine, other = nodes.proxy(f"hollow-node-{k}"), nodes.proxy(f"hollow-node-{j}")
    assert mine is not None and other is not None
    want = {("10.244.3.5", 8080), ("10.244.7.9", 8080)}

    async def installed() -> bool:
        return mine.route(cluster_ip, 80) == want and other.route(cluster_ip, 80) == want

    await eventually(installed, "the ClusterIP rules on nodes k and j", timeout=15)
    assert mine.route(hollow_ip(k), node_port) == want  # the NodePort, on node k's own address
    assert mine.route(hollow_ip(j), node_port) is None  # node j's address is not local to node k
    assert other.route(hollow_ip(j), node_port) == want
    assert mine.route(cluster_ip, 81) is None
    tables = [p.nftables.table for p in nodes.proxies.nodes.values()]  # type: ignore[union-attr]
    postrouting = {t.chains[4].rules for t in tables if t is not None}
    assert len(postrouting) == COUNT  # each node masquerades its own pod CIDR
    assert mine.nftables.batches[-1].full is False  # a change is sent as a difference, not a rewrite

    await client.delete(Endpoints, "web", "default")

    async def rejected() -> bool:
        return mine.route(cluster_ip, 80) == "reject" and mine.route(hollow_ip(k), node_port) == "reject"

    await eventually(rejected, "the service rejected once its Endpoints are gone", timeout=15)
    ops = mine.nftables.batches[-1].ops
    assert any(op.startswith("delete chain ep-default/web/tcp/http__10.244.3.5") for op in ops), ops
    assert not any("kubernetes" in op for op in ops)  # other services' chains were not touched


async def test_local_traffic_policy_keeps_each_nodes_own_endpoints(
    client: Client, nodes: HollowNodes
) -> None:
    await client.create(service("local", type="NodePort", externalTrafficPolicy="Local"))
    svc = await client.get(Service, "local", "default")
    node_port = svc.spec.ports[0].node_port  # type: ignore[index]
    assert node_port
    await client.create(endpoints("local", "10.244.2.2", node="hollow-node-2"))
    here, elsewhere = nodes.proxy("hollow-node-2"), nodes.proxy("hollow-node-3")
    assert here is not None and elsewhere is not None

    async def installed() -> bool:
        return here.route(hollow_ip(2), node_port) == {("10.244.2.2", 8080)}

    await eventually(installed, "the Local node port on the endpoint's node", timeout=15)
    assert elsewhere.route(hollow_ip(3), node_port) == "drop"  # no local endpoint: dropped, not forwarded
    assert elsewhere.route(hollow_ip(3), node_port, source="10.244.9.9") == {
        ("10.244.2.2", 8080)
    }  # pods: all


async def test_without_the_proxy_no_endpoints_are_watched(client: Client) -> None:
    hollow = HollowNodes(client, 2, prefix="bare-", proxy=False)
    await hollow.start()
    try:
        assert hollow.proxies is None and hollow.endpoints is None and hollow.proxy("bare-0") is None
        assert ready(await client.get(Node, "bare-1"))
    finally:
        await hollow.stop()
        await hollow.stop()  # idempotent
