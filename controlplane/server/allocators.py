"""Allocators whose state lives in the store: node pod CIDRs now, service IPs and node ports later.

Each allocator is one key holding ``{"allocated": {"<offset>": "<owner>"}}``, changed only by
compare-and-swap, so several API servers sharing a store never hand out the same value twice.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import msgspec

from controlplane.store import Backend, Conflict, KeyExists

V = TypeVar("V")


class AllocationError(Exception):
    """The range is full, or the requested value is taken or outside the range."""


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

    async def _update(self, change: Callable[[_State], V]) -> V:
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
        raise AllocationError(f"{self.key}: too much contention")

    async def allocate(self, owner: str, wanted: V | None = None) -> V:
        """Take ``wanted`` (if free and in range) or the first free value, for ``owner``."""

        def change(state: _State) -> V:
            if wanted is not None:
                offset = self.offset_of(wanted)
                if offset is None or not 0 <= offset < self.size:
                    raise AllocationError(f"{wanted} is not in the range")
                holder = state.allocated.get(str(offset))
                if holder is not None and holder != owner:
                    raise AllocationError(f"{wanted} is already allocated")
                state.allocated[str(offset)] = owner
                return wanted
            for taken, holder in state.allocated.items():
                if holder == owner:
                    return self.value_of(int(taken))
            for offset in range(self.first, self.size):
                if str(offset) not in state.allocated:
                    state.allocated[str(offset)] = owner
                    return self.value_of(offset)
            raise AllocationError("the range is full")

        return await self._update(change)

    async def release(self, value: V, owner: str | None = None) -> None:
        offset = self.offset_of(value)
        if offset is None:
            return

        def change(state: _State) -> V:
            if owner is None or state.allocated.get(str(offset)) == owner:
                state.allocated.pop(str(offset), None)
            return value

        await self._update(change)

    async def repair(self, live: Iterable[tuple[V, str]]) -> None:
        """Make the record match what exists: drop leaked offsets, re-add live ones (after a crash)."""
        wanted = {str(o): owner for v, owner in live if (o := self.offset_of(v)) is not None}

        def change(state: _State) -> V:
            state.allocated = wanted
            return self.value_of(0)

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
