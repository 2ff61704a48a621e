"""A stand-in for the kernel's nftables, for hollow nodes: it keeps the table a node's proxy would have
written, counts the writes, optionally records each batch, and answers where a packet would go.

The table is the real proxy's (``proxy_rules``), so what a test reads here is what a real node would
install; only netlink is missing. ``route`` follows the table as the kernel would for a new connection:
the service-ips verdict map on (daddr, protocol, port), then, when ``daddr`` is one of the node's own
addresses (``fib daddr type local``), the node-port map; from the chain found, every endpoint the
numgen cascade could pick, evaluating the address matches (a Local node port sends outside clients
only to this node's endpoints, pods to all).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from .network import nftables as nft
from .network.proxy_rules import NODEPORT_KEY, PROTOCOLS, REJECT, SERVICE_KEY

OUTSIDE = "192.0.2.1"  # TEST-NET-1: a client outside the cluster and the node
JUMP = -3  # NFT_JUMP: the only verdict after which the packet comes back to the calling chain


@dataclass(frozen=True)
class Packet:
    saddr: bytes
    daddr: bytes


@dataclass(frozen=True)
class Batch:
    """One write: a whole table (``full``) or the difference from the last, as its messages' names."""

    full: bool
    ops: tuple[str, ...]


class FakeNftables:
    def __init__(self, *, record: int = 0) -> None:
        """``record``: keep the last this many batches (0: none; computing them costs a diff per write)."""
        self.table: nft.Table | None = None
        self.writes = 0
        self.full_writes = 0
        self.batches: deque[Batch] = deque(maxlen=record)
        self._record = record > 0

    def write(self, table: nft.Table) -> bool:
        """Install ``table`` (as ``nftables.apply`` or ``update`` would); False if it is what is there."""
        last = self.table
        if table == last:
            return False
        if last is None:
            self.full_writes += 1
            if self._record:
                self.batches.append(Batch(True, (f"apply table {table.family} {table.name}",)))
        elif self._record:  # the messages ``nftables.update`` would send (costs a diff: tests only)
            ops = nft.diff_ops(last, table)
            if ops is None:  # a base chain or a set redefined: ``update`` would rewrite the table
                self.full_writes += 1
                self.batches.append(Batch(True, (f"apply table {table.family} {table.name}",)))
            else:
                self.batches.append(Batch(False, tuple(op.what for op in ops)))
        self.table = table
        self.writes += 1
        return True

    def delete(self) -> bool:
        """Remove the table; True if there was one."""
        had, self.table = self.table is not None, None
        return had

    def route(
        self,
        daddr: str,
        port: int,
        protocol: str = "TCP",
        *,
        local: tuple[str, ...] = (),
        source: str = OUTSIDE,
    ) -> set[tuple[str, int]] | str | None:
        """Where a new connection from ``source`` to ``daddr:port`` goes: the endpoints (ip, port) it
        may be DNATed to, ``"reject"`` (a service without endpoints), ``"drop"`` (Local policy, no
        endpoint here), or None (not a service address: left alone). ``local``: the node's addresses."""
        if self.table is None:
            return None
        maps = {s.name: dict(s.verdicts) for s in self.table.sets if s.is_map}
        proto = PROTOCOLS[protocol]
        packet = Packet(ipaddress.IPv4Address(source).packed, ipaddress.IPv4Address(daddr).packed)
        chain = maps["service-ips"].get(nft.set_key(SERVICE_KEY, daddr, proto, port))
        chain = chain or maps["no-endpoint-services"].get(nft.set_key(SERVICE_KEY, daddr, proto, port))
        if chain is None and daddr in local:
            key = nft.set_key(NODEPORT_KEY, proto, port)
            chain = maps["service-nodeports"].get(key) or maps["no-endpoint-nodeports"].get(key)
        if chain is None:
            return None
        if chain == REJECT:
            return REJECT
        found: set[tuple[str, int]] = set()
        self._walk(chain, {c.name: c for c in self.table.chains}, packet, found, set())
        return found or "drop"

    def _walk(
        self,
        name: str,
        chains: dict[str, nft.Chain],
        packet: Packet,
        found: set[tuple[str, int]],
        seen: set[str],
    ) -> None:
        """Follow chain ``name`` for ``packet``, adding the endpoints it may be DNATed to. Address matches
        are evaluated; anything else (the numgen pick) may match, so every branch is followed."""
        if name in seen or name not in chains:
            return
        seen.add(name)
        for rule in chains[name].rules:
            certain = True  # every condition of the rule so far is known to hold
            reg: bytes | None = None  # register 1, when it holds something known (an address)
            registers: dict[int, bytes] = {}
            for expr in rule.exprs:
                kind = expr.name
                if kind == "payload" and expr.attr("base") == 1 and expr.attr("offset") in (12, 16):
                    address = packet.saddr if expr.attr("offset") == 12 else packet.daddr
                    reg = address[: expr.attr("len")]
                elif kind == "bitwise" and reg is not None:
                    mask, xor = expr.attr("mask"), expr.attr("xor")
                    reg = bytes((a & m) ^ x for a, m, x in zip(reg, mask, xor, strict=True))
                elif kind == "cmp" and reg is not None:
                    if (reg == expr.attr("data")) != (expr.attr("op") == 0):
                        break  # a condition that does not hold: the rule does not match
                    reg = None
                elif kind == "cmp":
                    certain = False
                elif kind in ("meta", "numgen", "fib", "lookup", "payload", "ct"):
                    reg = None
                elif kind == "immediate" and expr.attr("data") is not None:
                    registers[expr.attr("dreg")] = expr.attr("data")
                elif kind == "nat" and 1 in registers:
                    ip = str(ipaddress.IPv4Address(registers[1]))
                    found.add((ip, int.from_bytes(registers.get(2, b"\0\0"), "big")))
                    if certain:
                        return
                elif kind == "immediate" and expr.attr("verdict"):
                    code, target = expr.attr("verdict")
                    if target:
                        self._walk(target, chains, packet, found, seen)
                    if certain and code != JUMP:
                        return  # goto, drop, accept: the packet does not come back here
