"""API types: Kubernetes' JSON field names and shapes, both ways."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from controlplane.api import (
    RESOURCES,
    ConfigMap,
    Lease,
    ObjectMeta,
    Pod,
    ReplicationController,
    Service,
    by_kind,
    resolve,
)

SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds"


def test_irregular_camel_case_names() -> None:
    pod = msgspec.convert(
        {
            "status": {
                "podIP": "10.244.0.5",
                "podIPs": [{"ip": "10.244.0.5"}],
                "hostIP": "192.168.1.2",
                "qosClass": "BestEffort",
            },
            "spec": {"hostPID": True, "hostIPC": False, "containers": []},
        },
        Pod,
    )
    assert pod.status.pod_ip == "10.244.0.5" and pod.status.host_ip == "192.168.1.2"
    assert pod.spec.host_pid is True
    out = msgspec.to_builtins(pod)
    assert out["status"]["podIP"] == "10.244.0.5" and out["status"]["podIPs"] == [{"ip": "10.244.0.5"}]
    assert "hostIPC" in out["spec"] and "pod_ip" not in str(out)
    svc = msgspec.convert(
        {"spec": {"clusterIP": "10.254.0.1", "externalIPs": ["1.2.3.4"], "loadBalancerIP": "5.6.7.8"}},
        Service,
    )
    assert msgspec.to_builtins(svc)["spec"] == {
        "clusterIP": "10.254.0.1",
        "externalIPs": ["1.2.3.4"],
        "loadBalancerIP": "5.6.7.8",
    }


def test_top_level_always_has_kind_and_empties_are_left_out() -> None:
    out = msgspec.to_builtins(Pod(metadata=ObjectMeta(name="p")))
    assert out == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {},
        "status": {},
    }
    lease = msgspec.to_builtins(Lease(metadata=ObjectMeta(name="n1", namespace="kube-node-lease")))
    assert lease["apiVersion"] == "coordination.k8s.io/v1" and lease["kind"] == "Lease"
    cm = msgspec.to_builtins(ConfigMap(metadata=ObjectMeta(name="c")))
    assert "data" not in cm and "immutable" not in cm


def test_zero_replicas_is_kept() -> None:
    rc = msgspec.convert({"spec": {"replicas": 0}}, ReplicationController)
    assert msgspec.to_builtins(rc)["spec"] == {"replicas": 0}


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.yaml")), ids=lambda p: p.name)
def test_seed_manifests_round_trip_through_the_types(path: Path) -> None:
    """Every field a seed manifest sets survives decode → encode unchanged."""
    doc = yaml.safe_load(path.read_text())
    info = by_kind(doc["kind"])
    assert info is not None
    again = msgspec.to_builtins(msgspec.convert(doc, info.type))
    assert _subset(doc, again), path.name


def _subset(small: object, big: object) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    return small == big


def test_registry_resolves_what_people_type() -> None:
    assert resolve("po") is resolve("pods") is resolve("Pod") is by_kind("Pod")
    assert resolve("rc") is by_kind("ReplicationController")
    assert resolve("svc") is by_kind("Service") and resolve("ep") is by_kind("Endpoints")
    assert resolve("leases.coordination.k8s.io") is by_kind("Lease")
    assert resolve("widgets") is None
    for info in RESOURCES:
        assert info.key("default" if info.namespaced else None, "x").startswith(info.prefix())
    pods = by_kind("Pod")
    assert pods is not None and pods.key("default", "web") == "/registry/pods/default/web"
