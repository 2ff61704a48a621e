"""The agent's only speaker of nftables netlink: a table described as data, written in one transaction.

The agent owns whole tables and always rewrites one completely (level-based: the table says what the
inputs say now, never what a sequence of edits left behind). ``apply`` therefore sends a single netlink
batch -- create the table if missing, delete it, create it again with every chain and rule -- which the
kernel commits atomically: packets see the old table or the new one, and on any error nothing changes.

Rules are tuples of netlink expressions built by the small functions below (``l4proto(6) + dport(80) +
dnat(...)``), each the same expression list ``nft`` itself sends for that statement, so ``nft list``
prints our rules the way an administrator would have written them. The messages are pyroute2's nfnetlink
classes (``nft_table_msg``, ``nft_rule_msg``, expressions as ``genex`` builds them), but the batch goes
over a plain netlink socket rather than pyroute2's: the kernel reports a failed commit, or a batch it
refuses as a whole, against the batch-begin message, which pyroute2's ``nlm_request_batch`` never reads
(for a refused batch it waits forever for acks that never come), and a table of a few thousand rules
needs a bigger send buffer than pyroute2 can get without ``SO_SNDBUFFORCE``. The work runs in a thread
(in the requested network namespace, see ``netns``), never on the event loop; pyroute2's encoding costs
about 0.7 ms a rule, which is what a big table costs.

The address and ``dnat`` builders are IPv4; an ``inet`` table runs its rules for IPv6 packets too, so
give it only family-neutral matches (ports, interfaces, verdicts) or keep IPv4 rules in an ``ip`` table.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NETLINK_NETFILTER, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES, nfgen_msg
from pyroute2.netlink.nfnetlink.nftsocket import (
    NFPROTO_INET,
    NFPROTO_IPV4,
    NFT_MSG_DELTABLE,
    NFT_MSG_GETTABLE,
    NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE,
    NFT_MSG_NEWTABLE,
    Cmp,
    Meta,
    Regs,
    nft_chain_msg,
    nft_rule_msg,
    nft_table_msg,
)
from pyroute2.nftables.expressions import genex

from .netns import run_in_netns

Expr = dict[str, Any]  # one netlink expression, as pyroute2's genex() builds it

FAMILIES = {"ip": NFPROTO_IPV4, "inet": NFPROTO_INET}
HOOKS = {"prerouting": 0, "input": 1, "forward": 2, "output": 3, "postrouting": 4}
COMMENT_MAX = 128  # bytes; nft's own limit for a rule comment


class NftablesError(Exception):
    """The kernel refused a transaction (nothing of it took effect) or a query; ``errno`` says why."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True)
class Rule:
    """One rule: its expressions in order, and a comment ``nft list`` shows (cut to 128 bytes)."""

    exprs: tuple[Expr, ...]
    comment: str | None = None


@dataclass(frozen=True)
class Chain:
    """A chain; with ``hook`` set it is a base chain that packets enter at that hook."""

    name: str
    rules: tuple[Rule, ...] = ()
    hook: str | None = None
    type: str = "filter"
    priority: int = 0
    policy_accept: bool = True


@dataclass(frozen=True)
class Table:
    """A whole table, as ``apply`` writes it: chains in order, each chain's rules in order."""

    name: str
    chains: tuple[Chain, ...]
    family: str = "ip"


# --- expression builders -------------------------------------------------------------------------------
# Registers hold host-order integers for meta/ct/fib keys and network-order bytes for packet payload;
# each builder compares with the bytes nft would send, so the listing reads back as the nft statement.

_REG1, _REG2, _VERDICT = Regs.NFT_REG_1, Regs.NFT_REG_2, Regs.NFT_REG_VERDICT
_NETWORK_HEADER, _TRANSPORT_HEADER = 1, 2


def _data(value: bytes) -> dict[str, Any]:
    return {"attrs": [("NFTA_DATA_VALUE", value)]}


def _cmp(value: bytes, negate: bool = False) -> Expr:
    op = Cmp.NFT_CMP_NEQ if negate else Cmp.NFT_CMP_EQ
    return genex("cmp", {"sreg": _REG1, "op": op, "data": _data(value)})


def _meta(key: int) -> Expr:
    return genex("meta", {"dreg": _REG1, "key": key})


def _payload(base: int, offset: int, length: int) -> Expr:
    return genex("payload", {"dreg": _REG1, "base": base, "offset": offset, "len": length})


def _bitwise(mask: bytes) -> Expr:
    zeros = bytes(len(mask))
    return genex(
        "bitwise", {"sreg": _REG1, "dreg": _REG1, "len": len(mask), "mask": _data(mask), "xor": _data(zeros)}
    )


