"""agent.network.nftables: the builders' bytes, and tables applied to a real kernel in a throwaway netns.

The kernel tests read the result back with ``nft list``, so each builder is checked against what nft
itself makes of it, and they send real packets only inside the test's own namespace.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
from typing import Any

import pytest
from pyroute2 import IPRoute

from agent.network import nftables as nft
from agent.network.netns import run_in_netns

# --- builders, no kernel ---------------------------------------------------------------------------------


def parts(exprs: tuple[nft.Expr, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(expression name, {attribute: value}) of each expression."""
    return [(e.name, dict(e.attrs)) for e in exprs]


def cmp_value(exprs: tuple[nft.Expr, ...]) -> bytes:
    name, attrs = parts(exprs)[-1]
    assert name == "cmp"
    return attrs["data"]


def test_dport_compares_the_port_in_network_byte_order() -> None:
    (payload, attrs), _ = parts(nft.dport(18081))
    assert (payload, attrs["offset"], attrs["len"]) == ("payload", 2, 2)
    assert cmp_value(nft.dport(18081)) == b"\x46\xa1"


def test_host_address_is_compared_whole_without_a_mask() -> None:
    exprs = nft.saddr("10.0.0.1")
    assert [name for name, _ in parts(exprs)] == ["payload", "cmp"]
    assert parts(exprs)[0][1]["offset"] == 12
    assert parts(exprs)[0][1]["len"] == 4
    assert cmp_value(exprs) == bytes([10, 0, 0, 1])


def test_prefix_of_whole_bytes_compares_only_those_bytes() -> None:
    exprs = nft.daddr("10.244.0.0/16")
    assert [name for name, _ in parts(exprs)] == ["payload", "cmp"]
    assert (parts(exprs)[0][1]["offset"], parts(exprs)[0][1]["len"]) == (16, 2)
    assert cmp_value(exprs) == bytes([10, 244])


def test_other_prefixes_mask_the_address() -> None:
    exprs = nft.saddr("10.244.17.3/20")  # host bits are dropped, as nft does
    assert [name for name, _ in parts(exprs)] == ["payload", "bitwise", "cmp"]
    mask = parts(exprs)[1][1]["mask"]
    assert mask == bytes([255, 255, 240, 0])
    assert cmp_value(exprs) == bytes([10, 244, 16, 0])


def test_negate_compares_with_not_equal() -> None:
    for exprs, negated in [
        (nft.saddr("10.0.0.0/8"), False),
        (nft.saddr("10.0.0.0/8", negate=True), True),
        (nft.daddr("10.0.0.1", negate=True), True),
        (nft.oifname("pea0", negate=True), True),
        (nft.iifname("pea0"), False),
    ]:
        assert parts(exprs)[-1][1]["op"] == (1 if negated else 0)  # NFT_CMP_NEQ, NFT_CMP_EQ


def test_interface_names_are_nul_padded_to_16_bytes() -> None:
    assert cmp_value(nft.oifname("pea0")) == b"pea0" + bytes(12)
    with pytest.raises(ValueError):
        nft.iifname("a-name-too-long-x")


def test_dnat_without_port_leaves_the_port_alone() -> None:
    names = [name for name, _ in parts(nft.dnat("10.244.0.5"))]
    assert names == ["immediate", "nat"]
    assert "reg_proto_min" not in parts(nft.dnat("10.244.0.5"))[-1][1]
    assert parts(nft.dnat("10.244.0.5", 80))[1][1]["data"] == b"\x00\x50"


def test_nonsense_is_refused_before_the_kernel_sees_it() -> None:
    with pytest.raises(ValueError):
        nft.dport(70000)
    with pytest.raises(ValueError):
        nft.saddr("0.0.0.0/0")
    with pytest.raises(ValueError):
        nft.dnat("10.244.0.300")


# --- the kernel ------------------------------------------------------------------------------------------


def nft_list(netns: str, name: str, family: str = "ip") -> list[str]:
    """The table as ``nft list`` prints it, one stripped line each."""
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "nft", "list", "table", family, name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


