"""Defaulting: the values Kubernetes fills in when a manifest leaves them out.

Applied on every create and update before validation, so what is stored (and what ``get -o yaml``
shows) is what a Kubernetes user expects to see: ``restartPolicy: Always``, ``protocol: TCP``,
``targetPort`` equal to ``port``, an RC selector copied from its template labels, and so on.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import msgspec

from controlplane.api.core import (
    Container,
    Namespace,
    Node,
    Pod,
    PodSpec,
    ReplicationController,
    Secret,
    Service,
    SessionAffinityConfig,
)
from controlplane.api.meta import TopLevel


def _container(c: Container) -> None:
    if c.image_pull_policy is None and c.image:
        tag = c.image.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        c.image_pull_policy = "Always" if latest else "IfNotPresent"
    if c.termination_message_path is None:
        c.termination_message_path = "/dev/termination-log"
    if c.termination_message_policy is None:
        c.termination_message_policy = "File"
    for port in c.ports or ():
        if port.protocol is None:
            port.protocol = "TCP"
    for probe in (c.liveness_probe, c.readiness_probe, c.startup_probe):
        if probe is None:
            continue
        probe.timeout_seconds = probe.timeout_seconds or 1
        probe.period_seconds = probe.period_seconds or 10
        probe.success_threshold = probe.success_threshold or 1
        probe.failure_threshold = probe.failure_threshold or 3
        if probe.http_get is not None:
            probe.http_get.path = probe.http_get.path or "/"
            probe.http_get.scheme = probe.http_get.scheme or "HTTP"


def pod_spec(spec: PodSpec) -> None:
    spec.restart_policy = spec.restart_policy or "Always"
    spec.dns_policy = spec.dns_policy or "ClusterFirst"
    spec.scheduler_name = spec.scheduler_name or "default-scheduler"
    if spec.termination_grace_period_seconds is None:
        spec.termination_grace_period_seconds = 30
    if spec.enable_service_links is None:
        spec.enable_service_links = True
    if spec.service_account_name is None and spec.service_account:
        spec.service_account_name = spec.service_account
    for c in [*spec.containers, *(spec.init_containers or ())]:
        _container(c)
    for v in spec.volumes or ():
        if v.config_map is not None and v.config_map.default_mode is None:
            v.config_map.default_mode = 0o644
        if v.secret is not None and v.secret.default_mode is None:
            v.secret.default_mode = 0o644
        if v.host_path is not None and v.host_path.type is None:
            v.host_path.type = ""


def qos_class(spec: PodSpec) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    requests: list[dict[str, object]] = []
    limits: list[dict[str, object]] = []
    for c in spec.containers:
        res = c.resources
        requests.append(dict(res.requests or {}) if res else {})
        limits.append(dict(res.limits or {}) if res else {})
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu") is not None
        and lim.get("memory") is not None
        and req.get("cpu", lim["cpu"]) == lim["cpu"]
        and req.get("memory", lim["memory"]) == lim["memory"]
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _pod(pod: Pod) -> None:
    pod_spec(pod.spec)
    # Limits without requests mean requests equal to limits, as in Kubernetes.
    for c in [*pod.spec.containers, *(pod.spec.init_containers or ())]:
        if c.resources and c.resources.limits:
            requests = dict(c.resources.requests or {})
            for name, value in c.resources.limits.items():
                requests.setdefault(name, value)
            c.resources.requests = requests
    if pod.status.phase is None:
        pod.status.phase = "Pending"
    if pod.status.qos_class is None:
        pod.status.qos_class = qos_class(pod.spec)


def _rc(rc: ReplicationController) -> None:
    spec = rc.spec
    if spec.replicas is None:
        spec.replicas = 1
    template = spec.template
    if template is not None:
        labels = template.metadata.labels if template.metadata else None
        if not spec.selector and labels:
            spec.selector = dict(labels)
        if rc.metadata.labels is None and labels:
            rc.metadata.labels = dict(labels)
        if template.spec is not None:
            pod_spec(template.spec)


def _service(svc: Service) -> None:
    """Single-stack IPv4 (peapod has one service range): ``clusterIPs`` mirrors ``clusterIP``."""
    spec = svc.spec
    spec.type = spec.type or "ClusterIP"
    if spec.type != "ExternalName":
        spec.session_affinity = spec.session_affinity or "None"
        spec.internal_traffic_policy = spec.internal_traffic_policy or "Cluster"
        if spec.type in ("NodePort", "LoadBalancer") and spec.external_traffic_policy is None:
            spec.external_traffic_policy = "Cluster"
        if spec.type == "LoadBalancer" and spec.allocate_load_balancer_node_ports is None:
            spec.allocate_load_balancer_node_ports = True
        if spec.session_affinity == "ClientIP":
            config = spec.session_affinity_config or SessionAffinityConfig()
            client_ip = dict(config.client_ip or {})
            client_ip.setdefault("timeoutSeconds", 10800)
            config.client_ip = client_ip
            spec.session_affinity_config = config
        if spec.cluster_ip and not spec.cluster_ips:
            spec.cluster_ips = [spec.cluster_ip]
        elif spec.cluster_ips and not spec.cluster_ip:
            spec.cluster_ip = spec.cluster_ips[0]
        spec.ip_families = spec.ip_families or ["IPv4"]
        spec.ip_family_policy = spec.ip_family_policy or "SingleStack"
    for port in spec.ports or ():
        port.protocol = port.protocol or "TCP"
        if port.target_port is None:
            port.target_port = port.port


def _namespace(ns: Namespace) -> None:
    if ns.status.phase is None:
        ns.status.phase = "Active"
    labels = dict(ns.metadata.labels or {})
    if ns.metadata.name:
        labels.setdefault("kubernetes.io/metadata.name", ns.metadata.name)
    ns.metadata.labels = labels


def _node(node: Node) -> None:
    labels = dict(node.metadata.labels or {})
    if node.metadata.name:
        labels.setdefault("kubernetes.io/hostname", node.metadata.name)
    node.metadata.labels = labels
    if node.status.allocatable is None and node.status.capacity is not None:
        node.status.allocatable = dict(node.status.capacity)


def _secret(secret: Secret) -> None:
    if not secret.type:
        secret.type = "Opaque"
    if secret.string_data:
        data = dict(secret.data or {})
        for key, value in secret.string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()
        secret.data = data
    # stringData is write-only: folded into data, never stored.
    secret.string_data = msgspec.UNSET


_DEFAULTERS: dict[type, Callable[[TopLevel], None]] = {
    Pod: _pod,  # type: ignore[dict-item]
    ReplicationController: _rc,  # type: ignore[dict-item]
    Service: _service,  # type: ignore[dict-item]
    Namespace: _namespace,  # type: ignore[dict-item]
    Node: _node,  # type: ignore[dict-item]
    Secret: _secret,  # type: ignore[dict-item]
}


def apply_defaults(obj: TopLevel) -> None:
    """Fill in Kubernetes' defaults in place."""
    fn = _DEFAULTERS.get(type(obj))
    if fn is not None:
        fn(obj)
