"""The service proxy's table in a real kernel: a node namespace, two pod namespaces behind its bridge, and
an "outside" namespace, all the test's own.

    ext (192.168.214.1) ── veth ── node (192.168.214.2, bridge 10.244.7.1/24) ── pod-a 10.244.7.2
                                                                              └─ pod-b 10.244.7.3

Each pod answers TCP 8080 and UDP 5353 with its own name (a thread per server). No namespace has a
default route; the node and ext hold blackhole routes for the pod range (the node's own /24 is more
specific), ext one for the service range too. The node routes 10.254.0.0/16 onto its bridge: a local
client's connect() needs some route for the ClusterIP before the output hook can DNAT it (a blackhole
fails it with EINVAL), and this one keeps undnatted packets inside the test's namespaces. Loops are
bounded: a fixed number of connections, each with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.network import nftables as nft
from agent.network.netns import run_in_netns, write_sysctl
from agent.network.proxy_rules import TABLE, Endpoint, ServicePort, proxy_table
from agent.proxy import ServiceProxy, flush_udp_conntrack
from controlplane.api.core import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    Service,
    ServiceSpec,
)
from controlplane.api.core import ServicePort as ApiPort
from controlplane.api.meta import ObjectMeta

pytestmark = pytest.mark.e2e

CLUSTER_CIDR, POD_CIDR = "10.244.0.0/16", "10.244.7.0/24"
NODE_IP, EXT_IP = "192.168.214.2", "192.168.214.1"
PODS = {"pod-a": "10.244.7.2", "pod-b": "10.244.7.3"}
CLUSTER_IP, NODE_PORT = "10.254.7.10", 30080
TIMEOUT = 2.0  # seconds per connection: refused or answered comes far sooner


@dataclass
class Net:
    node: str
    ext: str
    pods: dict[str, str]  # name -> netns path


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _serve(name: str, stop: threading.Event) -> list[socket.socket]:
    """Listening sockets in the calling thread's namespace, served by daemon threads until ``stop``."""
    tcp = socket.create_server(("0.0.0.0", 8080))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 5353))
    for s in (tcp, udp):
        s.settimeout(0.2)

    def tcp_loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = tcp.accept()
                with conn:
                    conn.sendall(name.encode())

    def udp_loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                _, peer = udp.recvfrom(100)
                udp.sendto(name.encode(), peer)

    for loop in (tcp_loop, udp_loop):
        threading.Thread(target=loop, daemon=True).start()
    return [tcp, udp]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    tag = secrets.token_hex(3)
    names = {"node": f"peatest-pxn-{tag}", "ext": f"peatest-pxe-{tag}"}
    names |= {pod: f"peatest-px{pod[-1]}-{tag}" for pod in PODS}
    stop = threading.Event()
    sockets: list[socket.socket] = []
    try:
        for ns in names.values():
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        node, ext = names["node"], names["ext"]
        for ns in (node, ext):
            ip("-n", ns, "route", "add", "blackhole", "10.244.0.0/16")
        ip("-n", ext, "route", "add", "blackhole", "10.254.0.0/16")
        ip(
            "link",
            "add",
            f"px{tag}n",
            "netns",
            node,
            "type",
            "veth",
            "peer",
            "name",
            f"px{tag}x",
            "netns",
            ext,
        )
        for ns, dev, addr in ((node, f"px{tag}n", NODE_IP), (ext, f"px{tag}x", EXT_IP)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", node, "link", "add", "br0", "type", "bridge")
        ip("-n", node, "addr", "add", "10.244.7.1/24", "dev", "br0")
        ip("-n", node, "link", "set", "br0", "up")
        ip("-n", node, "route", "add", "10.254.0.0/16", "dev", "br0")
        for i, (pod, pod_ip) in enumerate(PODS.items()):
            host, peer = f"px{tag}{i}", f"px{tag}p{i}"
            ip("link", "add", host, "netns", node, "type", "veth", "peer", "name", peer, "netns", names[pod])
            ip("-n", node, "link", "set", host, "master", "br0", "up")
            ip("-n", names[pod], "addr", "add", f"{pod_ip}/24", "dev", peer)
            ip("-n", names[pod], "link", "set", peer, "up")
            ip("-n", names[pod], "route", "add", "10.254.0.0/16", "via", "10.244.7.1")
            ip(
                "-n", names[pod], "route", "add", "192.168.214.0/24", "via", "10.244.7.1"
            )  # Local: client IP kept
        paths = {key: f"/run/netns/{ns}" for key, ns in names.items()}

        br_netfilter = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")

        async def setup() -> None:
            if br_netfilter:
                await run_in_netns(paths["node"], write_sysctl, "net.bridge.bridge-nf-call-iptables", "0")
            await run_in_netns(paths["node"], write_sysctl, "net.ipv4.conf.all.route_localnet", "1")
            await run_in_netns(paths["node"], write_sysctl, "net.ipv4.ip_forward", "1")
            # rejects of UDP are ICMP errors, which the kernel rate-limits per destination (1/s)
            await run_in_netns(paths["node"], write_sysctl, "net.ipv4.icmp_ratelimit", "0")
            for pod in PODS:
                sockets.extend(await run_in_netns(paths[pod], _serve, pod, stop))

        asyncio.run(setup())
        yield Net(paths["node"], paths["ext"], {pod: paths[pod] for pod in PODS})
    finally:
        stop.set()
        for s in sockets:
            s.close()
        for ns in names.values():
            subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


def web(*pods: str, protocol: str = "TCP", local_only: bool = False, node: str = "n1") -> ServicePort:
    port = 8080 if protocol == "TCP" else 5353
    return ServicePort(
        namespace="default",
        name="web",
        port_name="p",
        protocol=protocol,
        port=80 if protocol == "TCP" else 53,
        cluster_ip=CLUSTER_IP,
        node_port=NODE_PORT,
        local_only=local_only,
        endpoints=tuple(Endpoint(PODS[p], port, node) for p in pods),
    )


def apply(net: Net, *ports: ServicePort) -> None:
    asyncio.run(
        nft.apply(proxy_table(sorted(ports, key=lambda p: p.id), "n1", CLUSTER_CIDR, POD_CIDR), net.node)
    )


def tcp_answers(netns: str, host: str, port: int, count: int) -> Counter[str]:
    """``count`` connections from ``netns``; each answer's text (a pod's name) or the error's type name."""

    def connect_all() -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            try:
                with socket.create_connection((host, port), timeout=TIMEOUT) as s:
                    seen[s.recv(100).decode()] += 1
            except OSError as e:
                seen[type(e).__name__] += 1
        return seen

    return asyncio.run(run_in_netns(netns, connect_all))


def udp_answers(netns: str, host: str, port: int, count: int, sport: int = 0) -> Counter[str]:
    """``count`` datagrams, each from a new socket (from ``sport`` if given, else a fresh port)."""

    def ask_all() -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", sport))
                s.settimeout(TIMEOUT)
                try:
                    s.connect((host, port))  # only a connected UDP socket hears of ICMP errors
                    s.send(b"?")
                    seen[s.recv(100).decode()] += 1
                except OSError as e:
                    seen[type(e).__name__] += 1
        return seen

    return asyncio.run(run_in_netns(netns, ask_all))


def spread(seen: Counter[str], total: int) -> None:
    assert set(seen) == set(PODS), seen
    assert all(seen[pod] >= total // 4 for pod in PODS), seen


def test_cluster_ip_spreads_connections_from_the_node_over_both_endpoints(net: Net) -> None:
    apply(net, web("pod-a", "pod-b"))
    spread(tcp_answers(net.node, CLUSTER_IP, 80, 100), 100)


def test_a_pod_reaches_its_own_service_including_itself(net: Net) -> None:
    apply(net, web("pod-a", "pod-b"))
    spread(tcp_answers(net.pods["pod-a"], CLUSTER_IP, 80, 60), 60)  # hairpin when pod-a picks itself


def test_removed_endpoint_gets_no_more_connections(net: Net) -> None:
    apply(net, web("pod-a", "pod-b"))
    apply(net, web("pod-b"))
    assert tcp_answers(net.node, CLUSTER_IP, 80, 20) == Counter({"pod-b": 20})


def test_service_without_endpoints_refuses_at_once(net: Net) -> None:
    apply(net, web(), web(protocol="UDP"))
    assert tcp_answers(net.node, CLUSTER_IP, 80, 3) == Counter({"ConnectionRefusedError": 3})
    assert tcp_answers(net.pods["pod-a"], CLUSTER_IP, 80, 3) == Counter({"ConnectionRefusedError": 3})
    assert tcp_answers(net.ext, NODE_IP, NODE_PORT, 3) == Counter({"ConnectionRefusedError": 3})
    assert udp_answers(net.pods["pod-a"], CLUSTER_IP, 53, 2) == Counter({"ConnectionRefusedError": 2})
    # from the node itself the reject drops the datagram in its own output path: send() fails at once
    assert udp_answers(net.node, CLUSTER_IP, 53, 2) == Counter({"PermissionError": 2})


def test_node_port_answers_on_the_node_address_and_on_localhost(net: Net) -> None:
    apply(net, web("pod-a", "pod-b"))
    spread(tcp_answers(net.ext, NODE_IP, NODE_PORT, 60), 60)
    spread(tcp_answers(net.node, "127.0.0.1", NODE_PORT, 60), 60)
    spread(tcp_answers(net.pods["pod-b"], "10.244.7.1", NODE_PORT, 60), 60)


def test_local_traffic_policy_uses_only_this_nodes_endpoints(net: Net) -> None:
    port = web("pod-a", "pod-b", local_only=True)
    mixed = ServicePort(**{**port.__dict__, "endpoints": (Endpoint(PODS["pod-a"], 8080, "n1"),
                                                           Endpoint(PODS["pod-b"], 8080, "n2"))})  # fmt: skip
    apply(net, mixed)
    assert tcp_answers(net.ext, NODE_IP, NODE_PORT, 20) == Counter({"pod-a": 20})
    remote_only = ServicePort(**{**port.__dict__, "endpoints": (Endpoint(PODS["pod-b"], 8080, "n2"),)})
    apply(net, remote_only)
    assert tcp_answers(net.ext, NODE_IP, NODE_PORT, 2) == Counter({"TimeoutError": 2})  # dropped
    assert tcp_answers(net.node, CLUSTER_IP, 80, 5) == Counter({"pod-b": 5})


def test_udp_through_a_cluster_ip(net: Net) -> None:
    apply(net, web("pod-a", "pod-b", protocol="UDP"))
    spread(udp_answers(net.node, CLUSTER_IP, 53, 60), 60)


def test_flushing_conntrack_moves_a_udp_flow_off_a_removed_endpoint(net: Net) -> None:
    apply(net, web("pod-a", protocol="UDP"))
    assert udp_answers(net.node, CLUSTER_IP, 53, 1, sport=40053) == Counter({"pod-a": 1})
    apply(net, web("pod-b", protocol="UDP"))
    # the flow's conntrack entry still says pod-a: the new table is not consulted for it...
    assert udp_answers(net.node, CLUSTER_IP, 53, 1, sport=40053) == Counter({"pod-a": 1})
    deleted = asyncio.run(run_in_netns(net.node, flush_udp_conntrack, [(PODS["pod-a"], 5353)]))
    assert deleted >= 1
    assert udp_answers(net.node, CLUSTER_IP, 53, 1, sport=40053) == Counter({"pod-b": 1})


def test_table_is_removed_by_delete(net: Net) -> None:
    apply(net, web("pod-a"))
    assert asyncio.run(nft.delete(TABLE, netns=net.node))
    assert not asyncio.run(nft.exists(TABLE, netns=net.node))


def web_service() -> Service:
    """``default/web`` on CLUSTER_IP:80, port name ``p``, as the API would hand it to the proxy."""
    meta = ObjectMeta(name="web", namespace="default")
    return Service(metadata=meta, spec=ServiceSpec(cluster_ip=CLUSTER_IP, ports=[ApiPort(port=80, name="p")]))


def web_endpoints(*pods: str) -> Endpoints:
    """``default/web``'s Endpoints: the named pods on port 8080."""
    meta = ObjectMeta(name="web", namespace="default")
    addresses = [EndpointAddress(ip=PODS[p]) for p in pods]
    return Endpoints(metadata=meta, subsets=[EndpointSubset(addresses, ports=[EndpointPort(8080, "p")])])


def test_service_proxy_writes_the_table_only_when_it_changes(net: Net) -> None:
    svc = web_service()

    async def scenario() -> list[bool]:
        proxy = ServiceProxy(None, "n1", CLUSTER_CIDR, pod_cidr=POD_CIDR, netns=net.node)  # type: ignore[arg-type]
        proxy.services.cache["default/web"] = svc
        proxy.endpoints.cache["default/web"] = web_endpoints("pod-a")
        written = [await proxy.sync(), await proxy.sync()]
        proxy.endpoints.cache["default/web"] = web_endpoints("pod-b")
        written.append(await proxy.sync())
        return written

    assert asyncio.run(scenario()) == [True, False, True]
    assert tcp_answers(net.node, CLUSTER_IP, 80, 5) == Counter({"pod-b": 5})


def test_service_proxy_sends_only_differences_and_rewrites_after_a_failure(net: Net) -> None:
    svc = web_service()

    async def scenario() -> tuple[int, int, int]:
        proxy = ServiceProxy(None, "n1", CLUSTER_CIDR, pod_cidr=POD_CIDR, netns=net.node)  # type: ignore[arg-type]
        proxy.services.cache["default/web"] = svc
        proxy.endpoints.cache["default/web"] = web_endpoints("pod-a")
        await proxy.sync()  # first: whole
        proxy.endpoints.cache["default/web"] = web_endpoints("pod-b")
        await proxy.sync()  # then: the difference
        assert proxy.full_syncs == 1
        await nft.delete(TABLE, netns=net.node)  # someone removed the table behind the proxy's back
        proxy.endpoints.cache["default/web"] = web_endpoints("pod-a")
        with pytest.raises(nft.NftablesError):
            await proxy.sync()
        assert proxy.last is None
        await proxy.sync()  # the retry rewrites the whole table
        return proxy.syncs, proxy.full_syncs, len(proxy.endpoints.cache)

    assert asyncio.run(scenario()) == (3, 2, 1)
    assert tcp_answers(net.node, CLUSTER_IP, 80, 5) == Counter({"pod-a": 5})


def table(*ports: ServicePort) -> nft.Table:
    return proxy_table(sorted(ports, key=lambda p: p.id), "n1", CLUSTER_CIDR, POD_CIDR)


def listed(net: Net) -> str:
    return subprocess.run(
        ["nsenter", f"--net={net.node}", "nft", "list", "table", "ip", TABLE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def api(*pods: str) -> ServicePort:
    """A second service, on its own cluster IP."""
    return ServicePort(
        **{**web(*pods).__dict__, "name": "api", "cluster_ip": "10.254.7.11", "node_port": None}
    )


def test_client_ip_affinity_sends_one_client_to_one_endpoint(net: Net) -> None:
    sticky = ServicePort(**{**web("pod-a", "pod-b").__dict__, "affinity_timeout": 60})
    apply(net, sticky)
    first = tcp_answers(net.node, CLUSTER_IP, 80, 20)
    assert len(first) == 1 and sum(first.values()) == 20 and set(first) <= set(PODS), first
    assert tcp_answers(net.pods["pod-b"], CLUSTER_IP, 80, 10) in (Counter({p: 10}) for p in PODS)
    apply(net, web("pod-a", "pod-b"))  # without affinity, connections spread again
    spread(tcp_answers(net.node, CLUSTER_IP, 80, 40), 40)


def test_partial_updates_change_only_what_changed_and_leave_nothing_behind(net: Net) -> None:
    both = table(web("pod-a", "pod-b"), api("pod-a"))
    asyncio.run(nft.apply(both, net.node))
    moved = table(web("pod-b"), api("pod-a"))
    sent = asyncio.run(nft.update(both, moved, net.node))
    assert 0 < sent < 10  # the web service's chain refilled, pod-a's endpoint chain removed
    assert tcp_answers(net.node, CLUSTER_IP, 80, 10) == Counter({"pod-b": 10})
    assert tcp_answers(net.node, "10.254.7.11", 80, 5) == Counter({"pod-a": 5})
    assert "web/tcp/p__10.244.7.2" not in listed(net)

    sticky_api = ServicePort(**{**api("pod-a", "pod-b").__dict__, "affinity_timeout": 60})
    only_api = table(sticky_api)  # web removed: its map elements, chains; api gains affinity sets
    assert asyncio.run(nft.update(moved, only_api, net.node)) > 0
    text = listed(net)
    assert "default/web" not in text and "aff-default/api/tcp/p__10.244.7.3/8080" in text
    first = tcp_answers(net.node, "10.254.7.11", 80, 10)
    assert len(first) == 1 and sum(first.values()) == 10, first
    back = asyncio.run(nft.update(only_api, moved, net.node))
    assert back > 0 and "aff-" not in listed(net)  # sets of the endpoints' affinity are gone too
    assert tcp_answers(net.node, CLUSTER_IP, 80, 5) == Counter({"pod-b": 5})


def test_an_update_against_a_table_that_is_not_the_last_one_written_fails_whole(net: Net) -> None:
    asyncio.run(nft.apply(table(web("pod-a")), net.node))
    assumed = table(web("pod-a"), api("pod-a"))  # what the caller wrongly believes is there
    with pytest.raises(nft.NftablesError):
        asyncio.run(nft.update(assumed, table(web("pod-b")), net.node))
    assert tcp_answers(net.node, CLUSTER_IP, 80, 5) == Counter({"pod-a": 5})  # unchanged
