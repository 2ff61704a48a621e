"""Issue 7's "done when", end to end: Services on three netns nodes (``multinode.py``), each with real
Podman pods and its agent's service proxy writing real nftables rules.

The web backends are two single-replica RCs pinned (nodeSelector ``kubernetes.io/hostname``) to node1
and node2 and sharing the label ``app: web``; busybox httpd answers with the pod's hostname (the pod's
name). Traffic is sent from the network namespaces of pods (the sandbox's ``/proc/PID/ns/net``), of the
nodes and of the lab LAN, only ever to addresses inside these namespaces; every load loop is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import msgspec
import pytest
import pytest_asyncio

from agent.network.netns import run_in_netns
from controlplane.api import Node, Pod
from controlplane.api.core import Endpoints, ReplicationController, Service
from controlplane.client import Client
from controlplane.client.errors import ApiError
from tests.support import rc_manifest

from . import multinode
from .cluster import eventually, manifest, running, sh
from .conftest import podman_missing_reason
from .multinode import Lab, LabNode

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# busybox httpd answering every page with the pod's name (the agent sets the hostname to it).
WEB = "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 80 -h /www"
IDLE = "trap 'exit 0' TERM; sleep 600 & wait"
UDP_PORT = 5300


def service(name: str, ports: list[dict[str, Any]], **spec: Any) -> Service:
    body = {"metadata": {"name": name}, "spec": {"selector": {"app": "web"}, "ports": ports, **spec}}
    return msgspec.convert(body, Service)


def web_rc(node: str) -> ReplicationController:
    body = rc_manifest(
        f"web-{node}",
        1,
        {"app": "web", "shard": node},
        [sh("web", WEB, ports=[{"name": "http", "containerPort": 80}])],
        pod_spec={"terminationGracePeriodSeconds": 1, "nodeSelector": {"kubernetes.io/hostname": node}},
    )
    return msgspec.convert(body, ReplicationController)


async def ready_nodes(client: Client) -> list[Node] | None:
    nodes = (await client.list(Node)).items
    ready = [
        n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
    ]
    return nodes if len(ready) == 3 else None


async def web_pods(client: Client) -> dict[str, Pod]:
    """The running web pods by node."""
    pods = (await client.list(Pod, "default", label_selector="app=web")).items
    ok = [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None and await running(client, p.metadata.name or "")
    ]
    return {p.spec.node_name or "": p for p in ok}


async def endpoint_ips(client: Client, name: str) -> set[str]:
    ep = await client.get(Endpoints, name, "default")
    return {a.ip for s in ep.subsets or () for a in s.addresses or ()}


class Web:
    """What the module's tests share: the lab, the web pods by node, the clients' namespaces."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.pods: dict[str, Pod] = {}
        self.netns: dict[str, str] = {}  # pod name → its sandbox's network namespace
        self.cluster_ip = ""

    async def pod_netns(self, name: str) -> str:
        async def found() -> str | None:
            pod = await running(self.lab.client, name)
            return await self.lab.pod_netns(pod) if pod is not None else None

        if name not in self.netns:
            self.netns[name] = await eventually(found, f"{name}'s network namespace")
        return self.netns[name]

    async def ask(self, netns: LabNode | str, url: str) -> str:
        """The body of one answer (the answering pod's name)."""
        text = await self.lab.http_get(netns, url)
        assert " 200 " in text.split("\r\n", 1)[0], text
        return text.split("\r\n\r\n", 1)[1].strip()

    async def spread(self, netns: LabNode | str, url: str, count: int) -> Counter[str]:
        """``count`` requests one after another (each its own connection), answers counted by pod."""
        return Counter([await self.ask(netns, url) for _ in range(count)])

    async def answers(self, netns: LabNode | str, url: str) -> str | None:
        """For ``eventually``: the answer once the rules are in place, None while not yet."""
        with contextlib.suppress(OSError, AssertionError, IndexError):
            return await self.ask(netns, url)
        return None


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    async with multinode.testbed(3, tmp_path_factory.mktemp("services")) as bed:
        await eventually(lambda: ready_nodes(bed.client), "three Ready nodes")
        yield bed


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def web(lab: Lab) -> Web:
    """Two web pods (node1, node2) behind ``web`` (ClusterIP, 80), and idle clients on node1 and node3."""
    client, w = lab.client, Web(lab)
    for node in ("node1", "node2"):
        await client.create(web_rc(node))
    svc = await client.create(service("web", [{"name": "http", "port": 80, "targetPort": "http"}]))
    w.cluster_ip = svc.spec.cluster_ip or ""
    for node in ("node1", "node3"):
        await client.create(manifest(f"client-{node}", sh("idle", IDLE), nodeName=node))
    w.pods = await eventually(lambda: _both(client), "web pods running on node1 and node2", timeout=60)
    want = {p.status.pod_ip for p in w.pods.values()}
    await eventually(lambda: _equal(endpoint_ips(client, "web"), want), "both web pods in web's Endpoints")
    return w


async def _both(client: Client) -> dict[str, Pod] | None:
    pods = await web_pods(client)
    return pods if set(pods) == {"node1", "node2"} and all(p.status.pod_ip for p in pods.values()) else None