def _verdict(code: int, chain: str | None = None) -> tuple[Expr, ...]:
    verdict: list[tuple[str, Any]] = [("NFTA_VERDICT_CODE", code)]
    if chain is not None:
        verdict.append(("NFTA_VERDICT_CHAIN", chain))
    data = {"attrs": [("NFTA_DATA_VERDICT", {"attrs": verdict})]}
    return (genex("immediate", {"dreg": _VERDICT, "data": data}),)


def _port(port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    return port.to_bytes(2, "big")


def l4proto(proto: int) -> tuple[Expr, ...]:
    """``meta l4proto PROTO`` (6 tcp, 17 udp, 132 sctp): the guard that makes ``dport`` mean a port."""
    return (_meta(Meta.NFT_META_L4PROTO), _cmp(bytes([proto])))


def dport(port: int) -> tuple[Expr, ...]:
    """``th dport PORT``: the 2 bytes at offset 2 of the transport header (tcp, udp and sctp alike)."""
    return (_payload(_TRANSPORT_HEADER, 2, 2), _cmp(_port(port)))


def _address(offset: int, cidr: str, negate: bool) -> tuple[Expr, ...]:
    """As nft does: a prefix of whole bytes compares just those bytes, any other masks the address."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    if net.prefixlen == 0:
        raise ValueError(f"{cidr} matches every address; leave the match out instead")
    size = 4 if net.prefixlen % 8 else net.prefixlen // 8
    exprs = [_payload(_NETWORK_HEADER, offset, size)]
    if net.prefixlen % 8:
        exprs.append(_bitwise(net.netmask.packed))
    exprs.append(_cmp(net.network_address.packed[:size], negate))
    return tuple(exprs)


def saddr(cidr: str, *, negate: bool = False) -> tuple[Expr, ...]:
    """``ip saddr CIDR`` (``!=`` with negate); a bare address means /32."""
    return _address(12, cidr, negate)


def daddr(cidr: str, *, negate: bool = False) -> tuple[Expr, ...]:
    """``ip daddr CIDR`` (``!=`` with negate); a bare address means /32."""
    return _address(16, cidr, negate)


def _bits_as_names(value: int, names: tuple[str, ...]) -> frozenset[str]:
    """pyroute2 declares some enum attributes as flag sets it encodes as sum(1 << index of each name):
    the names whose bits spell ``value`` make it send the number itself."""
    return frozenset(name for i, name in enumerate(names) if value >> i & 1)


_FIB_RESULT_ADDRTYPE = 3  # NFT_FIB_RESULT_ADDRTYPE, an enum (pyroute2 has it as a flag set)
_FIB_F_DADDR = 1 << 1
_RTN_LOCAL = 2


def fib_daddr_local() -> tuple[Expr, ...]:
    """``fib daddr type local``: the packet is addressed to this host (any of its addresses)."""
    results = nft_rule_msg.nft_expr.nft_fib.fib_result.ops
    fib = genex(
        "fib", {"dreg": _REG1, "result": _bits_as_names(_FIB_RESULT_ADDRTYPE, results), "flags": _FIB_F_DADDR}
    )
    return (fib, _cmp(struct.pack("=I", _RTN_LOCAL)))


_CT_STATUS = 2
_IPS_DST_NAT = 0x20


def ct_status_dnat() -> tuple[Expr, ...]:
    """``ct status dnat``: the connection was destination-NATed (e.g. by a host-port rule)."""
    return (
        genex("ct", {"dreg": _REG1, "key": _CT_STATUS}),
        _bitwise(struct.pack("=I", _IPS_DST_NAT)),
        _cmp(struct.pack("=I", 0), negate=True),
    )


def _ifname(key: int, name: str, negate: bool) -> tuple[Expr, ...]:
    raw = name.encode()
    if not 0 < len(raw) < 16:
        raise ValueError(f"not an interface name: {name!r}")
    return (_meta(key), _cmp(raw.ljust(16, b"\0"), negate))


def oifname(name: str, *, negate: bool = False) -> tuple[Expr, ...]:
    """``oifname "NAME"`` (the whole 16-byte name, NUL-padded as nft compares it)."""
    return _ifname(Meta.NFT_META_OIFNAME, name, negate)


def iifname(name: str, *, negate: bool = False) -> tuple[Expr, ...]:
    """``iifname "NAME"``."""
    return _ifname(Meta.NFT_META_IIFNAME, name, negate)


def counter() -> tuple[Expr, ...]:
    """``counter``: packets and bytes, shown by ``nft list``."""
    return (genex("counter", {}),)


_NAT_DNAT = 1


def dnat(ip: str, port: int | None = None) -> tuple[Expr, ...]:
    """``dnat to IP[:PORT]`` (IPv4): address in register 1, port in register 2, then the nat expression."""
    exprs = [genex("immediate", {"dreg": _REG1, "data": _data(ipaddress.IPv4Address(ip).packed)})]
    nat: dict[str, Any] = {"type": _NAT_DNAT, "family": NFPROTO_IPV4, "reg_addr_min": _REG1}
    if port is not None:
        exprs.append(genex("immediate", {"dreg": _REG2, "data": _data(_port(port))}))
        nat["reg_proto_min"] = _REG2
    return (*exprs, genex("nat", nat))


def masquerade() -> tuple[Expr, ...]:
    """``masquerade``: source NAT to the address of the outgoing interface."""
    return (genex("masq", {}),)


def jump(chain: str) -> tuple[Expr, ...]:
    """``jump CHAIN`` (the chain must be in the same table)."""
    return _verdict(-3, chain)  # NFT_JUMP


def accept() -> tuple[Expr, ...]:
    return _verdict(1)  # NF_ACCEPT


def drop() -> tuple[Expr, ...]:
    return _verdict(0)  # NF_DROP


# --- transactions ----------------------------------------------------------------------------------------

_NLMSG_ERROR = 2
_BATCH_BEGIN, _BATCH_END = 0x10, 0x11
_SO_SNDBUFFORCE = 32  # not in Python's socket module
_REPLY_TIMEOUT = 10.0  # seconds; replies are queued before send() returns, this only guards a surprise


def _message(cls: Any, cmd: int, family: int, attrs: list[tuple[str, Any]], flags: int = 0) -> Any:
    msg = cls()
    msg["attrs"] = attrs
    msg["nfgen_family"] = family
    msg["header"]["type"] = (NFNL_SUBSYS_NFTABLES << 8) | cmd
    msg["header"]["flags"] = NLM_F_REQUEST | flags
    return msg


def _batch_marker(kind: int) -> Any:
    msg = nfgen_msg()
    msg["res_id"] = NFNL_SUBSYS_NFTABLES
    msg["header"]["type"] = kind
    msg["header"]["flags"] = NLM_F_REQUEST
    return msg


def _socket() -> socket.socket:
    """A netfilter netlink socket in the calling thread's network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.settimeout(_REPLY_TIMEOUT)
    return sock


def _replies(sock: socket.socket) -> Iterator[tuple[int, int, int]]:
    """(message type, sequence number, error: 0 or -errno for NLMSG_ERROR) of each reply, forever."""
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise OSError(errno.EIO, "netlink socket closed")
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
            error = struct.unpack_from("=i", data, offset + 16)[0] if kind == _NLMSG_ERROR else 0
            yield kind, seq, error
            offset += max((length + 3) & ~3, 16)


def _transaction(ops: list[tuple[str, Any]]) -> list[tuple[str, int]]:
    """Send ``ops`` (description, message) as one batch; returns (description, errno) of each failure,
    empty when the kernel committed it. Only the last operation asks for an ack: the kernel queues its
    replies in message order after any commit error, so that ack is the last reply there is. An error
    against the batch-begin message (sequence 1) is a commit failure or a refusal of the whole batch."""
    msgs = [_batch_marker(_BATCH_BEGIN), *(msg for _, msg in ops), _batch_marker(_BATCH_END)]
    msgs[-2]["header"]["flags"] |= NLM_F_ACK
    data = bytearray()
    for seq, msg in enumerate(msgs, start=1):
        msg["header"]["sequence_number"] = seq
        msg.encode()
        data += msg.data
    what = {1: "batch", **{seq: desc for seq, (desc, _) in enumerate(ops, start=2)}}
    last = len(ops) + 1
    failures = []
    with _socket() as sock:
        try:  # one datagram: the socket must be allowed to send it whole (root may exceed wmem_max)
            sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, len(data) + 4096)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, len(data) + 4096)
        try:
            sock.send(data)
            for kind, seq, error in _replies(sock):
                if error:
                    failures.append((what.get(seq, f"message {seq}"), -error))
                if kind == _NLMSG_ERROR and (seq == last or (seq == 1 and error)):
                    break  # the last reply, or the batch as a whole was refused (its ops never answer)
        except OSError as e:  # e.g. ENOBUFS: replies were lost, so the outcome is unknown
            failures.append(("no complete reply from the kernel", e.errno or errno.EIO))
    return failures


