"""Issue 8's "done when", end to end: cluster DNS on two netns nodes (``multinode.py``).

Each node's agent answers DNS itself on its bridge gateway (``agent.dns``), and its proxy sends the
``kube-system/kube-dns`` Service (10.254.0.10, made by the control plane) there. The agents forward names
outside the cluster to the lab's ``UpstreamDNS`` (192.168.77.1:53 in the lab namespace), which knows
``outside.example.``. One idle busybox client pod per node.

Two ways of asking, both from inside a pod:
- raw DNS (dnslib), UDP and TCP, sent to 10.254.0.10:53 from the pod's own network namespace (the
  sandbox's ``/proc/PID/ns/net``): exact answers, record types (A, SRV, CNAME), and the fully qualified
  names;
- the pod's own resolver, through ``exec`` in the container: busybox ``nslookup`` (its own resolver, which
  reads /etc/resolv.conf's nameserver and search list) for the short names ``redis-master`` and
  ``redis-master.default``, which only the search list the agent wrote into the pod's resolv.conf makes
  resolve.
Traffic goes only to addresses inside these namespaces; every wait is bounded.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from dnslib import QTYPE, RCODE, DNSRecord

from agent.network.netns import run_in_netns
from controlplane.api import Node, Pod
from controlplane.api.core import ReplicationController, Service
from controlplane.client import Client
from tests.support import rc_manifest

from . import multinode
from .cluster import eventually, manifest, running, sh
from .conftest import podman_missing_reason
from .multinode import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

DNS_IP = "10.254.0.10"
DOMAIN = "svc.cluster.local"
IDLE = "trap 'exit 0' TERM; sleep 600 & wait"
WEB = "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 80 -h /www"
NODES = ("node1", "node2")
# Ready until /tmp/unready exists (the test makes one pod unready by exec).
READY = {"exec": {"command": ["sh", "-c", "test ! -e /tmp/unready"]}, "periodSeconds": 1}


def service(name: str, **spec: Any) -> Service:
    return msgspec.convert({"metadata": {"name": name}, "spec": spec}, Service)


def web_rc(replicas: int) -> ReplicationController:
    body = rc_manifest(
        "web",
        replicas,
        {"app": "web"},
        [sh("web", WEB, ports=[{"name": "http", "containerPort": 80}], readinessProbe=READY)],
        pod_spec={"terminationGracePeriodSeconds": 1},
    )
    return msgspec.convert(body, ReplicationController)


def _ask(host: str, data: bytes, tcp: bool, timeout: float) -> bytes:
    if not tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(data, (host, 53))
            return s.recv(65536)
    with socket.create_connection((host, 53), timeout=timeout) as s:
        s.sendall(len(data).to_bytes(2, "big") + data)
        head = b""
        while len(head) < 2 and (chunk := s.recv(2 - len(head))):
            head += chunk
        size, body = int.from_bytes(head, "big"), b""
        while len(body) < size and (chunk := s.recv(size - len(body))):
            body += chunk
        return body


async def ask(
    netns: str, name: str, qtype: str = "A", *, tcp: bool = False, server: str = DNS_IP
) -> DNSRecord:
    """One question sent from inside ``netns`` to the cluster DNS; the reply (OSError if none)."""
    query = DNSRecord.question(name, qtype)
    data = await run_in_netns(netns, _ask, server, bytes(query.pack()), tcp, 2.0)
    reply = DNSRecord.parse(data)
    assert reply.header.id == query.header.id
    return reply


def values(reply: DNSRecord, qtype: str = "A") -> set[str]:
    return {str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype)}


async def answers(netns: str, name: str, qtype: str = "A", **kw: Any) -> set[str] | None:
    """For ``eventually``: the record values once there are some, None meanwhile (or no answer yet)."""
    try:
        found = values(await ask(netns, name, qtype, **kw), qtype)
    except OSError:
        return None
    return found or None


async def ready_nodes(client: Client) -> list[Node] | None:
    nodes = (await client.list(Node)).items
    ready = [
        n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ())
    ]
    return nodes if len(ready) == len(NODES) else None


class Bed:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.client = lab.client
        self.netns: dict[str, str] = {}  # node -> its client pod's network namespace
        self.redis_ip = ""

    async def web_ips(self) -> set[str]:
        pods = (await self.client.list(Pod, "default", label_selector="app=web")).items
        return {
            p.status.pod_ip or ""
            for p in pods
            if p.metadata.deletion_timestamp is None
            and p.status.pod_ip
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())
        }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Bed]:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    async with multinode.testbed(len(NODES), tmp_path_factory.mktemp("dns")) as lab:
        await eventually(lambda: ready_nodes(lab.client), "two Ready nodes")
        b, client = Bed(lab), lab.client
        redis = await client.create(
            service(
                "redis-master",
                selector={"app": "redis"},
                ports=[{"name": "redis", "port": 6379, "targetPort": 6379}],
            )
        )
        b.redis_ip = redis.spec.cluster_ip or ""
        await client.create(
            service(
                "web-headless",
                clusterIP="None",
                selector={"app": "web"},
                ports=[{"name": "http", "port": 80, "targetPort": "http"}],
            )
        )
        await client.create(service("ext", type="ExternalName", externalName="outside.example"))
        await client.create(web_rc(2))
        for node in NODES:
            await client.create(manifest(f"client-{node}", sh("idle", IDLE), nodeName=node))
        for node in NODES:
            b.netns[node] = await eventually(
                lambda node=node: _netns(lab, f"client-{node}"), f"{node}'s client"
            )
        yield b


async def _netns(lab: Lab, name: str) -> str | None:
    pod = await running(lab.client, name)
    return await lab.pod_netns(pod) if pod is not None else None


# --- names of Services, from pods on both nodes -------------------------------------------------------


async def test_the_fully_qualified_service_name_is_its_cluster_ip_over_udp_and_tcp(bed: Bed) -> None:
    name = f"redis-master.default.{DOMAIN}"
    for node in NODES:
        got = await eventually(lambda node=node: answers(bed.netns[node], name), f"{name} from {node}'s pod")
        assert got == {bed.redis_ip}
        reply = await ask(bed.netns[node], name, tcp=True)
        assert values(reply) == {bed.redis_ip} and reply.header.aa == 1


async def test_short_names_resolve_through_the_pods_resolv_conf_search_list(bed: Bed) -> None:
    for node in NODES:
        conf = await bed.client.exec_output(f"client-{node}", ["cat", "/etc/resolv.conf"])
        text = conf.stdout.decode()
        assert f"nameserver {DNS_IP}" in text, text
        assert f"search default.{DOMAIN} {DOMAIN} cluster.local" in text, text
        # busybox nslookup applies the search list to names without a dot only; it asks for every
        # candidate (A and AAAA) and exits 1 when any is NXDOMAIN: what matters is the one that exists.
        out = await bed.client.exec_output(f"client-{node}", ["nslookup", "redis-master"])
        text = out.stdout.decode() + out.stderr.decode()
        assert f"Name:\tredis-master.default.{DOMAIN}\nAddress: {bed.redis_ip}\n" in text, text
        for name in ("redis-master", "redis-master.default"):
            # libc's resolver (getaddrinfo, as applications use it): ping prints the address it resolved
            # (no reply is expected: nothing answers ICMP on a ClusterIP).
            out = await bed.client.exec_output(f"client-{node}", ["ping", "-c1", "-W1", name])
            text = out.stdout.decode() + out.stderr.decode()
            assert f"({bed.redis_ip})" in text, f"ping {name} on {node}: {text}"


async def test_a_name_outside_the_cluster_is_forwarded_to_the_upstream(bed: Bed) -> None:
    assert bed.lab.upstream is not None
    for node in NODES:
        got = await eventually(
            lambda node=node: answers(bed.netns[node], "outside.example"), f"outside.example from {node}"
        )
        assert got == {"192.0.2.7"}
    assert ("outside.example.", "A") in bed.lab.upstream.asked
    missing = await ask(bed.netns["node1"], "nowhere.example")
    assert missing.header.rcode == RCODE.NXDOMAIN
    in_cluster = await ask(bed.netns["node1"], f"no-such-service.default.{DOMAIN}")
    assert in_cluster.header.rcode == RCODE.NXDOMAIN
    assert not any(q[0].endswith("cluster.local.") for q in bed.lab.upstream.asked)  # never forwarded


async def test_an_external_name_service_is_a_cname_to_its_target(bed: Bed) -> None:
    name = f"ext.default.{DOMAIN}"
    for node in NODES:
        reply = await eventually(lambda node=node: _replied(bed.netns[node], name), f"{name} from {node}")
        assert values(reply, "CNAME") == {"outside.example."}


async def _replied(netns: str, name: str, qtype: str = "A") -> DNSRecord | None:
    try:
        reply = await ask(netns, name, qtype)
    except OSError:
        return None
    return reply if reply.rr else None


async def test_srv_names_the_port_and_the_service(bed: Bed) -> None:
    name = f"_redis._tcp.redis-master.default.{DOMAIN}"
    for node in NODES:
        reply = await eventually(lambda node=node: _replied(bed.netns[node], name, "SRV"), f"SRV from {node}")
        (srv,) = [rr.rdata for rr in reply.rr if rr.rtype == QTYPE.SRV]
        assert srv.port == 6379 and str(srv.target) == f"redis-master.default.{DOMAIN}."
        assert values(reply, "A") <= {bed.redis_ip}  # the target's address, when sent along


async def test_a_headless_service_is_its_ready_pods_and_follows_scaling(bed: Bed) -> None:
    name = f"web-headless.default.{DOMAIN}"

    async def matching(want: set[str]) -> bool:
        for node in NODES:
            if await answers(bed.netns[node], name) != want:
                return False
        return True

    async def two() -> set[str] | None:
        ips = await bed.web_ips()
        return ips if len(ips) == 2 else None

    ips = await eventually(two, "two ready web pods", timeout=60)
    await eventually(lambda: matching(ips), "the headless name listing both web pods on both nodes")
    srv = await ask(bed.netns["node1"], f"_http._tcp.{name}", "SRV")
    assert {rr.rdata.port for rr in srv.rr if rr.rtype == QTYPE.SRV} == {80}
    assert len([rr for rr in srv.rr if rr.rtype == QTYPE.SRV]) == 2  # one per pod

    await bed.client.scale(ReplicationController, "web", 3, "default")

    async def three() -> set[str] | None:
        found = await bed.web_ips()
        return found if len(found) == 3 and ips < found else None

    more = await eventually(three, "a third ready web pod", timeout=60)
    await eventually(lambda: matching(more), "the headless name listing the third pod on both nodes")

    # Readiness: one pod failing its probe leaves the name (it stays in the Endpoints, not ready).
    pods = (await bed.client.list(Pod, "default", label_selector="app=web")).items
    unready = next(p for p in pods if p.status.pod_ip in more)
    out = await bed.client.exec_output(unready.metadata.name or "", ["touch", "/tmp/unready"])
    assert out.exit_code == 0
    rest = more - {unready.status.pod_ip or ""}
    await eventually(lambda: matching(rest), "the headless name without the unready pod on both nodes")


async def test_a_service_created_after_the_pod_started_resolves_soon(bed: Bed) -> None:
    svc = await bed.client.create(
        service("late", selector={"app": "late"}, ports=[{"port": 8080, "targetPort": 8080}])
    )
    name = f"late.default.{DOMAIN}"
    for node in NODES:
        got = await eventually(lambda node=node: answers(bed.netns[node], name), f"{name} from {node}", 10)
        assert got == {svc.spec.cluster_ip}


# --- the server itself ------------------------------------------------------------------------------


async def test_each_node_answers_on_its_bridge_gateway_only_and_from_the_node_itself(bed: Bed) -> None:
    lab = bed.lab
    name = f"redis-master.default.{DOMAIN}"
    for node in lab.nodes:
        # The node's own processes reach kube-dns too (the proxy's output hook).
        got = await eventually(lambda node=node: answers(node.netns, name), f"{name} from {node.name} itself")
        assert got == {bed.redis_ip}
        # Not on the node's LAN address: the DNS server listens on the bridge gateway alone.
        with pytest.raises(OSError):
            await ask(lab.lab, name, server=node.ip, tcp=True)
