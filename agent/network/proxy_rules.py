"""What the service proxy's nftables table holds, computed from Services, Endpoints and the node's facts.

A pure function (no kernel, no clock), so every rule is tested without one. The proxy computes the whole
table each time (level-based: the table says what the API says now) and sends the kernel only what
differs from the last one written (``nftables.update``). Modelled on Kubernetes' nftables proxy: service
ports are found in verdict maps keyed on ``ip daddr . meta l4proto . th dport`` (node ports on ``meta
l4proto . th dport``), one hash lookup whatever the number of services, and a service's map element,
chains and sets are its own, so a change to one service touches only those. An endpoint is picked per
new connection by a cascade of ``numgen random`` rules (1/N, then 1/(N-1) of the rest, ...: uniform, as
kube-proxy's iptables mode does).

    table ip peapod-proxy
      map service-ips            CLUSTER_IP . tcp . P : goto svc-…,  LB_OR_EXTERNAL_IP . tcp . P : goto ext-…
      map service-nodeports      tcp . NODEPORT : goto ext-…
      map no-endpoint-services   CLUSTER_IP . tcp . P : goto reject  (and external IPs)
      map no-endpoint-nodeports  tcp . NODEPORT : goto reject
      set aff-…                  client addresses an endpoint has served (ClientIP affinity; timeout)
      prerouting  (nat, dstnat)   jump services              from pods (bridge) and other nodes
      output      (nat, dstnat)   jump services              from the node itself, 127.0.0.1 included
      services    ip daddr . meta l4proto . th dport vmap @service-ips
                  fib daddr type local jump nodeports
      nodeports   meta l4proto . th dport vmap @service-nodeports
      ext-…       [Cluster] mark masquerade; goto svc-…
                  [Local]   ip saddr 127.0.0.0/8 mark; ip saddr CLUSTER_CIDR goto svc-…; local endpoints
                            (Local policy, no local endpoint: drop)
      svc-…       ip saddr != CLUSTER_CIDR mark masquerade; [affinity: ip saddr @aff-EP goto ep-EP, each]
                  numgen cascade goto ep-…
      ep-…        ip saddr EP_IP mark masquerade (hairpin); [affinity: update @aff-EP { ip saddr }]
                  dnat to EP_IP:PORT
      postrouting (nat, srcnat)   meta mark & 0x4000 != 0 masquerade
                                  ip saddr POD_CIDR ip daddr POD_CIDR ct status dnat masquerade
      reject-prerouting / reject-output (filter, before dstnat)  jump no-endpoints
      no-endpoints  ip daddr . meta l4proto . th dport vmap @no-endpoint-services
                    fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
      reject        meta l4proto tcp reject with tcp reset; reject with icmp port-unreachable

Masquerading is decided where the packet is DNATed and carried to postrouting in the packet mark (bit
0x4000, as kube-proxy), so a connection is masqueraded when it came from outside the pod range or from
the node (ClusterIP), always for NodePort/LoadBalancer with policy Cluster, from 127.0.0.0/8 (localhost
node ports, which also need ``route_localnet``), and when a pod was picked as its own endpoint (hairpin).
A pod of this node reaching an endpoint on the same node's bridge is masqueraded too (the reply would
otherwise go straight back over the bridge, un-NATed, unless br_netfilter is on, which kube-proxy needs).
Endpoints are the ready addresses of the Endpoints object of the same name, with the port whose name
matches the service port's.

Node-local DNS: the cluster DNS Service (``kube-system/kube-dns``, no selector, no Endpoints) is served
by every node's agent itself (``agent.dns``, on the bridge gateway). Given ``local_dns`` (that address and
port), each of kube-dns's ports gets it as its single endpoint, whatever its Endpoints say, so it is never
in the no-endpoints maps; ``local_dns`` None (no DNS server on this node) leaves kube-dns an ordinary
Service. Its chains mark nothing: the DNATed packet is delivered locally (prerouting -> input for pods,
output -> lo for the node itself), never through postrouting's masquerade, and its reply always passes
the conntrack that reverses the DNAT.

sessionAffinity ClientIP: each endpoint of such a service has a dynamic set of client addresses with the
service's timeout (default 3 h). The endpoint's chain adds (or refreshes) the client on every new
connection it takes, and the service chain first sends a client found in an endpoint's set back to that
endpoint; only unknown clients reach the random pick. Simpler than kube-proxy's one map per service
(client -> endpoint), with the same effect: a client in two sets (its endpoint was removed and came
back) goes to the first.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controlplane.api.core import Endpoints, Service

from . import nftables as nft

TABLE = "peapod-proxy"
MASQ_MARK = 0x4000
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
LOCALHOST = "127.0.0.0/8"
AFFINITY_TIMEOUT = 10800  # seconds: Kubernetes' default for sessionAffinity ClientIP
DNS_SERVICE = ("kube-system", "kube-dns")  # (namespace, name): answered by each node's own DNS server


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node_name: str | None = None


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service with what it needs for its rules: the proxy's unit of work."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP, SCTP
    port: int
    cluster_ip: str
    node_port: int | None = None
    external_ips: tuple[str, ...] = ()  # LoadBalancer ingress, loadBalancerIP, externalIPs
    local_only: bool = False  # externalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...] = ()
    affinity_timeout: int | None = None  # seconds, with sessionAffinity ClientIP
    node_local: bool = False  # the endpoint is this node itself (node-local DNS): no masquerade marks

    @property
    def id(self) -> str:
        """``ns/name/proto/port``: unique per table, part of every chain name of this port."""
        return f"{self.namespace}/{self.name}/{self.protocol.lower()}/{self.port_name or self.port}"


def _ready_endpoints(endpoints: Endpoints | None, port_name: str, protocol: str) -> tuple[Endpoint, ...]:
    found: set[Endpoint] = set()
    for subset in (endpoints.subsets if endpoints else None) or []:
        for ep_port in subset.ports or []:
            if (ep_port.name or "") != port_name or (ep_port.protocol or "TCP") != protocol:
                continue
            for address in subset.addresses or []:
                found.add(Endpoint(address.ip, ep_port.port, address.node_name))
    return tuple(sorted(found, key=lambda e: (e.ip, e.port)))  # stable order: stable table


def service_ports(
    services: Iterable[Service],
    endpoints: Mapping[str, Endpoints],
    local_dns: tuple[str, int] | None = None,
) -> list[ServicePort]:
    """Every proxied port of ``services``, sorted; ``endpoints`` is keyed ``namespace/name``. Services
    without a cluster IP (headless, ExternalName) have nothing to proxy. ``local_dns``: this node's DNS
    server (address, port), the one endpoint of every port of ``kube-system/kube-dns``."""
    result = []
    for svc in services:
        spec, meta = svc.spec, svc.metadata
        if spec.type == "ExternalName" or spec.cluster_ip in (None, "", "None"):
            continue
        namespace, name = meta.namespace or "default", meta.name or ""
        extra: list[str] = []
        if spec.type == "LoadBalancer":
            ingress = svc.status.load_balancer.ingress if svc.status.load_balancer else None
            extra += [i.ip for i in ingress or [] if i.ip]
            if spec.load_balancer_ip:
                extra.append(spec.load_balancer_ip)
        extra += spec.external_ips or []
        node_ports = spec.type in ("NodePort", "LoadBalancer")
        affinity = None
        if spec.session_affinity == "ClientIP":
            config = spec.session_affinity_config.client_ip if spec.session_affinity_config else None
            affinity = int((config or {}).get("timeoutSeconds") or AFFINITY_TIMEOUT)
        node_local = local_dns is not None and (namespace, name) == DNS_SERVICE
        for port in spec.ports or []:
            protocol = port.protocol or "TCP"
            if protocol not in PROTOCOLS:
                continue
            if node_local and local_dns is not None:
                eps: tuple[Endpoint, ...] = (Endpoint(local_dns[0], local_dns[1]),)
            else:
                eps = _ready_endpoints(endpoints.get(f"{namespace}/{name}"), port.name or "", protocol)
            result.append(
                ServicePort(
                    namespace=namespace,
                    name=name,
                    port_name=port.name or "",
                    protocol=protocol,
                    port=port.port,
                    cluster_ip=spec.cluster_ip,
                    node_port=port.node_port if node_ports else None,
                    external_ips=tuple(sorted(set(extra))),
                    local_only=spec.external_traffic_policy == "Local",
                    affinity_timeout=affinity,
                    endpoints=eps,
                    node_local=node_local,
                )
            )
    return sorted(result, key=lambda p: p.id)


SERVICE_KEY = ("ip daddr", "meta l4proto", "th dport")
NODEPORT_KEY = ("meta l4proto", "th dport")
REJECT = "reject"


def _service_key(ip: str, port: ServicePort) -> bytes:
    return nft.set_key(SERVICE_KEY, ip, PROTOCOLS[port.protocol], port.port)


def _nodeport_key(port: ServicePort) -> bytes:
    return nft.set_key(NODEPORT_KEY, PROTOCOLS[port.protocol], port.node_port or 0)


def _pick(chain_of: list[str]) -> tuple[nft.Rule, ...]:
    """Uniform choice among chains: the i-th is taken with probability 1/(n-i) of what is left."""
    n = len(chain_of)
    rules = [nft.Rule(nft.numgen_random(n - i, 0) + nft.goto(chain)) for i, chain in enumerate(chain_of[:-1])]
    return (*rules, nft.Rule(nft.goto(chain_of[-1])))


def _affine(p: ServicePort, chains: list[str]) -> tuple[nft.Rule, ...]:
    """ClientIP affinity: a client seen by an endpoint within the timeout goes back to it."""
    if p.affinity_timeout is None:
        return ()
    return tuple(nft.Rule(nft.in_set(_affinity_set(c), "ip saddr") + nft.goto(c)) for c in chains)


def _affinity_set(ep_chain: str) -> str:
    return "aff-" + ep_chain.removeprefix("ep-")


def _map(name: str, key: tuple[str, ...], verdicts: list[tuple[bytes, str]]) -> nft.Set:
    """A verdict map; should two service ports claim one key (the API forbids it) the first one wins,
    as the first of two rules would."""
    first: dict[bytes, str] = {}
    for k, chain in verdicts:
        first.setdefault(k, chain)
    return nft.Set(name, key, tuple(first.items()), is_map=True)


@dataclass(frozen=True)
class _Part:
    """What one service port adds to the table on every node alike: its chains and sets (all but the
    external chain of an externalTrafficPolicy Local port, see ``_local_ext``), and its verdict map
    entries."""

    chains: tuple[nft.Chain, ...] = ()
    sets: tuple[nft.Set, ...] = ()
    service_ips: tuple[tuple[bytes, str], ...] = ()
    node_ports: tuple[tuple[bytes, str], ...] = ()
    no_endpoint_ips: tuple[tuple[bytes, str], ...] = ()
    no_endpoint_ports: tuple[tuple[bytes, str], ...] = ()


def _node_dependent(p: ServicePort) -> bool:
    """Whether the port's rules differ from node to node: only the external chain of a Local port."""
    return p.local_only and bool(p.endpoints) and bool(p.node_port or p.external_ips)


