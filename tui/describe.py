"""``pea describe KIND NAME``: one object in kubectl's human layout, ending with its events.

Each kind has a describer that turns the typed object (plus what it refers to: the pods behind a
replication controller, the endpoints behind a service, the pods on a node) into lines of cells,
aligned by :func:`tui.printers.align` the way kubectl's tabwriter (padding 2) aligns them. Events are
those whose ``involvedObject.uid`` is the object's uid; when the server cannot select on that field,
the namespace's events are filtered here by uid or by kind, name and namespace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from controlplane.api.coordination import Lease
from controlplane.api.core import (
    ConfigMap,
    Container,
    ContainerState,
    ContainerStatus,
    Endpoints,
    Event,
    Namespace,
    Node,
    NodeSystemInfo,
    Pod,
    PodSpec,
    Probe,
    ReplicationController,
    Secret,
    Service,
    Volume,
)
from controlplane.api.meta import ObjectMeta, TopLevel, parse_time
from controlplane.api.registry import ResourceInfo
from controlplane.client import ApiError, Client, NotFound
from controlplane.quantity import cpu_millis, memory_bytes
from controlplane.tables import human_duration

from .printers import align, format_labels, to_yaml

__all__ = ["describe"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_MAX_ANNOTATION = 140
_MAX_ENDPOINTS = 3


class _Lines:
    """Lines of cells at indentation levels (two spaces each), rendered with kubectl's alignment."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def kv(self, level: int, key: str, value: object) -> None:
        self.rows.append(["  " * level + key + ":", _text(value)])

    def title(self, level: int, text: str) -> None:
        self.rows.append(["  " * level + text])

    def row(self, level: int, *cells: str) -> None:
        self.rows.append(["  " * level + cells[0], *cells[1:]])

    def blank(self) -> None:
        self.rows.append([""])

    def multiline(self, level: int, key: str, values: list[str], empty: str = "<none>") -> None:
        """A key whose values go one per line, aligned under the first (Labels, Annotations...)."""
        if not values:
            self.kv(level, key, empty)
            return
        self.kv(level, key, values[0])
        for value in values[1:]:
            self.rows.append(["  " * level, value])

    def render(self) -> str:
        return "".join(line.rstrip() + "\n" for line in align(self.rows, padding=2))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _time(value: str | None) -> str:
    """RFC 1123 with a numeric zone in local time, as kubectl prints timestamps in describe."""
    if not value:
        return "<unset>"
    try:
        return parse_time(value).astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")
    except ValueError:
        return value


def _age(value: str | None, now: dt.datetime) -> str:
    if not value:
        return "<unknown>"
    try:
        return human_duration((now - parse_time(value)).total_seconds())
    except ValueError:
        return "<unknown>"


def _labels(meta: ObjectMeta) -> list[str]:
    labels = meta.labels or {}
    return [f"{k}={labels[k]}" for k in sorted(labels)]


def _annotations(meta: ObjectMeta) -> list[str]:
    """``key: value`` lines; kubectl hides apply's bookkeeping and shortens very long values."""
    out = []
    annotations = meta.annotations or {}
    for key in sorted(annotations):
        if key == LAST_APPLIED:
            continue
        value = annotations[key].strip()
        if len(value) > _MAX_ANNOTATION or "\n" in value:
            value = value.replace("\n", " ")[:_MAX_ANNOTATION] + "..."
        out.append(f"{key}: {value}")
    return out


def _common(out: _Lines, meta: ObjectMeta, namespaced: bool = True) -> None:
    out.kv(0, "Name", meta.name)
    if namespaced:
        out.kv(0, "Namespace", meta.namespace)
    out.multiline(0, "Labels", _labels(meta))
    out.multiline(0, "Annotations", _annotations(meta))


# --- events --------------------------------------------------------------------------------------


async def _events(client: Client, kind: str, meta: ObjectMeta) -> list[Event]:
    """The object's events, oldest first.

    By uid first, so events of an earlier object with the same name stay out. Events recorded without
    a uid are found by kind, name and namespace; a server that cannot select on these fields gets the
    namespace's events filtered here.
    """
    namespace = meta.namespace or None
    by_uid = f"involvedObject.uid={meta.uid}"
    by_name = f"involvedObject.kind={kind},involvedObject.name={meta.name}"
    if namespace:
        by_name += f",involvedObject.namespace={namespace}"
    found: dict[str, Event] = {}
    try:
        for selector in (by_uid, by_name) if meta.uid else (by_name,):
            for ev in (await client.list(Event, namespace, field_selector=selector)).items:
                if _involves(ev, kind, meta):
                    found.setdefault(ev.metadata.uid or ev.metadata.name or "", ev)
    except ApiError as exc:
        if exc.code != 400:
            raise
        every = (await client.list(Event, namespace)).items
        found = {ev.metadata.uid or ev.metadata.name or "": ev for ev in every if _involves(ev, kind, meta)}
    return sorted(found.values(), key=_event_time)


