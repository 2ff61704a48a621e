"""Service environment variables: the kubelet's variable set (pure), and what a started container gets
from an agent on the hollow runtime against a real control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from agent.agent import Agent
from agent.hollow import HOLLOW_MACHINE
from agent.runtime.base import ContainerSpec
from agent.runtime.hollow import HollowRuntime
from agent.service_env import service_env
from controlplane.api import Pod
from controlplane.api.core import Service
from controlplane.client import Client
from tests.agent.test_agent_hollow import settings
from tests.support import eventually


def service(name: str, ns: str = "default", ip: str | None = "10.0.0.11", **spec: Any) -> Service:
    body: dict[str, Any] = {"ports": [{"port": 80}], **spec}
    if ip is not None:
        body["clusterIP"] = ip
    return msgspec.convert({"metadata": {"name": name, "namespace": ns}, "spec": body}, Service)


KUBERNETES = service("kubernetes", ip="10.0.0.1", ports=[{"name": "https", "port": 443}])
KUBERNETES_VARS = {
    "KUBERNETES_SERVICE_HOST": "10.0.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443",
    "KUBERNETES_PORT": "tcp://10.0.0.1:443",
    "KUBERNETES_PORT_443_TCP": "tcp://10.0.0.1:443",
    "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443",
    "KUBERNETES_PORT_443_TCP_ADDR": "10.0.0.1",
}


def test_multi_port_named_service() -> None:
    svc = service(
        "redis-master",
        ip="10.0.0.11",
        ports=[{"name": "redis", "port": 6379}, {"name": "metrics-http", "port": 9121, "protocol": "UDP"}],
    )
    assert service_env([svc], "default", True) == {
        "REDIS_MASTER_SERVICE_HOST": "10.0.0.11",
        "REDIS_MASTER_SERVICE_PORT": "6379",
        "REDIS_MASTER_SERVICE_PORT_REDIS": "6379",
        "REDIS_MASTER_SERVICE_PORT_METRICS_HTTP": "9121",
        "REDIS_MASTER_PORT": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_MASTER_PORT_6379_TCP_PORT": "6379",
        "REDIS_MASTER_PORT_6379_TCP_ADDR": "10.0.0.11",
        "REDIS_MASTER_PORT_9121_UDP": "udp://10.0.0.11:9121",
        "REDIS_MASTER_PORT_9121_UDP_PROTO": "udp",
        "REDIS_MASTER_PORT_9121_UDP_PORT": "9121",
        "REDIS_MASTER_PORT_9121_UDP_ADDR": "10.0.0.11",
    }


def test_unnamed_single_port_and_ipv6() -> None:
    env = service_env([service("web", ip="fd00::10", ports=[{"port": 8080}])], "default", True)
    assert env["WEB_SERVICE_PORT"] == "8080" and "WEB_SERVICE_PORT_" not in " ".join(env)
    assert env["WEB_PORT"] == "tcp://[fd00::10]:8080" and env["WEB_PORT_8080_TCP_ADDR"] == "fd00::10"


def test_headless_external_name_and_ip_less_services_are_skipped() -> None:
    services = [
        service("headless", ip="None"),
        service("elsewhere", ip=None, type="ExternalName", externalName="example.com", ports=[]),
        service("pending", ip=None),
        service("db", ip="10.0.0.12"),
    ]
    env = service_env(services, "default", True)
    assert {k.split("_")[0] for k in env} == {"DB"}


def test_only_the_pods_namespace_and_the_master_service() -> None:
    services = [KUBERNETES, service("db", "default"), service("cache", "team-a", ip="10.0.0.20")]
    env = service_env(services, "team-a", True)
    assert KUBERNETES_VARS.items() <= env.items()
    assert "CACHE_SERVICE_HOST" in env and "DB_SERVICE_HOST" not in env


def test_service_links_disabled_keeps_only_the_kubernetes_service() -> None:
    services = [KUBERNETES, service("db", "default"), service("cache", "team-a")]
    assert service_env(services, "default", False) == KUBERNETES_VARS
    assert service_env(services, "team-a", False) == KUBERNETES_VARS


def test_a_service_of_the_pods_namespace_overrides_the_master_one() -> None:
    mine = service("kubernetes", "team-a", ip="10.0.0.99", ports=[{"port": 8443}])
    for services in ([KUBERNETES, mine], [mine, KUBERNETES]):
        env = service_env(services, "team-a", True)
        assert env["KUBERNETES_SERVICE_HOST"] == "10.0.0.99" and env["KUBERNETES_SERVICE_PORT"] == "8443"
        assert "KUBERNETES_SERVICE_PORT_HTTPS" not in env
    # Links off: the pod's own namespace is not looked at, so the master service stays.
    assert service_env([mine, KUBERNETES], "team-a", False) == KUBERNETES_VARS


# --- on an agent ------------------------------------------------------------------------------------


@pytest.fixture
async def node(client: Client) -> AsyncIterator[tuple[Agent, HollowRuntime]]:
    """An agent as it runs: its pod workers see the Services of the agent's own informer."""
    runtime = HollowRuntime("node-1")
    agent = Agent(client, runtime, settings(), machine=HOLLOW_MACHINE)
    await agent.start()
    try:
        yield agent, runtime
    finally:
        await agent.stop()


