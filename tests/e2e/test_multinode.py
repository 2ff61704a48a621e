"""Several nodes on one machine (``multinode.py``): each gets its own podCIDR, and pods on different nodes
reach each other by pod IP through the host-gw routes, keeping their source address (no masquerade
inside the cluster's pod range)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agent.network.routes import RTPROT_PEAPOD
from controlplane.api import Node
from controlplane.client import Client

from . import multinode
from .cluster import eventually, manifest, running, sh
from .conftest import podman_missing_reason
from .multinode import Lab, LabNode

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# busybox httpd with a CGI that answers with the address the request came from.
PEER_SERVER = (
    "mkdir -p /var/www/cgi-bin; "
    "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=$REMOTE_ADDR\\n' "
    "> /var/www/cgi-bin/peer; chmod +x /var/www/cgi-bin/peer; exec httpd -f -p 80 -h /var/www"
)


def peer(text: str) -> str:
    """The address busybox httpd reported (it listens on IPv6 too, so it says ``[::ffff:A.B.C.D]``)."""
    found = re.search(r"peer=\[?(?:::ffff:)?([0-9.]+)\]?", text)
    assert found is not None, text
    return found.group(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    async with multinode.testbed(3, tmp_path_factory.mktemp("multinode")) as bed:
        yield bed


async def ready_nodes(client: Client) -> list[Node] | None:
    nodes = (await client.list(Node)).items
    ready = [
        n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
    ]
    return nodes if len(ready) == 3 else None


async def test_three_nodes_come_up_ready_with_distinct_pod_cidrs_and_routes_to_each_other(lab: Lab) -> None:
    nodes = await eventually(lambda: ready_nodes(lab.client), "three Ready nodes")
    cidrs = {n.metadata.name: n.spec.pod_cidr for n in nodes}
    assert len(set(cidrs.values())) == 3 and all(cidrs.values())
    for node in lab.nodes:
        want = {f"{cidrs[o.name]} via {o.ip}" for o in lab.nodes if o is not node}
        want.add(f"{multinode.SERVICE_RANGE} dev pea0")  # ClusterIPs from the node itself

        async def routed(node: LabNode = node, want: set[str] = want) -> bool:
            _, out = await lab.exec_in(node, "ip", "route", "show", "proto", str(RTPROT_PEAPOD))
            return {" ".join(line.split()[:3]) for line in out.splitlines()} == want

        await eventually(routed, f"{node.name}'s routes to the other nodes' pods")


async def test_a_pod_reaches_a_pod_on_another_node_by_its_ip_keeping_its_source(lab: Lab) -> None:
    a, b = lab.nodes[0], lab.nodes[1]
    client = lab.client
    await client.create(manifest("peer-b", sh("web", PEER_SERVER), nodeName=b.name))
    pod_b = await eventually(lambda: running(client, "peer-b"), "the server pod on node b running")
    ip_b = pod_b.status.pod_ip or ""
    cidr_b = (await client.get(Node, b.name)).spec.pod_cidr or ""
    assert ipaddress.ip_address(ip_b) in ipaddress.ip_network(cidr_b)

    script = f"until wget -qO- http://{ip_b}/cgi-bin/peer; do sleep 0.2; done; exec sleep 600"
    await client.create(manifest("peer-a", sh("client", script), nodeName=a.name))
    pod_a = await eventually(lambda: running(client, "peer-a"), "the client pod on node a running")
    ip_a = pod_a.status.pod_ip or ""

    async def answer() -> str | None:
        text = b"".join([chunk async for chunk in client.logs("peer-a", "default", container="client")])
        return text.decode() if "peer=" in text.decode() else None

    # B's server saw A's pod address, not node A's: the packet crossed the nodes unchanged.
    assert peer(await eventually(answer, "pod a fetching from pod b across nodes")) == ip_a
    # From node c's own namespace the source is node c's address on the lab LAN.
    c = lab.nodes[2]
    page = await lab.http_get(c, f"http://{ip_b}/cgi-bin/peer")
    assert peer(page) == c.ip


async def test_pods_reach_the_api_server_at_the_lab_address(lab: Lab) -> None:
    c = lab.nodes[2]
    script = f"until wget -qO- {lab.pod_url}/version; do sleep 0.2; done; exec sleep 600"
    await lab.client.create(manifest("api-reader", sh("app", script), nodeName=c.name))
    await eventually(lambda: running(lab.client, "api-reader"), "the pod on node c running")

    async def version() -> str | None:
        chunks = [chunk async for chunk in lab.client.logs("api-reader", "default", container="app")]
        text = b"".join(chunks).decode()
        return text if "gitVersion" in text else None

    assert "gitVersion" in await eventually(version, "a pod reading /version through 192.168.77.1")


async def test_a_node_that_leaves_takes_its_routes_along(lab: Lab) -> None:
    """Last in this module: node 3 goes for good (agent stopped, Node deleted)."""
    gone, stay = lab.nodes[2], lab.nodes[0]
    cidr = (await lab.client.get(Node, gone.name)).spec.pod_cidr or ""
    assert gone.agent is not None
    await gone.agent.stop()
    gone.agent = None
    await lab.client.delete(Node, gone.name)

    async def route_gone() -> bool:
        _, out = await lab.exec_in(stay, "ip", "route", "show", "proto", str(RTPROT_PEAPOD))
        return cidr not in out and len([line for line in out.splitlines() if " via " in line]) == 1

    await eventually(route_gone, "node 1's route to node 3's pods to go with node 3")
