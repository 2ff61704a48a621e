"""The agent's only speaker of nftables netlink: tables described as data, written in one transaction.

The agent owns whole tables. ``apply`` writes one completely (level-based: the table says what the inputs
say now, never what a sequence of edits left behind) in a single netlink batch -- create the table if
missing, delete it, create it again with every set, chain, rule and map element -- which the kernel
commits atomically: packets see the old table or the new one, and on any error nothing changes.
``update(old, new)`` sends only the difference between two tables (new and changed chains flushed and
refilled, map elements added and removed, chains and sets that are gone deleted once nothing points at
them), also as one atomic batch; when the difference cannot be expressed that way (a base chain or a set
changed its definition) it rewrites the whole table. A caller that is unsure what the kernel holds (a
first start, any failed write) uses ``apply``.

Rules are tuples of expressions built by the small functions below (``l4proto(6) + dport(80) +
dnat(...)``), each the same expression list ``nft`` itself sends for that statement, so ``nft list``
prints our rules the way an administrator would have written them. Why the encoding is ours: pyroute2's
generic attribute machinery cost about 1 ms a message, which made a table of 1,000 services take 12 s.
Here every expression is encoded to its netlink bytes once, when it is built (an ``Expr`` is those bytes
plus a readable name and attributes for tests and errors), and a message is a ``struct`` header in front
of the concatenated bytes. The batch goes over a plain netlink socket: the kernel reports a failed commit,
or a batch it refuses as a whole, against the batch-begin message, and a table of a few thousand rules
needs a bigger send buffer than the default (``SO_SNDBUFFORCE``). The work runs in a thread (in the
requested network namespace, see ``netns``), never on the event loop.

Sets and verdict maps (``Set``) give O(1) matching: ``ip daddr . meta l4proto . th dport vmap @m`` looks
the packet's key up in a hash instead of walking one rule per key; sets with a timeout filled by
``update @set { ip saddr }`` remember clients (session affinity).

The address and ``dnat`` builders are IPv4; an ``inet`` table runs its rules for IPv6 packets too, so
give it only family-neutral matches (ports, interfaces, verdicts) or keep IPv4 rules in an ``ip`` table.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .netns import run_in_netns

NETLINK_NETFILTER = 12
FAMILIES = {"ip": 2, "inet": 1}  # NFPROTO_IPV4, NFPROTO_INET
HOOKS = {"prerouting": 0, "input": 1, "forward": 2, "output": 3, "postrouting": 4}
COMMENT_MAX = 128  # bytes; nft's own limit for a rule comment


class NftablesError(Exception):
    """The kernel refused a transaction (nothing of it took effect) or a query; ``errno`` says why."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


# --- netlink attributes ----------------------------------------------------------------------------------

_NESTED = 0x8000  # NLA_F_NESTED, as libnftnl marks nests


def _nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def _nest(kind: int, *children: bytes) -> bytes:
    return _nla(kind | _NESTED, b"".join(children))


def _u32(kind: int, value: int) -> bytes:
    return _nla(kind, struct.pack("!I", value & 0xFFFFFFFF))


def _u64(kind: int, value: int) -> bytes:
    return _nla(kind, struct.pack("!Q", value))


def _str(kind: int, value: str) -> bytes:
    return _nla(kind, value.encode() + b"\0")


_DATA_VALUE, _DATA_VERDICT = 1, 2


def _data(kind: int, value: bytes) -> bytes:
    return _nest(kind, _nla(_DATA_VALUE, value))


def _verdict_data(kind: int, code: int, chain: str | None) -> bytes:
    inner = _u32(1, code) + (_str(2, chain) if chain is not None else b"")  # NFTA_VERDICT_CODE, _CHAIN
    return _nest(kind, _nest(_DATA_VERDICT, inner))


