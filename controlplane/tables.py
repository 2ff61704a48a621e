"""Server-side printing: the meta.k8s.io/v1 Table behind ``kubectl get``, ``pea get`` and the dashboard.

Stock kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever
columns and cells the server sends, upper-casing the column names. So the columns, their order, their
declared types and every cell value here follow Kubernetes' own printers (``pkg/printers/internalversion``)
to the character: a user switching between a real cluster and peapod sees the same ``STATUS`` for the
same pod. Like the real API server, every row carries the wide (priority 1) cells too; ``-o wide`` only
decides which columns the client shows.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .api.coordination import Lease
from .api.core import (
    ConfigMap,
    Container,
    ContainerState,
    ContainerStatus,
    Endpoints,
    Event,
    Namespace,
    Node,
    Pod,
    PodCondition,
    ReplicationController,
    Secret,
    Service,
)
from .api.meta import (
    ListMeta,
    ObjectMeta,
    PartialObjectMetadata,
    Table,
    TableColumnDefinition,
    TableRow,
    TopLevel,
    parse_time,
)
from .api.registry import ResourceInfo
from .status import condition, pod_ready

__all__ = ["IncludeObject", "build_table", "human_duration", "table_columns"]

IncludeObject = Literal["None", "Metadata", "Object"]

# --- durations -------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """Render an age the way apimachinery's ``duration.HumanDuration`` does (``45s``, ``3m20s``, ``2d5h``).

    Precision shrinks as the age grows, so the AGE column stays narrow. A clock up to one second ahead
    of the server still reads ``0s``; anything further in the future is ``<invalid>``.
    """
    whole = int(seconds)  # truncates toward zero, like Go's int(d.Seconds())
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 60 * 2:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        s = whole % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def _parse(value: str | None) -> _dt.datetime | None:
    """A timestamp, or None where Go would see a zero ``metav1.Time`` (unset, empty or year 1)."""
    if not value:
        return None
    try:
        parsed = parse_time(value)
    except ValueError:
        return None  # one malformed object must not break the whole listing
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return None if parsed.year <= 1 else parsed


def _since(value: str | None, now: _dt.datetime) -> str:
    """``translateTimestampSince``: the age of a timestamp, ``<unknown>`` when it is unset."""
    moment = _parse(value)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


# --- shared cell helpers -----------------------------------------------------------------------


def _text(value: object) -> str:
    """A string field that may be UNSET or None prints as Go's zero value, the empty string."""
    return value if isinstance(value, str) else ""


def _format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, ``<none>`` when there are none."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _container_cells(containers: Iterable[Container]) -> tuple[str, str]:
    """The CONTAINERS and IMAGES cells of a workload: names and images, comma-joined in order."""
    items = list(containers)
    return ",".join(c.name for c in items), ",".join(c.image or "" for c in items)


