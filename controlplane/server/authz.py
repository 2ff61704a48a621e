"""Authorization: who may do what, decided before a handler runs (and, where the stored or submitted
object decides, inside the write).

Identities (from ``auth.py``):

* ``system:masters`` (the admin token, and loopback clients when there is no token file): everything.
* a node, user ``system:node:<name>`` in group ``system:nodes``: Kubernetes' Node authorizer plus the
  NodeRestriction admission plugin, adapted. A node reads what its agent, service proxy, DNS server and
  static pods read (nodes, pods, services, endpoints, namespaces, events; its own Lease; a Secret or
  ConfigMap only with a ``get`` and only when a pod bound to it references it), and writes only its own
  Node (and status), its own Lease in ``kube-node-lease``, the status of pods bound to it, the deletion of
  pods bound to it (finishing a graceful deletion), mirror pods (``kubernetes.io/config.mirror``) bound
  to it, and events. Anything else is a 403 worded as kube-apiserver words it.
* any other authenticated user: everything, as before. peapod has no RBAC yet, and Kubernetes without
  RBAC (``--authorization-mode=AlwaysAllow``) lets every authenticated user do everything too; only the
  node identities, whose tokens sit on every node, are restricted.

Checks on objects are race-free: the guard :meth:`Authorizer.guard` returns runs inside the handler's
compare-and-swap loop on the object actually written or deleted (the stored pod for ``pods/status`` and
delete, the submitted object for a create), so a pod re-created under the same name in between cannot
slip through. The Secret/ConfigMap check reads the namespace's pods (only those whose stored bytes
mention both names are decoded): the kubelet asks at pod start, not in a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from controlplane.api.coordination import Lease
from controlplane.api.core import Node, Pod
from controlplane.api.meta import TopLevel
from controlplane.api.registry import for_type

from . import errors
from .auth import NODE_USER_PREFIX, NODES_GROUP, User
from .request import RequestInfo
from .storage import ObjectStorage, decode

LEASE_NAMESPACE = "kube-node-lease"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

READ = frozenset({"get", "list", "watch"})
WRITE = frozenset({"create", "update", "patch"})
# What a node may read, whatever the object (the kubelet, kube-proxy and the DNS server list and watch).
_NODE_READS = frozenset({"nodes", "pods", "services", "endpoints", "namespaces", "events"})

# Node labels a node may not set on itself: what an admin uses to steer workloads (Kubernetes' rule).
RESTRICTED_LABEL_DOMAIN = "node-restriction.kubernetes.io"

Guard = Callable[[TopLevel], None]
UpdateGuard = Callable[[TopLevel, TopLevel], None]


def node_name(user: User) -> str | None:
    """The node a user is, or None: ``system:node:<name>`` in group ``system:nodes``."""
    if NODES_GROUP in user.groups and user.name.startswith(NODE_USER_PREFIX):
        return user.name[len(NODE_USER_PREFIX) :] or None
    return None


def verb_of(method: str, ri: RequestInfo, watch: bool = False) -> str:
    """kube-apiserver's verb for a request: get/list/watch/create/update/patch/delete/deletecollection."""
    method = method.upper()
    if method in ("GET", "HEAD"):
        if ri.name is None:
            return "watch" if watch else "list"
        return "get"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if ri.name is not None else "deletecollection"
    return method.lower()


def resource_of(ri: RequestInfo) -> str:
    return ri.info.plural + (f"/{ri.subresource}" if ri.subresource else "")


def forbidden(user: User, verb: str, ri: RequestInfo, reason: str = "") -> errors.APIError:
    """kube-apiserver's wording: ``pods "p" is forbidden: User "u" cannot patch resource "pods/status" in
    API group "" in the namespace "ns": why``."""
    subject = f'{ri.info.plural} "{ri.name}"' if ri.name else ri.info.plural
    if ri.namespace:
        scope = f'in the namespace "{ri.namespace}"'
    else:
        scope = "at the cluster scope"
    message = (
        f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{resource_of(ri)}" '
        f'in API group "{ri.info.group}" {scope}'
    )
    err = errors.forbidden(message + (f": {reason}" if reason else ""), ri.info.plural, ri.name)
    if err.status.details is not None:
        err.status.details.group = ri.info.group or None
    return err


@dataclass(frozen=True)
class Decision:
    """What :meth:`Authorizer.authorize` allows: the request, with a guard for the object it touches
    (and for an update, one that compares the new object with the stored one)."""

    guard: Guard | None = None
    guard_update: UpdateGuard | None = None


