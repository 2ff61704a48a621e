"""The pod network's table as a pure function of the address book (no kernel needed)."""

from __future__ import annotations

from agent.network import nftables as nft
from agent.network.ipam import Allocation, PortMapping
from agent.network.rules import HOSTPORTS, pod_network_table


def chain(table: nft.Table, name: str) -> nft.Chain:
    return next(c for c in table.chains if c.name == name)


def test_one_dnat_rule_per_host_port_in_a_stable_order() -> None:
    web = Allocation(
        "10.244.0.5", "s1", "u1", "default", "web",
        (PortMapping("TCP", 8080, 80), PortMapping("UDP", 5353, 53, "192.168.1.10")),
    )  # fmt: skip
    api = Allocation("10.244.0.6", "s2", "u2", "default", "api", (PortMapping("TCP", 9090, 9090),))
    plain = Allocation("10.244.0.7", "s3", "u3", "default", "plain")
    table = pod_network_table("10.244.0.0/24", "10.244.0.0/16", [web, plain, api])
    rules = chain(table, HOSTPORTS).rules
    assert [r.comment for r in rules] == [
        "default/api hostPort 9090/TCP",
        "default/web hostPort 8080/TCP",
        "default/web hostPort 5353/UDP",
    ]
    assert rules[1].exprs == nft.l4proto(6) + nft.dport(8080) + nft.dnat("10.244.0.5", 80)
    # hostIP restricts the rule to that address of the node.
    assert rules[2].exprs == nft.daddr("192.168.1.10") + nft.l4proto(17) + nft.dport(5353) + nft.dnat(
        "10.244.0.5", 53
    )
    assert pod_network_table("10.244.0.0/24", "10.244.0.0/16", [api, plain, web]) == table


def test_base_chains_send_local_traffic_to_host_ports_and_masquerade_egress() -> None:
    table = pod_network_table("10.244.3.0/24", "10.244.0.0/16", [])
    assert chain(table, HOSTPORTS).rules == ()
    for name in ("prerouting", "output"):
        base = chain(table, name)
        assert (base.hook, base.type, base.priority) == (name, "nat", -100)
        assert base.rules == (nft.Rule(nft.fib_daddr_local() + nft.jump(HOSTPORTS)),)
    post = chain(table, "postrouting")
    assert (post.hook, post.type, post.priority) == ("postrouting", "nat", 100)
    egress = nft.saddr("10.244.3.0/24") + nft.daddr("10.244.0.0/16", negate=True) + nft.masquerade()
    assert nft.Rule(egress) in post.rules
