"""core/v1 kinds: Namespace, Node, Pod, ReplicationController, Service, Endpoints, Event, ConfigMap,
Secret, Binding, plus autoscaling/v1 Scale.

The shapes are Kubernetes' own. Fields peapod does not act on yet (affinity, tolerations...) are still
declared, so a stock manifest round-trips and strict field validation only flags real typos.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .meta import ListMeta, Model, ObjectMeta, TopLevel

__all__ = [
    "Binding",
    "Capabilities",
    "ConfigMap",
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "ConfigMapList",
    "ConfigMapVolumeSource",
    "Container",
    "ContainerImage",
    "ContainerPort",
    "ContainerState",
    "ContainerStateRunning",
    "ContainerStateTerminated",
    "ContainerStateWaiting",
    "ContainerStatus",
    "DaemonEndpoint",
    "EmptyDirVolumeSource",
    "EndpointAddress",
    "EndpointPort",
    "EndpointSubset",
    "Endpoints",
    "EndpointsList",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "Event",
    "EventList",
    "EventSeries",
    "EventSource",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "HTTPHeader",
    "HostAlias",
    "HostPathVolumeSource",
    "IntOrString",
    "KeyToPath",
    "Lifecycle",
    "LifecycleHandler",
    "LoadBalancerIngress",
    "LoadBalancerStatus",
    "LocalObjectReference",
    "Namespace",
    "NamespaceList",
    "NamespaceSpec",
    "NamespaceStatus",
    "Node",
    "NodeAddress",
    "NodeCondition",
    "NodeDaemonEndpoints",
    "NodeList",
    "NodeSpec",
    "NodeStatus",
    "NodeSystemInfo",
    "ObjectFieldSelector",
    "ObjectReference",
    "PersistentVolumeClaimVolumeSource",
    "Pod",
    "PodCondition",
    "PodDNSConfig",
    "PodDNSConfigOption",
    "PodIP",
    "PodList",
    "PodSecurityContext",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "Probe",
    "Quantity",
    "ReplicationController",
    "ReplicationControllerCondition",
    "ReplicationControllerList",
    "ReplicationControllerSpec",
    "ReplicationControllerStatus",
    "ResourceFieldSelector",
    "ResourceRequirements",
    "Scale",
    "ScaleSpec",
    "ScaleStatus",
    "Secret",
    "SecretEnvSource",
    "SecretKeySelector",
    "SecretList",
    "SecretVolumeSource",
    "SecurityContext",
    "Service",
    "ServiceList",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
    "SessionAffinityConfig",
    "SleepAction",
    "TCPSocketAction",
    "Taint",
    "Toleration",
    "Volume",
    "VolumeMount",
]

IntOrString = int | str
Quantity = str | int | float

# --- shared pieces ---------------------------------------------------------------------------


class ObjectReference(Model):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class LocalObjectReference(Model):
    name: str | None = None


class KeyToPath(Model):
    key: str
    path: str
    mode: int | None = None


# --- containers ------------------------------------------------------------------------------


class ContainerPort(Model):
    container_port: int
    name: str | None = None
    host_port: int | None = None
    protocol: str | None = None
    host_ip: str | None = msgspec.field(default=None, name="hostIP")


class ConfigMapKeySelector(Model):
    key: str
    name: str | None = None
    optional: bool | None = None


class SecretKeySelector(Model):
    key: str
    name: str | None = None
    optional: bool | None = None


class ObjectFieldSelector(Model):
    field_path: str
    api_version: str | None = None


class ResourceFieldSelector(Model):
    resource: str
    container_name: str | None = None
    divisor: Quantity | None = None


class EnvVarSource(Model):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None


class EnvVar(Model):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class ConfigMapEnvSource(Model):
    name: str | None = None
    optional: bool | None = None


class SecretEnvSource(Model):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(Model):
    prefix: str | None = None
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None


class ResourceRequirements(Model):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None
    claims: list[dict[str, Any]] | None = None


class VolumeMount(Model):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


class ExecAction(Model):
    command: list[str] | None = None


class HTTPHeader(Model):
    name: str
    value: str


class HTTPGetAction(Model):
    port: IntOrString
    path: str | None = None
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(Model):
    port: IntOrString
    host: str | None = None


class GRPCAction(Model):
    port: int
    service: str | None = None


class SleepAction(Model):
    seconds: int


class Probe(Model):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    period_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    termination_grace_period_seconds: int | None = None


class LifecycleHandler(Model):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


class Lifecycle(Model):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None
    stop_signal: str | None = None


class Capabilities(Model):
    add: list[str] | None = None
    drop: list[str] | None = None


class SecurityContext(Model):
    capabilities: Capabilities | None = None
    privileged: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    proc_mount: str | None = None
    se_linux_options: dict[str, Any] | None = None
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None


class Container(Model):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: list[ContainerPort] | None = None
    env_from: list[EnvFromSource] | None = None
    env: list[EnvVar] | None = None
    resources: ResourceRequirements | None = None
    resize_policy: list[dict[str, Any]] | None = None
    restart_policy: str | None = None
    volume_mounts: list[VolumeMount] | None = None
    volume_devices: list[dict[str, Any]] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    image_pull_policy: str | None = None
    security_context: SecurityContext | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None


# --- volumes ---------------------------------------------------------------------------------


class EmptyDirVolumeSource(Model):
    medium: str | None = None
    size_limit: Quantity | None = None


class HostPathVolumeSource(Model):
    path: str
    type: str | None = None


class ConfigMapVolumeSource(Model):
    name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(Model):
    secret_name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class PersistentVolumeClaimVolumeSource(Model):
    claim_name: str
    read_only: bool | None = None


class Volume(Model):
    name: str
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    projected: dict[str, Any] | None = None
    downward_api: dict[str, Any] | None = msgspec.field(default=None, name="downwardAPI")
    nfs: dict[str, Any] | None = None


# --- pods ------------------------------------------------------------------------------------


class Toleration(Model):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class HostAlias(Model):
    ip: str
    hostnames: list[str] | None = None


class PodDNSConfigOption(Model):
    name: str | None = None
    value: str | None = None


class PodDNSConfig(Model):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None


class PodSecurityContext(Model):
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    fs_group_change_policy: str | None = None
    supplemental_groups: list[int] | None = None
    sysctls: list[dict[str, Any]] | None = None
    se_linux_options: dict[str, Any] | None = None
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None


class PodSpec(Model):
    containers: list[Container] = msgspec.field(default_factory=list)
    init_containers: list[Container] | None = None
    ephemeral_containers: list[dict[str, Any]] | None = None
    volumes: list[Volume] | None = None
    restart_policy: str | None = None
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    dns_policy: str | None = None
    dns_config: PodDNSConfig | None = None
    node_selector: dict[str, str] | None = None
    service_account_name: str | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    node_name: str | None = None
    host_network: bool | None = None
    host_pid: bool | None = msgspec.field(default=None, name="hostPID")
    host_ipc: bool | None = msgspec.field(default=None, name="hostIPC")
    host_users: bool | None = None
    share_process_namespace: bool | None = None
    security_context: PodSecurityContext | None = None
    image_pull_secrets: list[LocalObjectReference] | None = None
    hostname: str | None = None
    subdomain: str | None = None
    set_hostname_as_fqdn: bool | None = None
    affinity: dict[str, Any] | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] | None = None
    host_aliases: list[HostAlias] | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    preemption_policy: str | None = None
    readiness_gates: list[dict[str, Any]] | None = None
    runtime_class_name: str | None = None
    enable_service_links: bool | None = None
    overhead: dict[str, Quantity] | None = None
    topology_spread_constraints: list[dict[str, Any]] | None = None
    os: dict[str, Any] | None = None
    scheduling_gates: list[dict[str, Any]] | None = None
    resource_claims: list[dict[str, Any]] | None = None
    resources: ResourceRequirements | None = None


class PodCondition(Model):
    type: str
    status: str
    last_probe_time: str | None = None
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = None


class ContainerStateWaiting(Model):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(Model):
    started_at: str | None = None


class ContainerStateTerminated(Model):
    exit_code: int = 0
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    container_id: str | None = msgspec.field(default=None, name="containerID")


class ContainerState(Model):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(Model):
    name: str
    ready: bool = False
    restart_count: int = 0
    image: str = ""
    image_id: str = msgspec.field(default="", name="imageID")
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    container_id: str | None = msgspec.field(default=None, name="containerID")
    started: bool | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[dict[str, Any]] | None = None
    user: dict[str, Any] | None = None
    allocated_resources: dict[str, Quantity] | None = None
    stop_signal: str | None = None


class PodIP(Model):
    ip: str


class PodStatus(Model):
    phase: str | None = None
    conditions: list[PodCondition] | None = None
    message: str | None = None
    reason: str | None = None
    nominated_node_name: str | None = None
    host_ip: str | None = msgspec.field(default=None, name="hostIP")
    host_ips: list[PodIP] | None = msgspec.field(default=None, name="hostIPs")
    pod_ip: str | None = msgspec.field(default=None, name="podIP")
    pod_ips: list[PodIP] | None = msgspec.field(default=None, name="podIPs")
    start_time: str | None = None
    init_container_statuses: list[ContainerStatus] | None = None
    container_statuses: list[ContainerStatus] | None = None
    ephemeral_container_statuses: list[ContainerStatus] | None = None
    qos_class: str | None = msgspec.field(default=None, name="qosClass")
    observed_generation: int | None = None


class Pod(TopLevel):
    api_version: str = "v1"
    kind: str = "Pod"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class PodList(TopLevel):
    api_version: str = "v1"
    kind: str = "PodList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Pod] = msgspec.field(default_factory=list)


class PodTemplateSpec(Model):
    metadata: ObjectMeta | None = None
    spec: PodSpec | None = None


class Binding(TopLevel):
    """The body of ``POST pods/{name}/binding``: the scheduler's decision."""

    api_version: str = "v1"
    kind: str = "Binding"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    target: ObjectReference = msgspec.field(default_factory=ObjectReference)


