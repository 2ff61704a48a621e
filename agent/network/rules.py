"""What the agent's nftables table holds for the pod network, computed from the address book.

A pure function of the node's ranges and the pods' host ports, so it is tested without a kernel and the
whole table is rewritten in one transaction whenever its inputs change (level-based, like everything
else: the table always says what the allocations say, never what a sequence of edits left behind).

    table ip peapod
      prerouting  (nat, dstnat)  fib daddr type local jump hostports
      output      (nat, dstnat)  fib daddr type local jump hostports
      hostports                  [ip daddr HOSTIP] tcp dport 8080 dnat to POD:80   one rule per hostPort
      postrouting (nat, srcnat)  ip saddr 127.0.0.0/8 ct status dnat masquerade      localhost:hostPort
                                 ip saddr POD_CIDR ip daddr POD_CIDR ct status dnat masquerade   hairpin
                                 ip saddr POD_CIDR ip daddr != CLUSTER_CIDR masquerade   egress

Host ports answer on every local address of the node (or only ``hostIP``), localhost included, as CNI's
portmap plugin does; the localhost case also needs ``route_localnet`` on the bridge (see bridge.py).
A pod reaching its own node's host port (hairpin) is masqueraded so the reply comes back through the
node. Traffic from pods to anything outside the cluster's pod range leaves with the node's address.
"""

from __future__ import annotations

from . import nftables as nft
from .ipam import Allocation

TABLE = "peapod"
HOSTPORTS = "hostports"
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


def hostport_rules(allocations: list[Allocation]) -> tuple[nft.Rule, ...]:
    """One DNAT rule per host port, in a stable order (so an unchanged table is rewritten identically)."""
    rules = []
    for a in sorted(allocations, key=lambda a: (a.namespace, a.name, a.ip)):
        for m in a.host_ports:
            match = nft.daddr(m.host_ip) if m.host_ip and m.host_ip != "0.0.0.0" else ()
            rules.append(
                nft.Rule(
                    match + nft.l4proto(PROTOCOLS[m.protocol]) + nft.dport(m.host_port)
                    + nft.dnat(a.ip, m.container_port),
                    comment=f"{a.namespace}/{a.name} hostPort {m.host_port}/{m.protocol}",
                )
            )  # fmt: skip
    return tuple(rules)


def pod_network_table(pod_cidr: str, cluster_cidr: str, allocations: list[Allocation]) -> nft.Table:
    to_local = nft.fib_daddr_local() + nft.jump(HOSTPORTS)
    return nft.Table(
        TABLE,
        (
            nft.Chain("prerouting", (nft.Rule(to_local),), hook="prerouting", type="nat", priority=-100),
            nft.Chain("output", (nft.Rule(to_local),), hook="output", type="nat", priority=-100),
            nft.Chain(HOSTPORTS, hostport_rules(allocations)),
            nft.Chain(
                "postrouting",
                (
                    nft.Rule(nft.saddr("127.0.0.0/8") + nft.ct_status_dnat() + nft.masquerade()),
                    nft.Rule(
                        nft.saddr(pod_cidr) + nft.daddr(pod_cidr) + nft.ct_status_dnat() + nft.masquerade()
                    ),
                    nft.Rule(nft.saddr(pod_cidr) + nft.daddr(cluster_cidr, negate=True) + nft.masquerade()),
                ),
                hook="postrouting",
                type="nat",
                priority=100,
            ),
        ),
    )