# (attribute number, encoding) of each expression attribute we use, from linux/netfilter/nf_tables.h
_SPEC: dict[str, dict[str, tuple[int, str]]] = {
    "cmp": {"sreg": (1, "u32"), "op": (2, "u32"), "data": (3, "data")},
    "meta": {"dreg": (1, "u32"), "key": (2, "u32"), "sreg": (3, "u32")},
    "payload": {"dreg": (1, "u32"), "base": (2, "u32"), "offset": (3, "u32"), "len": (4, "u32")},
    "bitwise": {
        "sreg": (1, "u32"),
        "dreg": (2, "u32"),
        "len": (3, "u32"),
        "mask": (4, "data"),
        "xor": (5, "data"),
    },
    "immediate": {"dreg": (1, "u32"), "data": (2, "data"), "verdict": (2, "verdict")},
    "fib": {"dreg": (1, "u32"), "result": (2, "u32"), "flags": (3, "u32")},
    "ct": {"dreg": (1, "u32"), "key": (2, "u32")},
    "counter": {},
    "nat": {
        "type": (1, "u32"),
        "family": (2, "u32"),
        "reg_addr_min": (3, "u32"),
        "reg_proto_min": (5, "u32"),
    },
    "masq": {},
    "numgen": {"dreg": (1, "u32"), "modulus": (2, "u32"), "type": (3, "u32")},
    "reject": {"type": (1, "u32"), "icmp_code": (2, "u8")},
    "lookup": {"set": (1, "str"), "sreg": (2, "u32"), "dreg": (3, "u32")},
    "dynset": {"set": (1, "str"), "op": (3, "u32"), "sreg_key": (4, "u32"), "timeout": (6, "u64")},
}


def _encode_attr(kind: int, how: str, value: Any) -> bytes:
    if how == "u32":
        return _u32(kind, value)
    if how == "u64":
        return _u64(kind, value)
    if how == "u8":
        return _nla(kind, bytes([value]))
    if how == "str":
        return _str(kind, value)
    if how == "data":
        return _data(kind, value)
    return _verdict_data(kind, *value)  # "verdict": (code, chain or None)


@dataclass(frozen=True)
class Expr:
    """One expression: its netlink bytes (encoded once, compared and hashed) and, for people and tests,
    its name and attributes."""

    wire: bytes
    name: str = field(compare=False)
    attrs: tuple[tuple[str, Any], ...] = field(compare=False)

    def attr(self, key: str) -> Any:
        return dict(self.attrs).get(key)


def _expr(name: str, **attrs: Any) -> Expr:
    return _encoded(name, tuple(attrs.items()))


@functools.lru_cache(maxsize=1 << 16)
def _encoded(name: str, attrs: tuple[tuple[str, Any], ...]) -> Expr:
    """Encoded once per distinct expression: a table repeats the same few (a mark, a cluster CIDR, a
    protocol) thousands of times, and a resync rebuilds them all."""
    spec = _SPEC[name]
    data = b"".join(_encode_attr(*spec[key], value) for key, value in attrs)
    wire = _nest(1, _str(1, name), _nest(2, data) if data else b"")  # NFTA_LIST_ELEM{NAME, DATA}
    return Expr(wire, name, attrs)


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


# key fields: nft data type, bytes, and the expressions that load the field from the packet
_FIELDS = {"ip saddr": (7, 4), "ip daddr": (7, 4), "meta l4proto": (12, 1), "th dport": (13, 2)}


@dataclass(frozen=True)
class Set:
    """A named set keyed on the concatenation of ``fields`` (``"ip daddr"``, ``"meta l4proto"``, ``"th
    dport"``, ``"ip saddr"``). A verdict map (``verdicts``: key bytes from ``set_key`` -> the chain a
    match goes to) or, with ``timeout`` (seconds), a dynamic set that rules fill (``update_set``) and
    whose elements expire."""

    name: str
    fields: tuple[str, ...]
    verdicts: tuple[tuple[bytes, str], ...] = ()
    is_map: bool = False
    timeout: int | None = None


@dataclass(frozen=True)
class Table:
    """A whole table, as ``apply`` writes it: sets, chains in order, each chain's rules in order."""

    name: str
    chains: tuple[Chain, ...]
    family: str = "ip"
    sets: tuple[Set, ...] = ()


# --- expression builders -------------------------------------------------------------------------------
# Registers hold host-order integers for meta/ct/fib keys and network-order bytes for packet payload;
# each builder compares with the bytes nft would send, so the listing reads back as the nft statement.

_REG1, _REG2, _VERDICT = 1, 2, 0
_REG32_00 = 8  # 32-bit registers for concatenations: reg32 n is 8 + n (reg 1 is the same as reg32 0)
_NETWORK_HEADER, _TRANSPORT_HEADER = 1, 2
_META_MARK, _META_IIFNAME, _META_OIFNAME, _META_L4PROTO = 3, 6, 7, 16
_CMP_EQ, _CMP_NEQ = 0, 1