EVERY_BUILDER = nft.Table(
    "peatest",
    (
        nft.Chain(
            "prerouting",
            (nft.Rule(nft.fib_daddr_local() + nft.jump("hostports")),),
            hook="prerouting",
            type="nat",
            priority=-100,
        ),
        nft.Chain(
            "hostports",
            (
                nft.Rule(
                    nft.daddr("192.168.1.10")
                    + nft.l4proto(6)
                    + nft.dport(18081)
                    + nft.dnat("10.244.0.5", 80),
                    comment="default/web hostPort 18081/TCP",
                ),
                nft.Rule(nft.l4proto(17) + nft.dport(53) + nft.dnat("10.244.0.6")),
                nft.Rule(nft.l4proto(132) + nft.dport(9) + nft.counter() + nft.drop()),
            ),
        ),
        nft.Chain(
            "postrouting",
            (
                nft.Rule(nft.saddr("127.0.0.0/8") + nft.ct_status_dnat() + nft.masquerade()),
                nft.Rule(
                    nft.saddr("10.244.0.0/24") + nft.daddr("10.244.0.0/16", negate=True) + nft.masquerade()
                ),
                nft.Rule(nft.saddr("10.244.16.0/20", negate=True) + nft.oifname("pea0") + nft.accept()),
            ),
            hook="postrouting",
            type="nat",
            priority=100,
        ),
        nft.Chain(
            "forward",
            (nft.Rule(nft.iifname("pea0") + nft.oifname("pea0", negate=True) + nft.accept()),),
            hook="forward",
            policy_accept=False,
        ),
    ),
)

EVERY_BUILDER_LISTED = [
    "table ip peatest {",
    "chain prerouting {",
    "type nat hook prerouting priority dstnat; policy accept;",
    "fib daddr type local jump hostports",
    "}",
    "chain hostports {",
    'ip daddr 192.168.1.10 tcp dport 18081 dnat to 10.244.0.5:80 comment "default/web hostPort 18081/TCP"',
    "udp dport 53 dnat to 10.244.0.6",
    "sctp dport 9 counter packets 0 bytes 0 drop",
    "}",
    "chain postrouting {",
    "type nat hook postrouting priority srcnat; policy accept;",
    "ip saddr 127.0.0.0/8 ct status dnat masquerade",
    "ip saddr 10.244.0.0/24 ip daddr != 10.244.0.0/16 masquerade",
    'ip saddr != 10.244.16.0/20 oifname "pea0" accept',
    "}",
    "chain forward {",
    "type filter hook forward priority filter; policy drop;",
    'iifname "pea0" oifname != "pea0" accept',
    "}",
    "}",
]


@pytest.mark.e2e
async def test_every_builder_reads_back_as_the_nft_statement(netns: str) -> None:
    await nft.apply(EVERY_BUILDER, netns)
    assert nft_list(netns, "peatest") == EVERY_BUILDER_LISTED


@pytest.mark.e2e
async def test_apply_replaces_the_whole_table(netns: str) -> None:
    await nft.apply(EVERY_BUILDER, netns)
    await nft.apply(EVERY_BUILDER, netns)
    assert nft_list(netns, "peatest") == EVERY_BUILDER_LISTED  # not twice the rules

    smaller = nft.Table(
        "peatest", (nft.Chain("hostports", (nft.Rule(nft.l4proto(6) + nft.dport(1) + nft.drop()),)),)
    )
    await nft.apply(smaller, netns)
    assert nft_list(netns, "peatest") == [
        "table ip peatest {",
        "chain hostports {",
        "tcp dport 1 drop",
        "}",
        "}",
    ]


@pytest.mark.e2e
async def test_a_failing_transaction_changes_nothing(netns: str) -> None:
    broken = nft.Table(
        "peatest",
        (
            nft.Chain("fine", (nft.Rule(nft.accept()),)),
            nft.Chain("broken", (nft.Rule(nft.accept()), nft.Rule(nft.jump("nowhere")))),
        ),
    )
    with pytest.raises(nft.NftablesError, match="rule 2 to chain broken") as failed:
        await nft.apply(broken, netns)
    assert failed.value.errno == errno.ENOENT
    assert not await nft.exists("peatest", netns=netns)  # not even the table of the first step

    await nft.apply(EVERY_BUILDER, netns)
    with pytest.raises(nft.NftablesError):
        await nft.apply(broken, netns)  # its delete of the old table is undone with the rest
    assert nft_list(netns, "peatest") == EVERY_BUILDER_LISTED


