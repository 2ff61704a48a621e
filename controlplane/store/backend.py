"""The storage contract, kine-style: etcd semantics in a dozen methods.

Every write returns the new global revision; update and delete take the revision the caller last saw
(compare-and-swap). The revision of a key's latest write is its ``metadata.resourceVersion``. History is
kept so that a watch can start from any revision that has not been compacted away; starting from a
compacted one raises :class:`Compacted` (the API server's HTTP 410 Gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


class StoreError(Exception):
    """Base of the store's errors."""


class KeyExists(StoreError):
    """create() of a key that exists."""


class KeyNotFound(StoreError):
    """update()/delete()/get() of a key that does not exist."""


class Conflict(StoreError):
    """update()/delete() whose expected revision is not the key's current revision."""

    def __init__(self, key: str, current: KeyValue | None) -> None:
        super().__init__(key)
        self.current = current


class StorageFull(StoreError):
    """A write refused because the disk (or the database's size limit) is full. Nothing of it was
    stored, the store stays usable, and the same write succeeds once space returns."""


class WatchClosed(StoreError):
    """Raised from a watch's iteration when the store dropped it (its subscriber could not keep up,
    or the store is closing). The watcher re-lists."""


class Compacted(StoreError):
    """A read or watch at a revision older than the compacted revision."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} is compacted (oldest available {compacted + 1})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One change. ``prev`` is the value before the change (None for a create); for a delete ``kv``
    carries the last value with the deletion's revision as ``mod_revision``."""

    type: Literal["create", "update", "delete"]
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class Watch(Protocol):
    """A subscription: iterate batches of events in revision order; close() to stop."""

    def __aiter__(self) -> AsyncIterator[list[StoreEvent]]: ...

    async def close(self) -> None: ...


class Backend(Protocol):
    async def start(self) -> None:
        """Open the store and start background work (the poller, compaction)."""

    async def close(self) -> None: ...

    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def create(self, key: str, value: bytes) -> int:
        """Create ``key``; raises KeyExists. Returns the new revision."""

    async def update(self, key: str, value: bytes, expected_revision: int) -> int:
        """Replace ``key`` if its mod_revision is ``expected_revision``; raises KeyNotFound or Conflict."""

    async def delete(self, key: str, expected_revision: int = 0) -> int:
        """Delete ``key`` (if ``expected_revision`` is non-zero, only at that revision); raises
        KeyNotFound or Conflict. Returns the deletion's revision."""

    async def list(
        self, prefix: str, revision: int = 0, start_key: str = "", limit: int = 0
    ) -> tuple[int, list[KeyValue], bool]:
        """Live keys under ``prefix`` as of ``revision`` (0: now), sorted by key, from ``start_key``
        (inclusive), at most ``limit`` (0: all). Returns (the revision read at, items, more)."""

    async def count(self, prefix: str) -> int: ...

    def watch(self, prefix: str, revision: int) -> Watch:
        """Events under ``prefix`` with revision > ``revision``, history first, then live. The first
        iteration raises Compacted if ``revision`` is older than the compacted revision."""

    async def compact(self, revision: int) -> int:
        """Drop history at or below ``revision`` that no live key needs. Returns rows removed."""
