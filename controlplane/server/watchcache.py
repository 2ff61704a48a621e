"""The watch cache: one store watch per process, decoded once, fanned out to every HTTP watcher.

Concurrency model. A single task reads the store's event stream for ``/registry/``, decodes each change
once into a :class:`Change`, appends it to a bounded in-memory ring and offers the batch to every
subscriber's bounded queue: filtered once per watched prefix, the same list for every subscriber of
that prefix (and each change's frame is encoded once, by the first stream that sends it). A
subscriber whose queue is full is dropped (its stream ends; the client resumes or re-lists) so one slow
watcher can never grow this process's memory. The bound counts changes, not batches (a batch is one
store poll, up to a thousand changes): a watcher holds at most ``queue_size`` changes plus one batch,
and those are the very objects the ring holds. A watcher that stops reading stalls its response in
uvicorn's ``send`` (which waits for the socket to drain above the transport's high-water mark), so
what it pins beyond that is one chunk and the transport's buffer.

A new watch from revision R is served from the ring when the ring still holds everything after R:
replaying the ring and registering the subscriber happen with no ``await`` in between, so no event is
lost or doubled. An older R that the store still has falls back to a dedicated store watch; an R the
store has compacted away is an ``Expired`` (410) error.
"""

from __future__ import annotations

