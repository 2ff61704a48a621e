"""The endpoints controller: one Endpoints object per selector Service, listing its pods' addresses.

Kubernetes' ``pkg/controller/endpoint``. For every Service with a non-empty ``spec.selector`` (and not
ExternalName) it keeps an Endpoints object of the same name: the IPs of the matching pods in the
Service's namespace, ready pods in ``addresses`` and the rest in ``notReadyAddresses``, grouped into
subsets that share one port set (``RepackSubsets``) and sorted, so an unchanged world yields an
identical object and no write. Selector-less Services keep their hand-written Endpoints untouched;
a deleted Service's Endpoints are deleted.

Concurrency model: three informers (Services, Pods, Endpoints) feed one work queue of Service keys
(``namespace/name``); their handlers run on the informers' tasks, update two small indexes (pods by
namespace, Service selectors by namespace) and only enqueue. ``settings.workers`` workers run
``sync(key)``, which is level-based: it recomputes the Endpoints from the caches alone and writes only
when subsets or labels differ. The queue never hands one key to two workers at once.

Batching: a pod change enqueues its Services with ``add_after(batch period)``; a pending timer is not
extended, so a burst of pod changes costs at most one write per Service per period, each computed from
the full current state (a still-ready pod never disappears from an intermediate version). Service
changes, pod terminations (deletionTimestamp set, terminal phase, deletion) and edits of managed
Endpoints by others are enqueued at once: traffic must leave a dying pod without waiting.

Our own writes reach the Endpoints cache a little later through the watch; until they do, a sync for
that key would compare against a stale object and conflict, so it waits for the write's
resourceVersion to show up (``_expected``) and is re-run then.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import ipaddress
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controlplane.api.core import (
    EndpointAddress,
    EndpointPort,
    Endpoints,
    EndpointSubset,
    ObjectReference,
    Pod,
    Service,
    ServicePort,
)
from controlplane.api.meta import ObjectMeta, parse_time
from controlplane.client import ApiError, Client, EventRecorder, Informer, NotFound, key_of
from controlplane.client.informer import InformerUse, SharedInformerFactory, wait_synced
from controlplane.selectors import Selector, from_set
from controlplane.status import pod_ready
from controlplane.tasks import cancel

from .workqueue import WorkQueue, run_workers

if TYPE_CHECKING:
    from .manager import ControllerSettings

log = logging.getLogger(__name__)

#: When the change that led to this version of the Endpoints happened (latency SLIs use it).
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
#: Set to ``truncated`` when more than MAX_CAPACITY addresses had to be cut.
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
#: Endpoints used as leader-election locks are not the controller's to delete.
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_CAPACITY = 1000
#: How long a sync waits for its own last write to reach the cache before ignoring the expectation.
_EXPECTATION_TIMEOUT = 5.0

_PortKey = tuple[str, int, str, str]
_AddrKey = tuple[str, str]


# --- computing the desired subsets (pure functions) ----------------------------------------------


def _terminal(pod: Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def should_pod_be_in_endpoints(pod: Pod, include_terminating: bool) -> bool:
    """``ShouldPodBeInEndpoints``: an IP, not finished, and not terminating unless tolerated."""
    if _terminal(pod):
        return False
    if not pod.status.pod_ip and not pod.status.pod_ips:
        return False
    return include_terminating or pod.metadata.deletion_timestamp is None


def is_headless(svc: Service) -> bool:
    """``clusterIP: None``. (peapod does not allocate cluster IPs, so an unset one is not headless.)"""
    return svc.spec.cluster_ip == "None" or (svc.spec.cluster_ips or [""])[0] == "None"


def find_port(pod: Pod, port: ServicePort) -> int | None:
    """``podutil.FindPort``: a number as is; a name looked up in the pod's containers (and sidecars)
    with the same protocol. None when the pod does not expose that name."""
    target = port.target_port if port.target_port is not None else port.port
    if isinstance(target, int):
        return target or port.port
    protocol = port.protocol or "TCP"
    containers = list(pod.spec.containers)
    containers += [c for c in pod.spec.init_containers or () if c.restart_policy == "Always"]
    for container in containers:
        for cport in container.ports or ():
            if cport.name == target and (cport.protocol or "TCP") == protocol:
                return cport.container_port
    return None


def _pod_ip(pod: Pod, svc: Service) -> str | None:
    """The pod IP of the Service's (first) IP family, as ``podToEndpointAddressForService`` picks it."""
    ips = [p.ip for p in pod.status.pod_ips or () if p.ip] or (
        [pod.status.pod_ip] if pod.status.pod_ip else []
    )
    if not ips:
        return None
    families = svc.spec.ip_families
    if not families:
        return ips[0]
    want_v6 = families[0] == "IPv6"
    for ip in ips:
        with contextlib.suppress(ValueError):
            if (ipaddress.ip_address(ip).version == 6) == want_v6:
                return ip
    return None