def _involves(ev: Event, kind: str, meta: ObjectMeta) -> bool:
    ref = ev.involved_object
    if ref.uid and meta.uid:
        return ref.uid == meta.uid
    return ref.kind == kind and ref.name == meta.name and (ref.namespace or None) == (meta.namespace or None)


def _event_time(ev: Event) -> str:
    return ev.last_timestamp or ev.event_time or ev.first_timestamp or ""


def _event_lines(out: _Lines, events: list[Event], now: dt.datetime) -> None:
    if not events:
        out.kv(0, "Events", "<none>")
        return
    out.title(0, "Events:")
    out.row(1, "Type", "Reason", "Age", "From", "Message")
    out.row(1, "----", "------", "----", "----", "-------")
    for ev in events:
        count = ev.count if isinstance(ev.count, int) else 1
        first = ev.first_timestamp or ev.event_time
        if count > 1:
            age = f"{_age(ev.last_timestamp or first, now)} (x{count} over {_age(first, now)})"
        else:
            age = _age(first, now)
        source = ev.source.component if isinstance(ev.source, msgspec.Struct) else None
        out.row(
            1,
            _unset_str(ev.type),
            _unset_str(ev.reason),
            age,
            source or ev.reporting_component or "",
            _unset_str(ev.message).strip(),
        )


def _unset_str(value: object) -> str:
    return value if isinstance(value, str) else ""


# --- pods ----------------------------------------------------------------------------------------


def _ports(container: Container, host: bool) -> str:
    ports = container.ports or []
    if not ports:
        return "<none>"
    return ", ".join(
        f"{(p.host_port or 0) if host else p.container_port}/{p.protocol or 'TCP'}" for p in ports
    )


def _container_lines(
    out: _Lines,
    level: int,
    container: Container,
    status: ContainerStatus | None,
    now: dt.datetime,
    name_indent: str = "",
) -> None:
    """One container's block; kubectl indents a pod template's container names by one more space."""
    out.title(level, f"{name_indent}{container.name}:")
    inner = max(level + 1, 2)
    if status is not None and status.container_id:
        out.kv(inner, "Container ID", status.container_id)
    out.kv(inner, "Image", container.image or "")
    if status is not None and status.image_id:
        out.kv(inner, "Image ID", status.image_id)
    many = len(container.ports or []) > 1
    out.kv(inner, "Ports" if many else "Port", _ports(container, host=False))
    out.kv(inner, "Host Ports" if many else "Host Port", _ports(container, host=True))
    if container.command:
        out.title(inner, "Command:")
        for part in container.command:
            out.title(inner + 1, part)
    if container.args:
        out.title(inner, "Args:")
        for part in container.args:
            out.title(inner + 1, part)
    if status is not None:
        _state_lines(out, inner, "State", status.state)
        if status.last_state is not None and status.last_state.terminated is not None:
            _state_lines(out, inner, "Last State", status.last_state)
        out.kv(inner, "Ready", "True" if status.ready else "False")
        out.kv(inner, "Restart Count", status.restart_count)
    resources = container.resources
    if resources is not None:
        for title, values in (("Limits", resources.limits), ("Requests", resources.requests)):
            if values:
                out.title(inner, f"{title}:")
                for key in sorted(values):
                    out.kv(inner + 1, key, values[key])
    for title, probe in (
        ("Liveness", container.liveness_probe),
        ("Readiness", container.readiness_probe),
        ("Startup", container.startup_probe),
    ):
        if probe is not None:
            out.kv(inner, title, _probe(probe))
    if not container.env and not container.env_from:
        out.kv(inner, "Environment", "<none>")
    else:
        out.title(inner, "Environment:")
        for env in container.env or []:
            out.kv(inner + 1, env.name, _env_value(env.value, env.value_from))
        for source in container.env_from or []:
            if source.config_map_ref is not None:
                out.row(inner + 1, "ConfigMap", source.config_map_ref.name or "")
            if source.secret_ref is not None:
                out.row(inner + 1, "Secret", source.secret_ref.name or "")
    if not container.volume_mounts:
        out.kv(inner, "Mounts", "<none>")
    else:
        out.title(inner, "Mounts:")
        for mount in container.volume_mounts:
            mode = "ro" if mount.read_only else "rw"
            out.title(inner + 1, f"{mount.mount_path} from {mount.name} ({mode})")


