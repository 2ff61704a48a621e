"""The controller-manager: every controller, started and stopped together against one client.

It runs inside the control-plane process by default, or alone (``pea controller-manager --server URL``):
controllers only ever talk to the API server through the client, so where they run does not matter.
Each controller owns one work queue and its workers; the informers come from one
``SharedInformerFactory``, so the controllers that watch pods (replication, endpoints, node lifecycle,
garbage collector) share one pod watch and one cached copy of each pod; pass the factory the scheduler
uses too and it shares them as well. ``stop()`` shuts the controllers down in reverse order, each with a
bound; a shared informer stops with its last user.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from controlplane.client import Client
from controlplane.client.informer import SharedInformerFactory

log = logging.getLogger(__name__)


@dataclass
class ControllerSettings:
    """Tunables grouped in one place; durations are seconds and tests shorten them."""

    workers: int = 5
    #: How long the endpoints controller gathers pod changes before writing a Service's Endpoints.
    endpoints_batch_period: float = 0.5
    #: How often node heartbeats (Leases and the Ready condition) are checked.
    node_monitor_period: float = 5.0
    #: A node whose last heartbeat is older than this becomes Ready=Unknown and gets the unreachable taint.
    node_monitor_grace_period: float = 50.0
    #: How long the namespace controller waits before checking again for what is left in a namespace.
    namespace_recheck: float = 1.0


class Controller(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ControllerManager:
    def __init__(
        self,
        client: Client,
        settings: ControllerSettings | None = None,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        from .endpoints import EndpointsController
        from .garbagecollector import GarbageCollector
        from .namespace import NamespaceController
        from .nodelifecycle import NodeLifecycleController
        from .replication import ReplicationManager
        from .servicelb import ServiceLBController

        self.client = client
        self.settings = settings or ControllerSettings()
        self.informers = informers or SharedInformerFactory(client)
        shared = self.informers
        self.replication = ReplicationManager(client, self.settings, shared)
        self.endpoints = EndpointsController(client, self.settings, shared)
        self.node_lifecycle = NodeLifecycleController(client, self.settings, shared)
        self.namespaces = NamespaceController(
            client, recheck=self.settings.namespace_recheck, informers=shared
        )
        self.servicelb = ServiceLBController(client, self.settings, shared)
        # Last: it shares the informers of the kinds the others asked for and keeps slim caches of the rest.
        self.garbage_collector = GarbageCollector(client, self.settings, informers=shared)
        self.controllers: list[Controller] = [
            self.namespaces,
            self.garbage_collector,
            self.replication,
            self.endpoints,
            self.node_lifecycle,
            self.servicelb,
        ]
        self._started: list[Controller] = []

    async def start(self) -> None:
        for controller in self.controllers:
            await controller.start()
            self._started.append(controller)

    async def stop(self) -> None:
        for controller in reversed(self._started):
            try:
                await asyncio.wait_for(controller.stop(), 10)
            except Exception:
                log.exception("stopping %s failed", type(controller).__name__)
        self._started.clear()
