"""Hollow nodes: many agents in one process, on the hollow runtime, sharing one pod watch.

Like Kubernetes' kubemark: the real agent code (registration, leases, pod workers, status) runs for each
node; only the container runtime is faked. One informer on all pods feeds every node's workers by
``spec.nodeName``, so N nodes cost one watch connection, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from controlplane.api.core import Pod, Service
from controlplane.client import Client, Informer

from .agent import Agent, AgentSettings
from .node import MachineInfo
from .pods import BackOffPolicy
from .runtime.hollow import HollowRuntime

HOLLOW_MACHINE = MachineInfo(
    cpus=4,
    memory_bytes=16 * 1024**3,
    kernel="hollow",
    os_image="peapod hollow node",
    architecture="amd64",
    machine_id="",
    boot_id="",
)


def hollow_ip(index: int) -> str:
    """A distinct loopback address per node: hollow nodes never receive traffic."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


class HollowNodes:
    def __init__(
        self,
        client: Client,
        count: int,
        *,
        prefix: str = "hollow-node-",
        lease_interval: float = 10.0,
        status_interval: float = 40.0,
        backoff: BackOffPolicy | None = None,
    ) -> None:
        self.client = client
        self.informer: Informer[Pod] = Informer(client, Pod)
        self.services: Informer[Service] = Informer(client, Service)  # one watch for all nodes' env vars
        self.agents: dict[str, Agent] = {}
        for i in range(count):
            name = f"{prefix}{i}"
            settings = AgentSettings(
                node_name=name,
                node_ip=hollow_ip(i),
                lease_interval=lease_interval,
                status_interval=status_interval,
                backoff=backoff or BackOffPolicy(),
                labels={"peapod.io/hollow": "true"},
                listen=None,
            )
            self.agents[name] = Agent(
                client,
                HollowRuntime(name),
                settings,
                machine=HOLLOW_MACHINE,
                pod_source=self._source(name),
                services=self.services,
            )
        self.informer.on_add(self._route)
        self.informer.on_update(lambda _old, new: self._route(new))
        self.informer.on_delete(self._gone)

    def _source(self, node: str) -> Callable[[str], Pod | None]:
        def get(key: str) -> Pod | None:
            pod = self.informer.get(key)
            return pod if pod is not None and pod.spec.node_name == node else None

        return get

    def _route(self, pod: Pod) -> None:
        agent = self.agents.get(pod.spec.node_name or "")
        if agent is not None:
            agent.track(pod)

    def _gone(self, pod: Pod) -> None:
        agent = self.agents.get(pod.spec.node_name or "")
        if agent is not None:
            agent.forget(pod)

    async def start(self, batch: int = 50) -> None:
        self.services.start()
        await self.services.wait_synced()
        agents = list(self.agents.values())
        for i in range(0, len(agents), batch):
            await asyncio.gather(*(a.start() for a in agents[i : i + batch]))
        self.informer.start()
        await self.informer.wait_synced()

    async def stop(self) -> None:
        await self.informer.stop()
        await self.services.stop()
        for agent in self.agents.values():
            with contextlib.suppress(Exception):
                await agent.stop()