def _probe(probe: Probe) -> str:
    """kubectl's one-line probe summary: the action, then its timing and thresholds."""
    if probe.exec is not None:
        action = f"exec [{' '.join(probe.exec.command or [])}]"
    elif probe.http_get is not None:
        get = probe.http_get
        action = f"http-get {(get.scheme or 'HTTP').lower()}://{get.host or ''}:{get.port}{get.path or '/'}"
    elif probe.tcp_socket is not None:
        action = f"tcp-socket {probe.tcp_socket.host or ''}:{probe.tcp_socket.port}"
    elif probe.grpc is not None:
        action = f"grpc <pod>:{probe.grpc.port} {probe.grpc.service or ''}".rstrip()
    else:
        action = "unknown"
    return (
        f"{action} delay={probe.initial_delay_seconds or 0}s timeout={probe.timeout_seconds or 1}s "
        f"period={probe.period_seconds or 10}s #success={probe.success_threshold or 1} "
        f"#failure={probe.failure_threshold or 3}"
    )


def _env_value(value: str | None, source: Any) -> str:
    if source is None:
        return value or ""
    if source.config_map_key_ref is not None:
        ref = source.config_map_key_ref
        return f"<set to the key '{ref.key}' of config map '{ref.name}'>"
    if source.secret_key_ref is not None:
        ref = source.secret_key_ref
        return f"<set to the key '{ref.key}' in secret '{ref.name}'>"
    if source.field_ref is not None:
        return f"({source.field_ref.api_version or 'v1'}:{source.field_ref.field_path})"
    if source.resource_field_ref is not None:
        return f"{source.resource_field_ref.resource}"
    return ""


def _state_lines(out: _Lines, level: int, title: str, state: ContainerState | None) -> None:
    if state is None or (state.running is None and state.waiting is None and state.terminated is None):
        out.kv(level, title, "Waiting")
        return
    if state.running is not None:
        out.kv(level, title, "Running")
        out.kv(level + 1, "Started", _time(state.running.started_at))
    elif state.waiting is not None:
        out.kv(level, title, "Waiting")
        if state.waiting.reason:
            out.kv(level + 1, "Reason", state.waiting.reason)
        if state.waiting.message:
            out.kv(level + 1, "Message", state.waiting.message)
    elif state.terminated is not None:
        term = state.terminated
        out.kv(level, title, "Terminated")
        if term.reason:
            out.kv(level + 1, "Reason", term.reason)
        out.kv(level + 1, "Exit Code", term.exit_code)
        if term.signal:
            out.kv(level + 1, "Signal", term.signal)
        out.kv(level + 1, "Started", _time(term.started_at))
        out.kv(level + 1, "Finished", _time(term.finished_at))


def _volume_lines(out: _Lines, level: int, volumes: list[Volume] | None) -> None:
    if not volumes:
        out.kv(level, "Volumes", "<none>")
        return
    out.title(level, "Volumes:")
    for vol in volumes:
        out.title(level + 1, f"{vol.name}:")
        inner = level + 2
        if vol.config_map is not None:
            out.kv(inner, "Type", "ConfigMap (a volume populated by a ConfigMap)")
            out.kv(inner, "Name", vol.config_map.name)
            out.kv(inner, "Optional", bool(vol.config_map.optional))
        elif vol.secret is not None:
            out.kv(inner, "Type", "Secret (a volume populated by a Secret)")
            out.kv(inner, "SecretName", vol.secret.secret_name)
            out.kv(inner, "Optional", bool(vol.secret.optional))
        elif vol.empty_dir is not None:
            out.kv(inner, "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)")
            out.kv(inner, "Medium", vol.empty_dir.medium or "")
            out.kv(inner, "SizeLimit", vol.empty_dir.size_limit or "<unset>")
        elif vol.host_path is not None:
            out.kv(inner, "Type", "HostPath (bare host directory volume)")
            out.kv(inner, "Path", vol.host_path.path)
            out.kv(inner, "HostPathType", vol.host_path.type or "")
        elif vol.persistent_volume_claim is not None:
            out.kv(inner, "Type", "PersistentVolumeClaim (a reference to a PersistentVolumeClaim)")
            out.kv(inner, "ClaimName", vol.persistent_volume_claim.claim_name)
        else:
            out.kv(inner, "Type", "<unknown>")