@pytest.mark.e2e
async def test_kernel_refusals_other_than_missing_objects_are_reported_too(netns: str) -> None:
    nat_on_forward = nft.Table("peatest", (nft.Chain("f", hook="forward", type="nat"),))
    with pytest.raises(nft.NftablesError, match="add chain f") as failed:
        await nft.apply(nat_on_forward, netns)
    assert failed.value.errno == errno.EOPNOTSUPP


@pytest.mark.e2e
async def test_exists_and_delete(netns: str) -> None:
    assert not await nft.exists("peatest", netns=netns)
    await nft.apply(EVERY_BUILDER, netns)
    assert await nft.exists("peatest", netns=netns)
    assert not await nft.exists("peatest", family="inet", netns=netns)  # families are separate namespaces
    assert not await nft.exists("peatest")  # the machine's own namespace was not touched

    assert await nft.delete("peatest", netns=netns)
    assert not await nft.exists("peatest", netns=netns)
    assert not await nft.delete("peatest", netns=netns)


@pytest.mark.e2e
async def test_inet_family(netns: str) -> None:
    table = nft.Table(
        "peatest",
        (
            nft.Chain(
                "input",
                (nft.Rule(nft.l4proto(6) + nft.dport(22) + nft.counter() + nft.accept()),),
                hook="input",
            ),
        ),
        family="inet",
    )
    await nft.apply(table, netns)
    assert nft_list(netns, "peatest", "inet")[2:4] == [
        "type filter hook input priority filter; policy accept;",
        "tcp dport 22 counter packets 0 bytes 0 accept",
    ]
    assert await nft.delete("peatest", family="inet", netns=netns)


@pytest.mark.e2e
async def test_a_table_bigger_than_the_default_socket_buffer(netns: str) -> None:
    count = 2000  # about 700 kB in one datagram, beyond the default 208 kB send buffer
    rules = tuple(
        nft.Rule(nft.l4proto(6) + nft.dport(port) + nft.dnat("10.244.0.5", 80))
        for port in range(1, count + 1)
    )
    await nft.apply(nft.Table("peatest", (nft.Chain("hostports", rules),)), netns)
    listed = nft_list(netns, "peatest")
    assert len(listed) == count + 4
    assert listed[-3] == f"tcp dport {count} dnat to 10.244.0.5:80"


