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
    return [(e["attrs"][0][1], dict(e["attrs"][1][1]["attrs"])) for e in exprs]


def cmp_value(exprs: tuple[nft.Expr, ...]) -> bytes:
    name, attrs = parts(exprs)[-1]
    assert name == "cmp"
    return dict(attrs["NFTA_CMP_DATA"]["attrs"])["NFTA_DATA_VALUE"]


def test_dport_compares_the_port_in_network_byte_order() -> None:
    (payload, attrs), _ = parts(nft.dport(18081))
    assert (payload, attrs["NFTA_PAYLOAD_OFFSET"], attrs["NFTA_PAYLOAD_LEN"]) == ("payload", 2, 2)
    assert cmp_value(nft.dport(18081)) == b"\x46\xa1"


def test_host_address_is_compared_whole_without_a_mask() -> None:
    exprs = nft.saddr("10.0.0.1")
    assert [name for name, _ in parts(exprs)] == ["payload", "cmp"]
    assert parts(exprs)[0][1]["NFTA_PAYLOAD_OFFSET"] == 12
    assert parts(exprs)[0][1]["NFTA_PAYLOAD_LEN"] == 4
    assert cmp_value(exprs) == bytes([10, 0, 0, 1])


def test_prefix_of_whole_bytes_compares_only_those_bytes() -> None:
    exprs = nft.daddr("10.244.0.0/16")
    assert [name for name, _ in parts(exprs)] == ["payload", "cmp"]
    assert (parts(exprs)[0][1]["NFTA_PAYLOAD_OFFSET"], parts(exprs)[0][1]["NFTA_PAYLOAD_LEN"]) == (16, 2)
    assert cmp_value(exprs) == bytes([10, 244])


def test_other_prefixes_mask_the_address() -> None:
    exprs = nft.saddr("10.244.17.3/20")  # host bits are dropped, as nft does
    assert [name for name, _ in parts(exprs)] == ["payload", "bitwise", "cmp"]
    mask = dict(parts(exprs)[1][1]["NFTA_BITWISE_MASK"]["attrs"])["NFTA_DATA_VALUE"]
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
        op = parts(exprs)[-1][1]["NFTA_CMP_OP"]
        assert op == (nft.Cmp.NFT_CMP_NEQ if negated else nft.Cmp.NFT_CMP_EQ)


def test_interface_names_are_nul_padded_to_16_bytes() -> None:
    assert cmp_value(nft.oifname("pea0")) == b"pea0" + bytes(12)
    with pytest.raises(ValueError):
        nft.iifname("a-name-too-long-x")


def test_dnat_without_port_leaves_the_port_alone() -> None:
    names = [name for name, _ in parts(nft.dnat("10.244.0.5"))]
    assert names == ["immediate", "nat"]
    assert "NFTA_NAT_REG_PROTO_MIN" not in parts(nft.dnat("10.244.0.5"))[-1][1]
    port = parts(nft.dnat("10.244.0.5", 80))[1][1]
    assert dict(port["NFTA_IMMEDIATE_DATA"]["attrs"])["NFTA_DATA_VALUE"] == b"\x00\x50"


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