def endpoint_address(pod: Pod, svc: Service, ip: str) -> EndpointAddress:
    meta = pod.metadata
    hostname = None
    if (
        pod.spec.hostname
        and pod.spec.subdomain == svc.metadata.name
        and meta.namespace == svc.metadata.namespace
    ):
        hostname = pod.spec.hostname
    return EndpointAddress(
        ip=ip,
        hostname=hostname,
        node_name=pod.spec.node_name or None,
        target_ref=ObjectReference(kind="Pod", namespace=meta.namespace, name=meta.name, uid=meta.uid),
    )


def _port_key(port: EndpointPort) -> _PortKey:
    return (port.name or "", port.port, port.protocol or "", port.app_protocol or "")


def _addr_key(addr: EndpointAddress) -> _AddrKey:
    return (addr.ip, (addr.target_ref.uid or "") if addr.target_ref else "")


@dataclass
class _Repacker:
    """``endpoints.RepackSubsets``: one subset per distinct (address → ready) map, holding every port
    that maps to exactly those addresses; "not ready" wins when one address is both for a port."""

    addresses: dict[_AddrKey, EndpointAddress] = field(default_factory=dict)
    ports: dict[_PortKey | None, EndpointPort | None] = field(default_factory=dict)
    by_port: dict[_PortKey | None, dict[_AddrKey, bool]] = field(default_factory=dict)

    def add(self, addr: EndpointAddress, ready: bool, port: EndpointPort | None) -> None:
        akey = _addr_key(addr)
        self.addresses.setdefault(akey, addr)
        pkey = _port_key(port) if port is not None else None  # None: the "no ports" sentinel
        self.ports.setdefault(pkey, port)
        readiness = self.by_port.setdefault(pkey, {})
        if readiness.get(akey, True):
            readiness[akey] = ready

    def subsets(self) -> list[EndpointSubset]:
        groups: dict[frozenset[tuple[_AddrKey, bool]], list[EndpointPort]] = {}
        for pkey, readiness in self.by_port.items():
            ports = groups.setdefault(frozenset(readiness.items()), [])
            port = self.ports[pkey]
            if port is not None:
                ports.append(port)
        out: list[EndpointSubset] = []
        for group, ports in groups.items():
            ready = sorted((k for k, r in group if r))
            not_ready = sorted((k for k, r in group if not r))
            out.append(
                EndpointSubset(
                    addresses=[self.addresses[k] for k in ready] or None,
                    not_ready_addresses=[self.addresses[k] for k in not_ready] or None,
                    ports=sorted(ports, key=_port_key) or None,
                )
            )
        return sorted(out, key=_subset_key)


def _subset_key(s: EndpointSubset) -> tuple[list[_PortKey], list[_AddrKey], list[_AddrKey]]:
    return (
        [_port_key(p) for p in s.ports or ()],
        [_addr_key(a) for a in s.addresses or ()],
        [_addr_key(a) for a in s.not_ready_addresses or ()],
    )


def desired_subsets(svc: Service, pods: list[Pod]) -> list[EndpointSubset]:
    """The repacked, sorted subsets for ``svc`` given the pods its selector matches."""
    tolerate = bool(svc.spec.publish_not_ready_addresses)
    repacker = _Repacker()
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, tolerate):
            continue
        ip = _pod_ip(pod, svc)
        if ip is None:
            continue
        addr = endpoint_address(pod, svc, ip)
        ready = tolerate or pod_ready(pod)
        if not svc.spec.ports and is_headless(svc):
            repacker.add(addr, ready, None)
            continue
        for sport in svc.spec.ports or ():
            number = find_port(pod, sport)
            if number is None:
                continue
            eport = EndpointPort(
                port=number, name=sport.name, protocol=sport.protocol, app_protocol=sport.app_protocol
            )
            repacker.add(addr, ready, eport)
    return repacker.subsets()


