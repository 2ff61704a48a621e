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

Static pods (``settings.pod_manifests``, see ``static_pods``) are read before anything else and run
with or without an API server: if the first registration fails, the pod network starts on
``settings.pod_cidr`` or the podCIDR the node was last given (kept in ``settings.data_dir``), the pod
workers start for the static pods only, and the rest of the start (registration, informers, network
helpers, garbage collection of sandboxes, mirror pods) is retried in the background. Until the pods
informer has synced, no sandbox but a static pod's is touched, so pods the control plane gave this node
earlier keep running while it is away. Mirror pods are never run: the pod source hides them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.api.core import Endpoints, Node, Pod, Service
from controlplane.client import Client, ClientError, EventRecorder, Informer, key_of
from controlplane.tasks import cancel

from .network import Network, NoNetwork
from .node import MachineInfo, NodeHeartbeat, default_node_ip
from .pods import BackOffPolicy, PodWorkers
from .proxy import ServiceProxy
from .runtime.base import Runtime
from .server import AgentServer
from .static_pods import MirrorPods, StaticPods, is_mirror
from .volumes import VolumeManager

if TYPE_CHECKING:
    from .dns import DNSServer
    from .heartbeats import HeartbeatScheduler
    from .network.routes import HostGatewayRoutes

log = logging.getLogger(__name__)


@dataclass
class AgentSettings:
    node_name: str
    node_ip: str = field(default_factory=default_node_ip)
    lease_interval: float = 10.0
    # The Lease's leaseDurationSeconds (the kubelet's --node-lease-duration-seconds; renewed every quarter).
    lease_duration: int = 40
    status_interval: float = 40.0
    resync_interval: float = 10.0
    pod_workers: int = 4  # pods synced at once (hollow nodes need fewer: their runtime answers at once)
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
    # Static pods: the folder of pod manifests this node runs by itself (the kubelet's staticPodPath).
    pod_manifests: Path | None = None
    # The pod network's range while no control plane has given the node one (the kubelet's --pod-cidr).
    pod_cidr: str | None = None
    # Where the agent keeps what it must remember across restarts (the last podCIDR it was given).
    data_dir: Path | None = None
    # How often an agent with static pods that started without the control plane tries to reach it.
    connect_retry: float = 5.0
    # How often the container runtime is asked whether it answers (the kubelet's runtime status check);
    # while it does not, the Node is Ready=False "container runtime is down". None: never asked.
    runtime_check_interval: float | None = 5.0