def _pod_status(pod: Pod, now: dt.datetime) -> str:
    if pod.metadata.deletion_timestamp:
        return f"Terminating (lasts {_age(pod.metadata.deletion_timestamp, now)})"
    return pod.status.phase or "Pending"


async def _describe_pod(client: Client, pod: Pod, now: dt.datetime) -> _Lines:
    out = _Lines()
    meta, spec, status = pod.metadata, pod.spec, pod.status
    out.kv(0, "Name", meta.name)
    out.kv(0, "Namespace", meta.namespace)
    if spec.priority is not None:
        out.kv(0, "Priority", spec.priority)
    if spec.service_account_name:
        out.kv(0, "Service Account", spec.service_account_name)
    node = spec.node_name
    out.kv(0, "Node", f"{node}/{status.host_ip or ''}" if node else "<none>")
    if status.start_time:
        out.kv(0, "Start Time", _time(status.start_time))
    out.multiline(0, "Labels", _labels(meta))
    out.multiline(0, "Annotations", _annotations(meta))
    out.kv(0, "Status", _pod_status(pod, now))
    if status.reason:
        out.kv(0, "Reason", status.reason)
    if status.message:
        out.kv(0, "Message", status.message)
    out.kv(0, "IP", status.pod_ip or "")
    ips = [p.ip for p in status.pod_ips or []]
    if ips:
        out.title(0, "IPs:")
        for ip in ips:
            out.kv(1, "IP", ip)
    else:
        out.kv(0, "IPs", "<none>")
    owner = next((o for o in meta.owner_references or [] if o.controller), None)
    if owner is not None:
        out.kv(0, "Controlled By", f"{owner.kind}/{owner.name}")
    statuses = {s.name: s for s in status.container_statuses or []}
    init_statuses = {s.name: s for s in status.init_container_statuses or []}
    if spec.init_containers:
        out.title(0, "Init Containers:")
        for c in spec.init_containers:
            _container_lines(out, 1, c, init_statuses.get(c.name), now)
    out.title(0, "Containers:")
    for c in spec.containers:
        _container_lines(out, 1, c, statuses.get(c.name), now)
    if status.conditions:
        out.title(0, "Conditions:")
        out.row(1, "Type", "Status")
        for cond in status.conditions:
            out.row(1, cond.type + " ", cond.status)  # kubectl pads the type cell by one space
    _volume_lines(out, 0, spec.volumes)
    out.kv(0, "QoS Class", status.qos_class or "BestEffort")
    selectors = spec.node_selector or {}
    out.multiline(0, "Node-Selectors", [f"{k}={selectors[k]}" for k in sorted(selectors)])
    tolerations = [_toleration(t) for t in spec.tolerations or []]
    out.multiline(0, "Tolerations", tolerations)
    return out


def _toleration(t: Any) -> str:
    text = t.key or ""
    if t.value:
        text += f"={t.value}"
    if t.effect:
        text += f":{t.effect}"
    if t.operator == "Exists" and not t.value:
        text += " op=Exists"
    if t.toleration_seconds is not None:
        text += f" for {t.toleration_seconds}s"
    return text


# --- replication controllers ----------------------------------------------------------------------


def _template_lines(
    out: _Lines, labels: dict[str, str] | None, spec: PodSpec | None, now: dt.datetime
) -> None:
    out.title(0, "Pod Template:")
    out.multiline(1, "Labels", [f"{k}={v}" for k, v in sorted((labels or {}).items())])
    if spec is None:
        out.kv(1, "Containers", "<none>")
        return
    if spec.init_containers:
        out.title(1, "Init Containers:")
        for c in spec.init_containers:
            _container_lines(out, 1, c, None, now, name_indent=" ")
    out.title(1, "Containers:")
    for c in spec.containers:
        _container_lines(out, 1, c, None, now, name_indent=" ")
    _volume_lines(out, 1, spec.volumes)
    selectors = spec.node_selector or {}
    out.multiline(1, "Node-Selectors", [f"{k}={selectors[k]}" for k in sorted(selectors)])
    out.multiline(1, "Tolerations", [_toleration(t) for t in spec.tolerations or []])


async def _pods_status(client: Client, rc: ReplicationController) -> str:
    selector = rc.spec.selector or {}
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    if selector:
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = (await client.list(Pod, rc.metadata.namespace, label_selector=label_selector)).items
        for pod in pods:
            owner = next((o for o in pod.metadata.owner_references or [] if o.controller), None)
            if owner is None or owner.uid != rc.metadata.uid:
                continue
            phase = pod.status.phase or "Pending"
            if phase in counts:
                counts[phase] += 1
    return (
        f"{counts['Running']} Running / {counts['Pending']} Waiting / "
        f"{counts['Succeeded']} Succeeded / {counts['Failed']} Failed"
    )