def _join_host_port(host: str, port: int) -> str:
    """``net.JoinHostPort``: IPv6 literals are bracketed so the port stays unambiguous."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _metadata(obj: TopLevel) -> ObjectMeta:
    meta = getattr(obj, "metadata", None)
    return meta if isinstance(meta, ObjectMeta) else ObjectMeta()


def _age(obj: TopLevel, now: _dt.datetime) -> str:
    return _since(_metadata(obj).creation_timestamp, now)


# --- column definitions ------------------------------------------------------------------------

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is "
    "not guaranteed to be set in happens-before order across separate operations. Clients may not set "
    "this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. "
    "Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


def _col(name: str, description: str, *, type_: str = "string", priority: int = 0) -> TableColumnDefinition:
    return TableColumnDefinition(name=name, type=type_, description=description, priority=priority)


def _name_col(priority: int = 0) -> TableColumnDefinition:
    return TableColumnDefinition(
        name="Name", type="string", format="name", description=_NAME_DOC, priority=priority
    )


def _age_col() -> TableColumnDefinition:
    return _col("Age", _AGE_DOC)


_POD_COLUMNS = (
    _name_col(),
    _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    _age_col(),
    _col("IP", "podIP address allocated to the pod. Routable at least within the cluster.", priority=1),
    _col("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
    _col(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node.",
        priority=1,
    ),
    _col(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness.",
        priority=1,
    ),
)

_RC_COLUMNS = (
    _name_col(),
    _col("Desired", "Replicas is the number of desired replicas.", type_="integer"),
    _col("Current", "Replicas is the most recently observed number of replicas.", type_="integer"),
    _col("Ready", "The number of ready replicas for this replication controller.", type_="integer"),
    _age_col(),
    _col("Containers", "Names of each container in the template.", priority=1),
    _col("Images", "Images referenced by each container in the template.", priority=1),
    _col(
        "Selector",
        "Selector is a label query over pods that should match the Replicas count.",
        priority=1,
    ),
)

_SERVICE_COLUMNS = (
    _name_col(),
    _col("Type", "type determines how the Service is exposed."),
    _col("Cluster-IP", "clusterIP is the IP address of the service."),
    _col(
        "External-IP",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept "
        "traffic for this service.",
    ),
    _col("Port(s)", "The list of ports that are exposed by this service."),
    _age_col(),
    _col(
        "Selector",
        "Route service traffic to pods with label keys and values matching this selector.",
        priority=1,
    ),
)

_ENDPOINTS_COLUMNS = (
    _name_col(),
    _col(
        "Endpoints",
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets "
        "according to the IPs they share.",
    ),
    _age_col(),
)

_NODE_COLUMNS = (
    _name_col(),
    _col("Status", "The status of the node"),
    _col("Roles", "The roles of the node"),
    _age_col(),
    _col("Version", "Kubelet Version reported by the node."),
    _col("Internal-IP", "List of addresses reachable to the node.", priority=1),
    _col("External-IP", "List of addresses reachable to the node.", priority=1),
    _col("OS-Image", "OS Image reported by the node from /etc/os-release.", priority=1),
    _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r'.", priority=1),
    _col(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API.",
        priority=1,
    ),
)

_EVENT_COLUMNS = (
    _col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    _col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    _col("Reason", "This should be a short, machine understandable string that gives the reason."),
    _col("Object", "The object that this event is about."),
    _col(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string should "
        "contain a valid JSON/Go field access statement.",
        priority=1,
    ),
    _col("Source", "The component reporting this event.", priority=1),
    _col("Message", "A human-readable description of the status of this operation."),
    _col(
        "First Seen",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        priority=1,
    ),
    _col("Count", "The number of times this event has occurred.", priority=1),
    _name_col(priority=1),
)

_NAMESPACE_COLUMNS = (
    _name_col(),
    _col("Status", "The status of the namespace"),
    _age_col(),
)

_CONFIGMAP_COLUMNS = (
    _name_col(),
    _col("Data", "Data contains the configuration data."),
    _age_col(),
)

_SECRET_COLUMNS = (
    _name_col(),
    _col("Type", "Used to facilitate programmatic handling of secret data."),
    _col("Data", "Data contains the secret data."),
    _age_col(),
)

_LEASE_COLUMNS = (
    _name_col(),
    _col("Holder", "holderIdentity contains the identity of the holder of a current lease."),
    _age_col(),
)

_DEFAULT_COLUMNS = (_name_col(), _age_col())


# --- pods --------------------------------------------------------------------------------------


def _is_sidecar(container: Container | None) -> bool:
    """A restartable init container (``restartPolicy: Always``) counts like an app container."""
    return container is not None and container.restart_policy == "Always"


def _later(current: _dt.datetime | None, status: ContainerStatus) -> _dt.datetime | None:
    """Keep the newest ``lastState.terminated.finishedAt`` seen so far: when the last restart was."""
    last = status.last_state.terminated if status.last_state is not None else None
    finished = _parse(last.finished_at) if last is not None else None
    if finished is None or (current is not None and finished <= current):
        return current
    return finished


def _condition_status(conditions: list[PodCondition] | None, type_: str) -> str | None:
    """The status of the first condition of a type, as ``isPodInitializedConditionTrue`` reads it."""
    found = condition(conditions, type_)
    return found.status if found is not None else None


def _pod_cells(pod: Pod, now: _dt.datetime) -> list[Any]:
    """``printPod``: READY, the one-word STATUS and RESTARTS condensed from the container statuses."""
    spec, status = pod.spec, pod.status
    init_specs = spec.init_containers or []
    restarts = 0
    sidecar_restarts = 0
    total = len(spec.containers) + sum(1 for c in init_specs if _is_sidecar(c))
    ready = 0
    last_restart: _dt.datetime | None = None
    last_sidecar_restart: _dt.datetime | None = None

    # The API server sets phase Pending on create; an unset phase can only mean that.
    phase = status.phase or "Pending"
    reason = status.reason or phase
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.reason == "SchedulingGated":
            reason = "SchedulingGated"

    by_name = {c.name: c for c in init_specs}
    initializing = False
    for index, cs in enumerate(status.init_container_statuses or []):
        restarts += cs.restart_count
        last_restart = _later(last_restart, cs)
        sidecar = _is_sidecar(by_name.get(cs.name))
        if sidecar:
            sidecar_restarts += cs.restart_count
            last_sidecar_restart = _later(last_sidecar_restart, cs)
        state = cs.state or ContainerState()
        if state.terminated is not None and state.terminated.exit_code == 0:
            continue
        if sidecar and cs.started:
            if cs.ready:
                ready += 1
            continue
        if state.terminated is not None:
            term = state.terminated
            if term.reason:
                reason = f"Init:{term.reason}"
            elif term.signal:
                reason = f"Init:Signal:{term.signal}"
            else:
                reason = f"Init:ExitCode:{term.exit_code}"
        elif state.waiting is not None and state.waiting.reason and state.waiting.reason != "PodInitializing":
            reason = f"Init:{state.waiting.reason}"
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_status(status.conditions, "Initialized") == "True":
        # Once initialised, only sidecars' restarts still count towards RESTARTS.
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Backwards, so the first container's state wins, as in kubectl.
        for cs in reversed(status.container_statuses or []):
            restarts += cs.restart_count
            last_restart = _later(last_restart, cs)
            state = cs.state or ContainerState()
            if state.waiting is not None and state.waiting.reason:
                reason = state.waiting.reason
            elif state.terminated is not None and state.terminated.reason:
                reason = state.terminated.reason
            elif state.terminated is not None:
                term = state.terminated
                reason = f"Signal:{term.signal}" if term.signal else f"ExitCode:{term.exit_code}"
            elif cs.ready and state.running is not None:
                has_running = True
                ready += 1
        # A finished container next to a still-running one: the pod is not "Completed" yet.
        if reason == "Completed" and has_running:
            reason = "Running" if pod_ready(pod) else "NotReady"

    deleting = _parse(pod.metadata.deletion_timestamp) is not None
    if deleting and status.reason == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"

    # v1 -> internal conversion fills podIPs from a lone podIP, so a real server would print it too.
    pod_ip = status.pod_ips[0].ip if status.pod_ips else (status.pod_ip or "")
    readiness_gates = "<none>"
    if spec.readiness_gates:
        true_gates = 0
        for gate in spec.readiness_gates:
            gate_status = _condition_status(status.conditions, str(gate.get("conditionType", "")))
            if gate_status == "True":
                true_gates += 1
        readiness_gates = f"{true_gates}/{len(spec.readiness_gates)}"

    return [
        pod.metadata.name or "",
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _age(pod, now),
        pod_ip or "<none>",
        spec.node_name or "<none>",
        status.nominated_node_name or "<none>",
        readiness_gates,
    ]


# --- workloads, services, endpoints ------------------------------------------------------------


def _rc_cells(rc: ReplicationController, now: _dt.datetime) -> list[Any]:
    """``printReplicationController``: replica counts as integers, then the template's containers."""
    template = rc.spec.template
    containers = template.spec.containers if template is not None and template.spec is not None else []
    names, images = _container_cells(containers)
    # Defaulting turns an unset spec.replicas into 1, so that is what the server would print.
    desired = rc.spec.replicas if rc.spec.replicas is not None else 1
    return [
        rc.metadata.name or "",
        desired,
        rc.status.replicas,
        rc.status.ready_replicas or 0,
        _age(rc, now),
        names,
        images,
        _format_labels(rc.spec.selector),
    ]


