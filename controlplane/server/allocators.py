"""Allocators whose state lives in the store: node pod CIDRs, Service cluster IPs and node ports.

Each allocator is one key holding ``{"allocated": {"<offset>": "<owner>"}}``, changed only by
compare-and-swap, so several API servers sharing a store never hand out the same value twice.
``allocate_many`` takes several values in one swap (all or none): a Service's node ports.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import msgspec

from controlplane.store import Backend, Conflict, KeyExists

V = TypeVar("V")
R = TypeVar("R")


class AllocationError(Exception):
    """The range is full, or the requested value is taken or outside the range."""

    #: Which of the values asked of ``allocate_many`` failed.
    index: int = 0


class NotInRange(AllocationError):
    """The requested value lies outside the range."""


class AlreadyAllocated(AllocationError):
    """The requested value is held by another owner."""


class RangeFull(AllocationError):
    """No free value is left."""


class Contention(AllocationError):
    """Other writers kept changing the allocation record: the request may be retried."""


class _State(msgspec.Struct):
    allocated: dict[str, str] = msgspec.field(default_factory=dict)


class RangeAllocator(Generic[V]):
    """Hands out values ``value_of(0..size-1)``; the store keeps which offsets are taken and by whom."""

    def __init__(
        self,
        backend: Backend,
        key: str,
        size: int,
        value_of: Callable[[int], V],
        offset_of: Callable[[V], int | None],
        *,
        first: int = 0,
    ) -> None:
        self.backend = backend
        self.key = key
        self.size = size
        self.value_of = value_of
        self.offset_of = offset_of
        self.first = first
        self._lock = asyncio.Lock()

    async def _update(self, change: Callable[[_State], R]) -> R:
        """Read, change, compare-and-swap. Writers in this process take turns (a lock), so only other
        API servers on the store can make a swap fail; then it is read again and retried."""
        async with self._lock:
            return await self._swap(change)

    async def _swap(self, change: Callable[[_State], R]) -> R:
        for _ in range(64):
            kv = await self.backend.get(self.key)
            state = msgspec.json.decode(kv.value, type=_State) if kv else _State()
            result = change(state)
            value = msgspec.json.encode(state)
            try:
                if kv is None:
                    await self.backend.create(self.key, value)
                else:
                    await self.backend.update(self.key, value, kv.mod_revision)
                return result
            except (Conflict, KeyExists):
                continue
        raise Contention(f"{self.key}: too much contention")

    async def allocate(self, owner: str, wanted: V | None = None) -> V:
        """Take ``wanted`` (if free and in range) or the first free value, for ``owner``."""

        def change(state: _State) -> V:
            if wanted is not None:
                return self._take(state, owner, wanted)
            for taken, holder in state.allocated.items():
                if holder == owner:
                    return self.value_of(int(taken))
            return self._take_free(state, owner)

        return await self._update(change)

    async def allocate_many(self, owner: str, wanted: list[V | None]) -> list[V]:
        """One value per entry of ``wanted`` (that value, or a free one for None), in one swap: all
        or none. Unlike ``allocate`` it never reuses what ``owner`` already holds."""

        def change(state: _State) -> list[V]:
            out: list[V] = []
            for i, want in enumerate(wanted):
                try:
                    out.append(
                        self._take_free(state, owner) if want is None else self._take(state, owner, want)
                    )
                except AllocationError as exc:
                    exc.index = i
                    raise
            return out

        if not wanted:
            return []
        return await self._update(change)

    def _take(self, state: _State, owner: str, wanted: V) -> V:
        offset = self.offset_of(wanted)
        if offset is None or not 0 <= offset < self.size:
            raise NotInRange(f"{wanted} is not in the range")
        holder = state.allocated.get(str(offset))
        if holder is not None and holder != owner:
            raise AlreadyAllocated(f"{wanted} is already allocated")
        state.allocated[str(offset)] = owner
        return wanted

    def _take_free(self, state: _State, owner: str) -> V:
        for offset in range(self.first, self.size):
            if str(offset) not in state.allocated:
                state.allocated[str(offset)] = owner
                return self.value_of(offset)
        raise RangeFull("the range is full")

    async def release(self, value: V, owner: str | None = None) -> None:
        await self.release_many([value], owner)

    async def release_many(self, values: Iterable[V], owner: str | None = None) -> None:
        """Free ``values`` (those ``owner`` holds, when given) in one swap."""
        offsets = [o for v in values if (o := self.offset_of(v)) is not None]
        if not offsets:
            return

        def change(state: _State) -> None:
            for offset in offsets:
                if owner is None or state.allocated.get(str(offset)) == owner:
                    state.allocated.pop(str(offset), None)

        await self._update(change)

    async def repair(self, live: Iterable[tuple[V, str]]) -> None:
        """Make the record match what exists: drop leaked offsets, re-add live ones (after a crash)."""
        wanted = {
            str(o): owner for v, owner in live if (o := self.offset_of(v)) is not None and 0 <= o < self.size
        }

        def change(state: _State) -> None:
            state.allocated = wanted

        await self._update(change)

    async def allocated(self) -> dict[V, str]:
        kv = await self.backend.get(self.key)
        state = msgspec.json.decode(kv.value, type=_State) if kv else _State()
        return {self.value_of(int(o)): owner for o, owner in state.allocated.items()}


def pod_cidr_allocator(backend: Backend, cluster_cidr: str, node_prefix: int = 24) -> RangeAllocator[str]:
    """One /``node_prefix`` subnet of ``cluster_cidr`` per node."""
    network = ipaddress.ip_network(cluster_cidr)
    if node_prefix < network.prefixlen:
        raise ValueError(f"node CIDR size /{node_prefix} is larger than the cluster CIDR {cluster_cidr}")
    step = 1 << (network.max_prefixlen - node_prefix)
    size = 1 << (node_prefix - network.prefixlen)
    base = int(network.network_address)

    def value_of(offset: int) -> str:
        return str(ipaddress.ip_network((base + offset * step, node_prefix)))

    def offset_of(cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            return None
        if net.prefixlen != node_prefix or not net.subnet_of(network):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - base) // step

    return RangeAllocator(backend, "/registry/ranges/podcidrs", size, value_of, offset_of)


def service_ip_allocator(backend: Backend, service_cidr: str) -> RangeAllocator[str]:
    """Cluster IPs: every address of ``service_cidr`` but the network and broadcast addresses. Offset 0
    (the first usable address, 10.254.0.1 by default) is never handed out automatically: it is the
    ``kubernetes`` Service's."""
    network = ipaddress.ip_network(service_cidr)
    if network.version != 4:
        raise ValueError(f"the service cluster IP range {service_cidr} must be IPv4")
    size = network.num_addresses - 2
    if size < 2:
        raise ValueError(f"the service cluster IP range {service_cidr} is too small")
    base = int(network.network_address) + 1

    def value_of(offset: int) -> str:
        return str(ipaddress.IPv4Address(base + offset))

    def offset_of(ip: str) -> int | None:
        try:
            return int(ipaddress.IPv4Address(ip)) - base
        except ValueError:
            return None

    return RangeAllocator(backend, "/registry/ranges/serviceips", size, value_of, offset_of, first=1)


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-32767"`` (or one port) → (first, last), both included."""
    low, _, high = text.partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise ValueError(f'invalid port range "{text}": want "FIRST-LAST"') from None
    if not 0 < first <= last <= 65535:
        raise ValueError(f'invalid port range "{text}"')
    return first, last


def node_port_allocator(backend: Backend, port_range: str) -> RangeAllocator[int]:
    """Node ports from ``port_range`` (both ends included)."""
    first, last = parse_port_range(port_range)

    def offset_of(port: int) -> int | None:
        return port - first if isinstance(port, int) else None

    return RangeAllocator(
        backend, "/registry/ranges/servicenodeports", last - first + 1, lambda o: first + o, offset_of
    )