async def _describe_rc(client: Client, rc: ReplicationController, now: dt.datetime) -> _Lines:
    out = _Lines()
    meta, spec = rc.metadata, rc.spec
    out.kv(0, "Name", meta.name)
    out.kv(0, "Namespace", meta.namespace)
    out.kv(0, "Selector", format_labels(spec.selector))
    out.multiline(0, "Labels", _labels(meta))
    out.multiline(0, "Annotations", _annotations(meta))
    desired = spec.replicas if spec.replicas is not None else 1
    out.kv(0, "Replicas", f"{rc.status.replicas} current / {desired} desired")
    out.kv(0, "Pods Status", await _pods_status(client, rc))
    template = spec.template
    _template_lines(
        out,
        template.metadata.labels if template is not None and template.metadata is not None else None,
        template.spec if template is not None else None,
        now,
    )
    if rc.status.conditions:
        out.title(0, "Conditions:")
        out.row(1, "Type", "Status", "Reason")
        out.row(1, "----", "------", "------")
        for cond in rc.status.conditions:
            out.row(1, cond.type, cond.status, cond.reason or "")
    return out


# --- services and endpoints -----------------------------------------------------------------------


def _endpoint_text(ep: Endpoints | None, port_name: str | None) -> str:
    """Ready ``ip:port`` pairs serving one service port, three at most (kubectl's formatEndpoints)."""
    if ep is None or not ep.subsets:
        return "<none>"
    pairs: list[str] = []
    for subset in ep.subsets:
        for port in subset.ports or []:
            if (port.name or "") != (port_name or ""):
                continue
            pairs.extend(f"{a.ip}:{port.port}" for a in subset.addresses or [])
    if not pairs:
        return "<none>"
    if len(pairs) > _MAX_ENDPOINTS:
        return ",".join(pairs[:_MAX_ENDPOINTS]) + f" + {len(pairs) - _MAX_ENDPOINTS} more..."
    return ",".join(pairs)


async def _describe_service(client: Client, svc: Service, now: dt.datetime) -> _Lines:
    out = _Lines()
    meta, spec = svc.metadata, svc.spec
    try:
        endpoints: Endpoints | None = await client.get(Endpoints, meta.name or "", meta.namespace)
    except NotFound:
        endpoints = None
    _common(out, meta)
    out.kv(0, "Selector", format_labels(spec.selector))
    out.kv(0, "Type", spec.type or "ClusterIP")
    if spec.ip_family_policy:
        out.kv(0, "IP Family Policy", spec.ip_family_policy)
    out.kv(0, "IP Families", ",".join(spec.ip_families or []) or "<none>")
    out.kv(0, "IP", spec.cluster_ip or "")
    out.kv(0, "IPs", ",".join(spec.cluster_ips or []) or "<none>")
    if spec.external_ips:
        out.kv(0, "External IPs", ",".join(spec.external_ips))
    if spec.load_balancer_ip:
        out.kv(0, "IP", spec.load_balancer_ip)
    if spec.external_name:
        out.kv(0, "External Name", spec.external_name)
    lb = svc.status.load_balancer
    ingress = [i.ip or i.hostname or "" for i in (lb.ingress or [])] if lb is not None else []
    if ingress:
        out.kv(0, "LoadBalancer Ingress", ", ".join(ingress))
    for port in spec.ports or []:
        name = port.name or "<unset>"
        protocol = port.protocol or "TCP"
        out.row(0, "Port:", name, f"{port.port}/{protocol}")
        target = port.target_port if port.target_port is not None else port.port
        out.kv(0, "TargetPort", f"{target}/{protocol}")
        if port.node_port:
            out.row(0, "NodePort:", name, f"{port.node_port}/{protocol}")
        out.kv(0, "Endpoints", _endpoint_text(endpoints, port.name))
    if not spec.ports:
        out.kv(0, "Endpoints", _endpoint_text(endpoints, None))
    out.kv(0, "Session Affinity", spec.session_affinity or "None")
    if spec.external_traffic_policy:
        out.kv(0, "External Traffic Policy", spec.external_traffic_policy)
    if spec.internal_traffic_policy:
        out.kv(0, "Internal Traffic Policy", spec.internal_traffic_policy)
    return out


