"""The garbage collector: deletes objects whose owners are gone, and carries out the ``orphan`` and
``foregroundDeletion`` finalizers the API server puts on objects deleted with those propagation policies.

Concurrency model (kube-controller-manager's garbagecollector, in asyncio): one informer per kind that
can own or depend on something (every kind but Events) feeds a dependency graph held here — per object
only its identity, its owner references, whether it is being deleted and its GC finalizers (the
informers' own caches are slimmed down to that as well). Informer handlers update the graph and enqueue
keys, nothing more. One WorkQueue of ``Kind|namespace|name|uid`` keys and ``settings.workers`` workers
run a level-based ``sync(key)``:

* an object being deleted with ``orphan``: remove its ownerReference from every dependent, then the
  finalizer (the API server then removes the object);
* being deleted with ``foregroundDeletion``: delete its dependents (Foreground again for those that have
  dependents of their own), and remove the finalizer once no dependent with ``blockOwnerDeletion``
  remains;
* otherwise, an object with owners (attemptToDelete): each owner is looked up with a live GET (404 or a
  different uid: absent), never from the graph alone. With no owner left it is deleted (guarded by
  its uid); with some owners alive, the references to absent owners are patched out.

Which dependents an owner has comes from the graph for enqueueing, but the orphan and foreground steps
re-list the candidates from the API server before removing a finalizer: informers of different kinds
are not ordered with each other, and a dependent created just before its owner's deletion must not be
missed. Every write is guarded (merge patches carry the resourceVersion read, deletes the uid), so a
concurrent change is a Conflict and the key is retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from controlplane.api.meta import FOREGROUND_FINALIZER as FOREGROUND
from controlplane.api.meta import ORPHAN_FINALIZER as ORPHAN
from controlplane.api.meta import ObjectMeta, OwnerReference, TopLevel
from controlplane.api.registry import RESOURCES, ResourceInfo, by_kind
from controlplane.client import Client, Conflict, Informer, NotFound
from controlplane.client.informer import InformerUse, SharedInformerFactory
from controlplane.tasks import cancel

from .workqueue import WorkQueue, run_workers

if TYPE_CHECKING:
    from .manager import ControllerSettings

log = logging.getLogger(__name__)

_SKIPPED_KINDS = frozenset({"Event"})
_ATTEMPTS = 5


def _meta(obj: TopLevel) -> ObjectMeta:
    return obj.metadata  # type: ignore[attr-defined]


def _key(kind: str, namespace: str | None, name: str, uid: str) -> str:
    return f"{kind}|{namespace or ''}|{name}|{uid}"


def _parse(key: str) -> tuple[str, str | None, str, str]:
    kind, namespace, name, uid = key.split("|", 3)
    return kind, namespace or None, name, uid


_NO_FINALIZERS: frozenset[str] = frozenset()


def _gc_finalizers(finalizers: list[str] | None) -> frozenset[str]:
    """The collector's finalizers among ``finalizers``; almost always none, and then one shared empty set
    (a fresh empty frozenset is 216 bytes, for each of the graph's tens of thousands of nodes)."""
    found = [f for f in finalizers or () if f in (ORPHAN, FOREGROUND)]
    return frozenset(found) if found else _NO_FINALIZERS


@dataclass(frozen=True, slots=True)
class _Node:
    """What the graph keeps of one object."""

    key: str
    owners: tuple[tuple[str, bool], ...]  # (owner uid, blockOwnerDeletion)
    deleting: bool
    gc_finalizers: frozenset[str]

    @property
    def owner_uids(self) -> set[str]:
        return {uid for uid, _ in self.owners}


class _SlimCache(dict[str, Any]):
    """An informer cache that keeps only the metadata the collector uses, so watching every pod
    costs little memory (Kubernetes' GC uses metadata-only informers for the same reason)."""

    def __setitem__(self, key: str, obj: Any) -> None:
        m = _meta(obj)
        slim = ObjectMeta(
            name=m.name,
            namespace=m.namespace,
            uid=m.uid,
            resource_version=m.resource_version,
            deletion_timestamp=m.deletion_timestamp,
            owner_references=m.owner_references,
            finalizers=m.finalizers,
        )
        super().__setitem__(key, type(obj)(metadata=slim))


def _owner_info(ref: OwnerReference) -> ResourceInfo | None:
    """The resource an ownerReference points at, if this server serves it (same kind and group)."""
    info = by_kind(ref.kind)
    group = ref.api_version.split("/", 1)[0] if "/" in ref.api_version else ""
    if info is None or info.group != group:
        return None
    return info


class GarbageCollector:
    def __init__(
        self,
        client: Client,
        settings: ControllerSettings,
        *,
        recheck: float = 2.0,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        #: How often an owner waiting for its blocking dependents is looked at again (events normally
        #: bring it back sooner).
        self.recheck = recheck
        self.queue = WorkQueue()
        self.nodes: dict[str, _Node] = {}  # uid → node
        self.dependents: dict[str, set[str]] = {}  # owner uid → dependent keys
        self.informers: list[Informer[Any]] = []
        #: One per kind: its handlers; its own slim informer is stopped however it was started, a shared
        #: one only if the collector started it.
        self._uses: list[InformerUse] = []
        for info in RESOURCES:
            if info.kind in _SKIPPED_KINDS:
                continue
            shared = informers is not None and informers.has(info.type)
            if informers is not None and shared:
                # Another controller caches this kind in full already: one more handler costs nothing.
                informer: Informer[Any] = informers.informer(info.type)
            else:
                informer = Informer(client, info.type)
                informer.cache = _SlimCache()
            self.informers.append(informer)
            self._uses.append(
                InformerUse(self, (informer,), self._subscriber(informer, info), private=not shared)
            )
        self._tasks: list[asyncio.Task[None]] = []

    def _subscriber(self, informer: Informer[Any], info: ResourceInfo) -> Callable[[], None]:
        return lambda: self._handle(informer, info)

    def _handle(self, informer: Informer[Any], info: ResourceInfo) -> None:
        def added(obj: TopLevel) -> None:
            self._observe(info, obj)

        def updated(_old: TopLevel, new: TopLevel) -> None:
            self._observe(info, new)

        def deleted(obj: TopLevel) -> None:
            self._forget(info, obj)

        informer.on_add(added, owner=self)
        informer.on_update(updated, owner=self)
        informer.on_delete(deleted, owner=self)

    async def start(self) -> None:
        for use in self._uses:
            use.start()
        self._tasks.append(asyncio.create_task(self._run(), name="garbagecollector"))

    async def _run(self) -> None:
        # Like kube-controller-manager, act only once every kind has been listed: the graph then knows
        # which objects have dependents. Owners are still verified live before anything is deleted.
        await asyncio.gather(*(i.synced.wait() for i in self.informers))
        await run_workers(self.queue, self.sync, self.settings.workers, "garbagecollector")

    async def stop(self) -> None:
        self.queue.shutdown()
        await cancel(self._tasks)
        self._tasks.clear()
        for use in self._uses:
            await use.stop()

    # --- the graph (informer handlers: update it and enqueue, never block) -----------------------

    def _observe(self, info: ResourceInfo, obj: TopLevel) -> None:
        m = _meta(obj)
        if not m.uid:
            return
        node = _Node(
            key=_key(info.kind, m.namespace, m.name or "", m.uid),
            owners=tuple((r.uid, bool(r.block_owner_deletion)) for r in m.owner_references or ()),
            deleting=m.deletion_timestamp is not None,
            gc_finalizers=_gc_finalizers(m.finalizers),
        )
        old = self.nodes.get(m.uid)
        self.nodes[m.uid] = node
        old_owners = old.owner_uids if old is not None else set()
        for uid in old_owners - node.owner_uids:
            self._unindex(uid, node.key)
        for uid in node.owner_uids - old_owners:
            self.dependents.setdefault(uid, set()).add(node.key)
        if any(self._unsure(uid) for uid in node.owner_uids - old_owners):
            # An owner not (or no longer) seen alive: are its owners still there? An owner the graph
            # knows needs no check now: its deletion enqueues this dependent again (_forget).
            self.queue.add(node.key)
        if (
            node.deleting
            and node.gc_finalizers
            and (old is None or not old.deleting or old.gc_finalizers != node.gc_finalizers)
        ):
            self.queue.add(node.key)  # an owner to orphan from, or to delete the dependents of
        if old is not None and old != node:
            self._wake_waiting_owners(old.owner_uids | node.owner_uids)

    def _forget(self, info: ResourceInfo, obj: TopLevel) -> None:
        uid = _meta(obj).uid or ""
        node = self.nodes.pop(uid, None)
        if node is None:
            return
        for owner in node.owner_uids:
            self._unindex(owner, node.key)
        self._wake_waiting_owners(node.owner_uids)
        # Its dependents may have lost their last owner.
        for key in self.dependents.get(uid, ()):
            self.queue.add(key)

    def _unsure(self, owner: str) -> bool:
        node = self.nodes.get(owner)
        return node is None or node.deleting

    def _unindex(self, owner: str, key: str) -> None:
        keys = self.dependents.get(owner)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.dependents[owner]

    def _wake_waiting_owners(self, owners: set[str]) -> None:
        """A dependent changed or went: an owner waiting in foreground deletion may now be done."""
        for uid in owners:
            owner = self.nodes.get(uid)
            if owner is not None and owner.deleting and FOREGROUND in owner.gc_finalizers:
                self.queue.add(owner.key)

    # --- sync -----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        kind, namespace, name, uid = _parse(key)
        info = by_kind(kind)
        if info is None:
            return
        obj = await self._get(info, name, namespace)
        if obj is None or _meta(obj).uid != uid:
            return  # gone: its delete event enqueues its dependents
        m = _meta(obj)
        if m.deletion_timestamp is not None:
            finalizers = m.finalizers or ()
            if ORPHAN in finalizers:
                await self._orphan_dependents(info, obj)
            elif FOREGROUND in finalizers:
                await self._delete_dependents(info, obj, key)
            return
        if m.owner_references:
            await self._attempt_to_delete(info, obj)

    async def _get(self, info: ResourceInfo, name: str, namespace: str | None) -> TopLevel | None:
        try:
            return await self.client.get(info.type, name, namespace if info.namespaced else None)
        except NotFound:
            return None

    async def _attempt_to_delete(self, info: ResourceInfo, obj: TopLevel) -> None:
        """Delete an object whose owners are all gone; drop the references to gone owners otherwise."""
        m = _meta(obj)
        solid: list[OwnerReference] = []
        dangling: list[OwnerReference] = []
        waiting: list[OwnerReference] = []
        for ref in m.owner_references or ():
            owner_info = _owner_info(ref)
            if owner_info is None or (owner_info.namespaced and not info.namespaced):
                # Not resolvable here (an unknown kind, or a namespaced owner of a cluster-scoped
                # object): Kubernetes never collects through such a reference, so it counts as alive.
                solid.append(ref)
                continue
            owner = await self._get(owner_info, ref.name, m.namespace)
            if owner is None or _meta(owner).uid != ref.uid:
                dangling.append(ref)
            elif _meta(owner).deletion_timestamp is not None and FOREGROUND in (
                _meta(owner).finalizers or ()
            ):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            gone = {r.uid for r in [*dangling, *waiting]}
            if gone:
                await self._remove_owner_refs(info, obj, gone)
            return
        finalizers = m.finalizers or ()
        if waiting and self.dependents.get(m.uid or ""):
            policy = "Foreground"  # foreground deletion goes down the whole tree
        elif ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        log.info("garbagecollector: deleting %s %s/%s (%s)", info.kind, m.namespace, m.name, policy)
        with contextlib.suppress(NotFound, Conflict):  # Conflict: the uid precondition, a new object
            await self.client.delete(
                info.type, m.name or "", m.namespace, uid=m.uid, propagation_policy=policy
            )

    async def _orphan_dependents(self, info: ResourceInfo, owner: TopLevel) -> None:
        uid = _meta(owner).uid or ""
        for dep_info, dep in await self._live_dependents(info, owner):
            await self._remove_owner_refs(dep_info, dep, {uid})
        await self._remove_finalizer(info, owner, ORPHAN)

    async def _delete_dependents(self, info: ResourceInfo, owner: TopLevel, key: str) -> None:
        uid = _meta(owner).uid or ""
        # While the graph still shows blocking dependents, delete them and wait (their changes bring
        # this owner back): no need to ask the API server yet.
        blocking = 0
        for dep_key in self.dependents.get(uid, ()):
            self.queue.add(dep_key)
            node = self.nodes.get(_parse(dep_key)[3])
            if node is not None and (uid, True) in node.owners:
                blocking += 1
        if not blocking:
            # The graph shows none: confirm with the API server, which may know dependents the
            # informers have not delivered yet.
            for dep_info, dep in await self._live_dependents(info, owner):
                dm = _meta(dep)
                if dm.uid:
                    self.queue.add(_key(dep_info.kind, dm.namespace, dm.name or "", dm.uid))
                if any(r.uid == uid and r.block_owner_deletion for r in dm.owner_references or ()):
                    blocking += 1
        if blocking:
            self.queue.add_after(key, self.recheck)
            return
        await self._remove_finalizer(info, owner, FOREGROUND)

    async def _live_dependents(
        self, info: ResourceInfo, owner: TopLevel
    ) -> list[tuple[ResourceInfo, TopLevel]]:
        """Every object that names ``owner`` in its ownerReferences, as the API server has it now.

        A namespaced owner's dependents are in its namespace; a cluster-scoped owner's may be anywhere.
        """
        m = _meta(owner)
        out: list[tuple[ResourceInfo, TopLevel]] = []
        for dep_info in RESOURCES:
            if dep_info.kind in _SKIPPED_KINDS or (info.namespaced and not dep_info.namespaced):
                continue
            namespace = m.namespace if info.namespaced else None
            page = await self.client.list_all(dep_info.type, namespace)
            out.extend(
                (dep_info, obj)
                for obj in page.items
                if any(r.uid == m.uid for r in _meta(obj).owner_references or ())
            )
        return out

    # --- guarded writes -------------------------------------------------------------------------

    async def _remove_owner_refs(self, info: ResourceInfo, obj: TopLevel, owners: set[str]) -> None:
        """Patch the references to ``owners`` out of ``obj``."""

        def change(m: ObjectMeta) -> dict[str, Any] | None:
            refs = [r for r in m.owner_references or () if r.uid not in owners]
            if len(refs) == len(m.owner_references or ()):
                return None
            return {"ownerReferences": msgspec.to_builtins(refs) if refs else None}

        await self._patch_metadata(info, obj, change, "ownerReferences")

    async def _remove_finalizer(self, info: ResourceInfo, obj: TopLevel, finalizer: str) -> None:
        """Remove one finalizer; the API server deletes the object once none is left."""

        def change(m: ObjectMeta) -> dict[str, Any] | None:
            if finalizer not in (m.finalizers or ()):
                return None
            return {"finalizers": [f for f in m.finalizers or () if f != finalizer] or None}

        await self._patch_metadata(info, obj, change, f"{finalizer} finalizer")

    async def _patch_metadata(
        self,
        info: ResourceInfo,
        obj: TopLevel,
        change: Callable[[ObjectMeta], dict[str, Any] | None],
        what: str,
    ) -> None:
        """A metadata merge patch guarded by the resourceVersion it was computed from; on a conflict,
        read the object again (same uid, else it is someone else's now) and recompute."""
        for _ in range(_ATTEMPTS):
            m = _meta(obj)
            fields = change(m)
            if fields is None:
                return
            patch = {"metadata": {**fields, "resourceVersion": m.resource_version}}
            try:
                await self.client.patch(info.type, m.name or "", patch, m.namespace)
                return
            except NotFound:
                return
            except Conflict:
                fresh = await self._get(info, m.name or "", m.namespace)
                if fresh is None or _meta(fresh).uid != m.uid:
                    return
                obj = fresh
        raise RuntimeError(f"could not update the {what} of {info.kind} {m.namespace}/{m.name}")