def _ep_chain(p: ServicePort, ep: Endpoint) -> str:
    return f"ep-{p.id}__{ep.ip}/{ep.port}"


@functools.lru_cache(maxsize=1 << 15)
def _part(p: ServicePort, cluster_cidr: str) -> _Part:
    """Memoized: a resync rebuilds only the ports that changed, and unchanged ones yield the very same
    chain objects, so comparing with the last table written is mostly identity checks (and nodes that
    compute their tables in one process share them)."""
    mark = nft.mark_set(MASQ_MARK)
    svc, ext = f"svc-{p.id}", f"ext-{p.id}"
    targets = ((_service_key(p.cluster_ip, p), svc), *((_service_key(ip, p), ext) for ip in p.external_ips))
    if not p.endpoints:
        return _Part(
            no_endpoint_ips=tuple((key, REJECT) for key, _ in targets),
            no_endpoint_ports=((_nodeport_key(p), REJECT),) if p.node_port else (),
        )
    chains: list[nft.Chain] = []
    sets: list[nft.Set] = []
    ep_chains = []
    for ep in p.endpoints:
        name = _ep_chain(p, ep)
        ep_chains.append(name)
        remember: tuple[nft.Rule, ...] = ()
        if p.affinity_timeout is not None:
            aff = _affinity_set(name)
            sets.append(nft.Set(aff, ("ip saddr",), timeout=p.affinity_timeout))
            remember = (nft.Rule(nft.update_set(aff, "ip saddr", p.affinity_timeout)),)
        rules = (
            *(() if p.node_local else (nft.Rule(nft.saddr(ep.ip) + mark),)),  # hairpin
            *remember,
            nft.Rule(nft.l4proto(PROTOCOLS[p.protocol]) + nft.dnat(ep.ip, ep.port)),
        )
        chains.append(nft.Chain(name, rules))
    outside = () if p.node_local else (nft.Rule(nft.saddr(cluster_cidr, negate=True) + mark),)
    svc_rules = (*outside, *_affine(p, ep_chains))
    chains.append(nft.Chain(svc, (*svc_rules, *_pick(ep_chains))))
    if (p.node_port or p.external_ips) and not p.local_only:
        chains.append(nft.Chain(ext, (nft.Rule(mark), nft.Rule(nft.goto(svc)))))
    node_ports = ((_nodeport_key(p), ext),) if p.node_port else ()
    return _Part(tuple(chains), tuple(sets), targets, node_ports)