async def _describe_endpoints(client: Client, ep: Endpoints, now: dt.datetime) -> _Lines:
    out = _Lines()
    _common(out, ep.metadata)
    out.title(0, "Subsets:")
    for subset in ep.subsets or []:
        ready = [a.ip for a in subset.addresses or []]
        not_ready = [a.ip for a in subset.not_ready_addresses or []]
        out.kv(1, "Addresses", ",".join(ready) or "<none>")
        out.kv(1, "NotReadyAddresses", ",".join(not_ready) or "<none>")
        if subset.ports:
            out.title(1, "Ports:")
            out.row(2, "Name", "Port", "Protocol")
            out.row(2, "----", "----", "--------")
            for port in subset.ports:
                out.row(2, port.name or "<unset>", str(port.port), port.protocol or "TCP")
        out.blank()
    return out


# --- nodes and namespaces -------------------------------------------------------------------------


async def _describe_node(client: Client, node: Node, now: dt.datetime) -> _Lines:
    out = _Lines()
    meta, spec, status = node.metadata, node.spec, node.status
    roles = sorted(
        k.removeprefix("node-role.kubernetes.io/")
        for k in meta.labels or {}
        if k.startswith("node-role.kubernetes.io/")
    )
    out.kv(0, "Name", meta.name)
    out.kv(0, "Roles", ",".join(r for r in roles if r) or "<none>")
    out.multiline(0, "Labels", _labels(meta))
    out.multiline(0, "Annotations", _annotations(meta))
    out.kv(0, "CreationTimestamp", _time(meta.creation_timestamp))
    taints = [
        f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in spec.taints or []
    ]
    out.multiline(0, "Taints", taints)
    out.kv(0, "Unschedulable", bool(spec.unschedulable))
    await _lease_lines(out, client, meta.name or "")
    if status.conditions:
        out.title(0, "Conditions:")
        out.row(1, "Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message")
        out.row(1, "----", "------", "-----------------", "------------------", "------", "-------")
        for c in status.conditions:
            out.row(
                1,
                c.type,
                c.status,
                _time(c.last_heartbeat_time),
                _time(c.last_transition_time),
                c.reason or "",
                c.message or "",
            )
    out.title(0, "Addresses:")
    for address in status.addresses or []:
        out.kv(1, address.type, address.address)
    for title, values in (("Capacity", status.capacity), ("Allocatable", status.allocatable)):
        if values:
            out.title(0, f"{title}:")
            for key in sorted(values):
                out.kv(1, key, values[key])
    info = status.node_info or NodeSystemInfo()
    out.title(0, "System Info:")
    out.kv(1, "Machine ID", info.machine_id)
    out.kv(1, "System UUID", info.system_uuid)
    out.kv(1, "Boot ID", info.boot_id)
    out.kv(1, "Kernel Version", info.kernel_version)
    out.kv(1, "OS Image", info.os_image)
    out.kv(1, "Operating System", info.operating_system)
    out.kv(1, "Architecture", info.architecture)
    out.kv(1, "Container Runtime Version", info.container_runtime_version)
    out.kv(1, "Kubelet Version", info.kubelet_version)
    out.kv(1, "Kube-Proxy Version", info.kube_proxy_version)
    if spec.pod_cidr:
        out.kv(0, "PodCIDR", spec.pod_cidr)
        out.kv(0, "PodCIDRs", ",".join(spec.pod_cidrs or [spec.pod_cidr]))
    pods = await _pods_on(client, meta.name or "")
    _node_resource_lines(out, pods, status.allocatable or {}, now)
    return out


async def _lease_lines(out: _Lines, client: Client, node: str) -> None:
    """The node's heartbeat lease in kube-node-lease, as kubectl shows it."""
    try:
        lease = await client.get(Lease, node, "kube-node-lease")
    except ApiError as exc:
        out.kv(0, "Lease", f"Failed to get lease: {exc.status.message or exc.status.reason}")
        return
    out.title(0, "Lease:")
    out.kv(1, "HolderIdentity", lease.spec.holder_identity or "<unset>")
    out.kv(1, "AcquireTime", _time(lease.spec.acquire_time))
    out.kv(1, "RenewTime", _time(lease.spec.renew_time))