def unresolved_ports(svc: Service, pods: list[Pod]) -> list[str]:
    """Named targetPorts that some selected pod does not expose (it is left out of that port): one line
    each, for a Warning event, since nothing else would tell the user why a pod gets no traffic."""
    lines = []
    for sport in svc.spec.ports or ():
        if not isinstance(sport.target_port, str):
            continue
        missing = sorted(
            p.metadata.name or ""
            for p in pods
            if should_pod_be_in_endpoints(p, True) and find_port(p, sport) is None
        )
        if missing:
            lines.append(
                f'targetPort "{sport.target_port}" of port {sport.name or sport.port} is not a '
                f"{sport.protocol or 'TCP'} container port of pod(s) {', '.join(missing)}"
            )
    return lines


def truncate(subsets: list[EndpointSubset]) -> bool:
    """``truncateEndpoints``: keep at most MAX_CAPACITY addresses, ready ones first, each subset
    keeping its proportion. Returns whether anything was cut."""
    total_ready = sum(len(s.addresses or ()) for s in subsets)
    total_not_ready = sum(len(s.not_ready_addresses or ()) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    limit = MAX_CAPACITY if truncate_ready else MAX_CAPACITY - total_ready
    total = total_ready if truncate_ready else total_not_ready
    room = limit
    for s in subsets:
        have = len(s.addresses or ()) if truncate_ready else len(s.not_ready_addresses or ())
        take = min(math.ceil(have / total * limit), room)
        if truncate_ready:
            s.addresses = (s.addresses or [])[:take] or None
            s.not_ready_addresses = None
            room -= len(s.addresses or ())
        else:
            s.not_ready_addresses = (s.not_ready_addresses or [])[:take] or None
            room -= len(s.not_ready_addresses or ())
    subsets[:] = [s for s in subsets if s.addresses or s.not_ready_addresses]
    return True


def desired_labels(svc: Service) -> dict[str, str]:
    labels = dict(svc.metadata.labels or {})
    if is_headless(svc):
        labels[HEADLESS_LABEL] = ""
    return labels


def _format_time(t: _dt.datetime) -> str:
    """RFC 3339 with the fraction Go's RFC3339Nano would print (trailing zeros trimmed)."""
    t = t.astimezone(_dt.UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def _parse(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _pod_trigger_time(pod: Pod) -> _dt.datetime | None:
    for cond in pod.status.conditions or ():
        if cond.type == "Ready":
            return _parse(cond.last_transition_time)
    return None


@dataclass
class _TriggerState:
    service: _dt.datetime | None = None
    pods: dict[str, _dt.datetime] = field(default_factory=dict)


class TriggerTimeTracker:
    """Kubernetes' ``TriggerTimeTracker``: the earliest pod Ready transition or Service creation that
    changed since the Service's last sync is when the change that this sync publishes happened."""

    def __init__(self) -> None:
        self.states: dict[str, _TriggerState] = {}

    def compute(self, key: str, svc: Service, pods: list[Pod]) -> _dt.datetime | None:
        known = key in self.states
        state = self.states.setdefault(key, _TriggerState())
        changed: list[_dt.datetime] = []
        pod_times: dict[str, _dt.datetime] = {}
        for pod in pods:
            t = _pod_trigger_time(pod)
            if t is None:
                continue
            name = pod.metadata.name or ""
            pod_times[name] = t
            last = state.pods.get(name)
            if last is None or t > last:
                changed.append(t)
        created = _parse(svc.metadata.creation_timestamp)
        if created is not None and (state.service is None or created > state.service):
            changed.append(created)
        state.pods, state.service = pod_times, created
        if not known:
            return created
        return min(changed) if changed else None

    def forget(self, key: str) -> None:
        self.states.pop(key, None)


# --- the controller ------------------------------------------------------------------------------


def _endpoint_view(pod: Pod) -> tuple[object, ...]:
    """What of a pod can change its Services' Endpoints (membership, address, readiness, ports)."""
    spec, status, meta = pod.spec, pod.status, pod.metadata
    containers = [*spec.containers, *(spec.init_containers or ())]
    ports = tuple((p.name, p.container_port, p.protocol) for c in containers for p in c.ports or ())
    return (
        tuple(sorted((meta.labels or {}).items())),
        meta.deletion_timestamp is not None,
        status.pod_ip,
        tuple(p.ip for p in status.pod_ips or ()),
        status.phase in ("Succeeded", "Failed"),
        pod_ready(pod),
        spec.hostname,
        spec.subdomain,
        spec.node_name,
        ports,
    )


class EndpointsController:
    def __init__(
        self,
        client: Client,
        settings: ControllerSettings,
        informers: SharedInformerFactory | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        factory = informers or SharedInformerFactory(client)
        self.services: Informer[Service] = factory.informer(Service)
        self.pods: Informer[Pod] = factory.informer(Pod)
        self.endpoints: Informer[Endpoints] = factory.informer(Endpoints)
        self.recorder = EventRecorder(client, "endpoint-controller")
        self.queue = WorkQueue()
        self.triggers = TriggerTimeTracker()
        #: namespace → service name → selector, for Services with a non-empty selector.
        self._selectors: dict[str, dict[str, Selector]] = {}
        #: namespace → pod name → pod, so a sync looks at one namespace only.
        self._pods_by_ns: dict[str, dict[str, Pod]] = {}
        #: key → (resourceVersion of our last write not yet seen in the cache, when written).
        self._expected: dict[str, tuple[str, float]] = {}
        #: keys whose sync is waiting for their expected write to reach the cache.
        self._waiting: set[str] = set()
        #: key → when the first not-yet-synced event for it was observed (trigger-time fallback).
        self._observed: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._use = InformerUse(
            self, (self.services, self.pods, self.endpoints), self._subscribe, private=informers is None
        )

    def _subscribe(self) -> None:
        # Services first: on a shared informer that holds objects already, the adds replayed for pods
        # then find their Services' selectors.
        self.services.on_add(self._service_added, owner=self)
        self.services.on_update(lambda _old, new: self._service_added(new), owner=self)
        self.services.on_delete(self._service_deleted, owner=self)
        self.pods.on_add(self._pod_added, owner=self)
        self.pods.on_update(self._pod_updated, owner=self)
        self.pods.on_delete(self._pod_deleted, owner=self)
        self.endpoints.on_add(self._endpoints_changed, owner=self)
        self.endpoints.on_update(lambda _old, new: self._endpoints_changed(new), owner=self)
        self.endpoints.on_delete(self._endpoints_deleted, owner=self)

    async def start(self) -> None:
        self._use.start()
        self._tasks.append(asyncio.create_task(self._run(), name="endpoints-controller"))

    async def stop(self) -> None:
        self.queue.shutdown()
        await cancel(self._tasks)
        self._tasks.clear()
        await self._use.stop()

    async def _run(self) -> None:
        """Wait for the caches (a sync on partial caches would drop addresses), then work."""
        await wait_synced((self.services, self.pods, self.endpoints), "endpoints controller")
        self._check_leftover_endpoints()
        await run_workers(self.queue, self.sync, self.settings.workers, "endpoints")

    def _check_leftover_endpoints(self) -> None:
        """Endpoints whose Service was deleted while the controller was down are queued for deletion
        (``checkLeftoverEndpoints``); leader-election locks are left alone."""
        for ep in self.endpoints.items():
            if LEADER_ANNOTATION in (ep.metadata.annotations or {}):
                continue
            key = key_of(ep)
            if self.services.get(key) is None:
                self._enqueue(key)

    # --- event handlers: update the indexes and enqueue, nothing else --------------------------

    def _enqueue(self, key: str, delay: float = 0.0) -> None:
        self._observed.setdefault(key, time.time())
        if delay > 0:
            self.queue.add_after(key, delay)
        else:
            self.queue.add(key)

    def _service_added(self, svc: Service) -> None:
        ns, name = svc.metadata.namespace or "", svc.metadata.name or ""
        if svc.spec.selector:
            self._selectors.setdefault(ns, {})[name] = from_set(svc.spec.selector)
        else:
            self._selectors.get(ns, {}).pop(name, None)
        self._enqueue(key_of(svc))

    def _service_deleted(self, svc: Service) -> None:
        ns, name = svc.metadata.namespace or "", svc.metadata.name or ""
        self._selectors.get(ns, {}).pop(name, None)
        self._enqueue(key_of(svc))

    def _services_of(self, pod: Pod) -> set[str]:
        ns = pod.metadata.namespace or ""
        labels = pod.metadata.labels or {}
        return {f"{ns}/{name}" for name, sel in self._selectors.get(ns, {}).items() if sel.matches(labels)}

    def _pod_added(self, pod: Pod) -> None:
        self._pods_by_ns.setdefault(pod.metadata.namespace or "", {})[pod.metadata.name or ""] = pod
        for key in self._services_of(pod):
            self._enqueue(key, self.settings.endpoints_batch_period)

    def _pod_updated(self, old: Pod, new: Pod) -> None:
        self._pods_by_ns.setdefault(new.metadata.namespace or "", {})[new.metadata.name or ""] = new
        if _endpoint_view(old) == _endpoint_view(new):
            return
        terminating = (
            new.metadata.deletion_timestamp is not None and old.metadata.deletion_timestamp is None
        ) or (_terminal(new) and not _terminal(old))
        delay = 0.0 if terminating else self.settings.endpoints_batch_period
        for key in self._services_of(old) | self._services_of(new):
            self._enqueue(key, delay)

    def _pod_deleted(self, pod: Pod) -> None:
        pods = self._pods_by_ns.get(pod.metadata.namespace or "", {})
        pods.pop(pod.metadata.name or "", None)
        for key in self._services_of(pod):
            self._enqueue(key)

    def _endpoints_changed(self, ep: Endpoints) -> None:
        key = key_of(ep)
        expected = self._expected.get(key)
        if expected is not None and expected[0] == ep.metadata.resource_version:
            # Our own write arrived: the cache is fresh again for this key.
            del self._expected[key]
            if key in self._waiting:
                self._waiting.discard(key)
                self._enqueue(key)
            return
        if self._managed(key):
            self._enqueue(key)  # someone else changed what we manage: put it back

    def _endpoints_deleted(self, ep: Endpoints) -> None:
        key = key_of(ep)
        self._expected.pop(key, None)
        if key in self._waiting or self._managed(key):
            self._waiting.discard(key)
            self._enqueue(key)

    def _managed(self, key: str) -> bool:
        svc = self.services.get(key)
        return svc is not None and bool(svc.spec.selector) and svc.spec.type != "ExternalName"

    # --- the level-based sync --------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.services.get(key)
        if svc is None:
            self.triggers.forget(key)
            self._observed.pop(key, None)
            self._waiting.discard(key)
            with contextlib.suppress(NotFound):
                await self.client.delete(Endpoints, name, ns)
            return
        if not svc.spec.selector or svc.spec.type == "ExternalName":
            self._observed.pop(key, None)
            return

        expected = self._expected.get(key)
        if expected is not None:
            if time.monotonic() - expected[1] < _EXPECTATION_TIMEOUT:
                # Our last write has not reached the cache: comparing against it would be wrong.
                self._waiting.add(key)
                self.queue.add_after(key, 1.0)
                return
            del self._expected[key]

        selector = from_set(svc.spec.selector)
        pods = [p for p in self._pods_by_ns.get(ns, {}).values() if selector.matches(p.metadata.labels)]
        trigger = self.triggers.compute(key, svc, pods)
        subsets = desired_subsets(svc, pods)
        truncated = truncate(subsets)
        labels = desired_labels(svc)

        current = self.endpoints.get(key)
        observed = self._observed.pop(key, None)
        if (
            current is not None
            and (current.subsets or None) == (subsets or None)
            and (current.metadata.labels or {}) == labels
            and ((current.metadata.annotations or {}).get(OVER_CAPACITY_ANNOTATION) == "truncated")
            == truncated
        ):
            return

        for line in unresolved_ports(svc, pods):
            await self.recorder.record(svc, "Warning", "FailedToResolveTargetPort", line)
        annotations = dict(current.metadata.annotations or {}) if current is not None else {}
        if trigger is None and observed is not None:
            trigger = _dt.datetime.fromtimestamp(observed, _dt.UTC)
        annotations[TRIGGER_TIME_ANNOTATION] = _format_time(trigger or _dt.datetime.now(_dt.UTC))
        if truncated:
            annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY_ANNOTATION, None)

        if current is None:
            new = Endpoints(
                metadata=ObjectMeta(name=name, namespace=ns, labels=labels, annotations=annotations),
                subsets=subsets or None,
            )
            try:
                written = await self.client.create(new, ns)
            except ApiError as exc:
                if exc.code == 403:
                    return  # the namespace is terminating: nothing may be created in it any more
                raise  # AlreadyExists: the cache is behind; the rate-limited retry sees it
        else:
            meta = current.metadata
            new = Endpoints(
                metadata=ObjectMeta(
                    name=meta.name,
                    namespace=meta.namespace,
                    uid=meta.uid,
                    resource_version=meta.resource_version,
                    creation_timestamp=meta.creation_timestamp,
                    labels=labels,
                    annotations=annotations,
                    owner_references=meta.owner_references,
                    finalizers=meta.finalizers,
                ),
                subsets=subsets or None,
            )
            written = await self.client.replace(new)
        rv = written.metadata.resource_version
        cached = self.endpoints.get(key)
        if rv and (cached is None or cached.metadata.resource_version != rv):
            self._expected[key] = (rv, time.monotonic())