@functools.lru_cache(maxsize=1 << 15)
def _local_ext(p: ServicePort, node_name: str, cluster_cidr: str) -> nft.Chain:
    """The external chain of an externalTrafficPolicy Local port on node ``node_name``: traffic from
    outside goes only to this node's endpoints (none: dropped); pods use every endpoint, as in k8s."""
    mark = nft.mark_set(MASQ_MARK)
    local = [_ep_chain(p, ep) for ep in p.endpoints if ep.node_name == node_name]
    rules = (
        nft.Rule(nft.saddr(LOCALHOST) + mark),
        nft.Rule(nft.saddr(cluster_cidr) + nft.goto(f"svc-{p.id}")),
        *(_affine(p, local) + _pick(local) if local else (nft.Rule(nft.drop()),)),
    )
    return nft.Chain(f"ext-{p.id}", rules)


@dataclass(frozen=True)
class SharedRules:
    """The part of the proxy table that is the same on every node, computed once from the ports: hollow
    nodes in one process share it, and each adds only what is its own (``node_table``)."""

    cluster_cidr: str
    chains: tuple[nft.Chain, ...]
    sets: tuple[nft.Set, ...]  # the four verdict maps, then the affinity sets
    local: tuple[ServicePort, ...]  # ports whose external chain depends on the node