# --- replication controllers -----------------------------------------------------------------


class ReplicationControllerSpec(Model):
    replicas: int | None = None
    min_ready_seconds: int | None = None
    selector: dict[str, str] | None = None
    template: PodTemplateSpec | None = None


class ReplicationControllerCondition(Model):
    type: str
    status: str
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class ReplicationControllerStatus(Model):
    replicas: int = 0
    fully_labeled_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[ReplicationControllerCondition] | None = None


class ReplicationController(TopLevel):
    api_version: str = "v1"
    kind: str = "ReplicationController"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ReplicationControllerSpec = msgspec.field(default_factory=ReplicationControllerSpec)
    status: ReplicationControllerStatus = msgspec.field(default_factory=ReplicationControllerStatus)


class ReplicationControllerList(TopLevel):
    api_version: str = "v1"
    kind: str = "ReplicationControllerList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[ReplicationController] = msgspec.field(default_factory=list)


class ScaleSpec(Model):
    replicas: int | None = None


class ScaleStatus(Model):
    replicas: int = 0
    selector: str | None = None


class Scale(TopLevel):
    """autoscaling/v1 Scale: the ``scale`` subresource of a ReplicationController."""

    api_version: str = "autoscaling/v1"
    kind: str = "Scale"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ScaleSpec = msgspec.field(default_factory=ScaleSpec)
    status: ScaleStatus = msgspec.field(default_factory=ScaleStatus)