def _load_balancer_addresses(svc: Service) -> list[str]:
    """Ingress IPs (else hostnames), de-duplicated and sorted like kubectl's string set."""
    lb = svc.status.load_balancer
    found = {ing.ip or ing.hostname or "" for ing in (lb.ingress if lb and lb.ingress else [])}
    return sorted(found - {""})


def _external_ip(svc: Service, svc_type: str) -> str:
    """``getServiceExternalIP`` in its wide form (the server never clips the load-balancer list)."""
    external = svc.spec.external_ips or []
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        addresses = _load_balancer_addresses(svc) + external
        return ",".join(addresses) if addresses else "<pending>"
    if svc_type == "ExternalName":
        return svc.spec.external_name or ""
    return "<unknown>"


def _service_cells(svc: Service, now: _dt.datetime) -> list[Any]:
    """``printService``: headless services show ``None`` because that is their clusterIP value."""
    spec = svc.spec
    svc_type = spec.type or "ClusterIP"
    cluster_ip = spec.cluster_ips[0] if spec.cluster_ips else (spec.cluster_ip or "<none>")
    pieces = []
    for port in spec.ports or []:
        protocol = port.protocol or "TCP"
        if port.node_port:
            pieces.append(f"{port.port}:{port.node_port}/{protocol}")
        else:
            pieces.append(f"{port.port}/{protocol}")
    return [
        svc.metadata.name or "",
        svc_type,
        cluster_ip,
        _external_ip(svc, svc_type),
        ",".join(pieces) or "<none>",
        _age(svc, now),
        _format_labels(spec.selector),
    ]