def shared_rules(ports: list[ServicePort], cluster_cidr: str) -> SharedRules:
    """Everything of the table for ``ports`` that does not depend on the node; pods are in
    ``cluster_cidr``."""
    parts = [_part(p, cluster_cidr) for p in ports]
    maps = (
        _map("service-ips", SERVICE_KEY, [e for part in parts for e in part.service_ips]),
        _map("service-nodeports", NODEPORT_KEY, [e for part in parts for e in part.node_ports]),
        _map("no-endpoint-services", SERVICE_KEY, [e for part in parts for e in part.no_endpoint_ips]),
        _map("no-endpoint-nodeports", NODEPORT_KEY, [e for part in parts for e in part.no_endpoint_ports]),
    )
    return SharedRules(
        cluster_cidr,
        tuple(chain for part in parts for chain in part.chains),
        (*maps, *(s for part in parts for s in part.sets)),
        tuple(p for p in ports if _node_dependent(p)),
    )


@functools.lru_cache(maxsize=4096)
def _base_chains(pod_cidr: str | None) -> tuple[nft.Chain, ...]:
    """The hooked chains and the dispatch chains; only postrouting depends on the node (its pod CIDR)."""
    same_bridge: tuple[nft.Rule, ...] = ()
    if pod_cidr:  # the endpoint's reply would go straight back over the bridge, bypassing our conntrack
        same_bridge = (
            nft.Rule(nft.saddr(pod_cidr) + nft.daddr(pod_cidr) + nft.ct_status_dnat() + nft.masquerade()),
        )
    to_services = (nft.Rule(nft.jump("services")),)
    to_reject = (nft.Rule(nft.jump("no-endpoints")),)
    return (
        nft.Chain("reject-prerouting", to_reject, hook="prerouting", type="filter", priority=-110),
        nft.Chain("reject-output", to_reject, hook="output", type="filter", priority=-110),
        nft.Chain("prerouting", to_services, hook="prerouting", type="nat", priority=-100),
        nft.Chain("output", to_services, hook="output", type="nat", priority=-100),
        nft.Chain(
            "postrouting",
            (nft.Rule(nft.mark_has(MASQ_MARK) + nft.masquerade()), *same_bridge),
            hook="postrouting",
            type="nat",
            priority=100,
        ),
        nft.Chain(
            REJECT,
            (
                nft.Rule(nft.l4proto(PROTOCOLS["TCP"]) + nft.reject_tcp_reset()),
                nft.Rule(nft.reject_port_unreachable()),
            ),
        ),
        nft.Chain(
            "no-endpoints",
            (
                nft.Rule(nft.vmap("no-endpoint-services", SERVICE_KEY)),
                nft.Rule(nft.fib_daddr_local() + nft.vmap("no-endpoint-nodeports", NODEPORT_KEY)),
            ),
        ),
        nft.Chain(
            "services",
            (
                nft.Rule(nft.vmap("service-ips", SERVICE_KEY)),
                nft.Rule(nft.fib_daddr_local() + nft.jump("nodeports")),
            ),
        ),
        nft.Chain("nodeports", (nft.Rule(nft.vmap("service-nodeports", NODEPORT_KEY)),)),
    )


