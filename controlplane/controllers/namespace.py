"""The namespace controller: finishes deleting a namespace by deleting everything in it.

A deleted namespace is marked Terminating (deletionTimestamp set, ``spec.finalizers: [kubernetes]``)
by the API server. This controller deletes the namespaced objects of every kind in it, requeues until
none are left (pods may take their grace period on their nodes), then removes the ``kubernetes``
finalizer through ``namespaces/{name}/finalize``, and the API server removes the namespace.
"""

from __future__ import annotations

import asyncio
import contextlib

from controlplane.api.core import Namespace
from controlplane.api.registry import RESOURCES
from controlplane.client import Client, Informer, NotFound
from controlplane.client.informer import InformerUse, SharedInformerFactory
from controlplane.tasks import cancel

from .workqueue import WorkQueue, run_workers

FINALIZER = "kubernetes"


class NamespaceController:
    def __init__(
        self, client: Client, *, recheck: float = 1.0, informers: SharedInformerFactory | None = None
    ) -> None:
        self.client = client
        self.recheck = recheck
        self.informer: Informer[Namespace] = (informers or SharedInformerFactory(client)).informer(Namespace)
        self.queue = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []
        self._use = InformerUse(self, (self.informer,), self._subscribe, private=informers is None)

    def _enqueue(self, ns: Namespace) -> None:
        if ns.metadata.deletion_timestamp is not None:
            self.queue.add(ns.metadata.name or "")

    def _subscribe(self) -> None:
        self.informer.on_add(self._enqueue, owner=self)
        self.informer.on_update(lambda _old, new: self._enqueue(new), owner=self)

    async def start(self) -> None:
        self._use.start()
        self._tasks.append(asyncio.create_task(run_workers(self.queue, self.sync, 1, "namespace")))

    async def stop(self) -> None:
        self.queue.shutdown()
        await self._use.stop()
        await cancel(self._tasks)

    async def sync(self, name: str) -> None:
        ns = self.informer.get(name)
        if (
            ns is None
            or ns.metadata.deletion_timestamp is None
            or FINALIZER not in (ns.spec.finalizers or ())
        ):
            return
        remaining = 0
        for info in RESOURCES:
            if not info.namespaced:
                continue
            page = await self.client.list(info.type, name, limit=1)
            if page.items:
                remaining += 1
                await self.client.delete_collection(info.type, name)
        if remaining:
            self.queue.add_after(name, self.recheck)
            return
        finalizers = [f for f in ns.spec.finalizers or () if f != FINALIZER]
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name},
            "spec": {"finalizers": finalizers},
        }
        with contextlib.suppress(NotFound):
            await self.client.request("PUT", f"/api/v1/namespaces/{name}/finalize", body=body)
