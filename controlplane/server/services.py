"""The Service registry's allocations (kube-apiserver's ``pkg/registry/core/service``): cluster IPs and
node ports, taken on create, adjusted on update, given back on delete.

Order of a write, as in kube-apiserver: the update path first copies what the stored object already
holds (``patchAllocatedValues``: a PUT without ``clusterIP`` or ``nodePort`` keeps them) and drops what
a type change makes meaningless (``dropTypeDependentFields``: NodePort → ClusterIP forgets its node
ports, → ExternalName its cluster IP), then allocates what is new. Every allocation is made in the
store (compare-and-swap, see ``allocators``) before the object is written; the hooks hand back an
``undo`` the handler runs when the write fails, so nothing leaks. Values given up by an update (removed
ports, the cluster IP of a Service turned ExternalName) are released only once the write succeeded.

Owners are ``namespace/name uid``: a Service deleted and re-made under the same name never frees the
new one's values. Allocation failures are 422s in kube-apiserver's words, naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from controlplane import validation
from controlplane.api.core import Service, ServicePort
from controlplane.api.meta import TopLevel
from controlplane.api.registry import ResourceInfo, for_type
from controlplane.defaults import apply_defaults

from . import errors
from .allocators import AllocationError, AlreadyAllocated, Contention, NotInRange, RangeAllocator

if TYPE_CHECKING:
    from .storage import ObjectStorage

Undo = Callable[[], Awaitable[None]]
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def owner_of(svc: Service) -> str:
    m = svc.metadata
    return f"{m.namespace}/{m.name} {m.uid}"


def needs_cluster_ip(svc: Service) -> bool:
    return (svc.spec.type or "ClusterIP") != "ExternalName" and svc.spec.cluster_ip != "None"


def needs_node_ports(svc: Service) -> bool:
    spec = svc.spec
    if spec.type == "NodePort":
        return True
    return spec.type == "LoadBalancer" and spec.allocate_load_balancer_node_ports is not False


def needs_health_check_port(svc: Service) -> bool:
    return svc.spec.type == "LoadBalancer" and svc.spec.external_traffic_policy == "Local"


def node_ports_of(svc: Service) -> list[int]:
    """Every node port ``svc`` holds (its ports' and its health-check port), each number once."""
    ports = {p.node_port for p in svc.spec.ports or () if p.node_port}
    if svc.spec.health_check_node_port:
        ports.add(svc.spec.health_check_node_port)
    return sorted(ports)


class ServiceRegistry:
    """Allocation hooks for Services, installed on the API's create/update/delete hooks."""

    def __init__(
        self, cluster_ips: RangeAllocator[str], node_ports: RangeAllocator[int], cidr: str, port_range: str
    ):
        self.cluster_ips = cluster_ips
        self.node_ports = node_ports
        self.cidr = cidr
        self.port_range = port_range

    # --- errors in kube-apiserver's words ------------------------------------------------------

    def _ip_error(self, svc: Service, ip: str, exc: AllocationError) -> errors.APIError:
        if isinstance(exc, Contention):
            return _retry_later(svc)
        if isinstance(exc, NotInRange):
            why = f"provided IP is not in the valid range. The range of valid IPs is {self.cidr}"
        elif isinstance(exc, AlreadyAllocated):
            why = "provided IP is already allocated"
        else:
            why = "range is full"
        field = validation.invalid(
            "spec.clusterIPs", [ip] if ip else [], f"failed to allocate IP {ip}: {why}"
        )
        return errors.invalid("Service", svc.metadata.name or "", [field])

    def _port_error(self, svc: Service, path: str, port: int | None, exc: AllocationError) -> errors.APIError:
        if isinstance(exc, Contention):
            return _retry_later(svc)
        if isinstance(exc, NotInRange):
            why = f"provided port is not in the valid range. The range of valid ports is {self.port_range}"
        elif isinstance(exc, AlreadyAllocated):
            why = "provided port is already allocated"
        else:
            why = "range is full"
        field = validation.invalid(path, port if port is not None else 0, why)
        return errors.invalid("Service", svc.metadata.name or "", [field])

    # --- the pieces ------------------------------------------------------------------------------

    async def _allocate_ip(self, svc: Service, owner: str) -> str:
        wanted = svc.spec.cluster_ip or (svc.spec.cluster_ips[0] if svc.spec.cluster_ips else None) or None
        try:
            ip = await self.cluster_ips.allocate_many(owner, [wanted])
        except AllocationError as exc:
            raise self._ip_error(svc, wanted or "", exc) from None
        svc.spec.cluster_ip = ip[0]
        svc.spec.cluster_ips = [ip[0]]
        return ip[0]

    async def _allocate_ports(self, svc: Service, held: Iterable[int], owner: str) -> list[int]:
        """Give every port (and the health check, when needed) a node port; keep the ``held`` ones
        (already the Service's); returns the newly taken ones."""
        keep = set(held)
        slots: list[tuple[ServicePort | None, int | None, str]] = []
        seen: set[int] = set()
        if needs_node_ports(svc):
            for i, port in enumerate(svc.spec.ports or ()):
                if port.node_port in keep or (port.node_port and port.node_port in seen):
                    seen.add(port.node_port or 0)  # TCP and UDP of one number share one allocation
                    continue
                slots.append((port, port.node_port or None, f"spec.ports[{i}].nodePort"))
                if port.node_port:
                    seen.add(port.node_port)
        hc = svc.spec.health_check_node_port
        if needs_health_check_port(svc) and hc not in keep:
            slots.append((None, hc or None, "spec.healthCheckNodePort"))
        try:
            taken = await self.node_ports.allocate_many(owner, [want for _, want, _ in slots])
        except AllocationError as exc:
            _, want, path = slots[exc.index]
            raise self._port_error(svc, path, want, exc) from None
        for (slot, _, _), value in zip(slots, taken, strict=True):
            if slot is None:
                svc.spec.health_check_node_port = value
            else:
                slot.node_port = value
        return taken

    # --- hooks ---------------------------------------------------------------------------------

    async def on_create(self, obj: TopLevel) -> Undo | None:
        assert isinstance(obj, Service)
        owner = owner_of(obj)
        ip = await self._allocate_ip(obj, owner) if needs_cluster_ip(obj) else None
        try:
            ports = await self._allocate_ports(obj, (), owner)
        except BaseException:
            if ip is not None:
                await self.cluster_ips.release(ip, owner)
            raise
        return self._undo(owner, [ip] if ip else [], ports)

    def _undo(self, owner: str, ips: list[str], ports: list[int]) -> Undo | None:
        if not ips and not ports:
            return None

        async def undo() -> None:
            await self.cluster_ips.release_many(ips, owner)
            await self.node_ports.release_many(ports, owner)

        return undo

    async def on_update(self, old: TopLevel, new: TopLevel) -> tuple[Undo | None, Undo | None]:
        """Returns (undo on failure, finish after the write)."""
        assert isinstance(old, Service) and isinstance(new, Service)
        owner = owner_of(old)
        self._drop_type_dependent(old, new)
        self._patch_allocated(old, new)
        ips: list[str] = []
        old_ip = old.spec.cluster_ip if needs_cluster_ip(old) else None
        if needs_cluster_ip(new) and old_ip is None:
            ips.append(await self._allocate_ip(new, owner))
        try:
            ports = await self._allocate_ports(new, node_ports_of(old), owner)
        except BaseException:
            await self.cluster_ips.release_many(ips, owner)
            raise
        gone_ports = sorted(set(node_ports_of(old)) - set(node_ports_of(new)))
        gone_ip = [old_ip] if old_ip and not needs_cluster_ip(new) else []

        async def finish() -> None:
            await self.cluster_ips.release_many(gone_ip, owner)
            await self.node_ports.release_many(gone_ports, owner)

        return self._undo(owner, ips, ports), finish if gone_ip or gone_ports else None

    async def on_delete(self, obj: TopLevel) -> None:
        assert isinstance(obj, Service)
        owner = owner_of(obj)
        if needs_cluster_ip(obj) and obj.spec.cluster_ip:
            await self.cluster_ips.release(obj.spec.cluster_ip, owner)
        await self.node_ports.release_many(node_ports_of(obj), owner)

    @staticmethod
    def _drop_type_dependent(old: Service, new: Service) -> None:
        """What the new type makes meaningless, when the client left it as it was."""
        if new.spec.type == "ExternalName" and old.spec.type != "ExternalName":
            if new.spec.cluster_ip == old.spec.cluster_ip:
                new.spec.cluster_ip = None
                new.spec.cluster_ips = None
            new.spec.ip_families = None
            new.spec.ip_family_policy = None
        if not needs_node_ports(new) and needs_node_ports(old):
            old_ports = {p.node_port for p in old.spec.ports or ()}
            for port in new.spec.ports or ():
                if port.node_port in old_ports:
                    port.node_port = None
        if new.spec.type not in NODE_PORT_TYPES and old.spec.type in NODE_PORT_TYPES:
            if new.spec.external_traffic_policy == old.spec.external_traffic_policy:
                new.spec.external_traffic_policy = None
        if new.spec.type != "LoadBalancer" and old.spec.type == "LoadBalancer":
            if new.spec.allocate_load_balancer_node_ports == old.spec.allocate_load_balancer_node_ports:
                new.spec.allocate_load_balancer_node_ports = None
        if (
            not needs_health_check_port(new)
            and new.spec.health_check_node_port == old.spec.health_check_node_port
        ):
            new.spec.health_check_node_port = None

    @staticmethod
    def _patch_allocated(old: Service, new: Service) -> None:
        """``patchAllocatedValues``: what the stored Service holds, a replacement that omits it keeps."""
        if (
            needs_cluster_ip(new)
            and needs_cluster_ip(old)
            and not new.spec.cluster_ip
            and not new.spec.cluster_ips
        ):
            new.spec.cluster_ip = old.spec.cluster_ip
            new.spec.cluster_ips = list(old.spec.cluster_ips or [old.spec.cluster_ip or ""])
        if needs_node_ports(new) and needs_node_ports(old):
            held = {(p.port, p.protocol or "TCP"): p.node_port for p in old.spec.ports or () if p.node_port}
            for port in new.spec.ports or ():
                if not port.node_port:
                    port.node_port = held.get((port.port, port.protocol or "TCP"))
        if (
            needs_health_check_port(new)
            and needs_health_check_port(old)
            and not new.spec.health_check_node_port
        ):
            new.spec.health_check_node_port = old.spec.health_check_node_port

    # --- repair ----------------------------------------------------------------------------------

    async def repair(self, services: Iterable[Service]) -> None:
        """Make both allocators match the Services that exist (leaks after a crash dropped)."""
        ips: list[tuple[str, str]] = []
        ports: list[tuple[int, str]] = []
        for svc in services:
            owner = owner_of(svc)
            if needs_cluster_ip(svc) and svc.spec.cluster_ip:
                ips.append((svc.spec.cluster_ip, owner))
            ports += [(p, owner) for p in node_ports_of(svc)]
        await self.cluster_ips.repair(ips)
        await self.node_ports.repair(ports)


def _retry_later(svc: Service) -> errors.APIError:
    """Allocation lost its compare-and-swap too often to other API servers: a Conflict, which clients
    retry, rather than a claim that the range is full."""
    return errors.conflict("services", svc.metadata.name or "", "the allocation record is busy; try again")


async def store_service(
    storage: ObjectStorage,
    registry: ServiceRegistry,
    prepare: Callable[[ResourceInfo, TopLevel], None],
    svc: Service,
) -> None:
    """Create a Service straight in storage, as the API server does for its own (``default/kubernetes``,
    ``kube-system/kube-dns``): server-owned metadata, defaults, its allocations taken first and given
    back if the write fails (an APIError, raised on)."""
    info = for_type(Service)
    prepare(info, svc)
    apply_defaults(svc)
    undo = await registry.on_create(svc)
    try:
        await storage.create(info, svc)
    except errors.APIError:
        if undo is not None:
            await undo()
        raise
