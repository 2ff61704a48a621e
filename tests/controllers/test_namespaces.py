"""Namespaces with the whole controller-manager and a hollow node: what exists at start, what a missing
namespace refuses, and a namespace deletion that has to wait for an RC's running pods to stop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from agent.hollow import HollowNodes
from agent.runtime.hollow import HollowRuntime
from controlplane.api import Namespace, ObjectMeta, Pod, ReplicationController, Service
from controlplane.client import ApiError, Client, NotFound
from controlplane.server.controlplane import Settings
from tests.controllers.conftest import busybox_rc, hollow_nodes
from tests.support import absent, eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = True
    return settings


@pytest.fixture
async def nodes(client: Client) -> AsyncIterator[HollowNodes]:
    hollow = hollow_nodes(client)
    await hollow.start()
    try:
        yield hollow
    finally:
        await hollow.stop()


def rc(name: str, replicas: int) -> ReplicationController:
    """An RC whose pods stop within a second when its namespace goes."""
    return busybox_rc(name, replicas, pod_spec={"terminationGracePeriodSeconds": 1})


async def test_default_namespaces_exist_and_missing_ones_are_refused(client: Client) -> None:
    names = {ns.metadata.name for ns in (await client.list(Namespace)).items}
    assert {"default", "kube-system"} <= names
    with pytest.raises(NotFound) as missing:
        await client.create(rc("web", 1), "nowhere")
    assert 'namespaces "nowhere" not found' in str(missing.value)


async def test_deleting_a_namespace_stops_its_pods_then_goes(client: Client, nodes: HollowNodes) -> None:
    await client.create(Namespace(metadata=ObjectMeta(name="staging")))
    await client.create(rc("web", 3), "staging")
    await client.create(
        msgspec.convert(
            {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
            Service,
        ),
        "staging",
    )

    async def running() -> list[Pod]:
        pods = (await client.list(Pod, "staging")).items
        return pods if len(pods) == 3 and all(p.status.phase == "Running" for p in pods) else []

    await eventually(running, "three running pods in staging")
    terminating = await client.delete(Namespace, "staging")
    assert isinstance(terminating, Namespace) and terminating.status.phase == "Terminating"
    with pytest.raises(ApiError) as refused:
        await client.create(rc("more", 1), "staging")
    assert refused.value.code == 403

    await eventually(
        lambda: absent(client, Namespace, "staging", None),
        "the namespace to go once its pods stopped",
        timeout=30,
    )
    assert (await client.list(Pod, "staging")).items == []
    assert (await client.list(ReplicationController, "staging")).items == []
    # The hollow node really stopped them: nothing of staging is left on it.
    runtime = next(iter(nodes.agents.values())).runtime
    assert isinstance(runtime, HollowRuntime)
    assert [s.name for s in runtime.sandboxes.values() if s.namespace == "staging"] == []
