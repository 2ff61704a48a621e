"""The node agent process: registration and heartbeats, pod workers, and runtime events, wired together.

Concurrency model: one informer (pods with ``spec.nodeName=NODE``) enqueues pod keys; the runtime's
event stream (a container died) enqueues the key of the pod it belongs to; a periodic resync enqueues
every pod, so a missed event costs at most one resync period. Pod workers drain the queue. On start,
once the informer has synced, sandboxes whose pod no longer exists are removed (pods deleted while the
agent was down), and running ones are adopted as they are — nothing is restarted. The pod network
(``agent.network``) is set up right after registration, once the Node's podCIDR is known, with
the routes to other nodes' pods beside it (``network.routes``), the service proxy (``agent.proxy``) and
the node-local cluster DNS server (``agent.dns``, on the bridge gateway, port 53; the proxy sends the
``kube-system/kube-dns`` Service there). The agent's Services informer feeds the pod workers, the proxy
and the DNS server; its Endpoints informer (started only with a real pod network) the last two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controlplane.api.core import Endpoints, Pod, Service
from controlplane.client import Client, EventRecorder, Informer, key_of
from controlplane.tasks import cancel

from .network import Network, NoNetwork
from .node import MachineInfo, NodeHeartbeat, default_node_ip
from .pods import BackOffPolicy, PodWorkers
from .proxy import ServiceProxy
from .runtime.base import Runtime
from .server import AgentServer
from .volumes import VolumeManager

if TYPE_CHECKING:
    from .dns import DNSServer
    from .network.routes import HostGatewayRoutes

log = logging.getLogger(__name__)


@dataclass
class AgentSettings:
    node_name: str
    node_ip: str = field(default_factory=default_node_ip)
    lease_interval: float = 10.0
    status_interval: float = 40.0
    resync_interval: float = 10.0
    backoff: BackOffPolicy = field(default_factory=BackOffPolicy)
    max_pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    # The agent's own endpoint (image loading, logs and exec); None: no endpoint (hollow nodes).
    listen: str | None = "127.0.0.1:10250"
    # Run the service proxy (ClusterIP/NodePort/LoadBalancer rules); only with a real pod network.
    proxy: bool = True
    # The cluster's Service range (the API server's --service-cluster-ip-range), routed onto the bridge.
    service_cidr: str = "10.254.0.0/16"
    # Pods' DNS (the kubelet's --cluster-dns, --cluster-domain, --resolv-conf): ClusterFirst pods ask the
    # cluster DNS (the kube-dns Service's IP); no address makes them fall back to Default, the node's
    # resolv.conf ("": none, lookups disabled).
    cluster_dns: list[str] = field(default_factory=lambda: ["10.254.0.10"])
    cluster_domain: str = "cluster.local"
    resolv_conf: str = "/etc/resolv.conf"
    # Where the node's DNS server forwards names outside the cluster, (address, port) each; None: the
    # nameservers of ``resolv_conf``.
    dns_upstreams: list[tuple[str, int]] | None = None


class Agent:
    """One node. ``pods`` may be shared (hollow nodes); by default the agent watches its own."""

    def __init__(
        self,
        client: Client,
        runtime: Runtime,
        settings: AgentSettings,
        *,
        machine: MachineInfo | None = None,
        pod_source: Callable[[str], Pod | None] | None = None,
        network: Network | None = None,
        volumes: VolumeManager | None = None,
        services: Informer[Service] | None = None,
        endpoints: Informer[Endpoints] | None = None,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.settings = settings
        self.machine = machine or MachineInfo.detect()
        self.recorder = EventRecorder(client, "kubelet", settings.node_name)
        self.network: Network = network or NoNetwork()
        self.informer: Informer[Pod] | None = None
        # Every Service, for pods' service env vars and the proxy; shared when hollow nodes pass one.
        self.owns_services = services is None
        self.services: Informer[Service] = services or Informer(client, Service)
        # Every Endpoints, for the proxy and the DNS server (real pod network only: not started otherwise).
        self.owns_endpoints = endpoints is None
        self.endpoints: Informer[Endpoints] = endpoints or Informer(client, Endpoints)
        self._endpoints_started = False
        if pod_source is None:
            self.informer = Informer(client, Pod, field_selector=f"spec.nodeName={settings.node_name}")
            pod_source = self.informer.get
        if volumes is not None:  # the pods' resolv.conf and hosts files follow the agent's settings
            volumes.cluster_dns = list(settings.cluster_dns)
            volumes.cluster_domain = settings.cluster_domain
            volumes.resolv_conf = settings.resolv_conf
        self.workers = PodWorkers(
            client,
            runtime,
            settings.node_name,
            settings.node_ip,
            self.recorder,
            pod_source,
            backoff=settings.backoff,
            network=self.network,
            volumes=volumes,
            services=self.services.items,
        )
        self.heartbeat: NodeHeartbeat | None = None
        self.server: AgentServer | None = None
        self.proxy: ServiceProxy | None = None  # the service proxy (bridge network only)
        self.routes: HostGatewayRoutes | None = None  # host-gw routes to other nodes' pods (bridge only)
        self.dns: DNSServer | None = None  # the node-local cluster DNS server (bridge only)
        self._tasks: list[asyncio.Task[None]] = []
        self._uids: dict[str, str] = {}

    def track(self, pod: Pod) -> None:
        """Note a pod of this node and enqueue it (called by the informer, or by a shared one)."""
        self._uids[pod.metadata.uid or ""] = key_of(pod)
        self.workers.enqueue(key_of(pod))

    def forget(self, pod: Pod) -> None:
        """The API pod is gone: one more sync removes its sandbox."""
        self._uids.pop(pod.metadata.uid or "", None)
        self.workers.enqueue(key_of(pod))

    async def start(self) -> None:
        await self.runtime.start()
        self.heartbeat = NodeHeartbeat(
            self.client,
            self.settings.node_name,
            node_ip=self.settings.node_ip,
            machine=self.machine,
            runtime_version=await self.runtime.version(),
            max_pods=self.settings.max_pods,
            lease_interval=self.settings.lease_interval,
            status_interval=self.settings.status_interval,
            labels=self.settings.labels,
        )
        self.heartbeat.images = await self.runtime.images()
        if self.settings.listen:
            host, _, port = self.settings.listen.rpartition(":")
            self.server = AgentServer(self.runtime, host.strip("[]"), int(port), client=self.client)
            self.heartbeat.agent_address = f"{host}:{await self.server.start()}"
        node = await self.heartbeat.register()
        await self.network.start(node.spec.pod_cidr)
        if self.owns_services:
            # Before any container starts: like the kubelet, never build an environment without them.
            self._tasks.append(self.services.start())
            await self.services.wait_synced()
        cluster_cidr = getattr(self.network, "cluster_cidr", None)  # only a real pod network has one
        from .network.bridge import BridgeNetwork  # pyroute2 only where there is a real pod network
        from .network.routes import HostGatewayRoutes

        if cluster_cidr is not None and self.owns_endpoints:
            self._tasks.append(self.endpoints.start())
            self._endpoints_started = True
            await self.endpoints.wait_synced()
        local_dns: tuple[str, int] | None = None
        if isinstance(self.network, BridgeNetwork) and self.network.book is not None:
            local_dns = await self._start_dns(str(self.network.book.gateway), self.network.netns)
        if self.settings.proxy and cluster_cidr is not None:
            self.proxy = ServiceProxy(
                self.client,
                self.settings.node_name,
                cluster_cidr,
                pod_cidr=node.spec.pod_cidr,
                netns=getattr(self.network, "netns", None),
                services=self.services,
                endpoints=self.endpoints,
                local_dns=local_dns,
            )
            await self.proxy.start()
        elif local_dns is not None and self.workers.volumes is not None and self.settings.cluster_dns:
            # No proxy to send the kube-dns address here: pods ask this node's DNS server directly.
            self.workers.volumes.cluster_dns = [local_dns[0]]
        if isinstance(self.network, BridgeNetwork):
            self.routes = HostGatewayRoutes(
                self.client,
                self.settings.node_name,
                netns=self.network.netns,
                service_cidr=self.settings.service_cidr if self.proxy is not None else None,
                bridge=self.network.bridge,
            )
            self._tasks.append(self.routes.start())
        self._tasks.append(self.heartbeat.start())
        if self.informer is not None:
            self.informer.on_add(self.track)
            self.informer.on_update(lambda _old, new: self.track(new))
            self.informer.on_delete(self.forget)
            self._tasks.append(self.informer.start())
            await self.informer.wait_synced()
            await self.collect_garbage(set(self.informer.cache))
        self._tasks.append(self.workers.start())
        self._tasks.append(asyncio.create_task(self._runtime_events(), name="runtime-events"))
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
        log.info("agent %s running (%s)", self.settings.node_name, await self.runtime.version())

    async def stop(self) -> None:
        await self.workers.stop()
        if self.proxy is not None:
            await self.proxy.stop()  # its table stays: services keep working while the agent is down
        if self.routes is not None:
            await self.routes.stop()
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.informer is not None:
            await self.informer.stop()
        if self.owns_services:
            await self.services.stop()
        if self._endpoints_started:
            await self.endpoints.stop()
            self._endpoints_started = False
        await cancel(self._tasks)
        self._tasks.clear()
        if self.server is not None:
            await self.server.stop()
        await self.runtime.close()

    async def _start_dns(self, gateway: str, netns: str | None) -> tuple[str, int] | None:
        """The node-local DNS server on the bridge gateway, port 53 (UDP and TCP, inside the node's
        namespace), and nowhere else; its (address, port), or None if it could not listen (pods then get
        the proxy's reject for kube-dns, not a hang)."""
        from .dns import DNSServer, upstreams_from_resolv_conf

        upstreams = self.settings.dns_upstreams
        if upstreams is None:
            upstreams = await asyncio.to_thread(upstreams_from_resolv_conf, self.settings.resolv_conf)
        dns = DNSServer(
            self.services,
            self.endpoints,
            cluster_domain=self.settings.cluster_domain,
            upstreams=upstreams,
            listen=[(gateway, 53)],
            netns=netns,
        )
        try:
            await dns.start()
        except OSError as e:
            log.error("cluster DNS: cannot listen on %s:53: %s; pods on this node have no DNS", gateway, e)
            return None
        self.dns = dns
        return gateway, 53

    async def collect_garbage(self, live_keys: set[str]) -> None:
        """Sandboxes whose pod is gone are removed; the others are adopted (enqueued, not restarted).
        The network first forgets sandboxes that vanished while the agent was down."""
        sandboxes = await self.runtime.list_sandboxes()
        await self.network.restore(sandboxes)
        if self.workers.volumes is not None:
            live = {s.uid for s in sandboxes}
            if self.informer is not None:
                live |= {p.metadata.uid or "" for p in self.informer.cache.values()}
            await self.workers.volumes.collect(live)
        for sandbox in sandboxes:
            key = f"{sandbox.namespace}/{sandbox.name}"
            self._uids[sandbox.uid] = key
            self.workers.enqueue(key)
            if key not in live_keys:
                log.info("removing sandbox of deleted pod %s", key)

    def pods(self) -> list[str]:
        return sorted(set(self._uids.values()))

    async def _runtime_events(self) -> None:
        while True:
            try:
                async for event in self.runtime.events():
                    key = self._uids.get(event.pod_uid)
                    if key is not None:
                        self.workers.enqueue(key)
            except Exception as exc:
                log.warning("runtime event stream failed: %s; reconnecting", exc)
            await asyncio.sleep(1.0)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            for key in self.pods():
                self.workers.enqueue(key)