def _listen() -> socket.socket:
    with IPRoute() as ipr:  # a new namespace's loopback (always index 1) starts down
        ipr.link("set", index=1, state="up")
    sock = socket.socket()  # made in the test's namespace, where it stays
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _say_hello(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hello")


@pytest.mark.e2e
async def test_dnat_redirects_a_real_connection(netns: str) -> None:
    listener = await run_in_netns(netns, _listen)
    try:
        port = listener.getsockname()[1]
        front = 18081 if port != 18081 else 18082
        with pytest.raises(ConnectionRefusedError):  # nothing answers there without the rule
            await run_in_netns(netns, _say_hello, front)

        redirect = nft.Rule(nft.l4proto(6) + nft.dport(front) + nft.dnat("127.0.0.1", port))
        await nft.apply(
            nft.Table(
                "peatest", (nft.Chain("output", (redirect,), hook="output", type="nat", priority=-100),)
            ),
            netns,
        )
        await run_in_netns(netns, _say_hello, front)
        listener.settimeout(5)
        conn, _ = await asyncio.to_thread(listener.accept)
        with conn:
            assert conn.recv(5) == b"hello"
    finally:
        listener.close()


K3, K2 = ("ip daddr", "meta l4proto", "th dport"), ("meta l4proto", "th dport")
MAPS = nft.Table(
    "peatest",
    (
        nft.Chain("target", (nft.Rule(nft.update_set("seen", "ip saddr", 60) + nft.accept()),)),
        nft.Chain(
            "input",
            (
                nft.Rule(nft.vmap("by-service", K3)),
                nft.Rule(nft.vmap("by-port", K2)),
                nft.Rule(nft.in_set("seen", "ip saddr") + nft.goto("target")),
            ),
            hook="input",
        ),
    ),
    sets=(
        nft.Set("by-service", K3, ((nft.set_key(K3, "10.254.0.1", 6, 80), "target"),), is_map=True),
        nft.Set("by-port", K2, ((nft.set_key(K2, 17, 30053), "target"),), is_map=True),
        nft.Set("seen", ("ip saddr",), timeout=60),
    ),
)


def test_concatenated_keys_are_padded_to_registers() -> None:
    assert nft.set_key(K3, "10.0.0.1", 6, 80) == bytes([10, 0, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0])
    assert nft.set_key(("ip saddr",), "10.0.0.1") == bytes([10, 0, 0, 1])
    with pytest.raises(ValueError):
        nft.set_key(K2, 6)


def test_equal_expressions_are_built_once_and_compare_by_their_bytes() -> None:
    assert nft.saddr("10.0.0.0/8")[0] is nft.saddr("10.0.0.0/8")[0]
    assert nft.dport(80) != nft.dport(81)


def test_update_touches_only_what_changed_in_an_order_the_kernel_accepts() -> None:
    def table(*chains: nft.Chain, verdicts: tuple[tuple[bytes, str], ...] = ()) -> nft.Table:
        return nft.Table("peatest", chains, sets=(nft.Set("m", K2, verdicts, is_map=True),))

    key = nft.set_key(K2, 6, 80)
    old = table(nft.Chain("a", (nft.Rule(nft.accept()),)), nft.Chain("b"), verdicts=((key, "a"),))
    new = table(nft.Chain("b", (nft.Rule(nft.drop()),)), nft.Chain("c"), verdicts=((key, "c"),))
    ops = nft.diff_ops(old, new)
    assert ops is not None
    assert [op.what for op in ops] == [
        "add chain c",
        "add rule 1 to chain b",  # b was empty: nothing to flush
        "delete 1 elements of m",
        "add 1 elements of m",
        "flush chain a",  # chain a is deleted once nothing points at it any more
        "delete chain a",
    ]
    assert nft.diff_ops(old, old) == []
    base = nft.Chain("b", hook="input")
    assert nft.diff_ops(old, table(base)) is None  # a base chain redefined: rewrite the whole table


@pytest.mark.e2e
async def test_sets_and_verdict_maps_read_back_as_nft_writes_them(netns: str) -> None:
    await nft.apply(MAPS, netns)
    assert nft_list(netns, "peatest") == [
        "table ip peatest {",
        "map by-service {",
        "type ipv4_addr . inet_proto . inet_service : verdict",
        "elements = { 10.254.0.1 . tcp . 80 : goto target }",
        "}",
        "map by-port {",
        "type inet_proto . inet_service : verdict",
        "elements = { udp . 30053 : goto target }",
        "}",
        "set seen {",
        "type ipv4_addr",
        "size 65535",
        "flags dynamic,timeout",
        "timeout 1m",
        "}",
        "chain target {",
        "update @seen { ip saddr timeout 1m } accept",
        "}",
        "chain input {",
        "type filter hook input priority filter; policy accept;",
        "ip daddr . meta l4proto . th dport vmap @by-service",
        "meta l4proto . th dport vmap @by-port",
        "ip saddr @seen goto target",
        "}",
        "}",
    ]


@pytest.mark.e2e
async def test_update_applies_the_difference_in_the_kernel(netns: str) -> None:
    await nft.apply(MAPS, netns)
    key = nft.set_key(K3, "10.254.0.2", 17, 53)
    new = nft.Table(  # an element changes target; chain "target" and set "seen" lose their users and go
        "peatest",
        (
            nft.Chain("input", MAPS.chains[1].rules[:2], hook="input"),
            nft.Chain("other", (nft.Rule(nft.drop()),)),
        ),
        sets=(
            nft.Set("by-service", K3, ((key, "other"),), is_map=True),
            nft.Set("by-port", K2, (), is_map=True),
        ),
    )
    await nft.update(MAPS, new, netns)
    text = nft_list(netns, "peatest")
    assert "elements = { 10.254.0.2 . udp . 53 : goto other }" in text
    assert not any("seen" in line or "target" in line for line in text)