def _cmp(value: bytes, negate: bool = False) -> Expr:
    return _expr("cmp", sreg=_REG1, op=_CMP_NEQ if negate else _CMP_EQ, data=value)


def _meta(key: int, reg: int = _REG1) -> Expr:
    return _expr("meta", dreg=reg, key=key)


def _payload(base: int, offset: int, length: int, reg: int = _REG1) -> Expr:
    return _expr("payload", dreg=reg, base=base, offset=offset, len=length)


def _bitwise(mask: bytes, xor: bytes | None = None) -> Expr:
    """``reg1 = (reg1 & mask) ^ xor``: and-masks, and with ``mask = ~bits, xor = bits`` an or."""
    xor = bytes(len(mask)) if xor is None else xor
    return _expr("bitwise", sreg=_REG1, dreg=_REG1, len=len(mask), mask=mask, xor=xor)


@functools.lru_cache(maxsize=1 << 16)
def _verdict(code: int, chain: str | None = None) -> tuple[Expr, ...]:
    return (_expr("immediate", dreg=_VERDICT, verdict=(code, chain)),)


def _port(port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    return port.to_bytes(2, "big")


def l4proto(proto: int) -> tuple[Expr, ...]:
    """``meta l4proto PROTO`` (6 tcp, 17 udp, 132 sctp): the guard that makes ``dport`` mean a port."""
    return (_meta(_META_L4PROTO), _cmp(bytes([proto])))


def dport(port: int) -> tuple[Expr, ...]:
    """``th dport PORT``: the 2 bytes at offset 2 of the transport header (tcp, udp and sctp alike)."""
    return (_payload(_TRANSPORT_HEADER, 2, 2), _cmp(_port(port)))


@functools.lru_cache(maxsize=1 << 16)  # parsing addresses costs more than the rest
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


_FIB_RESULT_ADDRTYPE, _FIB_F_DADDR, _RTN_LOCAL = 3, 1 << 1, 2


def fib_daddr_local() -> tuple[Expr, ...]:
    """``fib daddr type local``: the packet is addressed to this host (any of its addresses)."""
    fib = _expr("fib", dreg=_REG1, result=_FIB_RESULT_ADDRTYPE, flags=_FIB_F_DADDR)
    return (fib, _cmp(struct.pack("=I", _RTN_LOCAL)))


_CT_STATUS, _IPS_DST_NAT = 2, 0x20


def ct_status_dnat() -> tuple[Expr, ...]:
    """``ct status dnat``: the connection was destination-NATed (e.g. by a host-port rule)."""
    return (
        _expr("ct", dreg=_REG1, key=_CT_STATUS),
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
    return _ifname(_META_OIFNAME, name, negate)


def iifname(name: str, *, negate: bool = False) -> tuple[Expr, ...]:
    """``iifname "NAME"``."""
    return _ifname(_META_IIFNAME, name, negate)


def counter() -> tuple[Expr, ...]:
    """``counter``: packets and bytes, shown by ``nft list``."""
    return (_expr("counter"),)


_NAT_DNAT, _NFPROTO_IPV4 = 1, 2


@functools.lru_cache(maxsize=1 << 16)
def dnat(ip: str, port: int | None = None) -> tuple[Expr, ...]:
    """``dnat to IP[:PORT]`` (IPv4): address in register 1, port in register 2, then the nat expression."""
    exprs = [_expr("immediate", dreg=_REG1, data=ipaddress.IPv4Address(ip).packed)]
    if port is None:
        return (*exprs, _expr("nat", type=_NAT_DNAT, family=_NFPROTO_IPV4, reg_addr_min=_REG1))
    exprs.append(_expr("immediate", dreg=_REG2, data=_port(port)))
    nat = _expr("nat", type=_NAT_DNAT, family=_NFPROTO_IPV4, reg_addr_min=_REG1, reg_proto_min=_REG2)
    return (*exprs, nat)


def masquerade() -> tuple[Expr, ...]:
    """``masquerade``: source NAT to the address of the outgoing interface."""
    return (_expr("masq"),)


def jump(chain: str) -> tuple[Expr, ...]:
    """``jump CHAIN`` (the chain must be in the same table)."""
    return _verdict(-3, chain)  # NFT_JUMP


def goto(chain: str) -> tuple[Expr, ...]:
    """``goto CHAIN``: like jump, but the packet does not come back to the calling chain."""
    return _verdict(-4, chain)  # NFT_GOTO


def numgen_random(modulus: int, value: int) -> tuple[Expr, ...]:
    """``numgen random mod MODULUS == VALUE``: true for one value in MODULUS, each time drawn afresh. A
    cascade of these (``mod N == 0``, ``mod N-1 == 0``, ..., then unconditional) picks one of N targets
    uniformly, as kube-proxy's iptables mode does with ``statistic mode random``."""
    if not 0 <= value < modulus:
        raise ValueError(f"numgen value {value} not below modulus {modulus}")
    ng = _expr("numgen", dreg=_REG1, modulus=modulus, type=1)  # NFT_NG_RANDOM
    return (ng, _cmp(struct.pack("=I", value)))


def mark_set(bits: int) -> tuple[Expr, ...]:
    """``meta mark set mark or BITS``: keeps the other bits of the packet mark (others may use them)."""
    return (
        _meta(_META_MARK),
        _bitwise(struct.pack("=I", ~bits & 0xFFFFFFFF), struct.pack("=I", bits)),
        _expr("meta", sreg=_REG1, key=_META_MARK),
    )


def mark_has(bits: int) -> tuple[Expr, ...]:
    """``meta mark & BITS != 0``."""
    return (
        _meta(_META_MARK),
        _bitwise(struct.pack("=I", bits)),
        _cmp(struct.pack("=I", 0), negate=True),
    )


def reject_tcp_reset() -> tuple[Expr, ...]:
    """``reject with tcp reset`` (only in input/forward/output chains; guard it with ``l4proto(6)``)."""
    return (_expr("reject", type=1),)  # NFT_REJECT_TCP_RST


def reject_port_unreachable() -> tuple[Expr, ...]:
    """``reject with icmp port-unreachable`` (IPv4 tables; input/forward/output chains only)."""
    return (_expr("reject", type=0, icmp_code=3),)  # NFT_REJECT_ICMP_UNREACH, ICMP_PORT_UNREACH


def accept() -> tuple[Expr, ...]:
    return _verdict(1)  # NF_ACCEPT


def drop() -> tuple[Expr, ...]:
    return _verdict(0)  # NF_DROP


def _load(fields: tuple[str, ...]) -> tuple[Expr, ...]:
    """Load each key field into consecutive 32-bit registers starting at reg 1, as nft does for a
    concatenation (``ip daddr . meta l4proto . th dport``)."""
    loads = []
    for i, name in enumerate(fields):
        reg = _REG1 if i == 0 else _REG32_00 + i
        if name in ("ip saddr", "ip daddr"):
            loads.append(_payload(_NETWORK_HEADER, 12 if name == "ip saddr" else 16, 4, reg))
        elif name == "meta l4proto":
            loads.append(_meta(_META_L4PROTO, reg))
        elif name == "th dport":
            loads.append(_payload(_TRANSPORT_HEADER, 2, 2, reg))
        else:
            raise ValueError(f"unknown key field {name!r}")
    return tuple(loads)


def vmap(set_name: str, fields: tuple[str, ...]) -> tuple[Expr, ...]:
    """``FIELDS vmap @SET``: the verdict of the map element whose key is the packet's (none: go on)."""
    return (*_load(fields), _expr("lookup", set=set_name, sreg=_REG1, dreg=_VERDICT))


def in_set(set_name: str, field: str) -> tuple[Expr, ...]:
    """``FIELD @SET``: the packet's field is in the set."""
    return (*_load((field,)), _expr("lookup", set=set_name, sreg=_REG1))


def update_set(set_name: str, field: str, timeout: int) -> tuple[Expr, ...]:
    """``update @SET { FIELD timeout Ts }``: add the packet's field, or restart its timeout."""
    return (*_load((field,)), _expr("dynset", set=set_name, op=1, sreg_key=_REG1, timeout=timeout * 1000))


@functools.lru_cache(maxsize=1 << 16)
def set_key(fields: tuple[str, ...], *values: str | int) -> bytes:
    """A set element's key: each field's bytes, padded to 32 bits when concatenated (as registers)."""
    if len(fields) != len(values):
        raise ValueError(f"{len(values)} values for {len(fields)} key fields")
    key = b""
    for name, value in zip(fields, values, strict=True):
        if name in ("ip saddr", "ip daddr"):
            raw = ipaddress.IPv4Address(value).packed
        elif name == "meta l4proto":
            raw = bytes([int(value)])
        else:
            raw = _port(int(value))
        key += raw + bytes(-len(raw) % 4 if len(fields) > 1 else 0)
    return key


# --- messages ---------------------------------------------------------------------------------------------

_NEWTABLE, _GETTABLE, _DELTABLE, _NEWCHAIN, _DELCHAIN, _NEWRULE, _DELRULE = 0, 1, 2, 3, 5, 6, 8
_NEWSET, _DELSET, _NEWSETELEM, _DELSETELEM = 9, 11, 12, 14
_F_REQUEST, _F_ACK, _F_CREATE, _F_APPEND = 0x1, 0x4, 0x400, 0x800
_SUBSYS_NFTABLES = 10
_SET_MAP, _SET_TIMEOUT, _SET_EVAL = 0x8, 0x10, 0x20
_DATA_TYPE_VERDICT = 0xFFFFFF00
_ELEMENTS_PER_MESSAGE = 400  # an attribute's length is 16 bits: keep each element list well under 64 KiB


@dataclass
class _Op:
    """One message of a batch (without its netlink header) and what to call it in an error."""

    what: str
    cmd: int
    family: int
    attrs: bytes
    flags: int = 0


def _table_op(what: str, cmd: int, table: Table, flags: int = 0) -> _Op:
    return _Op(
        f"{what} table {table.family} {table.name}", cmd, FAMILIES[table.family], _str(1, table.name), flags
    )


def _chain_op(table: Table, chain: Chain) -> _Op:
    attrs = _str(1, table.name) + _str(3, chain.name)  # NFTA_CHAIN_TABLE, _NAME
    if chain.hook is not None:
        hook = _u32(1, HOOKS[chain.hook]) + _u32(2, chain.priority)  # NFTA_HOOK_HOOKNUM, _PRIORITY
        attrs += _nest(4, hook) + _u32(5, 1 if chain.policy_accept else 0) + _str(7, chain.type)
    return _Op(f"add chain {chain.name}", _NEWCHAIN, FAMILIES[table.family], attrs, _F_CREATE)


def _chain_ref_op(what: str, cmd: int, table: Table, chain: str) -> _Op:
    """Flush (``_DELRULE`` without a handle) or delete a chain."""
    attrs = _str(1, table.name) + _str(2 if cmd == _DELRULE else 3, chain)
    return _Op(f"{what} chain {chain}", cmd, FAMILIES[table.family], attrs)


def _comment(text: str) -> bytes:
    """nft's comment record in a rule's userdata: type 0, 1-byte length, the text and a NUL."""
    raw = text.encode()[:COMMENT_MAX].decode(errors="ignore").encode() + b"\0"
    return bytes([0, len(raw)]) + raw


def _rule_ops(table: Table, chain: Chain) -> Iterator[_Op]:
    prefix = _str(1, table.name) + _str(2, chain.name)  # NFTA_RULE_TABLE, _CHAIN
    family = FAMILIES[table.family]
    for i, rule in enumerate(chain.rules, start=1):
        attrs = prefix + _nest(4, *(e.wire for e in rule.exprs))  # NFTA_RULE_EXPRESSIONS
        if rule.comment:
            attrs += _nla(7, _comment(rule.comment))  # NFTA_RULE_USERDATA
        yield _Op(f"add rule {i} to chain {chain.name}", _NEWRULE, family, attrs, _F_CREATE | _F_APPEND)


def _set_op(table: Table, s: Set, set_id: int) -> _Op:
    types = [_FIELDS[f] for f in s.fields]
    key_type = 0
    for kind, _ in types:
        key_type = key_type << 6 | kind  # nft's id of a concatenated type
    key_len = sum(-(-size // 4) * 4 for _, size in types) if len(types) > 1 else types[0][1]
    flags = (_SET_MAP if s.is_map else 0) | (_SET_TIMEOUT | _SET_EVAL if s.timeout is not None else 0)
    attrs = _str(1, table.name) + _str(2, s.name) + _u32(3, flags) + _u32(4, key_type) + _u32(5, key_len)
    attrs += _u32(10, set_id)  # NFTA_SET_ID: required; unique within a batch (we refer to sets by name)
    if s.is_map:
        attrs += _u32(6, _DATA_TYPE_VERDICT)
    if s.timeout is not None:
        attrs += _u64(11, s.timeout * 1000)
    # A concatenated key is just its length to a hash set, as nft sends it: NFTA_SET_DESC_CONCAT (and the
    # NFT_SET_CONCAT flag the kernel then demands) describe fields only for interval (pipapo) sets.
    if s.timeout is not None:  # NFTA_SET_DESC{SIZE}: dynamic sets need a bound
        attrs += _nest(9, _u32(1, 65535))
    return _Op(f"add set {s.name}", _NEWSET, FAMILIES[table.family], attrs, _F_CREATE)


def _element_ops(
    what: str, cmd: int, table: Table, s: Set, verdicts: list[tuple[bytes, str]]
) -> Iterator[_Op]:
    prefix = _str(1, table.name) + _str(2, s.name)  # NFTA_SET_ELEM_LIST_TABLE, _SET
    for start in range(0, len(verdicts), _ELEMENTS_PER_MESSAGE):
        chunk = verdicts[start : start + _ELEMENTS_PER_MESSAGE]
        elements = b"".join(
            _nest(1, _data(1, key) + (_verdict_data(2, -4, chain) if cmd == _NEWSETELEM else b""))
            for key, chain in chunk
        )  # NFTA_LIST_ELEM{NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA: goto CHAIN}
        flags = _F_CREATE if cmd == _NEWSETELEM else 0
        yield _Op(
            f"{what} {len(chunk)} elements of {s.name}",
            cmd,
            FAMILIES[table.family],
            prefix + _nest(3, elements),
            flags,
        )


def _full_ops(table: Table) -> list[_Op]:
    ops = [
        _table_op("create", _NEWTABLE, table, _F_CREATE),
        _table_op("delete", _DELTABLE, table),
        _table_op("add", _NEWTABLE, table, _F_CREATE),
    ]
    ops += [
        _set_op(table, s, i) for i, s in enumerate(table.sets, start=1)
    ]  # before the rules that look them up
    ops += [_chain_op(table, chain) for chain in table.chains]
    for chain in table.chains:  # rules after every chain: a jump needs its target to exist already
        ops += _rule_ops(table, chain)
    for s in table.sets:
        ops += _element_ops("add", _NEWSETELEM, table, s, list(s.verdicts))
    return ops


def _same_definition(a: Chain, b: Chain) -> bool:
    return (a.hook, a.type, a.priority, a.policy_accept) == (b.hook, b.type, b.priority, b.policy_accept)


def diff_ops(old: Table, new: Table) -> list[_Op] | None:
    """The messages that turn ``old`` into ``new`` in place, in an order the kernel accepts within one
    batch; None when only a rewrite will do (another table, a base chain or a set redefined)."""
    if (old.name, old.family) != (new.name, new.family):
        return None
    old_chains = {c.name: c for c in old.chains}
    new_chains = {c.name: c for c in new.chains}
    old_sets = {s.name: s for s in old.sets}
    new_sets = {s.name: s for s in new.sets}
    for name, chain in new_chains.items():
        if name in old_chains and not _same_definition(chain, old_chains[name]):
            return None
    for name, s in new_sets.items():
        o = old_sets.get(name)
        if o is not None and (o.fields, o.is_map, o.timeout) != (s.fields, s.is_map, s.timeout):
            return None
    ops = [
        _set_op(new, s, i) for i, (name, s) in enumerate(new_sets.items(), start=1) if name not in old_sets
    ]
    ops += [_chain_op(new, c) for name, c in new_chains.items() if name not in old_chains]
    for name, chain in new_chains.items():
        before = old_chains.get(name)
        if before is not None and before.rules == chain.rules:
            continue
        if before is not None and before.rules:
            ops.append(_chain_ref_op("flush", _DELRULE, new, name))
        ops += _rule_ops(new, chain)
    for name, s in new_sets.items():  # elements: removed and changed out, then added and changed in
        was, now = dict(old_sets[name].verdicts) if name in old_sets else {}, dict(s.verdicts)
        gone = [(k, c) for k, c in was.items() if now.get(k) != c]
        came = [(k, c) for k, c in now.items() if was.get(k) != c]
        ops += _element_ops("delete", _DELSETELEM, new, s, gone)
        ops += _element_ops("add", _NEWSETELEM, new, s, came)
    removed = [name for name in old_chains if name not in new_chains]
    ops += [_chain_ref_op("flush", _DELRULE, new, name) for name in removed if old_chains[name].rules]
    ops += [_chain_ref_op("delete", _DELCHAIN, new, name) for name in removed]  # nothing points there now
    for name in old_sets:
        if name not in new_sets:
            ops.append(
                _Op(f"delete set {name}", _DELSET, FAMILIES[new.family], _str(1, new.name) + _str(2, name))
            )
    return ops


# --- transactions ----------------------------------------------------------------------------------------

_NLMSG_ERROR = 2
_BATCH_BEGIN, _BATCH_END = 0x10, 0x11
_SO_SNDBUFFORCE = 32  # not in Python's socket module
_REPLY_TIMEOUT = 10.0  # seconds; replies are queued before send() returns, this only guards a surprise


def _message(kind: int, flags: int, seq: int, family: int, attrs: bytes, res_id: int = 0) -> bytes:
    header = struct.pack(
        "=IHHIIBBH", 20 + len(attrs), kind, _F_REQUEST | flags, seq, 0, family, 0, socket.htons(res_id)
    )
    return header + attrs


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


def _transaction(ops: list[_Op]) -> list[tuple[str, int]]:
    """Send ``ops`` as one batch; returns (description, errno) of each failure, empty when the kernel
    committed it. Only the last operation asks for an ack: the kernel queues its replies in message order
    after any commit error, so that ack is the last reply there is. An error against the batch-begin
    message (sequence 1) is a commit failure or a refusal of the whole batch."""
    if not ops:
        return []
    parts = [_message(_BATCH_BEGIN, 0, 1, 0, b"", _SUBSYS_NFTABLES)]
    last = len(ops) + 1
    for seq, op in enumerate(ops, start=2):
        kind = _SUBSYS_NFTABLES << 8 | op.cmd
        parts.append(_message(kind, op.flags | (_F_ACK if seq == last else 0), seq, op.family, op.attrs))
    parts.append(_message(_BATCH_END, 0, last + 1, 0, b"", _SUBSYS_NFTABLES))
    data = b"".join(parts)
    what = {1: "batch", **{seq: op.what for seq, op in enumerate(ops, start=2)}}
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


def _apply(table: Table) -> None:
    failures = _transaction(_full_ops(table))
    if failures:
        raise _error(f"nftables: table {table.family} {table.name} not applied", failures)


def _update(old: Table, new: Table) -> int:
    ops = diff_ops(old, new)
    if ops is None:
        _apply(new)
        return -1
    failures = _transaction(ops)
    if failures:
        raise _error(f"nftables: table {new.family} {new.name} not updated", failures)
    return len(ops)


def _delete(name: str, family: str) -> bool:
    what = f"delete table {family} {name}"
    failures = _transaction([_Op(what, _DELTABLE, FAMILIES[family], _str(1, name))])
    if failures == [(what, errno.ENOENT)]:
        return False
    if failures:
        raise _error("nftables", failures)
    return True


def _exists(name: str, family: str) -> bool:
    kind = _SUBSYS_NFTABLES << 8 | _GETTABLE
    with _socket() as sock:
        sock.send(_message(kind, 0, 1, FAMILIES[family], _str(1, name)))
        kind, _seq, error = next(reply for reply in _replies(sock) if reply[1] == 1)
    if kind != _NLMSG_ERROR:
        return True  # the table itself came back
    if error == -errno.ENOENT:
        return False
    raise _error("nftables", [(f"get table {family} {name}", -error)])


async def apply(table: Table, netns: str | None = None) -> None:
    """Replace the whole table atomically: one netlink batch holding create-if-missing, delete, create,
    every set, chain, rule and element. Either all of it takes effect or none does (then NftablesError)."""
    await run_in_netns(netns, _apply, table)


async def update(old: Table, new: Table, netns: str | None = None) -> int:
    """Turn the table the kernel holds, ``old`` as last written, into ``new`` with only the difference,
    atomically; returns the number of messages sent (-1: it had to rewrite the whole table). If the
    kernel's table is not ``old`` (someone else changed it) this may fail: then ``apply``."""
    return await run_in_netns(netns, _update, old, new)


async def delete(name: str, family: str = "ip", netns: str | None = None) -> bool:
    """Delete the table if present; True if it existed. A missing table is not an error."""
    return await run_in_netns(netns, _delete, name, family)


async def exists(name: str, family: str = "ip", netns: str | None = None) -> bool:
    """Whether the table is there (e.g. to tell a first start from a restart)."""
    return await run_in_netns(netns, _exists, name, family)
