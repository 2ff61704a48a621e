"""The service load balancer: LoadBalancer Services get their Ready nodes' InternalIPs (or their
loadBalancerIP) as ingress, and lose it when the type changes away."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from controlplane.api import by_kind
from controlplane.api.core import Node, NodeAddress, NodeCondition, NodeStatus, Service
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client
from controlplane.server.controlplane import Settings
from tests.support import eventually

SVC = by_kind("Service")
assert SVC is not None


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Hand-made nodes send no heartbeats: keep the node lifecycle controller from marking them Unknown.
    settings.controller.node_monitor_grace_period = 300.0
    return settings


def node(name: str, ip: str, ready: bool = True) -> Node:
    return Node(
        metadata=ObjectMeta(name=name),
        status=NodeStatus(
            addresses=[
                NodeAddress(type="InternalIP", address=ip),
                NodeAddress(type="Hostname", address=name),
            ],
            conditions=[NodeCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


async def ingress(client: Client, name: str) -> list[str]:
    svc = await client.get(Service, name, "default")
    lb = svc.status.load_balancer
    return [i.ip or "" for i in (lb.ingress or []) if lb] if lb else []


async def until(check: Callable[[], Awaitable[list[str]]], wanted: list[str]) -> None:
    async def matches() -> bool:
        return await check() == wanted

    await eventually(matches, f"ingress {wanted}")


async def set_ready(client: Client, name: str, ready: bool) -> None:
    current = await client.get(Node, name)
    current.status.conditions = [NodeCondition(type="Ready", status="True" if ready else "False")]
    await client.replace_status(current)


async def test_load_balancer_ingress(client: Client) -> None:
    await client.create(node("n2", "192.168.5.12"))
    await client.create(node("n1", "192.168.5.11"))
    await client.create(node("n3", "192.168.5.13", ready=False))
    body: dict[str, Any] = {
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    await client.create_raw(SVC, body, "default")

    async def ips() -> list[str]:
        return await ingress(client, "web")

    await until(ips, ["192.168.5.11", "192.168.5.12"])
    await set_ready(client, "n3", True)
    await until(ips, ["192.168.5.11", "192.168.5.12", "192.168.5.13"])
    await client.delete(Node, "n1")
    await until(ips, ["192.168.5.12", "192.168.5.13"])

    # The table shows them as EXTERNAL-IP.
    table = await client.table(SVC, "default")
    row = next(r for r in table.rows if r.cells[0] == "web")
    assert row.cells[3] == "192.168.5.12,192.168.5.13"

    # Type changes away: the ingress goes.
    svc = await client.get_raw(SVC, "web", "default")
    svc["spec"]["type"] = "ClusterIP"
    await client.request("PUT", "/api/v1/namespaces/default/services/web", body=svc)
    await until(ips, [])


async def test_load_balancer_ip(client: Client) -> None:
    await client.create(node("n1", "192.168.5.11"))
    body: dict[str, Any] = {
        "kind": "Service",
        "metadata": {"name": "fixed"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": "203.0.113.7", "ports": [{"port": 80}]},
    }
    await client.create_raw(SVC, body, "default")
    await until(lambda: ingress(client, "fixed"), ["203.0.113.7"])