POD_CIDR_FILE = "pod-cidr"


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
        heartbeats: HeartbeatScheduler | None = None,
        resync: bool = True,
    ) -> None:
        """``heartbeats``: a loop shared by many nodes that renews this one's Lease (else the agent runs
        its own); ``resync`` False: the owner calls ``resync()`` itself (hollow nodes: one loop for all)."""
        self.client = client
        self.heartbeats = heartbeats
        self.own_resync = resync
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
        self.api_pods = pod_source
        self.static: StaticPods | None = None
        self.mirrors: MirrorPods | None = None
        if settings.pod_manifests is not None:
            self.static = StaticPods(settings.pod_manifests, settings.node_name, self._static_changed)
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
            self.pod,
            backoff=settings.backoff,
            network=self.network,
            volumes=volumes,
            services=self.services.items,
            workers=settings.pod_workers,
        )
        self.heartbeat: NodeHeartbeat | None = None
        self.server: AgentServer | None = None
        self.proxy: ServiceProxy | None = None  # the service proxy (bridge network only)
        self.routes: HostGatewayRoutes | None = None  # host-gw routes to other nodes' pods (bridge only)
        self.dns: DNSServer | None = None  # the node-local cluster DNS server (bridge only)
        if self.static is not None:
            self.workers.static_status = self.static.report
        self._tasks: list[asyncio.Task[None]] = []
        self._uids: dict[str, str] = {}
        self._connecting: asyncio.Task[None] | None = None  # the start finished in the background
        self._rewatching: asyncio.Task[None] | None = None  # informers re-opening after a network cut
        self._pod_cidr: str | None = None  # what the pod network was started with
        self._network_started = False

    def pod(self, key: str) -> Pod | None:
        """The pod the workers realise for ``key``: a static pod, else the API's (never a mirror pod)."""
        if self.static is not None and (static := self.static.get(key)) is not None:
            return static
        pod = self.api_pods(key)
        return None if pod is not None and is_mirror(pod) else pod

    def _static_changed(self, key: str) -> None:
        """A static pod appeared, changed or went: note its uid (runtime events) and sync it."""
        pod = self.static.get(key) if self.static is not None else None
        if pod is not None:
            self._uids[pod.metadata.uid or ""] = key
        self.workers.enqueue(key)
        if self.mirrors is not None:
            self.mirrors.enqueue(key)

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
            lease_duration=self.settings.lease_duration,
            status_interval=self.settings.status_interval,
            labels=self.settings.labels,
        )
        self.heartbeat.images = await self.runtime.images()
        if self.settings.listen:
            host, _, port = self.settings.listen.rpartition(":")
            self.server = AgentServer(self.runtime, host.strip("[]"), int(port), client=self.client)
            self.heartbeat.agent_address = f"{host}:{await self.server.start()}"
        if self.static is None:
            await self._online(await self.heartbeat.register(), patient=False)
        else:
            await self.static.load()  # before any sandbox is looked at: its pods are adopted, not removed
            self._tasks.append(self.static.start())
            try:
                node = await self.heartbeat.register()
            except ClientError as exc:
                log.warning("control plane unreachable (%s); running static pods, retrying meanwhile", exc)
                await self._start_network(None, offline=True)
                await self.network.restore(await self.runtime.list_sandboxes())
                self._connecting = asyncio.create_task(self._connect(), name="connect")
            else:
                await self._online(node, patient=True)
        self._tasks.append(self.workers.start())
        self._tasks.append(asyncio.create_task(self._runtime_events(), name="runtime-events"))
        if self.own_resync:
            self._tasks.append(asyncio.create_task(self._resync(), name="resync"))
            if self.settings.runtime_check_interval is not None:
                self._tasks.append(asyncio.create_task(self._watch_runtime(), name="runtime-check"))
        log.info("agent %s running (%s)", self.settings.node_name, await self.runtime.version())

    async def _connect(self) -> None:
        """Reach the control plane at last (an agent with static pods started without it)."""
        assert self.heartbeat is not None
        while True:
            await asyncio.sleep(self.settings.connect_retry)
            try:
                node = await self.heartbeat.register()
            except ClientError as exc:
                log.debug("control plane still unreachable: %s", exc)
                continue
            log.info("control plane reached: node %s registered", self.settings.node_name)
            await self._online(node, patient=True)
            return

    async def _start_network(self, node_cidr: str | None, *, offline: bool = False) -> None:
        """The pod network, once: on the Node's podCIDR, else ``--pod-cidr``, else the last one given."""
        if node_cidr:
            await asyncio.to_thread(self._remember_cidr, node_cidr)
        if self._network_started:
            if node_cidr and self._pod_cidr and node_cidr != self._pod_cidr:
                log.warning(
                    "the node's podCIDR is %s but the pod network runs on %s; restart the agent to move",
                    node_cidr,
                    self._pod_cidr,
                )
            return
        cidr = node_cidr or self.settings.pod_cidr or await asyncio.to_thread(self._remembered_cidr)
        try:
            await self.network.start(cidr)
        except ValueError:
            if not offline:
                raise
            raise ValueError(
                "no podCIDR for the pod network: the control plane is unreachable and never gave this "
                "node one; pass --pod-cidr"
            ) from None
        self._pod_cidr = cidr
        self._network_started = True

    def _remembered_cidr(self) -> str | None:
        if self.settings.data_dir is None:
            return None
        try:
            return (self.settings.data_dir / POD_CIDR_FILE).read_text().strip() or None
        except OSError:
            return None

    def _remember_cidr(self, cidr: str) -> None:
        if self.settings.data_dir is None or self._remembered_cidr() == cidr:
            return
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            (self.settings.data_dir / POD_CIDR_FILE).write_text(cidr + "\n")
        except OSError as exc:
            log.warning("cannot remember the podCIDR in %s: %s", self.settings.data_dir, exc)

    async def _online(self, node: Node, *, patient: bool) -> None:
        """Everything that needs the API server, once the Node is registered. ``patient``: wait for the
        informers however long the API takes (an agent already running static pods has no reason to
        give up)."""
        assert self.heartbeat is not None

        async def synced(informer: Informer[Service] | Informer[Endpoints] | Informer[Pod]) -> None:
            if patient:
                await informer.synced.wait()
            else:
                await informer.wait_synced()

        await self._start_network(node.spec.pod_cidr)
        if self.owns_services:
            # Before any container starts: like the kubelet, never build an environment without them.
            self._tasks.append(self.services.start())
            await synced(self.services)
        cluster_cidr = getattr(self.network, "cluster_cidr", None)  # only a real pod network has one
        from .network.bridge import BridgeNetwork  # pyroute2 only where there is a real pod network
        from .network.routes import HostGatewayRoutes

        if cluster_cidr is not None and self.owns_endpoints:
            self._tasks.append(self.endpoints.start())
            self._endpoints_started = True
            await synced(self.endpoints)
        local_dns: tuple[str, int] | None = None
        if isinstance(self.network, BridgeNetwork) and self.network.book is not None:
            local_dns = await self._start_dns(str(self.network.book.gateway), self.network.netns)
        if self.settings.proxy and cluster_cidr is not None:
            self.proxy = ServiceProxy(
                self.client,
                self.settings.node_name,
                cluster_cidr,
                pod_cidr=self._pod_cidr,
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
        if self.heartbeats is not None:
            self.heartbeats.add(self.heartbeat)
        else:
            self.heartbeat.on_reconnected = self._reconnected
            self._tasks.append(self.heartbeat.start())
        if self.informer is not None:
            self.informer.on_add(self.track)
            self.informer.on_update(lambda _old, new: self.track(new))
            self.informer.on_delete(self.forget)
            self._tasks.append(self.informer.start())
            await synced(self.informer)
            static_keys = set(self.static.pods) if self.static is not None else set()
            await self.collect_garbage(set(self.informer.cache) | static_keys)
            if self.static is not None:
                heartbeat = self.heartbeat
                self.mirrors = MirrorPods(
                    self.client,
                    self.static,
                    self.informer,
                    lambda: heartbeat.node,
                    resync_interval=self.settings.resync_interval,
                )
                self.mirrors.start()

    async def stop(self) -> None:
        await cancel(self._connecting)  # first: a start finishing in the background must not race this
        await cancel(self._rewatching)  # nor informers being re-opened
        if self.mirrors is not None:
            await self.mirrors.stop()
        if self.static is not None:
            await self.static.stop()
        await self.workers.stop()
        if self.proxy is not None:
            await self.proxy.stop()  # its table stays: services keep working while the agent is down
        if self.routes is not None:
            await self.routes.stop()
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if self.heartbeat is not None:
            if self.heartbeats is not None:
                self.heartbeats.remove(self.heartbeat)
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

    def _reconnected(self) -> None:
        """Heartbeats succeed again after failing (a network cut): re-open this agent's own watches."""
        if self._rewatching is None or self._rewatching.done():
            self._rewatching = asyncio.create_task(self.rewatch(), name="rewatch")

    async def rewatch(self) -> None:
        """List and watch again with every informer only this agent runs. A watch opened before a network
        cut may hang on a dead connection until TCP gives up, minutes later, and meanwhile this node would
        miss its pods' deletions (evictions); the kubelet closes all its connections on heartbeat failure
        for the same reason. The re-list hands the informers' handlers what changed meanwhile."""
        informers: list[Informer[Any]] = []
        if self.informer is not None:
            informers.append(self.informer)
        if self.owns_services:
            informers.append(self.services)
        if self._endpoints_started:
            informers.append(self.endpoints)
        if self.routes is not None:
            informers.append(self.routes.informer)
        for informer in informers:
            if informer.running:
                await informer.stop()
                informer.start()
        log.info("node %s: watches re-opened after the API server was unreachable", self.settings.node_name)

    async def check_runtime(self, timeout: float = 10.0) -> bool:
        """Ask the runtime whether it answers; on a change, log one line, post the Node's Ready condition
        at once (not at the next status interval), and once it is back resync every pod (what happened
        meanwhile is looked at now). True if it answered."""
        try:
            await asyncio.wait_for(self.runtime.version(), timeout)
            problem = None
        except Exception as exc:  # any failure means the same: the runtime does not answer
            problem = str(exc) or type(exc).__name__
        heartbeat = self.heartbeat
        if heartbeat is None or (problem is None) == (heartbeat.runtime_down is None):
            return problem is None
        heartbeat.runtime_down = problem
        if problem is not None:
            log.warning("container runtime is down: %s; node %s NotReady", problem, self.settings.node_name)
        else:
            log.info("container runtime is back; node %s Ready, resyncing its pods", self.settings.node_name)
            self.resync()
        if heartbeat.node is not None:
            try:
                await heartbeat.post_status()
            except ClientError as exc:
                log.warning("node %s status not written: %s", self.settings.node_name, exc)
        return problem is None

    async def _watch_runtime(self) -> None:
        interval = self.settings.runtime_check_interval or 5.0
        while True:
            await asyncio.sleep(interval)
            await self.check_runtime(timeout=max(interval, 5.0))

    def resync(self) -> None:
        """Enqueue every pod of this node: a missed event costs at most one resync period."""
        for key in self.pods():
            self.workers.enqueue(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_interval)
            self.resync()
