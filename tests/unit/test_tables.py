"""Server-side printing: every cell must match what kubectl shows against a real cluster."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from controlplane.api.coordination import Lease
from controlplane.api.core import (
    ConfigMap,
    Endpoints,
    Event,
    Namespace,
    Node,
    Pod,
    ReplicationController,
    Secret,
    Service,
)
from controlplane.api.meta import PartialObjectMetadata, Table, TopLevel
from controlplane.api.registry import RESOURCES, ResourceInfo, by_kind, resolve
from controlplane.tables import build_table, human_duration, table_columns

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> str:
    """A metav1.Time string the given number of seconds before NOW."""
    return (NOW - dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def info(kind: str) -> ResourceInfo:
    found = by_kind(kind)
    assert found is not None
    return found


def cells(obj: TopLevel) -> dict[str, Any]:
    """The single row of obj's table, keyed by column name."""
    table = build_table(info(obj.kind), [obj], now=NOW)  # type: ignore[attr-defined]
    assert len(table.rows) == 1
    names = [c.name for c in table.column_definitions]
    assert len(table.rows[0].cells) == len(names)
    return dict(zip(names, table.rows[0].cells, strict=True))


def make_pod(
    status: dict[str, Any],
    spec: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Pod:
    return msgspec.convert(
        {
            "metadata": {
                "name": "web",
                "namespace": "default",
                "creationTimestamp": ago(300),
                **(metadata or {}),
            },
            "spec": spec or {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status,
        },
        Pod,
    )


def running(name: str = "app", *, ready: bool = True, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(200)}},
        **extra,
    }


# --- human_duration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (-2, "<invalid>"),
        (-1.5, "0s"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119.9, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (15 * 60 + 59, "15m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (2 * 3600 + 30 * 60, "150m"),
        (3 * 3600 + 30 * 60, "3h30m"),
        (7 * 3600 + 59 * 60, "7h59m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (7 * 86400 + 23 * 3600, "7d23h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (8 * 365 * 86400, "8y"),
        (20 * 365 * 86400 + 100 * 86400, "20y"),
    ],
)
def test_human_duration_thresholds(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_missing_creation_timestamp_prints_unknown() -> None:
    cm = msgspec.convert({"metadata": {"name": "cfg"}}, ConfigMap)
    assert cells(cm)["Age"] == "<unknown>"


def test_age_defaults_to_wall_clock() -> None:
    created = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cm = msgspec.convert({"metadata": {"name": "cfg", "creationTimestamp": created}}, ConfigMap)
    table = build_table(info("ConfigMap"), [cm])
    assert table.rows[0].cells[2] in ("30m", "31m")


# --- pods --------------------------------------------------------------------------------------


def test_pod_columns_and_wide_priorities() -> None:
    columns = table_columns(info("Pod"))
    assert [(c.name, c.priority) for c in columns] == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    assert columns[0].format == "name"
    assert all(c.type == "string" for c in columns)
    assert all(c.description for c in columns)


def test_running_pod() -> None:
    pod = make_pod(
        {
            "phase": "Running",
            "podIPs": [{"ip": "10.244.0.7"}],
            "podIP": "10.244.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [running()],
        },
        spec={"containers": [{"name": "app"}], "nodeName": "node-1"},
    )
    row = cells(pod)
    assert row == {
        "Name": "web",
        "Ready": "1/1",
        "Status": "Running",
        "Restarts": "0",
        "Age": "5m",
        "IP": "10.244.0.7",
        "Node": "node-1",
        "Nominated Node": "<none>",
        "Readiness Gates": "<none>",
    }


def test_pod_ip_from_legacy_single_field() -> None:
    pod = make_pod({"phase": "Running", "podIP": "10.244.1.3", "containerStatuses": [running()]})
    assert cells(pod)["IP"] == "10.244.1.3"


def test_pending_pod_defaults() -> None:
    row = cells(make_pod({}))
    assert row["Status"] == "Pending"
    assert row["Ready"] == "0/1"
    assert (row["IP"], row["Node"]) == ("<none>", "<none>")


def test_container_creating() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}],
        }
    )
    assert cells(pod)["Status"] == "ContainerCreating"


def test_crash_loop_backoff_with_restart_age() -> None:
    pod = make_pod(
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "app",
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}},
                }
            ],
        }
    )
    row = cells(pod)
    assert row["Status"] == "CrashLoopBackOff"
    assert row["Restarts"] == "4 (5m ago)"
    assert row["Ready"] == "0/1"