async def _equal(got: Any, want: set[Any]) -> bool:
    return set(await got) == want


# --- 1. ClusterIP ----------------------------------------------------------------------------------


async def test_cluster_ip_spreads_over_both_endpoints_from_a_pod_on_another_node(web: Web) -> None:
    url = f"http://{web.cluster_ip}/"
    client3 = await web.pod_netns("client-node3")
    await eventually(lambda: web.answers(client3, url), "web's ClusterIP answering a pod on node3")
    counts = await web.spread(client3, url, 200)
    names = {p.metadata.name for p in web.pods.values()}
    assert set(counts) == names, counts
    assert all(n >= 50 for n in counts.values()), counts  # neither under 25 %


async def test_cluster_ip_answers_a_pod_on_the_same_node_as_an_endpoint(web: Web) -> None:
    url = f"http://{web.cluster_ip}/"
    names = {p.metadata.name for p in web.pods.values()}
    client1 = await web.pod_netns("client-node1")
    await eventually(lambda: web.answers(client1, url), "web's ClusterIP answering a pod on node1")
    assert set(await web.spread(client1, url, 20)) <= names


async def test_cluster_ip_answers_an_endpoint_through_its_own_service(web: Web) -> None:
    """Hairpin: about half the answers are the asking pod's own (30 tries: missing it is 1 in 10⁹)."""
    url = f"http://{web.cluster_ip}/"
    names = {p.metadata.name for p in web.pods.values()}
    me = web.pods["node1"].metadata.name or ""
    own = await web.pod_netns(me)
    counts = await web.spread(own, url, 30)
    assert set(counts) <= names and counts[me] > 0, counts


async def test_cluster_ip_answers_every_node_itself(web: Web) -> None:
    url = f"http://{web.cluster_ip}/"
    names = {p.metadata.name for p in web.pods.values()}
    for node in web.lab.nodes:
        answer = await eventually(lambda node=node: web.answers(node, url), f"the ClusterIP from {node.name}")
        assert answer in names


async def test_a_deleted_endpoint_gets_no_more_requests(web: Web) -> None:
    client = web.lab.client
    url = f"http://{web.cluster_ip}/"
    client3 = await web.pod_netns("client-node3")
    dead = web.pods["node2"]
    await client.delete(Pod, dead.metadata.name or "", "default")

    async def replaced() -> dict[str, Pod] | None:
        pods = await _both(client)
        if pods is None or pods["node2"].metadata.uid == dead.metadata.uid:
            return None
        ips = await endpoint_ips(client, "web")
        return pods if ips == {p.status.pod_ip for p in pods.values()} else None

    web.pods = await eventually(replaced, "web's Endpoints listing the replacement, not the deleted pod")
    live = {p.metadata.name for p in web.pods.values()}
    assert dead.metadata.name not in live

    async def settled() -> bool:
        # node3's proxy has the new Endpoints (it follows them within moments): both live pods answer.
        # A subset is not enough: between the deleted endpoint's removal and the replacement's arrival
        # the rules hold node1's pod alone, which only the 60-request spread below would then catch.
        with contextlib.suppress(OSError, AssertionError, IndexError):
            return set(await web.spread(client3, url, 10)) == live
        return False

    await eventually(settled, "node3's rules following the new Endpoints")
    counts = await web.spread(client3, url, 60)
    assert set(counts) == live, counts


# --- 2. NodePort, LoadBalancer, UDP ----------------------------------------------------------------


async def test_a_requested_node_port_answers_on_every_node_and_on_localhost(web: Web) -> None:
    lab, client = web.lab, web.lab.client
    svc = await client.create(
        service("web-np", [{"port": 80, "targetPort": 80, "nodePort": 30001}], type="NodePort")
    )
    assert (svc.spec.ports or [])[0].node_port == 30001
    names = {p.metadata.name for p in web.pods.values()}
    for node in lab.nodes:  # node3 has no endpoint: its rules send the request on to node1 or node2
        url = f"http://{node.ip}:30001/"
        assert await eventually(lambda url=url: web.answers(lab.lab, url), f"{url} from the lab") in names
    other = lab.nodes[0]
    assert await web.ask(other, f"http://{lab.nodes[2].ip}:30001/") in names
    local = "http://127.0.0.1:30001/"
    for node in (lab.nodes[0], lab.nodes[2]):
        answer = await eventually(lambda node=node: web.answers(node, local), f"{node.name}'s localhost")
        assert answer in names


async def test_a_load_balancer_gets_the_node_addresses_as_ingress_and_answers_there(web: Web) -> None:
    lab, client = web.lab, web.lab.client
    await client.create(service("web-lb", [{"port": 8080, "targetPort": 80}], type="LoadBalancer"))

    async def ingress() -> set[str] | None:
        lb = (await client.get(Service, "web-lb", "default")).status.load_balancer
        ips = {i.ip for i in (lb.ingress if lb is not None else None) or ()}
        return ips if ips == {n.ip for n in lab.nodes} else None

    ips = await eventually(ingress, "web-lb's ingress listing the three node addresses")
    names = {p.metadata.name for p in web.pods.values()}
    for ip in sorted(ips or ()):
        url = f"http://{ip}:8080/"
        assert await eventually(lambda url=url: web.answers(lab.lab, url), f"{url} from the lab") in names


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(self.reply + data, addr)


