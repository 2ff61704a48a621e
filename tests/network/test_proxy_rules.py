"""agent.network.proxy_rules: Services + Endpoints -> the proxy's table, without a kernel.

Rules are read back as (expression names, jump/goto target) and the verdict maps as key -> chain, enough
to say which service port goes where; the kernel tests (test_proxy_kernel.py) check what the packets then
do.
"""

from __future__ import annotations

import time
from typing import Any

from agent.network import nftables as nft
from agent.network import proxy_rules as pr
from controlplane.api.core import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    LoadBalancerIngress,
    LoadBalancerStatus,
    Service,
    ServicePort,
    ServiceSpec,
    ServiceStatus,
)
from controlplane.api.meta import ObjectMeta

CLUSTER = "10.244.0.0/16"


def service(name: str, ip: str | None = "10.254.0.10", type: str = "ClusterIP", **spec: Any) -> Service:
    ports = spec.pop("ports", [ServicePort(port=80, name="http", node_port=30080)])
    return Service(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=ServiceSpec(cluster_ip=ip, type=type, ports=ports, **spec),
    )


def endpoints(
    name: str, *ips: str, port: int = 8080, port_name: str = "http", not_ready: tuple[str, ...] = ()
) -> Endpoints:
    return Endpoints(
        metadata=ObjectMeta(name=name, namespace="default"),
        subsets=[
            EndpointSubset(
                addresses=[EndpointAddress(ip=ip, node_name=f"node-{ip[-1]}") for ip in ips],
                not_ready_addresses=[EndpointAddress(ip=ip) for ip in not_ready],
                ports=[EndpointPort(port=port, name=port_name)],
            )
        ],
    )  # fmt: skip


def names(exprs: tuple[nft.Expr, ...]) -> list[str]:
    return [e.name for e in exprs]


def target(rule: nft.Rule) -> str | None:
    """The chain a rule jumps or goes to (None: no jump)."""
    for e in rule.exprs:
        if e.attr("verdict"):
            return e.attr("verdict")[1]
    return None


def chains(table: nft.Table) -> dict[str, nft.Chain]:
    return {c.name: c for c in table.chains}


def vmap(table: nft.Table, name: str) -> dict[bytes, str]:
    return {s.name: dict(s.verdicts) for s in table.sets}[name]


def svc_key(ip: str, port: int = 80, proto: int = 6) -> bytes:
    return nft.set_key(pr.SERVICE_KEY, ip, proto, port)


def np_key(port: int = 30080, proto: int = 6) -> bytes:
    return nft.set_key(pr.NODEPORT_KEY, proto, port)


def table_of(services: list[Service], eps: list[Endpoints], node: str = "node-1") -> nft.Table:
    ports = pr.service_ports(services, {f"default/{e.metadata.name}": e for e in eps})
    return pr.proxy_table(ports, node, CLUSTER, "10.244.1.0/24")


def test_endpoints_are_the_ready_addresses_of_the_port_with_the_same_name() -> None:
    svc = service("web", ports=[ServicePort(port=80, name="http"), ServicePort(port=9090, name="metrics")])
    ep = endpoints("web", "10.244.1.5", "10.244.2.6", not_ready=("10.244.1.9",))
    ports = pr.service_ports([svc], {"default/web": ep})
    assert [p.id for p in ports] == ["default/web/tcp/http", "default/web/tcp/metrics"]
    assert [(e.ip, e.port) for e in ports[0].endpoints] == [("10.244.1.5", 8080), ("10.244.2.6", 8080)]
    assert ports[1].endpoints == ()  # no endpoint port named "metrics"


def test_headless_and_external_name_services_are_not_proxied() -> None:
    assert pr.service_ports([service("h", ip="None"), service("x", type="ExternalName")], {}) == []


def test_cluster_ip_goes_to_a_uniform_cascade_of_endpoint_chains() -> None:
    table = table_of([service("web")], [endpoints("web", "10.244.1.5", "10.244.2.6", "10.244.3.7")])
    t = chains(table)
    assert vmap(table, "service-ips") == {svc_key("10.254.0.10"): "svc-default/web/tcp/http"}
    (lookup, nodeports_rule) = t["services"].rules
    assert names(lookup.exprs)[-1] == "lookup" and target(nodeports_rule) == "nodeports"
    svc_chain = t["svc-default/web/tcp/http"].rules
    moduli = [r.exprs[0].attr("modulus") for r in svc_chain[1:]]
    assert moduli == [3, 2, None]  # 1/3, then 1/2 of the rest, then the last: each 1/3
    assert [target(r) for r in svc_chain[1:]] == [
        "ep-default/web/tcp/http__10.244.1.5/8080",
        "ep-default/web/tcp/http__10.244.2.6/8080",
        "ep-default/web/tcp/http__10.244.3.7/8080",
    ]
    ep = t["ep-default/web/tcp/http__10.244.1.5/8080"].rules
    assert names(ep[1].exprs)[-1] == "nat"
    assert vmap(table, "service-nodeports") == {}  # a ClusterIP has no node port
    assert vmap(table, "no-endpoint-services") == {}