def node_table(shared: SharedRules, node_name: str, pod_cidr: str | None = None) -> nft.Table:
    """The whole proxy table of node ``node_name`` (its pods in ``pod_cidr``; None: not known yet): the
    shared part plus the node's own chains. Costs O(local ports) beyond one tuple copy."""
    local = tuple(_local_ext(p, node_name, shared.cluster_cidr) for p in shared.local)
    return nft.Table(TABLE, (*_base_chains(pod_cidr), *shared.chains, *local), sets=shared.sets)


def proxy_table(
    ports: list[ServicePort], node_name: str, cluster_cidr: str, pod_cidr: str | None = None
) -> nft.Table:
    """The whole proxy table for ``ports`` on node ``node_name``; pods are in ``cluster_cidr``, this
    node's in ``pod_cidr`` (None: not known yet)."""
    return node_table(shared_rules(ports, cluster_cidr), node_name, pod_cidr)


def udp_endpoints(ports: Iterable[ServicePort]) -> set[tuple[str, int]]:
    """(ip, port) of every UDP endpoint: those that disappear need their conntrack entries flushed, or
    datagrams keep following the old DNAT to an endpoint that is gone."""
    return {(ep.ip, ep.port) for p in ports if p.protocol == "UDP" for ep in p.endpoints}
