"""The ``default/kubernetes`` Service and its Endpoints: how pods find the API server.

The Service has the first address of the service range (10.254.0.1) and port 443 → the API server's
port, no selector; its Endpoints list every live API server. Several servers can share one store, so
each keeps its own address in with kube-apiserver's lease reconciler (``--endpoint-reconciler-type=
lease``): a Lease ``kube-system/apiserver-<id>`` renewed every ``interval`` carries the server's
``address:port``, and the Endpoints are rewritten from the unexpired Leases (expired ones are deleted).
A stopping server deletes its Lease and takes its address out at once.

Concurrency model: one task per server (``run``) renews and rewrites every ``interval``, re-making the
Service if someone deleted it. Writes go straight to storage with compare-and-swap and a few retries:
this is the API server keeping its own objects, below the REST layer, like the namespaces it bootstraps.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
from collections.abc import Callable

from controlplane.api.coordination import Lease, LeaseSpec
from controlplane.api.core import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    Service,
    ServicePort,
    ServiceSpec,
)
from controlplane.api.meta import ObjectMeta, TopLevel, now_micro, parse_time
from controlplane.api.registry import ResourceInfo, for_type

from . import errors
from .handlers import meta as meta_of
from .services import ServiceRegistry, store_service
from .storage import ObjectStorage

log = logging.getLogger(__name__)

APISERVER_IDENTITY_LABEL = "apiserver.kubernetes.io/identity"
#: On each API server's Lease: the ``address:port`` it puts in ``default/kubernetes``.
ADVERTISE_ANNOTATION = "peapod.io/advertise-address"


def advertise_address(host: str) -> str:
    """The address this server puts in ``default/kubernetes``: the listen host, or for a wildcard
    (0.0.0.0, ::) the address the machine reaches the outside with (no packet is sent), else 127.0.0.1."""
    if host not in ("0.0.0.0", "::", ""):
        if host == "localhost":
            return "127.0.0.1"
        return host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            address = str(probe.getsockname()[0])
            if address and not address.startswith("0."):
                return address
    except OSError:
        pass
    return "127.0.0.1"


class KubernetesService:
    """One API server's share of ``default/kubernetes`` (see the module docstring)."""

    def __init__(
        self,
        storage: ObjectStorage,
        registry: ServiceRegistry,
        prepare: Callable[[ResourceInfo, TopLevel], None],
        server_id: str,
        address: str,
        *,
        interval: float = 10.0,
        lease_ttl: float = 15.0,
    ) -> None:
        self.storage = storage
        self.registry = registry
        self.prepare = prepare  # the API's server-owned metadata for a create (uid, timestamps)
        self.server_id = server_id
        self.advertise_address = address
        self.interval = interval
        self.lease_ttl = lease_ttl

    async def ensure_service(self, port: int) -> None:
        """``default/kubernetes`` (ClusterIP: the range's first address; 443 → the API server's port)
        and its Endpoints: this server's address added, other servers' addresses kept."""
        info = for_type(Service)
        wanted = ServiceSpec(
            type="ClusterIP",
            cluster_ip=self.registry.cluster_ips.value_of(0),
            ports=[ServicePort(name="https", port=443, protocol="TCP", target_port=port)],
            session_affinity="None",
        )
        for _ in range(5):
            current = await self.storage.try_get(info, "default", "kubernetes")
            try:
                if current is None:
                    svc = Service(
                        metadata=ObjectMeta(
                            name="kubernetes",
                            namespace="default",
                            labels={"component": "apiserver", "provider": "kubernetes"},
                        ),
                        spec=wanted,
                    )
                    await store_service(self.storage, self.registry, self.prepare, svc)
                else:
                    assert isinstance(current, Service)
                    ports = current.spec.ports or []
                    if [(p.port, p.target_port) for p in ports] != [(443, port)]:
                        # Another server on this store may listen elsewhere: the last one to start wins,
                        # as in kube-apiserver (all servers of one cluster share one port).
                        current.spec.ports = wanted.ports
                        await self.storage.update(info, current, int(current.metadata.resource_version or 0))
                break
            except errors.APIError as exc:
                if exc.status.reason not in ("AlreadyExists", "Conflict"):
                    raise
        await self.ensure_endpoints(port)

    async def ensure_endpoints(self, port: int, remove: bool = False) -> None:
        """The lease reconciler (kube-apiserver's ``--endpoint-reconciler-type=lease``): renew (or, when
        stopping, delete) this server's Lease, then list the addresses of the unexpired ones."""
        await self._renew_lease(port, remove)
        info = for_type(Endpoints)
        for _ in range(5):
            ips = await self._live_addresses(port)
            current = await self.storage.try_get(info, "default", "kubernetes")
            subsets = (
                [
                    EndpointSubset(
                        addresses=[EndpointAddress(ip=ip) for ip in sorted(ips)],
                        ports=[EndpointPort(name="https", port=port, protocol="TCP")],
                    )
                ]
                if ips
                else None
            )
            try:
                if current is None:
                    ep = Endpoints(
                        metadata=ObjectMeta(
                            name="kubernetes",
                            namespace="default",
                            labels={"endpointslice.kubernetes.io/skip-mirror": "true"},
                        ),
                        subsets=subsets,
                    )
                    self.prepare(info, ep)
                    await self.storage.create(info, ep)
                elif isinstance(current, Endpoints) and current.subsets != subsets:
                    current.subsets = subsets
                    await self.storage.update(info, current, int(current.metadata.resource_version or 0))
                return
            except errors.APIError as exc:
                if exc.status.reason not in ("AlreadyExists", "Conflict"):
                    raise

    async def _renew_lease(self, port: int, remove: bool) -> None:
        info = for_type(Lease)
        name = f"apiserver-{self.server_id}"
        for _ in range(5):
            current = await self.storage.try_get(info, "kube-system", name)
            try:
                if remove:
                    if current is not None:
                        await self.storage.delete(info, current, int(meta_of(current).resource_version or 0))
                    return
                spec = LeaseSpec(
                    holder_identity=name,
                    lease_duration_seconds=max(1, round(self.lease_ttl)),
                    renew_time=now_micro(),
                )
                if isinstance(current, Lease):
                    spec.acquire_time = current.spec.acquire_time
                    current.spec = spec
                    await self.storage.update(info, current, int(current.metadata.resource_version or 0))
                else:
                    spec.acquire_time = spec.renew_time
                    lease = Lease(
                        metadata=ObjectMeta(
                            name=name,
                            namespace="kube-system",
                            labels={APISERVER_IDENTITY_LABEL: "kube-apiserver"},
                            annotations={ADVERTISE_ANNOTATION: f"{self.advertise_address}:{port}"},
                        ),
                        spec=spec,
                    )
                    self.prepare(info, lease)
                    await self.storage.create(info, lease)
                return
            except errors.APIError as exc:
                if exc.status.reason not in ("AlreadyExists", "Conflict", "NotFound"):
                    raise

    async def _live_addresses(self, port: int) -> set[str]:
        """Addresses of the servers on ``port`` whose Lease is unexpired; expired Leases are deleted."""
        info = for_type(Lease)
        _, leases, _ = await self.storage.list(info, "kube-system")
        moment = dt.datetime.now(dt.UTC)
        ips: set[str] = set()
        for lease in leases:
            if not isinstance(lease, Lease):
                continue
            m = lease.metadata
            if (m.labels or {}).get(APISERVER_IDENTITY_LABEL) != "kube-apiserver":
                continue
            renewed = lease.spec.renew_time
            ttl = lease.spec.lease_duration_seconds or 0
            if renewed is None or parse_time(renewed) + dt.timedelta(seconds=ttl) < moment:
                with contextlib.suppress(errors.APIError):
                    await self.storage.delete(info, lease, int(m.resource_version or 0))
                continue
            host, _, lease_port = ((m.annotations or {}).get(ADVERTISE_ANNOTATION) or "").rpartition(":")
            if host and lease_port == str(port):
                ips.add(host)
        return ips

    async def run(self, port: int) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.ensure_service(port)  # remade if deleted, then its Endpoints
            except errors.APIError as exc:  # e.g. the disk is full: one line, retried next round
                log.warning("reconciling the default/kubernetes Service failed: %s", exc.status.message)
            except Exception:
                log.exception("reconciling the default/kubernetes Service failed")
