"""agent.network.routes: which host-gw routes a node list calls for, and keeping them in a real kernel
(a throwaway namespace) without touching routes that are not ours."""

from __future__ import annotations

import subprocess

import pytest

from agent.network.netns import run_in_netns
from agent.network.routes import RTPROT_PEAPOD, connected_subnets, desired_routes, owned_routes, sync_routes
from controlplane.api.core import Node, NodeAddress, NodeSpec, NodeStatus
from controlplane.api.meta import ObjectMeta


def node(name: str, cidr: str | None, ip: str | None) -> Node:
    addresses = [NodeAddress(type="Hostname", address=name)]
    if ip is not None:
        addresses.append(NodeAddress(type="InternalIP", address=ip))
    return Node(
        metadata=ObjectMeta(name=name),
        spec=NodeSpec(pod_cidr=cidr),
        status=NodeStatus(addresses=addresses),
    )


LAN = ["192.168.77.0/24"]


def test_every_other_node_with_a_pod_cidr_gets_a_route_via_its_internal_ip() -> None:
    nodes = [
        node("a", "10.244.1.0/24", "192.168.77.11"),
        node("b", "10.244.2.0/24", "192.168.77.12"),
        node("c", "10.244.3.0/24", "192.168.77.13"),
        node("pending", None, "192.168.77.14"),  # no podCIDR yet: nothing to route
    ]
    routes, skipped = desired_routes(nodes, "a", LAN)
    assert routes == {"10.244.2.0/24": "192.168.77.12", "10.244.3.0/24": "192.168.77.13"}
    assert skipped == []


def test_nodes_that_are_not_neighbours_or_conflict_are_skipped_with_a_reason() -> None:
    nodes = [
        node("a", "10.244.1.0/24", "192.168.77.11"),
        node("far", "10.244.2.0/24", "10.9.0.5"),
        node("noip", "10.244.3.0/24", None),
        node("dup1", "10.244.4.0/24", "192.168.77.14"),
        node("dup2", "10.244.4.0/24", "192.168.77.15"),
        node("mine", "10.244.1.0/24", "192.168.77.16"),
    ]
    routes, skipped = desired_routes(nodes, "a", LAN)
    assert routes == {"10.244.4.0/24": "192.168.77.14"}
    reasons = {s.node: s.reason for s in skipped}
    assert set(reasons) == {"far", "noip", "dup2", "mine"}
    assert "not on a directly connected subnet" in reasons["far"]


# --- the kernel ------------------------------------------------------------------------------------


def ip(netns: str, *args: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", "ip", *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_routes_are_added_changed_and_removed_leaving_foreign_ones_alone(netns: str) -> None:
    ip(netns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")  # no dummy module here
    ip(netns, "addr", "add", "192.168.77.11/24", "dev", "lan0")
    ip(netns, "link", "set", "lan1", "up")
    ip(netns, "link", "set", "lan0", "up")
    ip(netns, "route", "add", "blackhole", "10.244.0.0/16")
    ip(netns, "route", "add", "10.244.9.0/24", "via", "192.168.77.99")  # someone else's
    assert await run_in_netns(netns, connected_subnets) == ["192.168.77.0/24"]

    first = {"10.244.2.0/24": "192.168.77.12", "10.244.3.0/24": "192.168.77.13"}
    assert len(await run_in_netns(netns, sync_routes, first)) == 2
    assert await run_in_netns(netns, owned_routes) == first
    shown = ip(netns, "route", "show", "proto", str(RTPROT_PEAPOD))
    assert "10.244.2.0/24 via 192.168.77.12 dev lan0" in shown
    assert await run_in_netns(netns, sync_routes, first) == []  # already in step: nothing to do

    # Node 2 moved, node 3 left, and a route for a destination someone else routes is not taken over.
    second = {"10.244.2.0/24": "192.168.77.22", "10.244.9.0/24": "192.168.77.19"}
    await run_in_netns(netns, sync_routes, second)
    assert await run_in_netns(netns, owned_routes) == {"10.244.2.0/24": "192.168.77.22"}
    table = ip(netns, "route", "show")
    assert "10.244.9.0/24 via 192.168.77.99" in table and "blackhole 10.244.0.0/16" in table
    assert "10.244.3.0/24" not in table

    # The more specific route wins over the blackhole for the other node's pods.
    assert "via 192.168.77.22" in ip(netns, "route", "get", "10.244.2.7")

    await run_in_netns(netns, sync_routes, {})  # cleanup: ours gone, theirs kept
    assert await run_in_netns(netns, owned_routes) == {}
    assert "10.244.9.0/24 via 192.168.77.99" in ip(netns, "route", "show")
