"""Informer: list-then-watch into a local cache, with resume and re-list, kopf/client-go style.

Concurrency model: one task per informer runs the loop list → watch from the list's resourceVersion →
on a broken stream resume the watch from the last resourceVersion seen → on 410 Gone re-list and
reconcile the cache (emitting the adds, updates and deletes the watch missed). Handlers are plain
callables run inline on the informer's task; they should only enqueue keys (the controller pattern),
never block, and never change the objects they are given (other handlers and the cache share them).

Sharing (client-go's SharedInformerFactory): several components of one process may use one informer
through :class:`SharedInformerFactory`, so all of them cost one watch stream and one cached copy of each
object. Each user calls ``start()`` and ``stop()`` once: the informer runs while any user has it started.
:class:`InformerUse` does that bookkeeping for a component, and gives a component that subscribes to an
informer which has listed already an add for each cached object, so a late user sees the same world as
an early one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from controlplane.api.meta import TopLevel
from controlplane.tasks import cancel

from .client import Client
from .errors import ApiError, Gone, TransportError

log = logging.getLogger(__name__)

T = TypeVar("T", bound=TopLevel)

AddHandler = Callable[[T], None]
UpdateHandler = Callable[[T, T], None]
DeleteHandler = Callable[[T], None]


def key_of(obj: TopLevel) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects): the work-queue key. Interned: the
    caches, indexes and queues of every user of a shared informer then hold one copy of each key."""
    m = obj.metadata  # type: ignore[attr-defined]
    return sys.intern(f"{m.namespace}/{m.name}" if m.namespace else str(m.name))