def test_service_without_endpoints_is_rejected_not_dnated() -> None:
    table = table_of([service("web", type="NodePort")], [])
    assert vmap(table, "service-ips") == {} and vmap(table, "service-nodeports") == {}
    assert vmap(table, "no-endpoint-services") == {svc_key("10.254.0.10"): pr.REJECT}
    assert vmap(table, "no-endpoint-nodeports") == {np_key(): pr.REJECT}
    assert [names(r.exprs)[-1] for r in chains(table)[pr.REJECT].rules] == ["reject", "reject"]


def test_node_port_masquerades_unless_local_and_local_keeps_only_this_nodes_endpoints() -> None:
    eps = [endpoints("web", "10.244.1.5", "10.244.2.6"), endpoints("loc", "10.244.1.5", "10.244.2.6")]
    local_port = [ServicePort(port=80, name="http", node_port=30081)]
    svcs = [
        service("web", type="NodePort"),
        service("loc", type="NodePort", external_traffic_policy="Local", ports=local_port),
    ]
    table = table_of(svcs, eps, node="node-5")
    t = chains(table)
    assert sorted(vmap(table, "service-nodeports").values()) == [
        "ext-default/loc/tcp/http",
        "ext-default/web/tcp/http",
    ]
    cluster = t["ext-default/web/tcp/http"].rules
    assert names(cluster[0].exprs) == names(nft.mark_set(pr.MASQ_MARK))
    local = t["ext-default/loc/tcp/http"].rules
    assert [target(r) for r in local] == [
        None,
        "svc-default/loc/tcp/http",
        "ep-default/loc/tcp/http__10.244.1.5/8080",
    ]
    none_local = chains(table_of(svcs, eps, node="node-9"))["ext-default/loc/tcp/http"].rules
    assert names(none_local[-1].exprs) == names(nft.drop())


def test_load_balancer_ingress_and_ip_are_matched_on_the_service_port() -> None:
    svc = service("lb", type="LoadBalancer", load_balancer_ip="192.0.2.9")
    svc.status = ServiceStatus(
        load_balancer=LoadBalancerStatus(ingress=[LoadBalancerIngress(ip="192.0.2.8")])
    )
    assert vmap(table_of([svc], [endpoints("lb", "10.244.1.5")]), "service-ips") == {
        svc_key("10.254.0.10"): "svc-default/lb/tcp/http",
        svc_key("192.0.2.8"): "ext-default/lb/tcp/http",
        svc_key("192.0.2.9"): "ext-default/lb/tcp/http",
    }


def test_same_inputs_give_an_equal_table_so_nothing_is_rewritten() -> None:
    args = ([service("web")], [endpoints("web", "10.244.2.6", "10.244.1.5")])
    reordered = ([service("web")], [endpoints("web", "10.244.1.5", "10.244.2.6")])
    assert table_of(*args) == table_of(*reordered)
    assert table_of(*args) != table_of([service("web")], [endpoints("web", "10.244.1.5")])


def test_udp_endpoints_are_listed_for_conntrack_flushing() -> None:
    svc = service("dns", ports=[ServicePort(port=53, name="dns", protocol="UDP")])
    subset = EndpointSubset(
        addresses=[EndpointAddress(ip="10.244.1.5")],
        ports=[EndpointPort(port=5353, name="dns", protocol="UDP")],
    )
    eps = Endpoints(metadata=ObjectMeta(name="dns", namespace="default"), subsets=[subset])
    assert pr.udp_endpoints(pr.service_ports([svc], {"default/dns": eps})) == {("10.244.1.5", 5353)}


def test_a_thousand_services_compute_quickly_enough_to_report() -> None:
    """Not a timing assertion: prints the figure for the benchmark that follows (pytest -s)."""
    svcs = [service(f"s{i}", ip=f"10.254.{i // 250}.{i % 250 + 1}") for i in range(1000)]
    eps = [endpoints(f"s{i}", "10.244.1.5", "10.244.2.6") for i in range(1000)]
    started = time.perf_counter()
    table = table_of(svcs, eps)
    print(f"computed 1000 services in {(time.perf_counter() - started) * 1000:.0f} ms")
    assert len(vmap(table, "service-ips")) == 1000
    assert len(chains(table)["services"].rules) == 2  # one map lookup, whatever the number of services