def test_restarts_sum_and_use_newest_termination() -> None:
    pod = make_pod(
        {
            "phase": "Running",
            "containerStatuses": [
                running("a", restarts=2, lastState={"terminated": {"exitCode": 1, "finishedAt": ago(3600)}}),
                running("b", restarts=1, lastState={"terminated": {"exitCode": 1, "finishedAt": ago(90)}}),
            ],
        },
        spec={"containers": [{"name": "a"}, {"name": "b"}]},
    )
    row = cells(pod)
    assert row["Restarts"] == "3 (90s ago)"
    assert row["Ready"] == "2/2"


def test_restarts_without_termination_time_have_no_suffix() -> None:
    pod = make_pod({"phase": "Running", "containerStatuses": [running(restarts=2)]})
    assert cells(pod)["Restarts"] == "2"


def test_image_pull_backoff_first_container_wins() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
                {"name": "b", "state": {"waiting": {"reason": "ErrImagePull"}}},
            ],
        },
        spec={"containers": [{"name": "a"}, {"name": "b"}]},
    )
    assert cells(pod)["Status"] == "ImagePullBackOff"


def test_init_progress() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "init", "state": {"running": {"startedAt": ago(10)}}},
            ],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}],
        },
        spec={"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]},
    )
    assert cells(pod)["Status"] == "Init:0/1"


def test_init_second_of_two_and_pod_initializing_wait() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "one", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "two", "state": {"waiting": {"reason": "PodInitializing"}}},
            ],
        },
        spec={"initContainers": [{"name": "one"}, {"name": "two"}], "containers": [{"name": "app"}]},
    )
    assert cells(pod)["Status"] == "Init:1/2"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"terminated": {"exitCode": 1, "reason": "Error"}}, "Init:Error"),
        ({"terminated": {"exitCode": 137, "signal": 9}}, "Init:Signal:9"),
        ({"terminated": {"exitCode": 3}}, "Init:ExitCode:3"),
        ({"waiting": {"reason": "CrashLoopBackOff"}}, "Init:CrashLoopBackOff"),
    ],
)
def test_init_failures(state: dict[str, Any], expected: str) -> None:
    pod = make_pod(
        {"phase": "Pending", "initContainerStatuses": [{"name": "init", "restartCount": 2, "state": state}]},
        spec={"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]},
    )
    row = cells(pod)
    assert row["Status"] == expected
    assert row["Restarts"] == "2"


@pytest.mark.parametrize(
    ("terminated", "expected"),
    [
        ({"exitCode": 0, "reason": "Completed"}, "Completed"),
        ({"exitCode": 1, "reason": "Error"}, "Error"),
        ({"exitCode": 137, "signal": 9}, "Signal:9"),
        ({"exitCode": 2}, "ExitCode:2"),
    ],
)
def test_terminated_containers(terminated: dict[str, Any], expected: str) -> None:
    pod = make_pod(
        {"phase": "Succeeded", "containerStatuses": [{"name": "app", "state": {"terminated": terminated}}]}
    )
    row = cells(pod)
    assert row["Status"] == expected
    assert row["Ready"] == "0/1"


def _completed_and_running(ready_condition: str) -> Pod:
    return make_pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": ready_condition}],
            "containerStatuses": [
                running("a"),
                {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ],
        },
        spec={"containers": [{"name": "a"}, {"name": "b"}]},
    )


def test_completed_next_to_running_is_not_ready_without_ready_condition() -> None:
    row = cells(_completed_and_running("False"))
    assert row["Status"] == "NotReady"
    assert row["Ready"] == "1/2"


def test_completed_next_to_running_is_running_with_ready_condition() -> None:
    assert cells(_completed_and_running("True"))["Status"] == "Running"


def test_failed_readiness_probe_keeps_running_like_kubectl() -> None:
    pod = make_pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [running(ready=False)],
        }
    )
    row = cells(pod)
    assert (row["Status"], row["Ready"]) == ("Running", "0/1")


def test_terminating_pod() -> None:
    pod = make_pod(
        {"phase": "Running", "containerStatuses": [running()]},
        metadata={"deletionTimestamp": ago(5)},
    )
    assert cells(pod)["Status"] == "Terminating"


def test_deleted_succeeded_pod_keeps_its_reason() -> None:
    pod = make_pod(
        {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ],
        },
        metadata={"deletionTimestamp": ago(5)},
    )
    assert cells(pod)["Status"] == "Completed"