class Authorizer:
    """One per API server; ``storage`` answers which pods reference a Secret or ConfigMap."""

    def __init__(self, storage: ObjectStorage) -> None:
        self.storage = storage

    async def authorize(self, user: User, verb: str, ri: RequestInfo) -> Decision:
        """Raise 403 if ``user`` may not ``verb`` this resource; else the guard for the object, if any."""
        node = node_name(user)
        if node is None:
            return Decision()
        return await self._node(user, node, verb, ri)

    def authorize_stream(self, user: User, ri: RequestInfo, verb: str = "get") -> None:
        """``pods/log``, ``pods/exec``, ``pods/attach``: not for nodes (a node would reach other nodes'
        containers through the API server)."""
        if node_name(user) is not None:
            raise forbidden(user, verb, ri)

    def authorize_node_proxy(self, user: User, ri: RequestInfo) -> None:
        """``nodes/proxy`` (images sent to agents): admins and users, not nodes."""
        if node_name(user) is not None:
            raise forbidden(user, "create", ri)

    async def _node(self, user: User, node: str, verb: str, ri: RequestInfo) -> Decision:
        kind, sub = ri.info.kind, ri.subresource
        deny = forbidden(user, verb, ri)

        def own(name: str | None, what: str) -> None:
            if name is not None and name != node:
                raise forbidden(user, verb, ri, f'node "{node}" is not allowed to modify {what} "{name}"')

        if kind == "Node":
            if verb in READ and sub is None:
                return Decision()
            if verb in WRITE | {"delete"} and sub in (None, "status"):
                own(ri.name, "node")
                return Decision(self._own_node(user, node, verb, ri), self._node_update(user, node, verb, ri))
            raise deny
        if kind == "Lease":
            if ri.namespace != LEASE_NAMESPACE or verb not in {"get", "delete", *WRITE}:
                raise deny
            own(ri.name, "lease")
            return Decision(self._own_lease(user, node, verb, ri))
        if kind == "Pod":
            if sub is None and verb in READ:
                return Decision()
            if sub is None and verb == "create":
                return Decision(self._mirror_pod(user, node, verb, ri))
            if (sub == "status" and verb in ("update", "patch")) or (sub is None and verb == "delete"):
                return Decision(self._bound_pod(user, node, verb, ri))
            raise deny
        if kind == "Event":
            if verb in READ | WRITE:
                return Decision()
            raise deny
        if ri.info.plural in _NODE_READS and sub is None and verb in READ:
            return Decision()
        if kind in ("Secret", "ConfigMap") and verb == "get" and ri.name and ri.namespace:
            if await self._referenced(node, kind, ri.namespace, ri.name):
                return Decision()
            raise forbidden(user, verb, ri, f"no relationship found between node '{node}' and this object")
        raise deny

    # --- object-level checks (run on the object written) -----------------------------------------

    def _own_node(self, user: User, node: str, verb: str, ri: RequestInfo) -> Guard:
        def guard(obj: TopLevel) -> None:
            name = obj.metadata.name if isinstance(obj, Node) else None
            if name != node:
                raise forbidden(
                    user, verb, _named(ri, name), f'node "{node}" is not allowed to modify node "{name}"'
                )
            if verb == "create":
                labels = restricted_labels(obj.metadata.labels or {}, {})  # type: ignore[attr-defined]
                if labels:
                    raise forbidden(
                        user, verb, ri, f'node "{node}" is not allowed to set the following labels: {labels}'
                    )

        return guard

    def _node_update(self, user: User, node: str, verb: str, ri: RequestInfo) -> UpdateGuard:
        """NodeRestriction on updates: no change to its taints (a node would attract workloads meant for
        others) nor to labels under ``node-restriction.kubernetes.io/``."""

        def guard(new: TopLevel, old: TopLevel) -> None:
            if not isinstance(new, Node) or not isinstance(old, Node):
                return
            if new.spec.taints != old.spec.taints:
                raise forbidden(user, verb, ri, f'node "{node}" is not allowed to modify taints')
            labels = restricted_labels(new.metadata.labels or {}, old.metadata.labels or {})
            if labels:
                raise forbidden(user, verb, ri, f'node "{node}" is not allowed to modify labels: {labels}')

        return guard

    def _own_lease(self, user: User, node: str, verb: str, ri: RequestInfo) -> Guard:
        def guard(obj: TopLevel) -> None:
            name = obj.metadata.name if isinstance(obj, Lease) else None
            if name != node or obj.metadata.namespace != LEASE_NAMESPACE:  # type: ignore[attr-defined]
                raise forbidden(
                    user, verb, _named(ri, name), f'node "{node}" is not allowed to modify lease "{name}"'
                )

        return guard

    def _bound_pod(self, user: User, node: str, verb: str, ri: RequestInfo) -> Guard:
        def guard(obj: TopLevel) -> None:
            bound = obj.spec.node_name if isinstance(obj, Pod) else None
            if bound != node:
                raise forbidden(
                    user,
                    verb,
                    ri,
                    f'node "{node}" can only {verb} pods with spec.nodeName set to itself',
                )

        return guard

    def _mirror_pod(self, user: User, node: str, verb: str, ri: RequestInfo) -> Guard:
        def guard(obj: TopLevel) -> None:
            assert isinstance(obj, Pod)
            named = _named(ri, obj.metadata.name)
            if MIRROR_ANNOTATION not in (obj.metadata.annotations or {}):
                raise forbidden(
                    user,
                    verb,
                    named,
                    f'pod does not have "{MIRROR_ANNOTATION}" annotation, '
                    f'node "{node}" can only create mirror pods',
                )
            if obj.spec.node_name != node:
                raise forbidden(
                    user, verb, named, f'node "{node}" can only create pods with spec.nodeName set to itself'
                )
            # Else a node could make a mirror pod name any Secret, and then read it.
            for kind, what in (("Secret", "secrets"), ("ConfigMap", "configmaps")):
                if references(obj, kind):
                    raise forbidden(
                        user, verb, named, f'node "{node}" can not create pods that reference {what}'
                    )
            if any(v.persistent_volume_claim is not None for v in obj.spec.volumes or ()):
                raise forbidden(
                    user,
                    verb,
                    named,
                    f'node "{node}" can not create pods that reference persistentvolumeclaims',
                )

        return guard

    async def _referenced(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Whether a pod bound to ``node`` in ``namespace`` references the Secret/ConfigMap ``name``."""
        info = for_type(Pod)
        _, kvs, _ = await self.storage.list_values(info, namespace)
        needles = (name.encode(), node.encode())
        for kv in kvs:
            if not all(n in kv.value for n in needles):
                continue
            pod = decode(info, kv)
            if isinstance(pod, Pod) and pod.spec.node_name == node and name in references(pod, kind):
                return True
        return False


def restricted_labels(new: dict[str, str], old: dict[str, str]) -> str:
    """The labels under ``node-restriction.kubernetes.io/`` added, changed or removed, comma-joined."""
    changed = {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}
    return ", ".join(sorted(k for k in changed if _restricted(k)))


def _restricted(key: str) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return prefix == RESTRICTED_LABEL_DOMAIN or prefix.endswith("." + RESTRICTED_LABEL_DOMAIN)


def _named(ri: RequestInfo, name: str | None) -> RequestInfo:
    return RequestInfo(ri.info, ri.namespace, name or ri.name, ri.subresource, ri.all_namespaces)


def references(pod: Pod, kind: str) -> set[str]:
    """The Secrets (``kind == "Secret"``) or ConfigMaps a pod uses: volumes (projected ones too), env,
    envFrom and imagePullSecrets — what the Node authorizer's graph links a pod to."""
    return set(_references(pod, kind == "Secret"))


def _references(pod: Pod, secret: bool) -> Iterator[str]:
    spec = pod.spec
    if secret:
        yield from (r.name for r in spec.image_pull_secrets or () if r.name)
    for volume in spec.volumes or ():
        if secret and volume.secret is not None and volume.secret.secret_name:
            yield volume.secret.secret_name
        if not secret and volume.config_map is not None and volume.config_map.name:
            yield volume.config_map.name
        for source in (volume.projected or {}).get("sources") or ():
            ref = source.get("secret" if secret else "configMap") if isinstance(source, dict) else None
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                yield ref["name"]
    for container in [*(spec.init_containers or ()), *(spec.containers or ())]:
        for env in container.env or ():
            source = env.value_from
            ref = None
            if source is not None:
                ref = source.secret_key_ref if secret else source.config_map_key_ref
            if ref is not None and ref.name:
                yield ref.name
        for env_from in container.env_from or ():
            from_ref = env_from.secret_ref if secret else env_from.config_map_ref
            if from_ref is not None and from_ref.name:
                yield from_ref.name