def test_client_ip_affinity_remembers_each_endpoints_clients_in_a_set_with_the_timeout() -> None:
    from controlplane.api.core import SessionAffinityConfig

    config = SessionAffinityConfig(client_ip={"timeoutSeconds": 60})
    svc = service("web", session_affinity="ClientIP", session_affinity_config=config)
    table = table_of([svc], [endpoints("web", "10.244.1.5", "10.244.2.6")])
    sets = {s.name: s for s in table.sets}
    aff = ["aff-default/web/tcp/http__10.244.1.5/8080", "aff-default/web/tcp/http__10.244.2.6/8080"]
    assert [(sets[a].fields, sets[a].timeout) for a in aff] == [(("ip saddr",), 60)] * 2
    svc_chain = chains(table)["svc-default/web/tcp/http"].rules
    # first the endpoints that have seen this client, then the random pick
    assert [names(r.exprs)[-2] for r in svc_chain[1:3]] == ["lookup", "lookup"]
    assert [r.exprs[-2].attr("set") for r in svc_chain[1:3]] == aff
    assert [target(r) for r in svc_chain[1:3]] == [target(r) for r in svc_chain[3:]]
    ep = chains(table)["ep-default/web/tcp/http__10.244.1.5/8080"].rules
    assert ep[1].exprs[-1].name == "dynset" and ep[1].exprs[-1].attr("timeout") == 60_000
    default = pr.service_ports([service("web", session_affinity="ClientIP")], {})
    assert default[0].affinity_timeout == pr.AFFINITY_TIMEOUT  # 3 hours, as Kubernetes
    assert pr.service_ports([service("web")], {})[0].affinity_timeout is None


def kube_dns(**spec: Any) -> Service:
    ports = [
        ServicePort(port=53, name="dns", protocol="UDP", target_port=53),
        ServicePort(port=53, name="dns-tcp", protocol="TCP", target_port=53),
    ]
    return Service(
        metadata=ObjectMeta(name="kube-dns", namespace="kube-system"),
        spec=ServiceSpec(cluster_ip="10.254.0.10", ports=ports, **spec),
    )


def test_kube_dns_goes_to_this_nodes_own_dns_server_whatever_its_endpoints_say() -> None:
    gateway = ("10.244.1.1", 53)
    stale = Endpoints(
        metadata=ObjectMeta(name="kube-dns", namespace="kube-system"),
        subsets=[
            EndpointSubset(
                addresses=[EndpointAddress(ip="10.244.2.9")],
                ports=[EndpointPort(port=53, name="dns", protocol="UDP")],
            )
        ],
    )
    for eps in ({}, {"kube-system/kube-dns": stale}):
        ports = pr.service_ports([kube_dns()], eps, local_dns=gateway)
        assert [(p.id, p.endpoints, p.node_local) for p in ports] == [
            ("kube-system/kube-dns/tcp/dns-tcp", (pr.Endpoint("10.244.1.1", 53),), True),
            ("kube-system/kube-dns/udp/dns", (pr.Endpoint("10.244.1.1", 53),), True),
        ]
        table = pr.proxy_table(ports, "node-1", CLUSTER, "10.244.1.0/24")
        assert vmap(table, "service-ips") == {
            svc_key("10.254.0.10", 53, 6): "svc-kube-system/kube-dns/tcp/dns-tcp",
            svc_key("10.254.0.10", 53, 17): "svc-kube-system/kube-dns/udp/dns",
        }
        assert vmap(table, "no-endpoint-services") == {}  # never rejected
        t = chains(table)
        for proto, port_name in (("tcp", "dns-tcp"), ("udp", "dns")):
            ep_chain = f"ep-kube-system/kube-dns/{proto}/{port_name}__10.244.1.1/53"
            # no masquerade mark anywhere: delivered locally, the reply is un-DNATed by conntrack
            assert [target(r) for r in t[f"svc-kube-system/kube-dns/{proto}/{port_name}"].rules] == [ep_chain]
            (dnat,) = t[ep_chain].rules
            assert names(dnat.exprs)[-1] == "nat"
            assert nft.mark_set(pr.MASQ_MARK)[0] not in dnat.exprs
        # the prerouting (pods) and output (the node) base chains both reach the services map
        assert target(t["prerouting"].rules[0]) == "services" and target(t["output"].rules[0]) == "services"


def test_kube_dns_elsewhere_or_without_a_local_server_is_an_ordinary_service() -> None:
    assert all(not p.endpoints for p in pr.service_ports([kube_dns()], {}))  # no local DNS: rejected
    table = pr.proxy_table(pr.service_ports([kube_dns()], {}), "node-1", CLUSTER)
    assert len(vmap(table, "no-endpoint-services")) == 2
    other = service("kube-dns", ports=[ServicePort(port=53, name="dns", protocol="UDP")])  # default ns
    (port,) = pr.service_ports([other], {}, local_dns=("10.244.1.1", 53))
    assert port.endpoints == () and not port.node_local
    # the node-local DNS endpoint is listed for conntrack flushing like any UDP endpoint
    ports = pr.service_ports([kube_dns()], {}, local_dns=("10.244.1.1", 53))
    assert pr.udp_endpoints(ports) == {("10.244.1.1", 53)}