# --- services and endpoints ------------------------------------------------------------------


class ServicePort(Model):
    port: int
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    target_port: IntOrString | None = None
    node_port: int | None = None


class SessionAffinityConfig(Model):
    client_ip: dict[str, Any] | None = msgspec.field(default=None, name="clientIP")


class ServiceSpec(Model):
    ports: list[ServicePort] | None = None
    selector: dict[str, str] | None = None
    cluster_ip: str | None = msgspec.field(default=None, name="clusterIP")
    cluster_ips: list[str] | None = msgspec.field(default=None, name="clusterIPs")
    type: str | None = None
    external_ips: list[str] | None = msgspec.field(default=None, name="externalIPs")
    session_affinity: str | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    load_balancer_ip: str | None = msgspec.field(default=None, name="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    load_balancer_class: str | None = None
    external_name: str | None = None
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    health_check_node_port: int | None = None
    publish_not_ready_addresses: bool | None = None
    ip_families: list[str] | None = msgspec.field(default=None, name="ipFamilies")
    ip_family_policy: str | None = msgspec.field(default=None, name="ipFamilyPolicy")
    allocate_load_balancer_node_ports: bool | None = None
    traffic_distribution: str | None = None


class LoadBalancerIngress(Model):
    ip: str | None = None
    hostname: str | None = None
    ip_mode: str | None = None
    ports: list[dict[str, Any]] | None = None


class LoadBalancerStatus(Model):
    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(Model):
    load_balancer: LoadBalancerStatus | None = None
    conditions: list[dict[str, Any]] | None = None


class Service(TopLevel):
    api_version: str = "v1"
    kind: str = "Service"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ServiceSpec = msgspec.field(default_factory=ServiceSpec)
    status: ServiceStatus = msgspec.field(default_factory=ServiceStatus)


class ServiceList(TopLevel):
    api_version: str = "v1"
    kind: str = "ServiceList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Service] = msgspec.field(default_factory=list)


class EndpointAddress(Model):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(Model):
    port: int
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSubset(Model):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(TopLevel):
    api_version: str = "v1"
    kind: str = "Endpoints"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    subsets: list[EndpointSubset] | None = None


class EndpointsList(TopLevel):
    api_version: str = "v1"
    kind: str = "EndpointsList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Endpoints] = msgspec.field(default_factory=list)


# --- nodes -----------------------------------------------------------------------------------


class Taint(Model):
    key: str
    effect: str
    value: str | None = None
    time_added: str | None = None


class NodeSpec(Model):
    pod_cidr: str | None = msgspec.field(default=None, name="podCIDR")
    pod_cidrs: list[str] | None = msgspec.field(default=None, name="podCIDRs")
    provider_id: str | None = msgspec.field(default=None, name="providerID")
    unschedulable: bool | None = None
    taints: list[Taint] | None = None
    config_source: dict[str, Any] | None = None
    external_id: str | None = msgspec.field(default=None, name="externalID")


class NodeCondition(Model):
    type: str
    status: str
    last_heartbeat_time: str | None = None
    last_transition_time: str | None = None
    reason: str | None = None
    message: str | None = None


class NodeAddress(Model):
    type: str
    address: str


class DaemonEndpoint(Model):
    port: int = msgspec.field(default=0, name="Port")


class NodeDaemonEndpoints(Model):
    kubelet_endpoint: DaemonEndpoint | None = None


class NodeSystemInfo(Model):
    machine_id: str = msgspec.field(default="", name="machineID")
    system_uuid: str = msgspec.field(default="", name="systemUUID")
    boot_id: str = msgspec.field(default="", name="bootID")
    kernel_version: str = ""
    os_image: str = ""
    container_runtime_version: str = ""
    kubelet_version: str = ""
    kube_proxy_version: str = ""
    operating_system: str = ""
    architecture: str = ""
    swap: dict[str, Any] | None = None


class ContainerImage(Model):
    names: list[str] | None = None
    size_bytes: int | None = None


class NodeStatus(Model):
    capacity: dict[str, Quantity] | None = None
    allocatable: dict[str, Quantity] | None = None
    phase: str | None = None
    conditions: list[NodeCondition] | None = None
    addresses: list[NodeAddress] | None = None
    daemon_endpoints: NodeDaemonEndpoints | None = None
    node_info: NodeSystemInfo | None = None
    images: list[ContainerImage] | None = None
    volumes_in_use: list[str] | None = None
    volumes_attached: list[dict[str, Any]] | None = None
    config: dict[str, Any] | None = None
    runtime_handlers: list[dict[str, Any]] | None = None
    features: dict[str, Any] | None = None


class Node(TopLevel):
    api_version: str = "v1"
    kind: str = "Node"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


class NodeList(TopLevel):
    api_version: str = "v1"
    kind: str = "NodeList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Node] = msgspec.field(default_factory=list)


# --- namespaces ------------------------------------------------------------------------------


class NamespaceSpec(Model):
    finalizers: list[str] | None = None


class NamespaceStatus(Model):
    phase: str | None = None
    conditions: list[dict[str, Any]] | None = None


class Namespace(TopLevel):
    api_version: str = "v1"
    kind: str = "Namespace"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NamespaceSpec = msgspec.field(default_factory=NamespaceSpec)
    status: NamespaceStatus = msgspec.field(default_factory=NamespaceStatus)


class NamespaceList(TopLevel):
    api_version: str = "v1"
    kind: str = "NamespaceList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Namespace] = msgspec.field(default_factory=list)


# --- configuration ---------------------------------------------------------------------------


class ConfigMap(TopLevel):
    api_version: str = "v1"
    kind: str = "ConfigMap"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    data: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    binary_data: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    immutable: bool | msgspec.UnsetType = msgspec.UNSET


class ConfigMapList(TopLevel):
    api_version: str = "v1"
    kind: str = "ConfigMapList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[ConfigMap] = msgspec.field(default_factory=list)


class Secret(TopLevel):
    """Values in ``data`` are base64; ``stringData`` is write-only and folded into ``data`` on write."""

    api_version: str = "v1"
    kind: str = "Secret"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    type: str | msgspec.UnsetType = msgspec.UNSET
    data: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    string_data: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    immutable: bool | msgspec.UnsetType = msgspec.UNSET


class SecretList(TopLevel):
    api_version: str = "v1"
    kind: str = "SecretList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Secret] = msgspec.field(default_factory=list)


# --- events ----------------------------------------------------------------------------------


class EventSource(Model):
    component: str | None = None
    host: str | None = None


class EventSeries(Model):
    count: int | None = None
    last_observed_time: str | None = None


class Event(TopLevel):
    api_version: str = "v1"
    kind: str = "Event"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    involved_object: ObjectReference = msgspec.field(default_factory=ObjectReference)
    reason: str | msgspec.UnsetType = msgspec.UNSET
    message: str | msgspec.UnsetType = msgspec.UNSET
    source: EventSource | msgspec.UnsetType = msgspec.UNSET
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    count: int | msgspec.UnsetType = msgspec.UNSET
    type: str | msgspec.UnsetType = msgspec.UNSET
    event_time: str | None = None
    series: EventSeries | msgspec.UnsetType = msgspec.UNSET
    action: str | msgspec.UnsetType = msgspec.UNSET
    related: ObjectReference | msgspec.UnsetType = msgspec.UNSET
    reporting_component: str = ""
    reporting_instance: str = ""


class EventList(TopLevel):
    api_version: str = "v1"
    kind: str = "EventList"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[Event] = msgspec.field(default_factory=list)