_MAX_ENDPOINTS = 3


def _endpoints_cell(ep: Endpoints) -> str:
    """``formatEndpoints``: ready ``ip:port`` pairs, three at most, then how many were left out."""
    if not ep.subsets:
        return "<none>"
    shown: list[str] = []
    total = 0
    more = False
    for subset in ep.subsets:
        addresses = subset.addresses or []
        # A headless service without ports lists bare addresses.
        targets: list[int | None] = [p.port for p in subset.ports] if subset.ports else [None]
        for port in targets:
            total += len(addresses)
            for address in addresses:
                if len(shown) == _MAX_ENDPOINTS:
                    more = True
                    break
                shown.append(address.ip if port is None else _join_host_port(address.ip, port))
    text = ",".join(shown)
    # Subsets holding only not-ready addresses print as an empty cell, exactly as kubectl does.
    return f"{text} + {total - _MAX_ENDPOINTS} more..." if more else text


def _endpoints_cells(ep: Endpoints, now: _dt.datetime) -> list[Any]:
    return [ep.metadata.name or "", _endpoints_cell(ep), _age(ep, now)]


# --- nodes -------------------------------------------------------------------------------------

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def _node_roles(node: Node) -> str:
    """ROLES from ``node-role.kubernetes.io/<role>`` keys and the older ``kubernetes.io/role`` value."""
    roles: set[str] = set()
    for key, value in (node.metadata.labels or {}).items():
        if key.startswith(_ROLE_PREFIX):
            role = key[len(_ROLE_PREFIX) :]
            if role:
                roles.add(role)
        elif key == _ROLE_LABEL and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(node: Node, kind: str) -> str:
    for address in node.status.addresses or []:
        if address.type == kind:
            return address.address
    return "<none>"


def _node_cells(node: Node, now: _dt.datetime) -> list[Any]:
    """``printNode``: only the Ready condition drives STATUS; any status but True reads NotReady."""
    ready_status: str | None = None
    for cond in node.status.conditions or []:
        if cond.type == "Ready":
            ready_status = cond.status  # the last one wins, like kubectl's map
    states = ["Unknown" if ready_status is None else "Ready" if ready_status == "True" else "NotReady"]
    if node.spec.unschedulable:
        states.append("SchedulingDisabled")
    info = node.status.node_info
    return [
        node.metadata.name or "",
        ",".join(states),
        _node_roles(node),
        _age(node, now),
        info.kubelet_version if info is not None else "",
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        (info.os_image if info is not None else "") or "<unknown>",
        (info.kernel_version if info is not None else "") or "<unknown>",
        (info.container_runtime_version if info is not None else "") or "<unknown>",
    ]


# --- events ------------------------------------------------------------------------------------


def _event_cells(ev: Event, now: _dt.datetime) -> list[Any]:
    """``printEvent``: events.k8s.io-style series and eventTime fill in for the legacy fields."""
    first_seen = _since(ev.first_timestamp, now)
    if _parse(ev.first_timestamp) is None:
        first_seen = _since(ev.event_time, now)
    last_seen = _since(ev.last_timestamp, now)
    if _parse(ev.last_timestamp) is None:
        last_seen = first_seen
    count = ev.count if isinstance(ev.count, int) else 0
    if not isinstance(ev.series, msgspec.UnsetType) and ev.series is not None:
        last_seen = _since(ev.series.last_observed_time, now)
        count = ev.series.count or 0
    elif count == 0:
        count = 1  # singleton events from the new API carry no count

    involved = ev.involved_object
    kind = (involved.kind or "").lower()
    target = f"{kind}/{involved.name}" if involved.name else kind

    source = ev.source if not isinstance(ev.source, msgspec.UnsetType) else None
    component = (source.component if source else None) or ev.reporting_component
    host = (source.host if source else None) or ev.reporting_instance
    source_cell = f"{component}, {host}" if host else component

    return [
        last_seen,
        _text(ev.type),
        _text(ev.reason),
        target,
        involved.field_path or "",
        source_cell,
        _text(ev.message).strip(),
        first_seen,
        count,
        ev.metadata.name or "",
    ]