import asyncio
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
    encoded: bytes | None = field(default=None, repr=False)  # the object's JSON, set by the first stream
    framed: bytes | None = field(default=None, repr=False)  # the whole watch frame of ``type``, likewise

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
    """What one watcher iterates: batches of changes under a prefix, after a revision.

    The pending batches are a plain deque with one waiter future, not an ``asyncio.Queue``: a delivery
    is an append and, when the watcher is idle, one ``set_result``. The wait's timer is armed per
    deadline, not per batch, so a busy stream does not push and cancel a timer for every event."""

    def __init__(self, cache: WatchCache | None, prefix: str, after: int, queue_size: int) -> None:
        self._cache = cache
        self.prefix = prefix
        self.after = after
        self.queue_size = queue_size
        self._pending: deque[list[Change]] = deque()
        self._queued = 0  # changes in _pending
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = -1.0
        self.dropped = False

    def idle(self) -> bool:
        """True when nothing is waiting to be handed to the watcher."""
        return not self._pending

    def offer(self, batch: list[Change]) -> bool:
        """Queue the matching part of a batch; False when the queue is full (the caller drops us)."""
        mine = [c for c in batch if c.revision > self.after and c.key.startswith(self.prefix)]
        return self.offer_matching(mine) if mine else True

    def offer_matching(self, mine: list[Change]) -> bool:
        """Queue changes already known to be under our prefix (shared, never modified), skipping any
        at or before the revision we have; False when the queue is full."""
        if mine[0].revision <= self.after:
            mine = [c for c in mine if c.revision > self.after]
            if not mine:
                return True
        if self._queued >= self.queue_size:  # an empty queue takes any batch, so a replay always fits
            return False
        self._pending.append(mine)
        self._queued += len(mine)
        self.after = mine[-1].revision
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drop(self) -> None:
        self.dropped = True
        self._wake()

    async def next_batch(self, timeout: float | None = None) -> list[Change]:
        """The next batch; [] on timeout; WatchClosed when this subscriber was dropped."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        return await self.next_batch_until(deadline)

    async def next_batch_until(self, deadline: float | None) -> list[Change]:
        """Everything pending, waiting until the loop's clock reaches ``deadline`` for something to
        arrive ([] then); WatchClosed once this subscriber was dropped and its backlog handed out."""
        if not self._pending:
            if self.dropped:
                raise WatchClosed("watch dropped: it could not keep up")
            loop = asyncio.get_running_loop()
            if deadline is not None and deadline <= loop.time():
                return []
            self._arm(loop, deadline)
            self._waiter = waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if not self._pending:
                if self.dropped:
                    raise WatchClosed("watch dropped: it could not keep up")
                return []
        self._queued = 0
        if len(self._pending) == 1:
            return self._pending.popleft()
        batch = [c for b in self._pending for c in b]
        self._pending.clear()
        return batch

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> None:
        """Make sure a timer wakes the waiter at ``deadline``; kept across batches while it holds."""
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = -1.0
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._expire)
            self._timer_at = deadline

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = -1.0
        self._wake()

    def delivered_revision(self) -> int:
        """With nothing pending, every change up to this revision has been handed to the watcher."""
        return self._cache.revision if self._cache is not None else self.after

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._cache is not None:
            self._cache.unsubscribe(self)


class _StoreSubscription(Subscription):
    """A watch from a revision older than the ring: its own store watch, decoded per watcher."""

    def __init__(self, backend: Backend, prefix: str, after: int, queue_size: int) -> None:
        super().__init__(None, prefix, after, queue_size)
        self._watch: Watch = backend.watch(prefix, after)
        self._iter: AsyncIterator[list[StoreEvent]] = self._watch.__aiter__()
        self._next: asyncio.Task[list[StoreEvent]] | None = None

    async def next_batch_until(self, deadline: float | None) -> list[Change]:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = asyncio.ensure_future(self._iter.__anext__())
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, _ = await asyncio.wait({self._next}, timeout=timeout)
        if not done:
            return []
        task, self._next = self._next, None
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
        if self._next is not None:
            self._next.cancel()
        await self._watch.close()


class WatchCache:
    def __init__(self, backend: Backend, *, capacity: int = 10_000, queue_size: int = 1_000) -> None:
        self.backend = backend
        self.capacity = capacity
        self.queue_size = queue_size
        self.revision = 0
        self._covered_from = 0  # the ring holds every change with revision > this
        self._ring: deque[Change] = deque()
        # Subscribers by prefix, in subscription order: a batch is filtered once per prefix, and the
        # same list of changes is queued for every watcher of that prefix.
        self._by_prefix: dict[str, dict[Subscription, None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self.revision = self._covered_from = await self.backend.current_revision()
        self._task = asyncio.create_task(self._run(), name="watch-cache")

    async def close(self) -> None:
        await cancel(self._task)
        self._drop_all()

    def subscribe(self, prefix: str, after: int) -> Subscription:
        """Subscribe to changes under ``prefix`` with revision > ``after``."""
        if after < self._covered_from:
            return _StoreSubscription(self.backend, prefix, after, self.queue_size)
        sub = Subscription(self, prefix, after, self.queue_size)
        backlog = [c for c in self._ring if c.revision > after and c.key.startswith(prefix)]
        if backlog and not sub.offer(backlog):
            return _StoreSubscription(self.backend, prefix, after, self.queue_size)
        self._by_prefix.setdefault(prefix, {})[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        group = self._by_prefix.get(sub.prefix)
        if group is not None:
            group.pop(sub, None)
            if not group:
                del self._by_prefix[sub.prefix]

    def subscribed(self, sub: Subscription) -> bool:
        """Whether ``sub`` still receives changes (False once dropped or closed)."""
        return sub in self._by_prefix.get(sub.prefix, ())

    def _drop_all(self) -> None:
        for group in self._by_prefix.values():
            for sub in group:
                sub.drop()
        self._by_prefix.clear()

    def _publish(self, batch: list[Change]) -> None:
        for change in batch:
            self._ring.append(change)
        while len(self._ring) > self.capacity:
            self._covered_from = self._ring.popleft().revision
        self.revision = batch[-1].revision
        for prefix, group in list(self._by_prefix.items()):
            mine = [c for c in batch if c.key.startswith(prefix)]
            if not mine:
                continue
            full = [sub for sub in group if not sub.offer_matching(mine)]
            for sub in full:
                log.info("dropping a watcher on %s: its queue is full", prefix)
                self.unsubscribe(sub)
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
        self._drop_all()
        self._ring.clear()
        self.revision = self._covered_from = revision
