"""The watch cache: one store watch per process, decoded once, fanned out to every HTTP watcher.

Concurrency model. A single task reads the store's event stream for ``/registry/``, decodes each change
once into a :class:`Change`, appends it to a bounded in-memory ring and offers the batch to every
subscriber's bounded queue. A subscriber whose queue is full is dropped (its stream ends; the client
resumes or re-lists) so one slow watcher can never grow this process's memory.

A new watch from revision R is served from the ring when the ring still holds everything after R:
replaying the ring and registering the subscriber happen with no ``await`` in between, so no event is
lost or doubled. An older R that the store still has falls back to a dedicated store watch; an R the
store has compacted away is an ``Expired`` (410) error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from controlplane.api.meta import TopLevel
from controlplane.api.registry import ResourceInfo
from controlplane.store import Backend, Compacted, KeyValue, StoreEvent, Watch, WatchClosed
from controlplane.tasks import cancel

from . import errors
from .storage import decode, info_for_key

log = logging.getLogger(__name__)

_TYPES = {"create": "ADDED", "update": "MODIFIED", "delete": "DELETED"}


@dataclass(slots=True)
class Change:
    """One decoded change of one object."""

    revision: int
    key: str
    info: ResourceInfo
    type: str
    obj: TopLevel
    prev_kv: KeyValue | None
    _prev: TopLevel | None = field(default=None, repr=False)
    encoded: bytes | None = field(default=None, repr=False)

    @property
    def prev(self) -> TopLevel | None:
        """The object before the change, decoded on first use (only filtered watches need it)."""
        if self._prev is None and self.prev_kv is not None:
            self._prev = decode(self.info, self.prev_kv)
        return self._prev


def to_change(event: StoreEvent) -> Change | None:
    info = info_for_key(event.kv.key)
    if info is None:
        return None
    return Change(
        revision=event.revision,
        key=event.kv.key,
        info=info,
        type=_TYPES[event.type],
        obj=decode(info, event.kv),
        prev_kv=event.prev,
    )


class Subscription:
    """What one watcher iterates: batches of changes under a prefix, after a revision."""

    def __init__(self, cache: WatchCache | None, prefix: str, after: int, queue_size: int) -> None:
        self._cache = cache
        self.prefix = prefix
        self.after = after
        self.queue: asyncio.Queue[list[Change] | None] = asyncio.Queue(queue_size)
        self.dropped = False

    def offer(self, batch: list[Change]) -> bool:
        """Queue the matching part of a batch; False when the queue is full (the caller drops us)."""
        mine = [c for c in batch if c.revision > self.after and c.key.startswith(self.prefix)]
        if not mine:
            return True
        try:
            self.queue.put_nowait(mine)
        except asyncio.QueueFull:
            return False
        self.after = mine[-1].revision
        return True

    def drop(self) -> None:
        self.dropped = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def next_batch(self, timeout: float | None = None) -> list[Change]:
        """The next batch; [] on timeout; WatchClosed when this subscriber was dropped."""
        if self.dropped and self.queue.empty():
            raise WatchClosed("watch dropped")
        if self.queue.empty():
            try:
                async with asyncio.timeout(timeout):
                    batch = await self.queue.get()
            except TimeoutError:
                return []
        else:
            batch = self.queue.get_nowait()
        if batch is None:
            raise WatchClosed("watch dropped: it could not keep up")
        return batch

    def delivered_revision(self) -> int:
        """With an empty queue, every change up to this revision has been handed to the watcher."""
        return self._cache.revision if self._cache is not None else self.after

    async def close(self) -> None:
        if self._cache is not None:
            self._cache.unsubscribe(self)


class _StoreSubscription(Subscription):
    """A watch from a revision older than the ring: its own store watch, decoded per watcher."""

    def __init__(self, backend: Backend, prefix: str, after: int, queue_size: int) -> None:
        super().__init__(None, prefix, after, queue_size)
        self._watch: Watch = backend.watch(prefix, after)
        self._iter: AsyncIterator[list[StoreEvent]] = self._watch.__aiter__()
        self._pending: asyncio.Task[list[StoreEvent]] | None = None

    async def next_batch(self, timeout: float | None = None) -> list[Change]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._iter.__anext__())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return []
        task, self._pending = self._pending, None
        try:
            events = task.result()
        except StopAsyncIteration:
            raise WatchClosed("store watch ended") from None
        except Compacted as exc:
            raise errors.expired(exc.requested, exc.compacted + 1) from None
        if events:
            self.after = events[-1].revision
        return [c for c in map(to_change, events) if c is not None]

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        await self._watch.close()


class WatchCache:
    def __init__(self, backend: Backend, *, capacity: int = 10_000, queue_size: int = 1_000) -> None:
        self.backend = backend
        self.capacity = capacity
        self.queue_size = queue_size
        self.revision = 0
        self._covered_from = 0  # the ring holds every change with revision > this
        self._ring: deque[Change] = deque()
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self.revision = self._covered_from = await self.backend.current_revision()
        self._task = asyncio.create_task(self._run(), name="watch-cache")

    async def close(self) -> None:
        await cancel(self._task)
        for sub in list(self._subscribers):
            sub.drop()
        self._subscribers.clear()

    def subscribe(self, prefix: str, after: int) -> Subscription:
        """Subscribe to changes under ``prefix`` with revision > ``after``."""
        if after < self._covered_from:
            return _StoreSubscription(self.backend, prefix, after, self.queue_size)
        sub = Subscription(self, prefix, after, self.queue_size)
        backlog = [c for c in self._ring if c.revision > after and c.key.startswith(prefix)]
        if backlog and not sub.offer(backlog):
            return _StoreSubscription(self.backend, prefix, after, self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def _publish(self, batch: list[Change]) -> None:
        for change in batch:
            self._ring.append(change)
        while len(self._ring) > self.capacity:
            self._covered_from = self._ring.popleft().revision
        self.revision = batch[-1].revision
        for sub in list(self._subscribers):
            if not sub.offer(batch):
                log.info("dropping a watcher on %s: its queue is full", sub.prefix)
                self._subscribers.discard(sub)
                sub.drop()

    async def _run(self) -> None:
        while True:
            watch = self.backend.watch("/registry/", self.revision)
            try:
                async for events in watch:
                    batch = [c for c in map(to_change, events) if c is not None]
                    if batch:
                        self._publish(batch)
            except WatchClosed:
                log.warning("watch cache fell behind the store; resuming from %d", self.revision)
            except Compacted:
                log.warning("watch cache lost history; every watcher must re-list")
                self._reset(await self.backend.current_revision())
            finally:
                await watch.close()
            await asyncio.sleep(0.05)

    def _reset(self, revision: int) -> None:
        for sub in list(self._subscribers):
            sub.drop()
        self._subscribers.clear()
        self._ring.clear()
        self.revision = self._covered_from = revision