def test_node_lost_pod_is_unknown_once_deleted() -> None:
    status = {"phase": "Running", "reason": "NodeLost"}
    assert cells(make_pod(status))["Status"] == "NodeLost"
    assert cells(make_pod(status, metadata={"deletionTimestamp": ago(5)}))["Status"] == "Unknown"


def test_evicted_pod_shows_status_reason() -> None:
    pod = make_pod({"phase": "Failed", "reason": "Evicted", "message": "low on memory"})
    assert cells(pod)["Status"] == "Evicted"


def test_scheduling_gated() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        }
    )
    assert cells(pod)["Status"] == "SchedulingGated"


def test_sidecar_counts_towards_ready_total_and_restarts() -> None:
    pod = make_pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                {
                    "name": "proxy",
                    "ready": True,
                    "started": True,
                    "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}},
                }
            ],
            "containerStatuses": [running()],
        },
        spec={
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}],
        },
    )
    row = cells(pod)
    assert row["Ready"] == "2/2"
    assert row["Status"] == "Running"
    assert row["Restarts"] == "1 (10m ago)"


def test_pod_wide_cells() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "nominatedNodeName": "node-2",
            "conditions": [{"type": "example.com/gate", "status": "True"}],
        },
        spec={
            "containers": [{"name": "app"}],
            "readinessGates": [{"conditionType": "example.com/gate"}, {"conditionType": "example.com/other"}],
        },
    )
    row = cells(pod)
    assert row["Nominated Node"] == "node-2"
    assert row["Readiness Gates"] == "1/2"


# --- replication controllers -------------------------------------------------------------------


def test_replication_controller() -> None:
    rc = msgspec.convert(
        {
            "metadata": {"name": "frontend", "creationTimestamp": ago(2 * 86400)},
            "spec": {
                "replicas": 3,
                "selector": {"tier": "frontend", "app": "guestbook"},
                "template": {
                    "spec": {
                        "containers": [{"name": "php", "image": "php:8"}, {"name": "log", "image": "busybox"}]
                    }
                },
            },
            "status": {"replicas": 3, "readyReplicas": 2},
        },
        ReplicationController,
    )
    assert cells(rc) == {
        "Name": "frontend",
        "Desired": 3,
        "Current": 3,
        "Ready": 2,
        "Age": "2d",
        "Containers": "php,log",
        "Images": "php:8,busybox",
        "Selector": "app=guestbook,tier=frontend",
    }
    types = {c.name: c.type for c in table_columns(info("ReplicationController"))}
    assert types["Desired"] == types["Current"] == types["Ready"] == "integer"


def test_replication_controller_defaults() -> None:
    rc = msgspec.convert({"metadata": {"name": "rc"}, "spec": {}}, ReplicationController)
    row = cells(rc)
    assert (row["Desired"], row["Current"], row["Ready"]) == (1, 0, 0)
    assert (row["Containers"], row["Images"], row["Selector"]) == ("", "", "<none>")


# --- services ----------------------------------------------------------------------------------


def make_service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> Service:
    return msgspec.convert(
        {"metadata": {"name": "svc", "creationTimestamp": ago(45)}, "spec": spec, "status": status or {}},
        Service,
    )


def test_cluster_ip_service() -> None:
    svc = make_service(
        {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        }
    )
    assert cells(svc) == {
        "Name": "svc",
        "Type": "ClusterIP",
        "Cluster-IP": "10.96.0.10",
        "External-IP": "<none>",
        "Port(s)": "80/TCP,53/UDP",
        "Age": "45s",
        "Selector": "app=web",
    }


def test_node_port_service_with_external_ips() -> None:
    svc = make_service(
        {
            "type": "NodePort",
            "clusterIPs": ["10.96.1.1"],
            "externalIPs": ["192.0.2.1", "192.0.2.2"],
            "ports": [{"port": 80, "nodePort": 30001}],
        }
    )
    row = cells(svc)
    assert row["Port(s)"] == "80:30001/TCP"
    assert row["External-IP"] == "192.0.2.1,192.0.2.2"
    assert row["Selector"] == "<none>"


def test_headless_service() -> None:
    svc = make_service({"clusterIP": "None", "clusterIPs": ["None"]})
    row = cells(svc)
    assert (row["Type"], row["Cluster-IP"], row["Port(s)"]) == ("ClusterIP", "None", "<none>")