class Informer(Generic[T]):
    def __init__(
        self,
        client: Client,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        self.client = client
        self.cls = cls
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.retry_delay = retry_delay
        self.cache: dict[str, T] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self._on_add: list[AddHandler[T]] = []
        self._on_update: list[UpdateHandler[T]] = []
        self._on_delete: list[DeleteHandler[T]] = []
        self._task: asyncio.Task[None] | None = None
        self._owned: dict[int, list[Callable[..., None]]] = {}
        self._users = 0
        self.relists = 0

    def on_add(self, fn: AddHandler[T], *, owner: object = None) -> None:
        """Called for each object that appears. ``owner`` tags the handler so :meth:`replay` and
        :meth:`remove_handlers` can find all of one user's."""
        self._on_add.append(fn)
        self._tag(fn, owner)

    def on_update(self, fn: UpdateHandler[T], *, owner: object = None) -> None:
        self._on_update.append(fn)
        self._tag(fn, owner)

    def on_delete(self, fn: DeleteHandler[T], *, owner: object = None) -> None:
        self._on_delete.append(fn)
        self._tag(fn, owner)

    def _tag(self, fn: Callable[..., None], owner: object) -> None:
        if owner is not None:
            self._owned.setdefault(id(owner), []).append(fn)

    def replay(self, owner: object) -> None:
        """Give ``owner``'s add handlers an add for each object cached already: a user that joins an
        informer which has listed sees the same world as one that was there from the start."""
        adds = [fn for fn in self._owned.get(id(owner), ()) if fn in self._on_add]
        for obj in list(self.cache.values()):
            for fn in adds:
                self._call(fn, obj)

    def remove_handlers(self, owner: object) -> None:
        """Take out every handler added with this ``owner`` (a user of a shared informer that stops)."""
        for fn in self._owned.pop(id(owner), []):
            for handlers in (self._on_add, self._on_update, self._on_delete):
                if fn in handlers:
                    handlers.remove(fn)

    def get(self, key: str) -> T | None:
        return self.cache.get(key)

    def items(self) -> list[T]:
        return list(self.cache.values())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Start the list-watch loop unless it runs already; each call counts one user for ``stop()``.
        Cancel the returned task only through ``stop()``: it may be another user's too."""
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.cls.__name__}")
        return self._task

    async def stop(self) -> None:
        """One user is done; the loop ends when the last one is (or at once if none ever started it)."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            task, self._task = self._task, None
            await cancel(task)

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def run(self) -> None:
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
            except Gone:
                log.info(
                    "%s: resourceVersion %s too old, re-listing", self.cls.__name__, self.resource_version
                )
                need_list = True
            except (TransportError, ApiError) as exc:
                log.warning("%s informer: %s; retrying", self.cls.__name__, exc)
                await asyncio.sleep(self.retry_delay)

    async def _relist(self) -> None:
        result = await self.client.list_all(
            self.cls, self.namespace, label_selector=self.label_selector, field_selector=self.field_selector
        )
        self.relists += 1
        fresh = {key_of(obj): obj for obj in result.items}
        for key, old in list(self.cache.items()):
            if key not in fresh:
                del self.cache[key]
                self._emit_delete(old)
        for key, obj in fresh.items():
            old_obj = self.cache.get(key)
            self.cache[key] = obj
            if old_obj is None:
                self._emit_add(obj)
            elif old_obj.metadata.resource_version != obj.metadata.resource_version:  # type: ignore[attr-defined]
                self._emit_update(old_obj, obj)
        self.resource_version = result.resource_version
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.client.watch(
            self.cls,
            self.namespace,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ):
            if event.resource_version:
                self.resource_version = event.resource_version
            if event.type == "BOOKMARK":
                continue
            obj = event.object
            key = key_of(obj)
            if event.type == "DELETED":
                old = self.cache.pop(key, None)
                self._emit_delete(old if old is not None else obj)
            elif event.type in ("ADDED", "MODIFIED"):
                old = self.cache.get(key)
                self.cache[key] = obj
                if old is None:
                    self._emit_add(obj)
                else:
                    self._emit_update(old, obj)
            else:
                log.warning("%s informer: unknown event type %r skipped", self.cls.__name__, event.type)

    def _emit_add(self, obj: T) -> None:
        for fn in self._on_add:
            self._call(fn, obj)

    def _emit_update(self, old: T, new: T) -> None:
        for fn in self._on_update:
            self._call(fn, old, new)

    def _emit_delete(self, obj: T) -> None:
        for fn in self._on_delete:
            self._call(fn, obj)

    def _call(self, fn: Callable[..., None], *args: T) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s informer handler failed", self.cls.__name__)


async def wait_synced(informers: Iterable[Informer[Any]], who: str) -> None:
    """Wait, however long it takes, until every informer has listed once: a controller that acted on
    partial caches would see a partial world (pods missing from Endpoints, nodes from a load balancer)."""
    for informer in informers:
        while True:
            try:
                await informer.wait_synced()
                break
            except TimeoutError:
                log.warning("%s: the %s cache has not synced yet; still waiting", who, informer.cls.__name__)


class InformerUse:
    """The informers one component uses, its own or shared, and its handlers on them.

    ``subscribe`` adds the component's handlers (with ``owner=`` the component); it runs at once, so a
    component's informers can be started by hand before the component is (tests do), and again when a
    stopped component starts anew. ``stop()`` takes the handlers out and stops the informers this
    component started (a shared one keeps running for its other users) or, if they are its own, the
    informers however they were started.
    """

    def __init__(
        self,
        owner: object,
        informers: Iterable[Informer[Any]],
        subscribe: Callable[[], None],
        *,
        private: bool,
    ) -> None:
        self.owner = owner
        self.informers = list(informers)
        self._subscribe = subscribe
        self.private = private
        self.started = False
        self.subscribed = False
        self._join()

    def _join(self) -> None:
        """Add the handlers; an informer that holds objects already (shared, listed) replays them."""
        self._subscribe()
        self.subscribed = True
        for informer in self.informers:
            informer.replay(self.owner)

    def start(self) -> None:
        if not self.subscribed:
            self._join()
        for informer in self.informers:
            informer.start()
        self.started = True

    async def stop(self) -> None:
        if self.subscribed:
            for informer in self.informers:
                informer.remove_handlers(self.owner)
            self.subscribed = False
        if self.started or self.private:
            for informer in self.informers:
                await informer.stop()
        self.started = False


InformerKey = tuple[type[Any], str | None, str | None, str | None]


class SharedInformerFactory:
    """One :class:`Informer` per (kind, namespace, selectors) for every component of a process that asks,
    so the controllers (and the scheduler) of one control plane hold one copy of each pod, not one each,
    and the API server sends each change once (client-go's SharedInformerFactory).

    Users start and stop what they get themselves (``Informer.start``/``stop`` count users), add their
    handlers with ``owner=`` themselves and take them out with ``Informer.remove_handlers`` on stopping.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[InformerKey, Informer[Any]] = {}

    def informer(
        self,
        cls: type[T],
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Informer[T]:
        key: InformerKey = (cls, namespace, label_selector, field_selector)
        found = self._informers.get(key)
        if found is None:
            found = Informer(
                self.client, cls, namespace, label_selector=label_selector, field_selector=field_selector
            )
            self._informers[key] = found
        return found

    def informers(self) -> list[Informer[Any]]:
        return list(self._informers.values())

    def has(self, cls: type[Any], namespace: str | None = None) -> bool:
        """Whether some user already asked for ``cls`` (unfiltered) here."""
        return (cls, namespace, None, None) in self._informers
