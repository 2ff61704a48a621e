"""The endpoints controller against a real control plane: pods are bound by hand (``spec.nodeName``)
and their status (IP, phase, Ready) is written through the status subresource, as an agent would."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from controlplane.api import Endpoints, Event, Pod, PodStatus, Service
from controlplane.client import Client, NotFound
from controlplane.controllers.endpoints import (
    HEADLESS_LABEL,
    TRIGGER_TIME_ANNOTATION,
    desired_subsets,
    truncate,
)
from controlplane.server.controlplane import Settings
from tests.support import eventually

NS = "default"


def make_pod(
    name: str, labels: dict[str, str], ports: list[dict[str, Any]] | None = None, **spec: Any
) -> Pod:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if ports:
        container["ports"] = ports
    return msgspec.convert(
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "node-1", "containers": [container], **spec},
        },
        Pod,
    )


async def set_status(
    client: Client, name: str, ip: str | None, *, ready: bool, phase: str = "Running"
) -> None:
    status = {
        "phase": phase,
        "podIP": ip,
        "podIPs": [{"ip": ip}] if ip else None,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    await client.patch(Pod, name, {"status": status}, NS, subresource="status")


async def run_pod(
    client: Client, name: str, labels: dict[str, str], ip: str | None, *, ready: bool = True, **kw: Any
) -> Pod:
    pod = await client.create(make_pod(name, labels, **kw))
    await set_status(client, name, ip, ready=ready)
    return pod


def make_service(
    name: str, selector: dict[str, str] | None, ports: list[dict[str, Any]], **spec: Any
) -> Service:
    body: dict[str, Any] = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return msgspec.convert({"metadata": {"name": name, "labels": {"tier": "front"}}, "spec": body}, Service)


async def get_endpoints(client: Client, name: str) -> Endpoints | None:
    with contextlib.suppress(NotFound):
        return await client.get(Endpoints, name, NS)
    return None


def ips(ep: Endpoints | None, ready: bool = True) -> set[str]:
    out: set[str] = set()
    for s in (ep.subsets or []) if ep else []:
        out |= {a.ip for a in (s.addresses if ready else s.not_ready_addresses) or []}
    return out


def until(
    client: Client, name: str, ready: set[str], not_ready: frozenset[str] = frozenset()
) -> Callable[[], Awaitable[Endpoints | None]]:
    """A check for ``eventually``: the Endpoints exist with exactly these ready and not-ready IPs."""

    async def check() -> Endpoints | None:
        ep = await get_endpoints(client, name)
        if ep is not None and ips(ep) == ready and ips(ep, False) == set(not_ready):
            return ep
        return None

    return check


async def test_readiness_decides_addresses_or_not_ready_addresses(client: Client) -> None:
    sel = {"app": "web"}
    a = await run_pod(client, "a", sel, "10.1.0.1", ready=True, hostname="a", subdomain="web")
    await run_pod(client, "b", sel, "10.1.0.2", ready=False)
    await run_pod(client, "no-ip", sel, None, ready=False)
    await run_pod(client, "other", {"app": "db"}, "10.1.0.9")
    await client.create(make_pod("done", sel))
    await set_status(client, "done", "10.1.0.3", ready=False, phase="Succeeded")
    await client.create(make_service("web", sel, [{"port": 80}]))
    await client.create(make_service("all", sel, [{"port": 80}], publishNotReadyAddresses=True))

    ep = await eventually(until(client, "web", {"10.1.0.1"}, frozenset({"10.1.0.2"})), "a ready, b not ready")
    assert ep.metadata.labels == {"tier": "front"}
    assert TRIGGER_TIME_ANNOTATION in (ep.metadata.annotations or {})
    (subset,) = ep.subsets
    assert [(p.port, p.protocol) for p in subset.ports] == [(80, "TCP")]
    (addr,) = subset.addresses
    assert addr.hostname == "a" and addr.node_name == "node-1"
    assert addr.target_ref is not None
    assert (addr.target_ref.kind, addr.target_ref.name, addr.target_ref.uid) == ("Pod", "a", a.metadata.uid)
    assert subset.not_ready_addresses[0].hostname is None  # b has no hostname/subdomain

    await eventually(until(client, "all", {"10.1.0.1", "10.1.0.2"}), "publishNotReadyAddresses: all ready")

    await set_status(client, "b", "10.1.0.2", ready=True)
    await eventually(until(client, "web", {"10.1.0.1", "10.1.0.2"}), "b became ready")
    await set_status(client, "a", "10.1.0.1", ready=False)
    await eventually(until(client, "web", {"10.1.0.2"}, frozenset({"10.1.0.1"})), "a became not ready")


async def test_named_target_port_is_resolved_per_pod(client: Client) -> None:
    sel = {"app": "api"}
    await run_pod(client, "p8080", sel, "10.2.0.1", ports=[{"name": "web", "containerPort": 8080}])
    await run_pod(client, "p9090", sel, "10.2.0.2", ports=[{"name": "web", "containerPort": 9090}])
    await run_pod(
        client, "udp", sel, "10.2.0.3", ports=[{"name": "web", "containerPort": 7070, "protocol": "UDP"}]
    )
    await run_pod(client, "none", sel, "10.2.0.4", ports=[{"name": "metrics", "containerPort": 9100}])
    svc = make_service(
        "api",
        sel,
        [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "admin", "port": 81, "targetPort": 9999},
        ],
    )
    await client.create(svc)

    everyone = {"10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4"}
    ep = await eventually(until(client, "api", everyone), "all pods on the numeric port")
    got = [
        (sorted(a.ip for a in s.addresses or []), [(p.name, p.port) for p in s.ports or []])
        for s in ep.subsets
    ]
    assert sorted(got) == sorted(
        [
            (sorted(everyone), [("admin", 9999)]),
            (["10.2.0.1"], [("http", 8080)]),
            (["10.2.0.2"], [("http", 9090)]),
        ]
    )
    # An unchanged world yields an identical object: another sync writes nothing.
    await client.patch(Service, "api", {"metadata": {"annotations": {"touched": "yes"}}}, NS)
    await client.create(make_service("barrier", {"app": "none"}, [{"port": 1}]))
    await eventually(lambda: get_endpoints(client, "barrier"), "the later service's Endpoints")
    again = await get_endpoints(client, "api")
    assert again is not None and again.metadata.resource_version == ep.metadata.resource_version
    # Why two pods get no traffic on "http" is said once, on the Service.
    warnings = [e for e in (await client.list(Event, NS)).items if e.reason == "FailedToResolveTargetPort"]
    assert [(e.involved_object.name, e.type, e.message) for e in warnings] == [
        ("api", "Warning", 'targetPort "web" of port http is not a TCP container port of pod(s) none, udp')
    ]


async def test_headless_service_without_ports(client: Client) -> None:
    await run_pod(client, "h1", {"app": "h"}, "10.3.0.1")
    await client.create(make_service("h", {"app": "h"}, [], clusterIP="None"))
    ep = await eventually(until(client, "h", {"10.3.0.1"}), "headless addresses")
    assert ep.metadata.labels == {"tier": "front", HEADLESS_LABEL: ""}
    assert ep.subsets[0].ports is None


async def test_terminating_pod_leaves_at_once(client: Client, settings: Settings) -> None:
    sel = {"app": "t"}
    await run_pod(client, "t1", sel, "10.4.0.1")
    await run_pod(client, "t2", sel, "10.4.0.2")
    await client.create(make_service("t", sel, [{"port": 80}]))
    await client.create(make_service("t-all", sel, [{"port": 80}], publishNotReadyAddresses=True))
    await eventually(until(client, "t", {"10.4.0.1", "10.4.0.2"}), "both pods")
    await eventually(until(client, "t-all", {"10.4.0.1", "10.4.0.2"}), "both pods (publish not ready)")

    # Pod changes would now wait a minute: a termination must not.
    settings.controller.endpoints_batch_period = 60
    await client.delete(Pod, "t1", NS, grace_period_seconds=30)
    await eventually(until(client, "t", {"10.4.0.2"}), "t1 dropped from addresses", timeout=10)
    pod = await client.get(Pod, "t1", NS)
    assert pod.metadata.deletion_timestamp is not None  # it still exists, terminating
    assert ips(await get_endpoints(client, "t-all")) == {"10.4.0.1", "10.4.0.2"}


async def test_selectorless_service_keeps_hand_written_endpoints(client: Client) -> None:
    await client.create(make_service("ext", None, [{"port": 5432}]))
    hand = msgspec.convert(
        {
            "metadata": {"name": "ext"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
        },
        Endpoints,
    )
    created = await client.create(hand)
    await client.patch(Service, "ext", {"metadata": {"labels": {"changed": "yes"}}}, NS)
    # A service created afterwards gets its Endpoints: the controller has seen the events above.
    await client.create(make_service("barrier", {"app": "x"}, [{"port": 1}]))
    await eventually(lambda: get_endpoints(client, "barrier"), "the later service's Endpoints")
    ep = await get_endpoints(client, "ext")
    assert ep is not None
    assert ep.metadata.resource_version == created.metadata.resource_version
    assert ips(ep) == {"192.0.2.10"} and ep.metadata.labels is None


async def test_deleting_the_service_deletes_its_endpoints(client: Client) -> None:
    await run_pod(client, "d1", {"app": "d"}, "10.5.0.1")
    await client.create(make_service("d", {"app": "d"}, [{"port": 80}]))
    await eventually(until(client, "d", {"10.5.0.1"}), "endpoints for d")
    await client.delete(Service, "d", NS)

    async def gone() -> bool:
        return await get_endpoints(client, "d") is None

    await eventually(gone, "Endpoints d deleted")


async def test_hand_edits_of_managed_endpoints_are_reverted(client: Client) -> None:
    await run_pod(client, "r1", {"app": "r"}, "10.6.0.1")
    await client.create(make_service("r", {"app": "r"}, [{"port": 80}]))
    ep = await eventually(until(client, "r", {"10.6.0.1"}), "endpoints for r")
    good = copy.deepcopy(ep.subsets)

    ep.subsets[0].addresses[0].ip = "10.6.6.6"
    await client.replace(ep)
    fixed = await eventually(until(client, "r", {"10.6.0.1"}), "the edit reverted")
    assert fixed.subsets == good

    await client.delete(Endpoints, "r", NS)
    again = await eventually(until(client, "r", {"10.6.0.1"}), "the deleted Endpoints recreated")
    assert again.metadata.uid != ep.metadata.uid


async def test_scale_up_is_batched_and_never_loses_a_ready_pod(client: Client) -> None:
    sel = {"app": "big"}
    await client.create(make_service("big", sel, [{"port": 80}]))
    ep = await eventually(lambda: get_endpoints(client, "big"), "empty Endpoints for big")
    assert not ep.subsets

    versions: list[set[str]] = []
    done = asyncio.Event()

    async def watch() -> None:
        async for event in client.watch(Endpoints, NS, resource_version=ep.metadata.resource_version):
            if event.type in ("ADDED", "MODIFIED") and event.object.metadata.name == "big":
                versions.append(ips(event.object))
                if len(versions[-1]) == 100:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    names = [f"big-{i}" for i in range(100)]
    await asyncio.gather(*(client.create(make_pod(n, sel)) for n in names))
    await asyncio.gather(*(set_status(client, n, f"10.7.0.{i + 1}", ready=True) for i, n in enumerate(names)))
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    print(f"{len(versions)} Endpoints writes for 100 pods")
    assert len(versions) <= 10, f"{len(versions)} writes for 100 pods"
    for before, after in itertools.pairwise(versions):
        assert before <= after, "a ready pod disappeared from an intermediate version"


def test_subsets_are_deterministic_and_capped() -> None:
    """Pure computation: pod order does not matter, and more than 1000 addresses are truncated
    (ready ones kept first) with the over-capacity annotation's condition reported."""
    svc = make_service(
        "s", {"app": "s"}, [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]
    )
    svc.metadata.name, svc.metadata.namespace = "s", NS
    pods = []
    for i in range(1100):
        p = make_pod(
            f"p{i}", {"app": "s"}, ports=[{"name": "web", "containerPort": 8000 + i % 2, "protocol": "TCP"}]
        )
        p.metadata.namespace, p.metadata.uid = NS, f"uid-{i}"
        p.status = msgspec.convert(
            {
                "phase": "Running",
                "podIP": f"10.9.{i // 250}.{i % 250 + 1}",
                "conditions": [{"type": "Ready", "status": "True" if i < 600 else "False"}],
            },
            PodStatus,
        )
        pods.append(p)
    forward = desired_subsets(svc, pods)
    assert forward == desired_subsets(svc, list(reversed(pods)))
    assert [[p.port for p in s.ports or []] for s in forward] == [[8000], [8001]]
    assert truncate(forward)
    assert sum(len(s.addresses or []) for s in forward) == 600
    assert sum(len(s.addresses or []) + len(s.not_ready_addresses or []) for s in forward) == 1000