def test_load_balancer_pending_then_ingress() -> None:
    spec = {"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"], "ports": [{"port": 443, "nodePort": 31443}]}
    assert cells(make_service(spec))["External-IP"] == "<pending>"
    ingress = {
        "loadBalancer": {
            "ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.1"}]
        }
    }
    assert cells(make_service(spec, ingress))["External-IP"] == "203.0.113.1,203.0.113.9,lb.example.com"
    with_external = make_service({**spec, "externalIPs": ["198.51.100.4"]}, ingress)
    assert cells(with_external)["External-IP"] == "203.0.113.1,203.0.113.9,lb.example.com,198.51.100.4"


def test_external_name_service() -> None:
    row = cells(make_service({"type": "ExternalName", "externalName": "db.example.com"}))
    assert (row["Type"], row["Cluster-IP"], row["External-IP"]) == (
        "ExternalName",
        "<none>",
        "db.example.com",
    )


# --- endpoints ---------------------------------------------------------------------------------


def make_endpoints(subsets: list[dict[str, Any]] | None) -> Endpoints:
    body: dict[str, Any] = {"metadata": {"name": "web", "creationTimestamp": ago(30)}}
    if subsets is not None:
        body["subsets"] = subsets
    return msgspec.convert(body, Endpoints)


def test_endpoints_pairs_truncated_after_three() -> None:
    ep = make_endpoints(
        [
            {
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                "notReadyAddresses": [{"ip": "10.0.0.9"}],
                "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
            }
        ]
    )
    assert cells(ep)["Endpoints"] == "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."


def test_endpoints_small_and_empty() -> None:
    two = make_endpoints([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}], "ports": [{"port": 8080}]}])
    assert cells(two)["Endpoints"] == "10.0.0.1:8080,[fd00::2]:8080"
    assert cells(make_endpoints(None))["Endpoints"] == "<none>"
    assert (
        cells(make_endpoints([{"notReadyAddresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 80}]}]))[
            "Endpoints"
        ]
        == ""
    )


def test_endpoints_headless_without_ports() -> None:
    ep = make_endpoints([{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)]}])
    assert cells(ep)["Endpoints"] == "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."


# --- nodes -------------------------------------------------------------------------------------


def make_node(
    *,
    ready: str | None = "True",
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
    node_info: dict[str, Any] | None = None,
) -> Node:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return msgspec.convert(
        {
            "metadata": {"name": "node-1", "creationTimestamp": ago(10 * 86400), "labels": labels or {}},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "conditions": conditions,
                "addresses": [
                    {"type": "Hostname", "address": "node-1"},
                    {"type": "InternalIP", "address": "192.168.1.10"},
                ],
                "nodeInfo": node_info
                if node_info is not None
                else {
                    "kubeletVersion": "v1.30.0-peapod",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion": "6.1.0-18-amd64",
                    "containerRuntimeVersion": "podman://4.9.3",
                },
            },
        },
        Node,
    )


def test_ready_node() -> None:
    assert cells(make_node(labels={"node-role.kubernetes.io/control-plane": ""})) == {
        "Name": "node-1",
        "Status": "Ready",
        "Roles": "control-plane",
        "Age": "10d",
        "Version": "v1.30.0-peapod",
        "Internal-IP": "192.168.1.10",
        "External-IP": "<none>",
        "OS-Image": "Debian GNU/Linux 12 (bookworm)",
        "Kernel-Version": "6.1.0-18-amd64",
        "Container-Runtime": "podman://4.9.3",
    }


def test_node_status_variants() -> None:
    assert cells(make_node(ready="False"))["Status"] == "NotReady"
    assert cells(make_node(ready="Unknown"))["Status"] == "NotReady"
    assert cells(make_node(ready=None))["Status"] == "Unknown"
    assert cells(make_node(unschedulable=True))["Status"] == "Ready,SchedulingDisabled"
    assert cells(make_node(ready="False", unschedulable=True))["Status"] == "NotReady,SchedulingDisabled"


def test_node_roles() -> None:
    assert cells(make_node())["Roles"] == "<none>"
    labels = {
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/control-plane": "",
        "kubernetes.io/role": "edge",
        "node-role.kubernetes.io/": "",
    }
    assert cells(make_node(labels=labels))["Roles"] == "control-plane,edge,worker"


def test_node_without_node_info() -> None:
    row = cells(make_node(node_info={}))
    assert row["Version"] == ""
    assert (row["OS-Image"], row["Kernel-Version"], row["Container-Runtime"]) == ("<unknown>",) * 3


# --- events ------------------------------------------------------------------------------------


