"""One control-plane process: store + watch cache + API server, and the in-process components
(scheduler, controller-manager) that talk to it through the client like any other.

Lifecycle: ``start()`` opens the store, makes the default namespaces and the agents' credential (the
Secret ``kube-system/peapod-agent-proxy``, whose token the API server shows agents when it proxies logs
and exec — unless the token file gives the node a token of its own, see ``podproxy.py``), repairs
allocations (node pod CIDRs, Service cluster IPs and node ports), starts serving (uvicorn),
keeps ``default/kubernetes`` pointing at itself (``kubernetes_service``) and
``kube-system/kube-dns`` in place (``cluster_dns``), then starts the
components against the server's own URL; ``stop()`` undoes it in reverse, each background task
cancelled with a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from controlplane.api.core import (
    Event,
    Namespace,
    Node,
    Secret,
    Service,
)
from controlplane.api.meta import ObjectMeta, parse_time
from controlplane.api.registry import for_type
from controlplane.client.streams import PROXY_SECRET_NAME, PROXY_SECRET_NAMESPACE, secret_token
from controlplane.controllers.manager import ControllerManager, ControllerSettings
from controlplane.defaults import apply_defaults
from controlplane.store.sqlite import SQLiteBackend

from . import errors
from .admission import DefaultTolerationSeconds, PodSecurity
from .allocators import node_port_allocator, parse_port_range, pod_cidr_allocator, service_ip_allocator
from .app import APIServer
from .auth import MASTERS_GROUP, Authenticator, is_loopback, load_token_file
from .cluster_dns import ClusterDNSService, check_cluster_dns
from .handlers import API
from .kubernetes_service import KubernetesService, advertise_address
from .pki import PKIError, ServingFiles, ensure_serving_files, serving_names
from .ratelimit import DEFAULT_BURST, DEFAULT_RATE, RateLimiter
from .services import ServiceRegistry
from .storage import ObjectStorage
from .watchcache import WatchCache

log = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "peapod"


@dataclass
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    listen: str = "127.0.0.1:6443"
    #: The address put in ``default/kubernetes``'s Endpoints instead of the listen host (kube-apiserver's
    #: ``--advertise-address``): for a server reached through a proxy or another interface than it binds.
    advertise_address: str | None = None
    token_file: Path | None = None
    #: Serve HTTPS with a serving certificate signed by the cluster CA, both made in ``DATA/pki`` on
    #: the first start and kept (:mod:`controlplane.server.pki`).
    tls: bool = False
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_prefix: int = 24
    #: Where Service cluster IPs come from; its first address is the ``kubernetes`` Service's.
    service_cluster_ip_range: str = "10.254.0.0/16"
    #: The ``kube-system/kube-dns`` Service's cluster IP (the agents' ``--cluster-dns``): in the range.
    cluster_dns: str = "10.254.0.10"
    #: The cluster's DNS domain, as the agents have it (``--cluster-domain``).
    cluster_domain: str = "cluster.local"
    #: Node ports of NodePort and LoadBalancer Services, both ends included.
    service_node_port_range: str = "30000-32767"
    #: How often this server renews its Lease and rewrites ``default/kubernetes``'s Endpoints, and how
    #: long an unrenewed Lease keeps its server's address there (kube-apiserver: 10 s and 15 s).
    endpoint_reconcile_interval: float = 10.0
    endpoint_lease_ttl: float = 15.0
    event_ttl: float = 3600.0
    event_sweep_interval: float = 60.0
    compact_keep_seconds: float = 300.0
    compact_keep_revisions: int = 10_000
    bookmark_interval: float = 60.0
    watch_cache_capacity: int = 10_000
    scheduler: bool = True
    controllers: bool = True
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    #: tolerationSeconds the DefaultTolerationSeconds admission gives new pods for the NoExecute
    #: ``node.kubernetes.io/not-ready`` and ``node.kubernetes.io/unreachable`` taints.
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    #: Pod security admission: hostPath volumes are refused outside :attr:`host_path_dir` and these
    #: prefixes (``--allow-host-path``); privileged containers (and capabilities beyond the baseline
    #: list) and hostNetwork/hostPID/hostIPC are refused unless allowed.
    allowed_host_paths: tuple[str, ...] = ()
    allow_privileged: bool = False
    allow_host_namespaces: bool = False
    #: Per-user request rate limit (token bucket; 0 turns it off); ``system:masters`` is exempt.
    max_requests_per_second: float = DEFAULT_RATE
    max_request_burst: int = DEFAULT_BURST

    @property
    def host_path_dir(self) -> Path:
        """The one place hostPath volumes may point at by default: inside the data directory, but not
        the data directory itself (a pod mounting that could read the tokens and rewrite the store)."""
        return self.data_dir.absolute() / "host-paths"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def service_ip_allocator_check(cidr: str) -> str:
    """The normalised range, or ValueError naming what is wrong."""
    import ipaddress

    try:
        network = ipaddress.ip_network(cidr)
    except ValueError:
        raise ValueError(
            f"invalid service cluster IP range {cidr!r}: want a CIDR like 10.254.0.0/16"
        ) from None
    if network.version != 4 or network.num_addresses < 8:
        raise ValueError(f"invalid service cluster IP range {cidr}: want an IPv4 range of /29 or larger")
    return str(network)


class ControlPlaneError(Exception):
    """A setting that makes the control plane refuse to start."""


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        tokens = None
        if settings.token_file is not None:
            try:
                tokens = load_token_file(settings.token_file)
            except (OSError, ValueError) as exc:
                raise ControlPlaneError(f"cannot load token file: {exc}") from None
        elif not is_loopback(settings.host):
            raise ControlPlaneError(
                f"refusing to listen on {settings.listen} without --token-file: with no authentication "
                "the API server only listens on loopback (127.0.0.1 or ::1)"
            )
        try:
            ip_range = service_ip_allocator_check(settings.service_cluster_ip_range)
            parse_port_range(settings.service_node_port_range)
        except ValueError as exc:
            raise ControlPlaneError(str(exc)) from None
        dns_problem = check_cluster_dns(settings.cluster_dns, ip_range)
        if dns_problem is not None:
            raise ControlPlaneError(dns_problem)
        try:
            pod_security = PodSecurity(
                (str(settings.host_path_dir), *settings.allowed_host_paths),
                allow_privileged=settings.allow_privileged,
                allow_host_namespaces=settings.allow_host_namespaces,
            )
            rate_limiter = RateLimiter(settings.max_requests_per_second, settings.max_request_burst)
        except ValueError as exc:
            raise ControlPlaneError(str(exc)) from None
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only: tokens, keys, store
        with contextlib.suppress(FileExistsError):  # SQLite gives its -wal and -shm files this mode too
            os.close(os.open(settings.data_dir / "state.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.backend = SQLiteBackend(
            settings.data_dir / "state.db",
            keep_seconds=settings.compact_keep_seconds,
            keep_revisions=settings.compact_keep_revisions,
        )
        self.storage = ObjectStorage(self.backend)
        self.cache = WatchCache(self.backend, capacity=settings.watch_cache_capacity)
        self.services = ServiceRegistry(
            service_ip_allocator(self.backend, ip_range),
            node_port_allocator(self.backend, settings.service_node_port_range),
            ip_range,
            settings.service_node_port_range,
        )
        self.api = API(
            self.storage,
            pod_cidr_allocator(self.backend, settings.cluster_cidr, settings.node_cidr_prefix),
            DefaultTolerationSeconds(
                settings.default_not_ready_toleration_seconds, settings.default_unreachable_toleration_seconds
            ),
            self.services,
            pod_security,
        )
        self.server = APIServer(
            self.api,
            self.cache,
            Authenticator(tokens, settings.token_file),
            bookmark_interval=settings.bookmark_interval,
            rate_limiter=rate_limiter,
        )
        self.admin_token = next((t for t, u in (tokens or {}).items() if MASTERS_GROUP in u.groups), None)
        #: The cluster CA's certificate clients check this server with (``--tls``), once started.
        self.ca_file: Path | None = None
        self._uvicorn: uvicorn.Server | None = None
        self.controllers: ControllerManager | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._components: list[Callable[[], Awaitable[None]]] = []
        self.url = ""
        self.server_id = secrets.token_hex(8)
        self.kubernetes_service: KubernetesService | None = None
        self.cluster_dns = ClusterDNSService(
            self.storage,
            self.services,
            self.api._prepare_create,
            settings.cluster_dns,
            interval=settings.endpoint_reconcile_interval,
        )
        self.port = 0

    async def start(self) -> None:
        await self.backend.start()
        await self.cache.start()
        await self._bootstrap()
        try:  # before serving, so no Service created through the API can take its address first
            await self.cluster_dns.ensure()
        except errors.APIError as exc:
            log.error("cannot make the kube-system/kube-dns Service: %s", exc.status.message)
        self.server.proxy.token = await self._agent_credential()
        try:
            family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
            sock = socket.create_server((self.settings.host, self.settings.port), family=family)
            # Accepted connections inherit it: asyncio only sets TCP_NODELAY itself on sockets made with
            # IPPROTO_TCP, and without it every reused connection waits ~40 ms (Nagle + delayed ACK).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            await self.cache.close()
            await self.backend.close()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ControlPlaneError(f"cannot listen on {self.settings.listen}: {reason}") from None
        tls: dict[str, str] = {}
        if self.settings.tls:
            try:
                files = await asyncio.to_thread(self._serving_files)
            except (OSError, PKIError) as exc:
                sock.close()
                await self.cache.close()
                await self.backend.close()
                raise ControlPlaneError(f"cannot prepare TLS: {exc}") from None
            self.ca_file = files.ca_cert
            tls = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
        config = uvicorn.Config(
            self.server.app,
            **tls,  # type: ignore[arg-type]
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
            # Longer than clients keep idle connections (httpx: 5 s), so the server never closes one
            # just as a client reuses it.
            timeout_keep_alive=75,
            ws="websockets-sansio",  # pods/exec
            ws_per_message_deflate=False,
        )
        self._uvicorn = uvicorn.Server(config)
        serve = asyncio.create_task(self._uvicorn.serve(sockets=[sock]), name="apiserver")
        while not self._uvicorn.started:  # uvicorn offers a flag, not an event
            if serve.done():
                raise ControlPlaneError(f"the API server on {self.settings.listen} stopped while starting")
            await asyncio.sleep(0.01)
        self._tasks.append(serve)
        port = sock.getsockname()[1]
        self.port = port
        host = self.settings.host
        scheme = "https" if self.settings.tls else "http"
        self.url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
        self.server.server_address = f"{host}:{port}"
        self.kubernetes_service = KubernetesService(
            self.storage,
            self.services,
            self.api._prepare_create,
            self.server_id,
            self.settings.advertise_address or advertise_address(host),
            interval=self.settings.endpoint_reconcile_interval,
            lease_ttl=self.settings.endpoint_lease_ttl,
        )
        await self.kubernetes_service.ensure_service(port)
        self._tasks.append(asyncio.create_task(self.kubernetes_service.run(port), name="endpoint-reconciler"))
        self._tasks.append(asyncio.create_task(self.cluster_dns.run(), name="cluster-dns"))
        self._tasks.append(asyncio.create_task(self._sweep_events(), name="event-ttl"))
        await self._start_components()
        self.server.ready = True
        log.info("control plane serving on %s (data in %s)", self.url, self.settings.data_dir)

    async def _start_components(self) -> None:
        from controlplane.client import Client
        from controlplane.client.informer import SharedInformerFactory

        if not (self.settings.scheduler or self.settings.controllers):
            return
        client = Client(
            self.url,
            self.admin_token,
            user_agent="peapod-controlplane",
            verify=str(self.ca_file) if self.ca_file is not None else True,
        )
        self._components.append(client.close)
        # One informer per kind for every component of this process: one watch and one cached copy of
        # each pod, however many controllers look at pods.
        informers = SharedInformerFactory(client)
        if self.settings.scheduler:
            from controlplane.scheduler import Scheduler

            scheduler = Scheduler(client, informers=informers)
            await scheduler.start()
            self._components.append(scheduler.stop)
        if self.settings.controllers:
            self.controllers = ControllerManager(client, self.settings.controller, informers)
            self._components.append(self.controllers.stop)
            await self.controllers.start()

    def _serving_files(self) -> ServingFiles:
        """The CA and a serving certificate naming every address clients may use (blocking)."""
        s = self.settings
        names = serving_names(
            s.host,
            advertise_address=s.advertise_address or advertise_address(s.host),
            service_cluster_ip_range=s.service_cluster_ip_range,
            cluster_domain=s.cluster_domain,
        )
        return ensure_serving_files(s.data_dir / "pki", names)

    async def stop(self) -> None:
        self.server.ready = False
        if self._tasks and self.kubernetes_service is not None:  # serving: take our address out
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kubernetes_service.ensure_endpoints(self.port, remove=True), 5)
        for stop in reversed(self._components):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stop(), 10)
        self._components.clear()
        await self.cache.close()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        for task in reversed(self._tasks):
            if task.get_name() != "apiserver":
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
        self._tasks.clear()
        await self.server.proxy.close()
        await self.backend.close()

    async def _bootstrap(self) -> None:
        """Default namespaces, and allocations made to match the nodes that exist (after a crash)."""
        ns_info = for_type(Namespace)
        for name in DEFAULT_NAMESPACES:
            if await self.storage.try_get(ns_info, None, name) is None:
                ns = Namespace(metadata=ObjectMeta(name=name))
                self.api._prepare_create(ns_info, ns)
                apply_defaults(ns)
                with contextlib.suppress(errors.APIError):
                    await self.storage.create(ns_info, ns)
        _, nodes, _ = await self.storage.list(for_type(Node), None)
        await self.api.pod_cidrs.repair(
            (n.spec.pod_cidr, n.metadata.name or "") for n in nodes if isinstance(n, Node) and n.spec.pod_cidr
        )
        _, services, _ = await self.storage.list(for_type(Service), None)
        await self.services.repair(s for s in services if isinstance(s, Service))

    async def _agent_credential(self) -> str:
        """The token of ``kube-system/peapod-agent-proxy``, made (random, 256 bits) if missing. Several
        API servers on one store race to make it; whoever loses reads the winner's."""
        info = for_type(Secret)
        for _ in range(5):
            existing = await self.storage.try_get(info, PROXY_SECRET_NAMESPACE, PROXY_SECRET_NAME)
            if isinstance(existing, Secret):
                token = secret_token(existing.data if isinstance(existing.data, dict) else None)
                if token is not None:
                    return token
            token = secrets.token_urlsafe(32)
            data = {"token": base64.b64encode(token.encode()).decode()}
            try:
                if isinstance(existing, Secret):  # there, but without a usable token: give it one
                    existing.data = data
                    await self.storage.update(info, existing, int(existing.metadata.resource_version or 0))
                else:
                    secret = Secret(
                        metadata=ObjectMeta(
                            name=PROXY_SECRET_NAME,
                            namespace=PROXY_SECRET_NAMESPACE,
                            labels={"app.kubernetes.io/managed-by": "peapod"},
                        ),
                        type="Opaque",
                        data=data,
                    )
                    self.api._prepare_create(info, secret)
                    apply_defaults(secret)
                    await self.storage.create(info, secret)
            except errors.APIError as exc:
                if exc.status.reason not in ("AlreadyExists", "Conflict"):
                    raise
                continue
            return token
        raise ControlPlaneError(f"cannot make the Secret {PROXY_SECRET_NAMESPACE}/{PROXY_SECRET_NAME}")

    async def _sweep_events(self) -> None:
        """Events expire after the TTL (like etcd leases in Kubernetes), so crash loops cannot fill it."""
        while True:
            await asyncio.sleep(self.settings.event_sweep_interval)
            try:
                await self.expire_events()
            except Exception:
                log.exception("event expiry failed")

    async def expire_events(self) -> int:
        info = for_type(Event)
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.settings.event_ttl)
        removed = 0
        start = ""
        while True:
            _, items, next_key = await self.storage.list(info, None, start_key=start, limit=500)
            for ev in items:
                assert isinstance(ev, Event)
                stamp = ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp
                if stamp and parse_time(stamp) < cutoff:
                    with contextlib.suppress(errors.APIError):
                        await self.storage.delete(info, ev, int(ev.metadata.resource_version or 0))
                        removed += 1
            if next_key is None:
                return removed
            start = next_key