def _error(context: str, failures: list[tuple[str, int]]) -> NftablesError:
    detail = "; ".join(f"{desc}: {os.strerror(code)}" for desc, code in failures)
    return NftablesError(f"{context}: {detail}", failures[0][1])


def _comment(text: str) -> str:
    """pyroute2 writes a rule's userdata as a 2-byte big-endian length (bytes + NUL) and the text: for a
    text under 255 bytes that is exactly nft's comment record (type 0, 1-byte length, text, NUL)."""
    return text.encode()[:COMMENT_MAX].decode(errors="ignore")


def _table_ops(table: Table) -> list[tuple[str, Any]]:
    family = FAMILIES[table.family]
    where = f"table {table.family} {table.name}"
    name = [("NFTA_TABLE_NAME", table.name)]
    ops = [
        (f"create {where}", _message(nft_table_msg, NFT_MSG_NEWTABLE, family, name, NLM_F_CREATE)),
        (f"delete {where}", _message(nft_table_msg, NFT_MSG_DELTABLE, family, name)),
        (f"add {where}", _message(nft_table_msg, NFT_MSG_NEWTABLE, family, name, NLM_F_CREATE)),
    ]
    for chain in table.chains:
        attrs: list[tuple[str, Any]] = [("NFTA_CHAIN_TABLE", table.name), ("NFTA_CHAIN_NAME", chain.name)]
        if chain.hook is not None:
            hook = [("NFTA_HOOK_HOOKNUM", HOOKS[chain.hook]), ("NFTA_HOOK_PRIORITY", chain.priority)]
            attrs += [
                ("NFTA_CHAIN_HOOK", {"attrs": hook}),
                ("NFTA_CHAIN_POLICY", 1 if chain.policy_accept else 0),
                ("NFTA_CHAIN_TYPE", chain.type),
            ]
        msg = _message(nft_chain_msg, NFT_MSG_NEWCHAIN, family, attrs, NLM_F_CREATE)
        ops.append((f"add chain {chain.name}", msg))
    for chain in table.chains:  # rules after every chain: a jump needs its target to exist already
        for i, rule in enumerate(chain.rules, start=1):
            attrs = [
                ("NFTA_RULE_TABLE", table.name),
                ("NFTA_RULE_CHAIN", chain.name),
                ("NFTA_RULE_EXPRESSIONS", list(rule.exprs)),
            ]
            if rule.comment:
                attrs.append(("NFTA_RULE_USERDATA", _comment(rule.comment)))
            msg = _message(nft_rule_msg, NFT_MSG_NEWRULE, family, attrs, NLM_F_CREATE | NLM_F_APPEND)
            ops.append((f"add rule {i} to chain {chain.name}", msg))
    return ops


