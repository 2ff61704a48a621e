"""Informer: list-then-watch into a local cache, with resume and re-list, kopf/client-go style.

Concurrency model: one task per informer runs the loop list → watch from the list's resourceVersion →
on a broken stream resume the watch from the last resourceVersion seen → on 410 Gone re-list and
reconcile the cache (emitting the adds, updates and deletes the watch missed). Handlers are plain
callables run inline on the informer's task; they should only enqueue keys (the controller pattern),
never block.
"""

from __future__ import annotations

import asyncio
import logging
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
    """``namespace/name`` (or ``name`` for cluster-scoped objects): the work-queue key."""
    m = obj.metadata  # type: ignore[attr-defined]
    return f"{m.namespace}/{m.name}" if m.namespace else str(m.name)


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
        self.relists = 0

    def on_add(self, fn: AddHandler[T]) -> None:
        self._on_add.append(fn)

    def on_update(self, fn: UpdateHandler[T]) -> None:
        self._on_update.append(fn)

    def on_delete(self, fn: DeleteHandler[T]) -> None:
        self._on_delete.append(fn)

    def get(self, key: str) -> T | None:
        return self.cache.get(key)

    def items(self) -> list[T]:
        return list(self.cache.values())

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"informer-{self.cls.__name__}")
        return self._task

    async def stop(self) -> None:
        await cancel(self._task)

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
