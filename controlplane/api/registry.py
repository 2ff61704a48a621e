"""The kinds this server serves: one table mapping kind <-> REST resource <-> Python type.

Everything that needs to go from a URL, a kubectl short name or a manifest's ``kind`` to a type
(the API server, the client, ``pea``) looks it up here, so a new kind is added in one place.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Literal

from .coordination import Lease, LeaseList
from .core import (
    ConfigMap,
    ConfigMapList,
    Endpoints,
    EndpointsList,
    Event,
    EventList,
    Namespace,
    NamespaceList,
    Node,
    NodeList,
    Pod,
    PodList,
    ReplicationController,
    ReplicationControllerList,
    Secret,
    SecretList,
    Service,
    ServiceList,
)
from .meta import TopLevel

NameRule = Literal["dns1123-subdomain", "dns1123-label", "dns1035-label"]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    kind: str
    plural: str
    singular: str
    type: builtins.type[TopLevel]
    list_type: builtins.type[TopLevel]
    namespaced: bool
    group: str = ""
    version: str = "v1"
    short_names: tuple[str, ...] = ()
    name_rule: NameRule = "dns1123-subdomain"
    subresources: frozenset[str] = field(default_factory=frozenset)
    # Whether writes to the main resource ignore ``status`` (it has its own subresource).
    has_status: bool = True
    # Whether a spec change bumps metadata.generation (the ones a controller observes).
    tracks_generation: bool = False
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    def key(self, namespace: str | None, name: str) -> str:
        """The store key of one object: ``/registry/{group.}{plural}/[{namespace}/]{name}``."""
        return f"{self.prefix(namespace)}{name}"

    def prefix(self, namespace: str | None = None) -> str:
        """The store prefix of all objects (or those of one namespace) of this resource."""
        base = f"/registry/{self.group + '.' if self.group else ''}{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base


RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(
        "Namespace",
        "namespaces",
        "namespace",
        Namespace,
        NamespaceList,
        namespaced=False,
        short_names=("ns",),
        name_rule="dns1123-label",
        subresources=frozenset({"status", "finalize"}),
    ),
    ResourceInfo(
        "Node",
        "nodes",
        "node",
        Node,
        NodeList,
        namespaced=False,
        short_names=("no",),
        subresources=frozenset({"status"}),
    ),
    ResourceInfo(
        "Pod",
        "pods",
        "pod",
        Pod,
        PodList,
        namespaced=True,
        short_names=("po",),
        subresources=frozenset({"status", "binding", "eviction", "log", "exec", "attach"}),
        categories=("all",),
    ),
    ResourceInfo(
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        ReplicationController,
        ReplicationControllerList,
        namespaced=True,
        short_names=("rc",),
        subresources=frozenset({"status", "scale"}),
        tracks_generation=True,
        categories=("all",),
    ),
    ResourceInfo(
        "Service",
        "services",
        "service",
        Service,
        ServiceList,
        namespaced=True,
        short_names=("svc",),
        name_rule="dns1035-label",
        subresources=frozenset({"status"}),
        categories=("all",),
    ),
    ResourceInfo(
        "Endpoints",
        "endpoints",
        "endpoints",
        Endpoints,
        EndpointsList,
        namespaced=True,
        short_names=("ep",),
        has_status=False,
    ),
    ResourceInfo(
        "Event",
        "events",
        "event",
        Event,
        EventList,
        namespaced=True,
        short_names=("ev",),
        has_status=False,
    ),
    ResourceInfo(
        "ConfigMap",
        "configmaps",
        "configmap",
        ConfigMap,
        ConfigMapList,
        namespaced=True,
        short_names=("cm",),
        has_status=False,
    ),
    ResourceInfo(
        "Secret",
        "secrets",
        "secret",
        Secret,
        SecretList,
        namespaced=True,
        has_status=False,
    ),
    ResourceInfo(
        "Lease",
        "leases",
        "lease",
        Lease,
        LeaseList,
        namespaced=True,
        group="coordination.k8s.io",
        has_status=False,
    ),
)

_BY_GROUP_PLURAL = {(r.group, r.plural): r for r in RESOURCES}
_BY_KIND = {r.kind: r for r in RESOURCES}
_BY_TYPE: dict[type, ResourceInfo] = {r.type: r for r in RESOURCES}


def by_resource(group: str, plural: str) -> ResourceInfo | None:
    return _BY_GROUP_PLURAL.get((group, plural))


def by_kind(kind: str) -> ResourceInfo | None:
    return _BY_KIND.get(kind)


def for_type(cls: type) -> ResourceInfo:
    return _BY_TYPE[cls]


def for_object(obj: TopLevel) -> ResourceInfo:
    return _BY_TYPE[type(obj)]


def resolve(name: str) -> ResourceInfo | None:
    """Resolve what a person types (``po``, ``pods``, ``pod``, ``Pod``, ``leases.coordination.k8s.io``)."""
    wanted = name.lower()
    resource, _, group = wanted.partition(".")
    for r in RESOURCES:
        if group and r.group != group:
            continue
        if resource in (r.plural, r.singular, r.kind.lower()) or resource in r.short_names:
            return r
    return None


def group_versions() -> dict[str, list[ResourceInfo]]:
    """Resources by group/version, for discovery."""
    out: dict[str, list[ResourceInfo]] = {}
    for r in RESOURCES:
        out.setdefault(r.group_version, []).append(r)
    return out
