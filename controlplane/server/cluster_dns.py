"""The ``kube-system/kube-dns`` Service: the address every ClusterFirst pod's resolv.conf names.

Kubernetes clusters get it from an addon (CoreDNS's manifest); peapod has no DNS pods to select, since
every node's agent answers DNS itself and each node's proxy sends this Service's traffic to the node-local
server. So the control plane keeps the Service itself, like ``default/kubernetes``: made at start with the
configured cluster IP (the agents' ``--cluster-dns``; it must lie in the service range), kept when it
exists, re-made when someone deletes it. Its cluster IP goes through the Service registry's allocator, so
no other Service is ever handed that address.

Writes go straight to storage with compare-and-swap (the API server keeping its own objects, below the
REST layer); one task per server re-checks every ``interval``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable

from controlplane.api.core import Service, ServicePort, ServiceSpec
from controlplane.api.meta import ObjectMeta, TopLevel
from controlplane.api.registry import ResourceInfo, for_type

from . import errors
from .services import ServiceRegistry, store_service
from .storage import ObjectStorage

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
NAME = "kube-dns"
LABELS = {
    "k8s-app": "kube-dns",
    "kubernetes.io/cluster-service": "true",
    "kubernetes.io/name": "CoreDNS",
}


def check_cluster_dns(cluster_dns: str, service_range: str) -> str | None:
    """Why ``cluster_dns`` cannot be the kube-dns Service's address in ``service_range``, or None.
    The range's network and broadcast addresses are never Service IPs, and its first address is the
    ``kubernetes`` Service's."""
    try:
        ip = ipaddress.IPv4Address(cluster_dns)
    except ValueError:
        return f"invalid cluster DNS address {cluster_dns!r}: want an IPv4 address like 10.254.0.10"
    network = ipaddress.IPv4Network(service_range)
    if ip not in network or ip in (network.network_address, network.broadcast_address):
        return (
            f"the cluster DNS address {cluster_dns} is not in the service cluster IP range {service_range}: "
            "the kube-dns Service needs an address of that range (set --cluster-dns accordingly)"
        )
    if int(ip) == int(network.network_address) + 1:
        return f"the cluster DNS address {cluster_dns} is the kubernetes Service's (the range's first)"
    return None


def wanted_spec(cluster_ip: str) -> ServiceSpec:
    return ServiceSpec(
        type="ClusterIP",
        cluster_ip=cluster_ip,
        ports=[
            ServicePort(name="dns", port=53, protocol="UDP", target_port=53),
            ServicePort(name="dns-tcp", port=53, protocol="TCP", target_port=53),
        ],
        session_affinity="None",
    )


class ClusterDNSService:
    """Keeps ``kube-system/kube-dns`` (see the module docstring)."""

    def __init__(
        self,
        storage: ObjectStorage,
        registry: ServiceRegistry,
        prepare: Callable[[ResourceInfo, TopLevel], None],
        cluster_ip: str,
        *,
        interval: float = 10.0,
    ) -> None:
        self.storage = storage
        self.registry = registry
        self.prepare = prepare  # the API's server-owned metadata for a create (uid, timestamps)
        self.cluster_ip = cluster_ip
        self.interval = interval

    async def ensure(self) -> None:
        """Make the Service if it is missing; an existing one is left as its owner edited it. Another
        Service holding the address is an error (APIError 422, in the registry's words)."""
        info = for_type(Service)
        for _ in range(5):
            if await self.storage.try_get(info, NAMESPACE, NAME) is not None:
                return
            svc = Service(
                metadata=ObjectMeta(name=NAME, namespace=NAMESPACE, labels=dict(LABELS)),
                spec=wanted_spec(self.cluster_ip),
            )
            try:
                await store_service(self.storage, self.registry, self.prepare, svc)
                return
            except errors.APIError as exc:
                if exc.status.reason != "AlreadyExists":  # another server made it first: fine
                    raise

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.ensure()  # re-made if deleted
            except errors.APIError as exc:
                log.warning("cannot make the %s/%s Service: %s", NAMESPACE, NAME, exc.status.message)
            except Exception:
                log.exception("reconciling the %s/%s Service failed", NAMESPACE, NAME)