def _pod_totals(pod: Pod) -> dict[str, int]:
    """cpu (millicores) and memory (bytes) requests and limits of a pod: the sum of its containers,
    at least its largest init container, as the scheduler counts them."""
    totals = {"cpu_req": 0, "cpu_lim": 0, "mem_req": 0, "mem_lim": 0, "eph_req": 0, "eph_lim": 0}

    def amounts(c: Container) -> dict[str, int]:
        res = c.resources
        req, lim = (res.requests or {}, res.limits or {}) if res is not None else ({}, {})
        return {
            "cpu_req": cpu_millis(req.get("cpu", 0)),
            "cpu_lim": cpu_millis(lim.get("cpu", 0)),
            "mem_req": memory_bytes(req.get("memory", 0)),
            "mem_lim": memory_bytes(lim.get("memory", 0)),
            "eph_req": memory_bytes(req.get("ephemeral-storage", 0)),
            "eph_lim": memory_bytes(lim.get("ephemeral-storage", 0)),
        }

    for c in pod.spec.containers:
        for key, value in amounts(c).items():
            totals[key] += value
    for c in pod.spec.init_containers or []:
        for key, value in amounts(c).items():
            totals[key] = max(totals[key], value)
    return totals


def _cpu_text(millis: int) -> str:
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _memory_text(size: int) -> str:
    for suffix, power in (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if size and size % (1 << power) == 0:
            return f"{size >> power}{suffix}"
    return str(size)


def _percent(amount: int, total: int) -> str:
    return f"{int(amount / total * 100) if total else 0}%"


def _node_resource_lines(out: _Lines, pods: list[Pod], allocatable: dict[str, Any], now: dt.datetime) -> None:
    """Non-terminated Pods and Allocated resources: requests and limits against allocatable."""
    try:
        cpu_total = cpu_millis(allocatable.get("cpu", 0))
        mem_total = memory_bytes(allocatable.get("memory", 0))
        eph_total = memory_bytes(allocatable.get("ephemeral-storage", 0))
    except ValueError:
        cpu_total = mem_total = eph_total = 0
    out.kv(0, "Non-terminated Pods", f"({len(pods)} in total)")
    # kubectl leaves an empty column after Name; keep it so the columns land where kubectl's do.
    out.row(
        1, "Namespace", "Name", "", "CPU Requests", "CPU Limits", "Memory Requests", "Memory Limits", "Age"
    )
    out.row(
        1, "---------", "----", "", "------------", "----------", "---------------", "-------------", "---"
    )
    sums = {"cpu_req": 0, "cpu_lim": 0, "mem_req": 0, "mem_lim": 0, "eph_req": 0, "eph_lim": 0}
    for pod in pods:
        try:
            t = _pod_totals(pod)
        except ValueError:
            t = dict.fromkeys(sums, 0)
        for key in sums:
            sums[key] += t[key]
        out.row(
            1,
            pod.metadata.namespace or "",
            pod.metadata.name or "",
            "",
            f"{_cpu_text(t['cpu_req'])} ({_percent(t['cpu_req'], cpu_total)})",
            f"{_cpu_text(t['cpu_lim'])} ({_percent(t['cpu_lim'], cpu_total)})",
            f"{_memory_text(t['mem_req'])} ({_percent(t['mem_req'], mem_total)})",
            f"{_memory_text(t['mem_lim'])} ({_percent(t['mem_lim'], mem_total)})",
            _age(pod.metadata.creation_timestamp, now),
        )
    out.title(0, "Allocated resources:")
    out.title(1, "(Total limits may be over 100 percent, i.e., overcommitted.)")
    out.row(1, "Resource", "Requests", "Limits")
    out.row(1, "--------", "--------", "------")
    out.row(
        1,
        "cpu",
        f"{_cpu_text(sums['cpu_req'])} ({_percent(sums['cpu_req'], cpu_total)})",
        f"{_cpu_text(sums['cpu_lim'])} ({_percent(sums['cpu_lim'], cpu_total)})",
    )
    out.row(
        1,
        "memory",
        f"{_memory_text(sums['mem_req'])} ({_percent(sums['mem_req'], mem_total)})",
        f"{_memory_text(sums['mem_lim'])} ({_percent(sums['mem_lim'], mem_total)})",
    )
    out.row(
        1,
        "ephemeral-storage",
        f"{_memory_text(sums['eph_req'])} ({_percent(sums['eph_req'], eph_total)})",
        f"{_memory_text(sums['eph_lim'])} ({_percent(sums['eph_lim'], eph_total)})",
    )


async def _pods_on(client: Client, node: str) -> list[Pod]:
    try:
        pods = (await client.list(Pod, None, field_selector=f"spec.nodeName={node}")).items
    except ApiError as exc:
        if exc.code != 400:
            raise
        pods = [p for p in (await client.list(Pod, None)).items if p.spec.node_name == node]
    return [p for p in pods if (p.status.phase or "Pending") not in ("Succeeded", "Failed")]


async def _describe_namespace(client: Client, ns: Namespace, now: dt.datetime) -> _Lines:
    out = _Lines()
    _common(out, ns.metadata, namespaced=False)
    out.kv(0, "Status", ns.status.phase or "Active")
    return out


# --- configuration --------------------------------------------------------------------------------


async def _describe_configmap(client: Client, cm: ConfigMap, now: dt.datetime) -> _Lines:
    out = _Lines()
    _common(out, cm.metadata)
    out.blank()
    out.title(0, "Data")
    out.title(0, "====")
    data = cm.data if isinstance(cm.data, dict) else {}
    for key in sorted(data):
        out.title(0, f"{key}:")
        out.title(0, "----")
        for line in (data[key] + "\n").split("\n")[:-1]:
            out.title(0, line)
        out.blank()
    out.blank()
    out.title(0, "BinaryData")
    out.title(0, "====")
    binary = cm.binary_data if isinstance(cm.binary_data, dict) else {}
    for key in sorted(binary):
        out.title(0, f"{key}: {_decoded_size(binary[key])} bytes")
    out.blank()
    return out


async def _describe_secret(client: Client, secret: Secret, now: dt.datetime) -> _Lines:
    """Values are never shown, only their sizes: describe output ends up in terminals and tickets."""
    out = _Lines()
    _common(out, secret.metadata)
    out.blank()
    out.kv(0, "Type", secret.type if isinstance(secret.type, str) else "Opaque")
    out.blank()
    out.title(0, "Data")
    out.title(0, "====")
    data = secret.data if isinstance(secret.data, dict) else {}
    for key in sorted(data):
        out.kv(0, key, f"{_decoded_size(data[key])} bytes")
    out.blank()
    return out


def _decoded_size(b64: str) -> int:
    """Bytes behind a base64 value, without keeping the decoded secret around."""
    text = b64.strip()
    if not text:
        return 0
    return len(text) * 3 // 4 - text[-2:].count("=")


async def _describe_event(client: Client, ev: Event, now: dt.datetime) -> _Lines:
    out = _Lines()
    _common(out, ev.metadata)
    ref = ev.involved_object
    out.title(0, "Involved Object:")
    out.kv(1, "Kind", ref.kind or "")
    out.kv(1, "Name", ref.name or "")
    if ref.namespace:
        out.kv(1, "Namespace", ref.namespace)
    if ref.field_path:
        out.kv(1, "Field Path", ref.field_path)
    out.kv(0, "Type", _unset_str(ev.type))
    out.kv(0, "Reason", _unset_str(ev.reason))
    out.kv(0, "Message", _unset_str(ev.message).strip())
    source = ev.source.component if isinstance(ev.source, msgspec.Struct) else None
    out.kv(0, "Source", source or ev.reporting_component or "")
    out.kv(0, "Count", ev.count if isinstance(ev.count, int) else 1)
    out.kv(0, "First Seen", _time(ev.first_timestamp or ev.event_time))
    out.kv(0, "Last Seen", _time(ev.last_timestamp or ev.event_time))
    return out


async def _describe_generic(client: Client, obj: Any, now: dt.datetime) -> _Lines:
    """Kinds without a describer of their own: the metadata, then the rest as YAML."""
    out = _Lines()
    meta = getattr(obj, "metadata", None) or ObjectMeta()
    _common(out, meta, namespaced=bool(meta.namespace))
    body = {k: v for k, v in msgspec.to_builtins(obj).items() if k not in ("apiVersion", "kind", "metadata")}
    for line in to_yaml(body).splitlines() if body else []:
        out.title(0, line)
    return out


_Describer = Callable[[Client, Any, dt.datetime], Awaitable[_Lines]]

_DESCRIBERS: dict[str, _Describer] = {
    "Pod": _describe_pod,
    "ReplicationController": _describe_rc,
    "Service": _describe_service,
    "Endpoints": _describe_endpoints,
    "Node": _describe_node,
    "Namespace": _describe_namespace,
    "ConfigMap": _describe_configmap,
    "Secret": _describe_secret,
    "Event": _describe_event,
}


async def describe(client: Client, info: ResourceInfo, name: str, namespace: str | None) -> str:
    """The full description of one object; NotFound (an ApiError) when it does not exist."""
    obj: TopLevel = await client.get(info.type, name, namespace if info.namespaced else None)
    now = dt.datetime.now(dt.UTC)
    describer = _DESCRIBERS.get(info.kind, _describe_generic)
    out = await describer(client, obj, now)
    if info.kind != "Event":
        meta: ObjectMeta = obj.metadata  # type: ignore[attr-defined]
        _event_lines(out, await _events(client, info.kind, meta), now)
    return out.render()
