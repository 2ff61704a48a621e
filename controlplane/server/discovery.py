"""Discovery documents (``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}/{version}``) and ``/version``.

kubectl reads these to map ``kubectl get po`` to a REST path, so they are generated from the same
registry the router uses and cannot drift from what is served.
"""

from __future__ import annotations

import platform

from controlplane.api.meta import (
    APIGroup,
    APIGroupList,
    APIResource,
    APIResourceList,
    APIVersions,
    GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
    VersionInfo,
)
from controlplane.api.registry import ALL_VERBS, group_versions

# Within kubectl's supported skew (one minor either side) of current releases.
KUBE_MAJOR, KUBE_MINOR = "1", "36"
PEAPOD_VERSION = "0.1.0"

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "eviction": ["create"],
    "log": ["get"],
    "exec": ["create", "get"],
    "attach": ["create", "get"],
    "finalize": ["update"],
}


def version_info() -> VersionInfo:
    return VersionInfo(
        major=KUBE_MAJOR,
        minor=KUBE_MINOR,
        git_version=f"v{KUBE_MAJOR}.{KUBE_MINOR}.0+peapod.{PEAPOD_VERSION}",
        git_commit="",
        git_tree_state="clean",
        build_date="",
        go_version=f"python{platform.python_version()}",
        compiler="cpython",
        platform=f"linux/{platform.machine()}",
    )


def api_versions(server_address: str) -> APIVersions:
    return APIVersions(
        versions=["v1"],
        server_address_by_client_cidrs=[
            ServerAddressByClientCIDR(client_cidr="0.0.0.0/0", server_address=server_address)
        ],
    )


def api_groups() -> APIGroupList:
    groups = []
    for gv in group_versions():
        if "/" not in gv:
            continue
        group, version = gv.split("/", 1)
        ver = GroupVersionForDiscovery(group_version=gv, version=version)
        groups.append(APIGroup(name=group, versions=[ver], preferred_version=ver))
    return APIGroupList(groups=groups)


def resource_list(group_version: str) -> APIResourceList | None:
    resources = group_versions().get(group_version)
    if resources is None:
        return None
    out = []
    for r in resources:
        out.append(
            APIResource(
                name=r.plural,
                singular_name=r.singular,
                namespaced=r.namespaced,
                kind=r.kind,
                # kube-apiserver serves no deletecollection of namespaces (a 405 here too)
                verbs=[v for v in ALL_VERBS if not (r.plural == "namespaces" and v == "deletecollection")],
                short_names=list(r.short_names) or None,
                categories=list(r.categories) or None,
            )
        )
        for sub in sorted(r.subresources):
            kind = {"scale": "Scale", "binding": "Binding", "eviction": "Eviction"}.get(sub, r.kind)
            group = {"scale": "autoscaling", "eviction": "policy"}.get(sub)
            version = "v1" if sub in ("scale", "eviction") else None
            out.append(
                APIResource(
                    name=f"{r.plural}/{sub}",
                    singular_name="",
                    namespaced=r.namespaced,
                    kind=kind,
                    verbs=_SUBRESOURCE_VERBS.get(sub, ["get"]),
                    group=group,
                    version=version,
                )
            )
    return APIResourceList(group_version=group_version, resources=out)
