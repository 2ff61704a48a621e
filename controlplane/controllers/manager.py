"""The controller-manager: every controller, started and stopped together against one client.

It runs inside the control-plane process by default, or alone (``pea controller-manager --server URL``):
controllers only ever talk to the API server through the client, so where they run does not matter.
Each controller owns its informers, one work queue and its workers; ``stop()`` shuts them down in
reverse order, each with a bound.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from controlplane.client import Client

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
    def __init__(self, client: Client, settings: ControllerSettings | None = None) -> None:
        from .endpoints import EndpointsController
        from .garbagecollector import GarbageCollector
        from .namespace import NamespaceController
        from .nodelifecycle import NodeLifecycleController
        from .replication import ReplicationManager
        from .servicelb import ServiceLBController

        self.client = client
        self.settings = settings or ControllerSettings()
        self.replication = ReplicationManager(client, self.settings)
        self.garbage_collector = GarbageCollector(client, self.settings)
        self.endpoints = EndpointsController(client, self.settings)
        self.node_lifecycle = NodeLifecycleController(client, self.settings)
        self.namespaces = NamespaceController(client, recheck=self.settings.namespace_recheck)
        self.servicelb = ServiceLBController(client, self.settings)
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