def _udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    return sock


async def test_a_udp_service_answers_through_its_cluster_ip(web: Web) -> None:
    """busybox nc has no UDP mode: the UDP server is this process's socket, made inside the pod's
    network namespace (the pod itself idles), which is what the proxy and the network see anyway."""
    lab, client = web.lab, web.lab.client
    pod = manifest("udp-echo", sh("idle", IDLE), nodeName="node2")
    pod.metadata.labels = {"app": "udp"}
    await client.create(pod)
    body = {
        "metadata": {"name": "echo-udp"},
        "spec": {
            "selector": {"app": "udp"},
            "ports": [{"port": 53, "protocol": "UDP", "targetPort": UDP_PORT}],
        },
    }
    svc = await client.create(msgspec.convert(body, Service))
    netns = await web.pod_netns("udp-echo")
    sock = await run_in_netns(netns, _udp_socket, UDP_PORT)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Echo(b"udp-echo:"), sock=sock
    )
    try:
        client3 = await web.pod_netns("client-node3")
        ip = svc.spec.cluster_ip or ""

        async def echoed() -> bytes | None:
            with contextlib.suppress(OSError):
                return await lab.udp_ask(client3, ip, 53, b"ping")
            return None

        assert await eventually(echoed, "the UDP ClusterIP answering a pod on node3") == b"udp-echo:ping"
    finally:
        transport.close()


# --- 3. service environment variables ----------------------------------------------------------------


async def test_a_pod_started_after_a_service_sees_its_variables_and_reaches_the_api_server(web: Web) -> None:
    client = web.lab.client
    svc = await client.create(service("env-svc", [{"port": 8081, "targetPort": 80}]))
    script = (
        "echo HOST=$ENV_SVC_SERVICE_HOST PORT=$ENV_SVC_SERVICE_PORT; "
        "echo KUBE=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; i=0; "
        "until wget -qO- http://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/version || [ $i -ge 150 ]; "
        "do i=$((i+1)); sleep 0.2; done; echo; echo DONE; exec sleep 600"
    )
    await client.create(manifest("env-reader", sh("app", script), nodeName="node3"))

    async def log() -> str | None:
        if await running(client, "env-reader") is None:
            return None
        chunks = [chunk async for chunk in client.logs("env-reader", "default", container="app")]
        text = b"".join(chunks).decode()
        return text if "DONE" in text else None

    text = await eventually(log, "env-reader's output", timeout=60)
    assert f"HOST={svc.spec.cluster_ip} PORT=8081" in text, text
    kubernetes = await client.get(Service, "kubernetes", "default")
    assert f"KUBE={kubernetes.spec.cluster_ip}:443" in text, text
    assert '"gitVersion"' in text, text  # /version through 10.254.0.1:443 → 192.168.77.1


# --- 4. bad Services ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("bad-port", lambda: service("bad-port", [{"port": 70000}])),
        ("bad-ip", lambda: service("bad-ip", [{"port": 80}], clusterIP="10.0.0.5")),
    ],
)
async def test_bad_services_are_refused(web: Web, name: str, make: Callable[[], Service]) -> None:
    with pytest.raises(ApiError) as exc:
        await web.lab.client.create(make())
    assert exc.value.code == 422, exc.value.status


async def test_a_node_port_already_taken_is_refused(web: Web) -> None:
    client = web.lab.client
    await client.create(service("holds-np", [{"port": 80, "nodePort": 30002}], type="NodePort"))
    with pytest.raises(ApiError) as exc:
        await client.create(service("taken-np", [{"port": 80, "nodePort": 30002}], type="NodePort"))
    assert exc.value.code == 422, exc.value.status
    assert "30002" in (exc.value.status.message or ""), exc.value.status


async def test_a_target_port_no_pod_has_leaves_endpoints_portless_and_other_services_working(
    web: Web,
) -> None:
    client = web.lab.client
    svc = await client.create(service("no-such-port", [{"port": 80, "targetPort": "nope"}]))

    async def portless() -> Endpoints | None:
        with contextlib.suppress(ApiError):
            return await client.get(Endpoints, "no-such-port", "default")
        return None

    ep = await eventually(portless, "no-such-port's Endpoints")
    assert not any(s.ports for s in ep.subsets or ()), ep.subsets
    client3 = await web.pod_netns("client-node3")

    async def refused() -> bool:  # no endpoint: the proxy rejects instead of leaving clients hanging
        try:
            await web.lab.http_get(client3, f"http://{svc.spec.cluster_ip}/")
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False

    await eventually(refused, "no-such-port's ClusterIP refusing connections")
    names = {p.metadata.name for p in web.pods.values()}
    counts = await web.spread(client3, f"http://{web.cluster_ip}/", 10)
    assert set(counts) <= names and sum(counts.values()) == 10
