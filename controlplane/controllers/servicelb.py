"""The service load balancer (like k3s's servicelb/klipper-lb): LoadBalancer Services get the nodes'
addresses as their ingress.

There is no cloud to ask for a balancer: every Ready node already answers on the Service's node ports
(the agent's proxy), so the nodes are the balancer. ``status.loadBalancer.ingress`` of every
LoadBalancer Service is ``spec.loadBalancerIP`` when the user named one, otherwise one ``{ip}`` per
Ready node's InternalIP (sorted, so the same world writes nothing). A Service whose type changes away
from LoadBalancer gets its ingress cleared. Writes go through the status subresource, only on change.

Two informers (Services, Nodes) feed one work queue of Service keys; a node change enqueues every
LoadBalancer Service (there are few). ``sync(key)`` is level-based and reads the caches only.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging

from controlplane.api.core import LoadBalancerIngress, LoadBalancerStatus, Node, Service
from controlplane.client import Client, Informer, NotFound, key_of
from controlplane.client.informer import InformerUse, SharedInformerFactory, wait_synced
from controlplane.status import internal_ip, node_ready
from controlplane.tasks import cancel

from .manager import ControllerSettings
from .workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)


def desired_ingress(svc: Service, nodes: list[Node]) -> list[LoadBalancerIngress] | None:
    if svc.spec.type != "LoadBalancer":
        return None
    if svc.spec.load_balancer_ip:
        return [LoadBalancerIngress(ip=svc.spec.load_balancer_ip, ip_mode="VIP")]
    ips = sorted({ip for n in nodes if node_ready(n) and (ip := internal_ip(n))})
    return [LoadBalancerIngress(ip=ip, ip_mode="VIP") for ip in ips] or None


class ServiceLBController:
    def __init__(
        self,
        client: Client,
        settings: ControllerSettings,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        factory = informers or SharedInformerFactory(client)
        self.services: Informer[Service] = factory.informer(Service)
        self.nodes: Informer[Node] = factory.informer(Node)
        self.queue = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []
        self._use = InformerUse(self, (self.services, self.nodes), self._subscribe, private=informers is None)

    def _service_changed(self, svc: Service) -> None:
        lb = svc.status.load_balancer
        if svc.spec.type == "LoadBalancer" or (lb is not None and lb.ingress):
            self.queue.add(key_of(svc))

    def _node_updated(self, old: Node, new: Node) -> None:
        if (node_ready(old), internal_ip(old)) != (node_ready(new), internal_ip(new)):
            self._all()

    def _all(self) -> None:
        for svc in self.services.items():
            if svc.spec.type == "LoadBalancer":
                self.queue.add(key_of(svc))

    def _subscribe(self) -> None:
        self.services.on_add(self._service_changed, owner=self)
        self.services.on_update(lambda _old, new: self._service_changed(new), owner=self)
        self.nodes.on_add(lambda _n: self._all(), owner=self)
        self.nodes.on_update(self._node_updated, owner=self)
        self.nodes.on_delete(lambda _n: self._all(), owner=self)

    async def start(self) -> None:
        self._use.start()
        self._tasks.append(asyncio.create_task(self._run(), name="servicelb-controller"))

    async def stop(self) -> None:
        self.queue.shutdown()
        await cancel(self._tasks)
        self._tasks.clear()
        await self._use.stop()

    async def _run(self) -> None:
        await wait_synced((self.services, self.nodes), "servicelb controller")
        self._all()
        await run_workers(self.queue, self.sync, self.settings.workers, "servicelb")

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            return
        ingress = desired_ingress(svc, self.nodes.items())
        current = svc.status.load_balancer.ingress if svc.status.load_balancer else None
        if (current or None) == ingress:
            return
        svc = copy.deepcopy(svc)  # never change the cache's object
        svc.status.load_balancer = LoadBalancerStatus(ingress=ingress)
        with contextlib.suppress(NotFound):
            # A Conflict (the cache is behind) is retried by the queue's rate limiting.
            await self.client.replace_status(svc)