def _apply(table: Table) -> None:
    failures = _transaction(_table_ops(table))
    if failures:
        raise _error(f"nftables: table {table.family} {table.name} not applied", failures)


def _delete(name: str, family: str) -> bool:
    msg = _message(nft_table_msg, NFT_MSG_DELTABLE, FAMILIES[family], [("NFTA_TABLE_NAME", name)])
    what = f"delete table {family} {name}"
    failures = _transaction([(what, msg)])
    if failures == [(what, errno.ENOENT)]:
        return False
    if failures:
        raise _error("nftables", failures)
    return True


def _exists(name: str, family: str) -> bool:
    msg = _message(nft_table_msg, NFT_MSG_GETTABLE, FAMILIES[family], [("NFTA_TABLE_NAME", name)])
    msg["header"]["sequence_number"] = 1
    msg.encode()
    with _socket() as sock:
        sock.send(msg.data)
        kind, _seq, error = next(reply for reply in _replies(sock) if reply[1] == 1)
    if kind != _NLMSG_ERROR:
        return True  # the table itself came back
    if error == -errno.ENOENT:
        return False
    raise _error("nftables", [(f"get table {family} {name}", -error)])


async def apply(table: Table, netns: str | None = None) -> None:
    """Replace the whole table atomically: one netlink batch holding create-if-missing, delete, create,
    every chain, every rule. Either all of it takes effect or none does (then NftablesError)."""
    await run_in_netns(netns, _apply, table)


async def delete(name: str, family: str = "ip", netns: str | None = None) -> bool:
    """Delete the table if present; True if it existed. A missing table is not an error."""
    return await run_in_netns(netns, _delete, name, family)


async def exists(name: str, family: str = "ip", netns: str | None = None) -> bool:
    """Whether the table is there (e.g. to tell a first start from a restart)."""
    return await run_in_netns(netns, _exists, name, family)
