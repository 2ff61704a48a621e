"""Hollow nodes: many agents in one process, on the hollow runtime, sharing one watch per resource.

Like Kubernetes' kubemark: the real agent code (registration, Leases and status, pod workers writing pod
status, the proxy's rule computation) runs for each node; only the container runtime and netlink are
faked. What a thousand nodes would each do alone is done once for all of them:

- one informer on all pods feeds every node's workers by ``spec.nodeName`` (one watch, not N);
- one Services and one Endpoints informer feed the pods' service variables and the proxies;
- one heartbeat loop (``heartbeats``) renews every node's Lease, spread evenly over the lease interval
  with jitter, a few requests at a time, and one loop resyncs every node's pods, spread the same way;
- one proxy computation (``hollow_proxy``) writes each node's table to its fake nftables;
- the agents' requests go through one ``BoundedClient``, so a burst (registration, a pod storm) waits on
  a semaphore rather than in httpx's pool, whose cost grows with its queue.

Nodes register in batches, each node's requests in sequence, so the API server sees a steady stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from controlplane.api.core import Endpoints, Pod, Service
from controlplane.client import Client, Informer
from controlplane.tasks import cancel

from .agent import Agent, AgentSettings
from .bounded_client import BoundedClient
from .heartbeats import HeartbeatScheduler
from .hollow_proxy import HollowProxies, HollowProxy
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
CLUSTER_CIDR = "10.244.0.0/16"  # the control plane's default --cluster-cidr
RESYNC_TICK = 0.1  # seconds: how often the shared resync loop wakes, at most


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
        resync_interval: float = 10.0,
        backoff: BackOffPolicy | None = None,
        proxy: bool = True,
        cluster_cidr: str = CLUSTER_CIDR,
        proxy_record: int = 0,
        max_requests: int = 16,
        pod_workers: int = 2,
    ) -> None:
        """``proxy``: run each node's service proxy (rules computed, netlink faked); ``cluster_cidr``:
        the pods' range, as the proxy's rules need it; ``proxy_record``: batches each node's fake nftables
        keeps (tests); ``max_requests``: the nodes' API requests in flight at once (watches apart), kept
        under the client's keep-alive pool; ``pod_workers``: pods each node syncs at once."""
        self.client = client
        self.requests = BoundedClient(client, max_requests)
        self.resync_interval = resync_interval
        self.informer: Informer[Pod] = Informer(client, Pod)
        self.services: Informer[Service] = Informer(client, Service)  # one watch for all nodes' env vars
        self.endpoints: Informer[Endpoints] | None = None
        self.proxies: HollowProxies | None = None
        if proxy:
            self.endpoints = Informer(client, Endpoints)
            self.proxies = HollowProxies(self.services, self.endpoints, cluster_cidr, record=proxy_record)
        self.heartbeats = HeartbeatScheduler()
        self.agents: dict[str, Agent] = {}
        self.ips: dict[str, str] = {}
        backoff = backoff or BackOffPolicy()
        for i in range(count):
            name = f"{prefix}{i}"
            self.ips[name] = hollow_ip(i)
            settings = AgentSettings(
                node_name=name,
                node_ip=self.ips[name],
                lease_interval=lease_interval,
                status_interval=status_interval,
                resync_interval=resync_interval,
                backoff=backoff,
                labels={"peapod.io/hollow": "true"},
                listen=None,
                pod_workers=pod_workers,
            )
            self.agents[name] = Agent(
                self.requests,
                HollowRuntime(name),
                settings,
                machine=HOLLOW_MACHINE,
                pod_source=self._source(name),
                services=self.services,
                heartbeats=self.heartbeats,
                resync=False,
            )
        self.informer.on_add(self._route)
        self.informer.on_update(lambda _old, new: self._route(new))
        self.informer.on_delete(self._gone)
        self._resync: asyncio.Task[None] | None = None
        self._stopped = False

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

    def proxy(self, node: str) -> HollowProxy | None:
        """A node's service proxy (None: proxies are off, or the node has not registered)."""
        return self.proxies.nodes.get(node) if self.proxies is not None else None

    async def start(self, batch: int = 50) -> None:
        """Sync the shared informers, register the nodes ``batch`` at a time, then route pods to them."""
        self.services.start()
        if self.endpoints is not None:
            self.endpoints.start()
        await self.services.wait_synced()
        if self.endpoints is not None:
            await self.endpoints.wait_synced()
        if self.proxies is not None:
            self.proxies.start()
        agents = list(self.agents.values())
        for i in range(0, len(agents), batch):
            group = agents[i : i + batch]
            await asyncio.gather(*(a.start() for a in group))
            if self.proxies is not None:
                for a in group:
                    name = a.settings.node_name
                    pod_cidr = a.heartbeat.node.spec.pod_cidr if a.heartbeat and a.heartbeat.node else None
                    self.proxies.add(name, self.ips[name], pod_cidr)
        self.informer.start()
        await self.informer.wait_synced()
        self._resync = asyncio.create_task(self._resync_all(), name="hollow-resync")

    async def _resync_all(self) -> None:
        """Every node's pods re-enqueued once per resync interval, the nodes spread over it (one timer
        for all rather than one per node)."""
        agents = list(self.agents.values())
        ticks = max(1, min(len(agents), int(self.resync_interval / RESYNC_TICK)))
        per_tick = -(-len(agents) // ticks)
        while True:
            for i in range(0, len(agents), per_tick):
                await asyncio.sleep(self.resync_interval * per_tick / len(agents))
                for agent in agents[i : i + per_tick]:
                    agent.resync()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await cancel(self._resync)
        await self.heartbeats.stop()  # first: a stopped node must stop renewing its Lease at once
        if self.proxies is not None:
            await self.proxies.stop()
        await self.informer.stop()
        await self.services.stop()
        if self.endpoints is not None:
            await self.endpoints.stop()
        for agent in self.agents.values():
            with contextlib.suppress(Exception):
                await agent.stop()
