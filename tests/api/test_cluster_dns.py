"""The ``kube-system/kube-dns`` Service the control plane keeps: its address, ports and labels, that
nothing else gets its address, that it is re-made when deleted, and a refused out-of-range address."""

from __future__ import annotations

import pytest

from controlplane.api import by_kind
from controlplane.api.core import Service
from controlplane.client import ApiError, Client
from controlplane.server.controlplane import ControlPlane, ControlPlaneError, Settings
from tests.support import eventually

SVC = by_kind("Service")
assert SVC is not None


async def test_kube_dns_service(client: Client, controlplane: ControlPlane) -> None:
    svc = await client.get(Service, "kube-dns", "kube-system")
    assert svc.spec.cluster_ip == "10.254.0.10" and svc.spec.cluster_ips == ["10.254.0.10"]
    assert svc.spec.type == "ClusterIP" and svc.spec.selector is None
    assert [(p.name, p.port, p.protocol, p.target_port) for p in svc.spec.ports or ()] == [
        ("dns", 53, "UDP", 53),
        ("dns-tcp", 53, "TCP", 53),
    ]
    labels = svc.metadata.labels or {}
    assert labels["k8s-app"] == "kube-dns" and labels["kubernetes.io/name"] == "CoreDNS"
    held = await controlplane.services.cluster_ips.allocated()
    assert held["10.254.0.10"].startswith("kube-system/kube-dns ")

    # Nobody else gets the address.
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "squatter"},
        "spec": {"clusterIP": "10.254.0.10", "ports": [{"port": 53}]},
    }
    with pytest.raises(ApiError) as exc:
        await client.create_raw(SVC, body, "default")
    assert exc.value.code == 422 and "already allocated" in (exc.value.status.message or "")


async def test_kept_across_restarts_and_remade_when_deleted(settings: Settings) -> None:
    settings.endpoint_reconcile_interval = 0.1
    settings.cluster_dns = "10.254.0.53"
    cp = ControlPlane(settings)
    await cp.start()
    try:
        async with Client(cp.url, cp.admin_token) as c:
            first = await c.get(Service, "kube-dns", "kube-system")
            assert first.spec.cluster_ip == "10.254.0.53"
    finally:
        await cp.stop()
    cp = ControlPlane(settings)
    await cp.start()
    try:
        async with Client(cp.url, cp.admin_token) as c:
            kept = await c.get(Service, "kube-dns", "kube-system")
            assert kept.metadata.uid == first.metadata.uid  # the existing one is kept
            await c.delete(Service, "kube-dns", "kube-system")

            async def back() -> Service | None:
                try:
                    svc = await c.get(Service, "kube-dns", "kube-system")
                except ApiError:
                    return None
                return svc if svc.metadata.uid != first.metadata.uid else None

            svc = await eventually(back, "kube-system/kube-dns remade")
            assert svc.spec.cluster_ip == "10.254.0.53"
            held = await cp.services.cluster_ips.allocated()
            assert held["10.254.0.53"] == f"kube-system/kube-dns {svc.metadata.uid}"
    finally:
        await cp.stop()


@pytest.mark.parametrize(
    ("cluster_dns", "said"),
    [
        ("10.96.0.10", "is not in the service cluster IP range 10.254.0.0/16"),
        ("10.254.255.255", "is not in the service cluster IP range"),  # the broadcast address
        ("10.254.0.1", "is the kubernetes Service's"),
        ("dns.example", "invalid cluster DNS address"),
    ],
)
def test_cluster_dns_outside_the_range_is_refused(settings: Settings, cluster_dns: str, said: str) -> None:
    settings.cluster_dns = cluster_dns
    with pytest.raises(ControlPlaneError, match=said):
        ControlPlane(settings)