def test_event_columns() -> None:
    columns = table_columns(info("Event"))
    assert [(c.name, c.priority) for c in columns] == [
        ("Last Seen", 0),
        ("Type", 0),
        ("Reason", 0),
        ("Object", 0),
        ("Subobject", 1),
        ("Source", 1),
        ("Message", 0),
        ("First Seen", 1),
        ("Count", 1),
        ("Name", 1),
    ]
    assert columns[-1].format == "name"


def test_legacy_event() -> None:
    ev = msgspec.convert(
        {
            "metadata": {"name": "web.17c1", "namespace": "default", "creationTimestamp": ago(3600)},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(3600),
            "lastTimestamp": ago(30),
            "count": 12,
            "type": "Warning",
        },
        Event,
    )
    assert cells(ev) == {
        "Last Seen": "30s",
        "Type": "Warning",
        "Reason": "BackOff",
        "Object": "pod/web",
        "Subobject": "spec.containers{app}",
        "Source": "kubelet, node-1",
        "Message": "Back-off restarting failed container",
        "First Seen": "60m",
        "Count": 12,
        "Name": "web.17c1",
    }


def test_new_style_event_uses_event_time_and_series() -> None:
    single = msgspec.convert(
        {
            "metadata": {"name": "n.1"},
            "involvedObject": {"kind": "Node"},
            "reason": "Starting",
            "eventTime": (NOW - dt.timedelta(seconds=400)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingComponent": "peapod-agent",
            "reportingInstance": "node-1",
            "type": "Normal",
        },
        Event,
    )
    row = cells(single)
    assert (row["Last Seen"], row["First Seen"]) == ("6m40s", "6m40s")
    assert (row["Object"], row["Source"], row["Count"]) == ("node", "peapod-agent, node-1", 1)

    series = msgspec.convert(
        {
            "metadata": {"name": "n.2"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "eventTime": (NOW - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "series": {
                "count": 7,
                "lastObservedTime": (NOW - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
            "reportingComponent": "scheduler",
        },
        Event,
    )
    row = cells(series)
    assert (row["Last Seen"], row["First Seen"], row["Count"], row["Source"]) == (
        "5s",
        "120m",
        7,
        "scheduler",
    )


def test_event_without_any_time() -> None:
    ev = msgspec.convert({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "x"}}, Event)
    row = cells(ev)
    assert (row["Last Seen"], row["First Seen"], row["Type"], row["Message"]) == (
        "<unknown>",
        "<unknown>",
        "",
        "",
    )


# --- configmaps, secrets, namespaces, leases ---------------------------------------------------


def test_configmap_counts_data_and_binary_data() -> None:
    cm = msgspec.convert(
        {
            "metadata": {"name": "cfg", "creationTimestamp": ago(7200)},
            "data": {"a": "1", "b": "2"},
            "binaryData": {"c": "AA=="},
        },
        ConfigMap,
    )
    assert cells(cm) == {"Name": "cfg", "Data": 3, "Age": "120m"}
    assert cells(msgspec.convert({"metadata": {"name": "empty"}}, ConfigMap))["Data"] == 0


def test_secret() -> None:
    secret = msgspec.convert(
        {
            "metadata": {"name": "tls", "creationTimestamp": ago(30 * 86400)},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "eA==", "tls.key": "eA=="},
        },
        Secret,
    )
    assert cells(secret) == {"Name": "tls", "Type": "kubernetes.io/tls", "Data": 2, "Age": "30d"}
    opaque = msgspec.convert({"metadata": {"name": "s"}}, Secret)
    assert (cells(opaque)["Type"], cells(opaque)["Data"]) == ("Opaque", 0)


def test_namespace() -> None:
    active = msgspec.convert(
        {
            "metadata": {"name": "default", "creationTimestamp": ago(400 * 86400)},
            "status": {"phase": "Active"},
        },
        Namespace,
    )
    assert cells(active) == {"Name": "default", "Status": "Active", "Age": "400d"}
    terminating = msgspec.convert(
        {"metadata": {"name": "old"}, "status": {"phase": "Terminating"}}, Namespace
    )
    assert cells(terminating)["Status"] == "Terminating"


def test_lease() -> None:
    lease = msgspec.convert(
        {"metadata": {"name": "node-1", "creationTimestamp": ago(15)}, "spec": {"holderIdentity": "node-1"}},
        Lease,
    )
    assert cells(lease) == {"Name": "node-1", "Holder": "node-1", "Age": "15s"}
    assert cells(msgspec.convert({"metadata": {"name": "free"}}, Lease))["Holder"] == ""


# --- the table envelope ------------------------------------------------------------------------


def _two_configmaps() -> list[ConfigMap]:
    return [
        msgspec.convert(
            {"metadata": {"name": n, "namespace": "ns", "uid": f"uid-{n}"}, "data": {"k": "v"}}, ConfigMap
        )
        for n in ("a", "b")
    ]


def test_include_object_metadata_is_the_default() -> None:
    table = build_table(info("ConfigMap"), _two_configmaps(), now=NOW, resource_version="42", continue_="tok")
    assert [r.cells[0] for r in table.rows] == ["a", "b"]
    first = table.rows[0].object
    assert isinstance(first, PartialObjectMetadata)
    assert (first.api_version, first.kind) == ("meta.k8s.io/v1", "PartialObjectMetadata")
    assert (first.metadata.name, first.metadata.namespace, first.metadata.uid) == ("a", "ns", "uid-a")
    assert (table.metadata.resource_version, table.metadata.continue_) == ("42", "tok")


def test_include_object_none_and_object() -> None:
    objects = _two_configmaps()
    assert all(r.object is None for r in build_table(info("ConfigMap"), objects, include_object="None").rows)
    full = build_table(info("ConfigMap"), objects, include_object="Object")
    assert full.rows[1].object is objects[1]


def test_unknown_include_object_is_rejected() -> None:
    with pytest.raises(ValueError, match="includeObject"):
        build_table(info("ConfigMap"), [], include_object="All")  # type: ignore[arg-type]


def test_table_wire_shape() -> None:
    table = build_table(info("ConfigMap"), _two_configmaps()[:1], now=NOW, resource_version="7")
    wire = msgspec.json.decode(msgspec.json.encode(table))
    assert (wire["apiVersion"], wire["kind"]) == ("meta.k8s.io/v1", "Table")
    assert wire["metadata"] == {"resourceVersion": "7"}
    assert wire["columnDefinitions"][0]["name"] == "Name"
    assert wire["columnDefinitions"][0]["format"] == "name"
    assert wire["rows"][0]["cells"] == ["a", 1, "<unknown>"]
    assert wire["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert msgspec.convert(wire, Table).rows[0].cells[1] == 1


def test_table_columns_are_copies() -> None:
    columns = table_columns(info("Pod"))
    columns[0].name = "Mutated"
    assert table_columns(info("Pod"))[0].name == "Name"
    assert build_table(info("Pod"), []).column_definitions[0].name == "Name"


def test_fallback_for_kind_without_printer() -> None:
    pods = info("Pod")
    unknown = ResourceInfo(
        "Widget", "widgets", "widget", pods.type, pods.list_type, namespaced=True, group="x.io"
    )
    obj = make_pod({}, metadata={"name": "w1", "creationTimestamp": ago(3 * 3600)})
    table = build_table(unknown, [obj], now=NOW)
    assert [c.name for c in table.column_definitions] == ["Name", "Age"]
    assert table.rows[0].cells == ["w1", "3h"]


EXPECTED_COLUMNS = {
    "pods": ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"],
    "replicationcontrollers": [
        "Name",
        "Desired",
        "Current",
        "Ready",
        "Age",
        "Containers",
        "Images",
        "Selector",
    ],
    "services": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
    "endpoints": ["Name", "Endpoints", "Age"],
    "nodes": [
        "Name",
        "Status",
        "Roles",
        "Age",
        "Version",
        "Internal-IP",
        "External-IP",
        "OS-Image",
        "Kernel-Version",
        "Container-Runtime",
    ],
    "events": [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ],
    "configmaps": ["Name", "Data", "Age"],
    "secrets": ["Name", "Type", "Data", "Age"],
    "namespaces": ["Name", "Status", "Age"],
    "leases": ["Name", "Holder", "Age"],
}


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.plural)
def test_every_served_kind_has_its_own_printer(resource: ResourceInfo) -> None:
    expected = EXPECTED_COLUMNS[resource.plural]
    assert [c.name for c in table_columns(resource)] == expected
    assert expected != ["Name", "Age"]
    # An empty object of the kind prints without error and fills every column.
    table = build_table(resource, [resource.type()], now=NOW)
    assert len(table.rows[0].cells) == len(expected)


def test_short_name_resolves_to_the_same_columns() -> None:
    po = resolve("po")
    assert po is not None
    assert [c.name for c in table_columns(po)][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