def pod(name: str, env: list[dict[str, Any]], **spec: Any) -> Pod:
    container = {"name": "app", "image": "busybox", "env": env}
    return msgspec.convert(
        {"metadata": {"name": name}, "spec": {"nodeName": "node-1", "containers": [container], **spec}}, Pod
    )


async def started_env(runtime: HollowRuntime, uid: str) -> dict[str, str]:
    async def spec() -> ContainerSpec | None:
        sandbox = runtime.sandboxes.get(uid)
        if sandbox is None or not sandbox.containers:
            return None
        return runtime.specs.get(sandbox.containers[0].id)

    got: ContainerSpec = await eventually(spec, "a started container")
    return dict(got.env)


async def test_started_container_gets_service_variables(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    agent, runtime = node
    await client.create(
        service(
            "redis-master", ip="10.254.0.11", ports=[{"name": "redis", "port": 6379}], selector={"a": "b"}
        )
    )
    await client.create(
        service("external", ip=None, type="ExternalName", externalName="example.com", ports=[])
    )

    async def known() -> bool:
        assert agent.workers.services is not None
        return any(s.metadata.name == "redis-master" for s in agent.workers.services())

    await eventually(known, "the service in the agent's cache")
    env_vars = [
        {"name": "REDIS_MASTER_SERVICE_PORT", "value": "7000"},
        {"name": "REDIS_URL", "value": "redis://$(REDIS_MASTER_SERVICE_HOST):$(REDIS_MASTER_SERVICE_PORT)"},
    ]
    made = await client.create(pod("app", env_vars))
    env = await started_env(runtime, made.metadata.uid or "")
    assert env["REDIS_MASTER_SERVICE_HOST"] == "10.254.0.11"
    assert env["REDIS_MASTER_SERVICE_PORT_REDIS"] == "6379"
    assert env["REDIS_MASTER_PORT"] == "tcp://10.254.0.11:6379"
    assert env["REDIS_MASTER_PORT_6379_TCP_ADDR"] == "10.254.0.11"
    assert env["REDIS_MASTER_SERVICE_PORT"] == "7000"  # the container's own env wins
    assert env["REDIS_URL"] == "redis://10.254.0.11:7000"  # expansion sees both, the pod's env first
    assert not any(k.startswith("EXTERNAL_") for k in env)

    made = await client.create(pod("unlinked", [], enableServiceLinks=False))
    env = await started_env(runtime, made.metadata.uid or "")
    assert not any(k.startswith("REDIS_MASTER_") for k in env)
