"""The Service registry: cluster IPs and node ports allocated, kept, released and repaired, and the
``default/kubernetes`` Service the control plane keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import by_kind
from controlplane.api.coordination import Lease, LeaseSpec
from controlplane.api.core import Endpoints, Service
from controlplane.api.meta import ObjectMeta, now_micro
from controlplane.client import ApiError, Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import eventually

SVC = by_kind("Service")
assert SVC is not None


def service(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


async def make(client: Client, name: str, **spec: Any) -> dict[str, Any]:
    return await client.create_raw(SVC, service(name, **spec), "default")


async def refused(client: Client, body: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ApiError) as exc:
        await client.create_raw(SVC, body, "default")
    assert exc.value.code == 422, exc.value.status
    details = exc.value.status.details
    assert details and details.causes
    return details.causes[0].field or "", exc.value.status.message or ""


async def put(client: Client, name: str, change: Any) -> dict[str, Any]:
    current = await client.get_raw(SVC, name, "default")
    change(current)
    resp = await client.request("PUT", f"/api/v1/namespaces/default/services/{name}", body=current)
    data: dict[str, Any] = resp.json()
    return data


async def ips(cp: ControlPlane) -> dict[str, str]:
    return await cp.services.cluster_ips.allocated()


async def ports(cp: ControlPlane) -> dict[int, str]:
    return await cp.services.node_ports.allocated()


async def test_cluster_ips_are_allocated_once(client: Client, controlplane: ControlPlane) -> None:
    a = await make(client, "a")
    b = await make(client, "b")
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    assert a["spec"]["clusterIPs"] == [a["spec"]["clusterIP"]]
    assert a["spec"]["ipFamilies"] == ["IPv4"] and a["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert a["spec"]["clusterIP"] != "10.254.0.1"  # the kubernetes Service's
    held = await ips(controlplane)
    assert {a["spec"]["clusterIP"], b["spec"]["clusterIP"], "10.254.0.1"} <= set(held)

    asked = await make(client, "asked", clusterIP="10.254.7.7")
    assert asked["spec"]["clusterIP"] == "10.254.7.7"

    field, message = await refused(client, service("again", clusterIP="10.254.7.7"))
    assert field == "spec.clusterIPs"
    assert "provided IP is already allocated" in message
    field, message = await refused(client, service("outside", clusterIP="10.9.0.1"))
    assert field == "spec.clusterIPs"
    assert "provided IP is not in the valid range. The range of valid IPs is 10.254.0.0/16" in message

    await client.delete(Service, "asked", "default")
    assert "10.254.7.7" not in await ips(controlplane)
    again = await make(client, "again", clusterIP="10.254.7.7")
    assert again["spec"]["clusterIP"] == "10.254.7.7"


async def test_headless_and_external_name_allocate_nothing(
    client: Client, controlplane: ControlPlane
) -> None:
    before = await ips(controlplane)
    headless = await make(client, "headless", clusterIP="None")
    assert headless["spec"]["clusterIPs"] == ["None"]
    ext = await client.create_raw(
        SVC,
        {
            "kind": "Service",
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        },
        "default",
    )
    assert "clusterIP" not in ext["spec"]
    assert await ips(controlplane) == before
    field, _ = await refused(
        client, {"kind": "Service", "metadata": {"name": "noname"}, "spec": {"type": "ExternalName"}}
    )
    assert field == "spec.externalName"


async def test_failed_create_leaks_nothing(client: Client, controlplane: ControlPlane) -> None:
    await make(client, "taken", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    before_ips, before_ports = await ips(controlplane), await ports(controlplane)
    # The cluster IP is taken first, then the node port fails: the IP must go back.
    body = service("late", type="NodePort", clusterIP="10.254.9.9", ports=[{"port": 80, "nodePort": 30080}])
    field, message = await refused(client, body)
    assert field == "spec.ports[0].nodePort" and "provided port is already allocated" in message
    # Everything allocated, then the write fails (the name exists).
    body = service("taken", type="NodePort", clusterIP="10.254.9.10", ports=[{"port": 81, "nodePort": 30081}])
    with pytest.raises(ApiError) as exc:
        await client.create_raw(SVC, body, "default")
    assert exc.value.code == 409
    assert await ips(controlplane) == before_ips
    assert await ports(controlplane) == before_ports


async def test_validation(client: Client) -> None:
    cases = [
        (service("p", ports=[{"port": 0}]), "spec.ports[0].port"),
        (service("p", ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]), "spec.ports[1].name"),
        (service("p", ports=[{"port": 80}, {"port": 81}]), "spec.ports[0].name"),
        (service("p", ports=[{"port": 80, "protocol": "ICMP"}]), "spec.ports[0].protocol"),
        (service("p", ports=[{"port": 80, "targetPort": "Not_A_Name"}]), "spec.ports[0].targetPort"),
        (service("p", ports=[{"port": 80, "targetPort": 70000}]), "spec.ports[0].targetPort"),
        (service("p", sessionAffinity="Sticky"), "spec.sessionAffinity"),
        (
            service(
                "p", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}
            ),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        ),
        (service("p", externalTrafficPolicy="Local"), "spec.externalTrafficPolicy"),
        (service("p", type="NodePort", externalTrafficPolicy="Nearby"), "spec.externalTrafficPolicy"),
        (service("p", type="Balanced"), "spec.type"),
        (service("p", ports=[{"port": 80, "nodePort": 30001}]), "spec.ports[0].nodePort"),
    ]
    for body, path in cases:
        field, _ = await refused(client, body)
        assert field == path, (body, field)
    ok = await make(client, "sticky", sessionAffinity="ClientIP")
    assert ok["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


async def test_node_ports(client: Client, controlplane: ControlPlane) -> None:
    auto = await make(
        client, "auto", type="NodePort", ports=[{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]
    )
    numbers = [p["nodePort"] for p in auto["spec"]["ports"]]
    assert all(30000 <= n <= 32767 for n in numbers) and len(set(numbers)) == 2
    asked = await make(client, "asked", type="NodePort", ports=[{"port": 80, "nodePort": 31000}])
    assert asked["spec"]["ports"][0]["nodePort"] == 31000
    field, message = await refused(
        client, service("dup", type="NodePort", ports=[{"port": 80, "nodePort": 31000}])
    )
    assert field == "spec.ports[0].nodePort" and "provided port is already allocated" in message
    field, message = await refused(
        client, service("far", type="NodePort", ports=[{"port": 80, "nodePort": 80}])
    )
    assert field == "spec.ports[0].nodePort"
    assert "provided port is not in the valid range. The range of valid ports is 30000-32767" in message
    lb = await make(client, "lb", type="LoadBalancer", externalTrafficPolicy="Local")
    assert lb["spec"]["ports"][0]["nodePort"] and lb["spec"]["healthCheckNodePort"]
    owners = await ports(controlplane)
    assert lb["spec"]["healthCheckNodePort"] in owners

    # A replacement without nodePorts keeps them; a new port gets one; a removed one is released.
    def add_port(svc: dict[str, Any]) -> None:
        for p in svc["spec"]["ports"]:
            del p["nodePort"]
        svc["spec"]["ports"] = [svc["spec"]["ports"][0], {"port": 8080, "name": "alt"}]

    updated = await put(client, "auto", add_port)
    assert updated["spec"]["ports"][0]["nodePort"] == numbers[0]
    added = updated["spec"]["ports"][1]["nodePort"]
    assert 30000 <= added <= 32767 and added not in numbers
    held = await ports(controlplane)
    assert numbers[0] in held and added in held and numbers[1] not in held

    # The type goes back to ClusterIP: node ports are dropped and released.
    def to_cluster_ip(svc: dict[str, Any]) -> None:
        svc["spec"]["type"] = "ClusterIP"

    plain = await put(client, "auto", to_cluster_ip)
    assert all("nodePort" not in p for p in plain["spec"]["ports"])
    assert "externalTrafficPolicy" not in plain["spec"]
    assert plain["spec"]["clusterIP"] == auto["spec"]["clusterIP"]
    held = await ports(controlplane)
    assert numbers[0] not in held and added not in held

    # An update asking for a taken port fails and leaks nothing.
    def steal(svc: dict[str, Any]) -> None:
        svc["spec"]["type"] = "NodePort"
        svc["spec"]["ports"][0]["nodePort"] = 32000
        svc["spec"]["ports"][1]["nodePort"] = 31000

    with pytest.raises(ApiError) as exc:
        await put(client, "auto", steal)
    assert exc.value.code == 422
    assert 32000 not in await ports(controlplane)

    await client.delete(Service, "lb", "default")
    assert lb["spec"]["healthCheckNodePort"] not in await ports(controlplane)


async def test_cluster_ip_is_immutable(client: Client, controlplane: ControlPlane) -> None:
    svc = await make(client, "fixed")

    def move(s: dict[str, Any]) -> None:
        s["spec"]["clusterIP"] = "10.254.3.3"
        s["spec"]["clusterIPs"] = ["10.254.3.3"]

    with pytest.raises(ApiError) as exc:
        await put(client, "fixed", move)
    assert exc.value.code == 422 and "field is immutable" in (exc.value.status.message or "")
    assert "10.254.3.3" not in await ips(controlplane)

    # Via ExternalName the IP goes, and comes back (a new one) when the type returns.
    def to_external(s: dict[str, Any]) -> None:
        s["spec"]["type"] = "ExternalName"
        s["spec"]["externalName"] = "example.com"

    ext = await put(client, "fixed", to_external)
    assert "clusterIP" not in ext["spec"]
    assert svc["spec"]["clusterIP"] not in await ips(controlplane)

    def back(s: dict[str, Any]) -> None:
        s["spec"]["type"] = "ClusterIP"
        del s["spec"]["externalName"]
        s["spec"]["clusterIP"] = "10.254.3.4"

    again = await put(client, "fixed", back)
    assert again["spec"]["clusterIP"] == "10.254.3.4"
    assert (await ips(controlplane))["10.254.3.4"].startswith("default/fixed ")


async def test_kubernetes_service(client: Client, controlplane: ControlPlane) -> None:
    svc = await client.get(Service, "kubernetes", "default")
    assert svc.spec.cluster_ip == "10.254.0.1"
    assert svc.spec.selector is None
    assert svc.metadata.labels == {"component": "apiserver", "provider": "kubernetes"}
    assert svc.spec.ports and svc.spec.ports[0].port == 443 and svc.spec.ports[0].name == "https"
    assert svc.spec.ports[0].target_port == controlplane.port
    ep = await client.get(Endpoints, "kubernetes", "default")
    assert ep.subsets and [a.ip for a in ep.subsets[0].addresses or ()] == ["127.0.0.1"]
    assert ep.subsets[0].ports and ep.subsets[0].ports[0].port == controlplane.port


async def test_repair_after_restart(settings: Settings) -> None:
    cp = ControlPlane(settings)
    await cp.start()
    try:
        async with Client(cp.url, cp.admin_token) as c:
            made = [await make(c, f"s{i}", type="NodePort") for i in range(3)]
        # Corrupt the record: forget everything, and leak a value no Service holds.
        await cp.services.cluster_ips.repair([("10.254.0.200", "default/ghost x")])
        await cp.services.node_ports.repair([])
    finally:
        await cp.stop()
    cp = ControlPlane(settings)
    await cp.start()
    try:
        held = await ips(cp)
        assert "10.254.0.200" not in held
        assert {m["spec"]["clusterIP"] for m in made} | {"10.254.0.1", "10.254.0.10"} == set(held)
        assert {m["spec"]["ports"][0]["nodePort"] for m in made} == set(await ports(cp))
        async with Client(cp.url, cp.admin_token) as c:
            fresh = [await make(c, f"n{i}", type="NodePort") for i in range(3)]
        all_ips = [m["spec"]["clusterIP"] for m in made + fresh]
        all_ports = [m["spec"]["ports"][0]["nodePort"] for m in made + fresh]
        assert len(set(all_ips)) == 6 and len(set(all_ports)) == 6
    finally:
        await cp.stop()


async def test_custom_ranges(settings: Settings) -> None:
    settings.service_cluster_ip_range = "10.96.0.0/24"
    settings.cluster_dns = "10.96.0.10"  # kube-dns must be inside the range
    settings.service_node_port_range = "31000-31001"
    cp = ControlPlane(settings)
    await cp.start()
    try:
        async with Client(cp.url, cp.admin_token) as c:
            kube = await c.get(Service, "kubernetes", "default")
            assert kube.spec.cluster_ip == "10.96.0.1"
            a = await make(
                c, "a", type="NodePort", ports=[{"port": 1, "name": "a"}, {"port": 2, "name": "b"}]
            )
            assert sorted(p["nodePort"] for p in a["spec"]["ports"]) == [31000, 31001]
            field, message = await refused(c, service("b", type="NodePort"))
            assert field == "spec.ports[0].nodePort" and "range is full" in message
    finally:
        await cp.stop()


async def test_two_servers_share_allocations_and_kubernetes_endpoints(tmp_path: Path) -> None:
    """Servers on one store never hand out one IP or port twice, and ``default/kubernetes`` lists
    every live server (each renews its Lease; a stopped or expired one drops out)."""

    def settings(listen: str) -> Settings:
        return Settings(
            data_dir=tmp_path / "shared",
            listen=listen,
            scheduler=False,
            controllers=False,
            endpoint_reconcile_interval=0.2,
            endpoint_lease_ttl=1.0,
        )

    a = ControlPlane(settings("127.0.0.1:0"))
    await a.start()
    b = ControlPlane(settings(f"127.0.0.2:{a.port}"))  # the same port, as servers of one cluster
    try:
        await b.start()
    except Exception:
        await a.stop()
        pytest.skip("127.0.0.2 is not usable here")
    b_running = True
    try:
        async with Client(a.url) as ca, Client(b.url) as cb:
            made = await asyncio.gather(
                *(make(c, f"s{i}", type="NodePort") for i, c in enumerate([ca, cb] * 8))
            )
            assert len({m["spec"]["clusterIP"] for m in made}) == 16
            assert len({m["spec"]["ports"][0]["nodePort"] for m in made}) == 16

            async def addresses() -> list[str]:
                ep = await ca.get(Endpoints, "kubernetes", "default")
                return [x.ip for s in ep.subsets or () for x in s.addresses or ()]

            async def has(wanted: list[str]) -> bool:
                return await addresses() == wanted

            await eventually(lambda: has(["127.0.0.1", "127.0.0.2"]), "both servers listed")
            # A server that died without cleaning up: its Lease expires and its address goes.
            await ca.create(
                Lease(
                    metadata=ObjectMeta(
                        name="apiserver-dead",
                        namespace="kube-system",
                        labels={"apiserver.kubernetes.io/identity": "kube-apiserver"},
                        annotations={"peapod.io/advertise-address": f"127.0.0.9:{a.port}"},
                    ),
                    spec=LeaseSpec(
                        holder_identity="apiserver-dead", lease_duration_seconds=1, renew_time=now_micro()
                    ),
                )
            )
            await eventually(lambda: has(["127.0.0.1", "127.0.0.2", "127.0.0.9"]), "the dead one listed")
            await eventually(lambda: has(["127.0.0.1", "127.0.0.2"]), "the dead one dropped")
        await b.stop()
        b_running = False
        async with Client(a.url) as ca:
            ep = await ca.get(Endpoints, "kubernetes", "default")
            assert [x.ip for s in ep.subsets or () for x in s.addresses or ()] == ["127.0.0.1"]
    finally:
        if b_running:
            await b.stop()
        await a.stop()


async def test_kubernetes_service_is_remade(settings: Settings) -> None:
    settings.endpoint_reconcile_interval = 0.1
    cp = ControlPlane(settings)
    await cp.start()
    try:
        async with Client(cp.url, cp.admin_token) as c:
            await c.delete(Service, "kubernetes", "default")

            async def back() -> Service | None:
                try:
                    return await c.get(Service, "kubernetes", "default")
                except ApiError:
                    return None

            svc = await eventually(back, "default/kubernetes remade")
            assert svc.spec.cluster_ip == "10.254.0.1"
    finally:
        await cp.stop()