# --- the small kinds ---------------------------------------------------------------------------


def _namespace_cells(ns: Namespace, now: _dt.datetime) -> list[Any]:
    # Namespaces are created Active; an unset phase can only mean that.
    return [ns.metadata.name or "", ns.status.phase or "Active", _age(ns, now)]


def _configmap_cells(cm: ConfigMap, now: _dt.datetime) -> list[Any]:
    data = cm.data if isinstance(cm.data, dict) else {}
    binary = cm.binary_data if isinstance(cm.binary_data, dict) else {}
    return [cm.metadata.name or "", len(data) + len(binary), _age(cm, now)]


def _secret_cells(secret: Secret, now: _dt.datetime) -> list[Any]:
    secret_type = secret.type if isinstance(secret.type, str) and secret.type else "Opaque"
    data = secret.data if isinstance(secret.data, dict) else {}
    return [secret.metadata.name or "", secret_type, len(data), _age(secret, now)]


def _lease_cells(lease: Lease, now: _dt.datetime) -> list[Any]:
    return [lease.metadata.name or "", lease.spec.holder_identity or "", _age(lease, now)]


def _default_cells(obj: TopLevel, now: _dt.datetime) -> list[Any]:
    return [_metadata(obj).name or "", _age(obj, now)]


# --- dispatch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Printer:
    columns: tuple[TableColumnDefinition, ...]
    # Any: each printer takes its own kind; dispatch by ResourceInfo.kind keeps them matched.
    cells: Callable[[Any, _dt.datetime], list[Any]]


_PRINTERS: dict[str, _Printer] = {
    "Pod": _Printer(_POD_COLUMNS, _pod_cells),
    "ReplicationController": _Printer(_RC_COLUMNS, _rc_cells),
    "Service": _Printer(_SERVICE_COLUMNS, _service_cells),
    "Endpoints": _Printer(_ENDPOINTS_COLUMNS, _endpoints_cells),
    "Node": _Printer(_NODE_COLUMNS, _node_cells),
    "Event": _Printer(_EVENT_COLUMNS, _event_cells),
    "Namespace": _Printer(_NAMESPACE_COLUMNS, _namespace_cells),
    "ConfigMap": _Printer(_CONFIGMAP_COLUMNS, _configmap_cells),
    "Secret": _Printer(_SECRET_COLUMNS, _secret_cells),
    "Lease": _Printer(_LEASE_COLUMNS, _lease_cells),
}

_DEFAULT_PRINTER = _Printer(_DEFAULT_COLUMNS, _default_cells)


def _printer(info: ResourceInfo) -> _Printer:
    return _PRINTERS.get(info.kind, _DEFAULT_PRINTER)


def table_columns(info: ResourceInfo) -> list[TableColumnDefinition]:
    """The header of a kind's table, for callers (the dashboard) that lay out columns before rows arrive.

    Copies, so a caller adjusting a column cannot change every later table.
    """
    return [msgspec.structs.replace(c) for c in _printer(info).columns]


def _row_object(obj: TopLevel, include_object: IncludeObject) -> Any:
    if include_object == "None":
        return None
    if include_object == "Metadata":
        return PartialObjectMetadata(metadata=_metadata(obj))
    return obj


def build_table(
    info: ResourceInfo,
    objects: Sequence[TopLevel],
    *,
    include_object: IncludeObject = "Metadata",
    now: _dt.datetime | None = None,
    resource_version: str | None = None,
    continue_: str | None = None,
) -> Table:
    """Print objects of one kind as a meta.k8s.io/v1 Table, one row per object, wide cells included.

    ``include_object`` mirrors the ``includeObject`` table option: kubectl asks for ``Metadata`` (the
    default) so it can still act on rows by name and namespace without the full object's weight.
    ``now`` pins the clock the AGE cells are measured against, so tests and one listing agree.
    """
    if include_object not in ("None", "Metadata", "Object"):
        raise ValueError(f"unrecognized includeObject value: {include_object!r}")
    moment = now if now is not None else _dt.datetime.now(_dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    printer = _printer(info)
    rows = [
        TableRow(cells=printer.cells(obj, moment), object=_row_object(obj, include_object)) for obj in objects
    ]
    return Table(
        metadata=ListMeta(resource_version=resource_version, continue_=continue_),
        column_definitions=table_columns(info),
        rows=rows,
    )
