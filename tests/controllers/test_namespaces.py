"""Namespaces with the whole controller-manager and a hollow node: what exists at start, what a missing
namespace refuses, and a namespace deletion that has to wait for an RC's running pods to stop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from agent.hollow import HollowNodes
from agent.pods import BackOffPolicy
from agent.runtime.hollow import HollowRuntime
from controlplane.api import Namespace, ObjectMeta, Pod, ReplicationController, Service
from controlplane.client import ApiError, Client, NotFound
from controlplane.server.controlplane import Settings
from tests.support import eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.scheduler = True
    return settings


@pytest.fixture
async def nodes(client: Client) -> AsyncIterator[HollowNodes]:
    hollow = HollowNodes(
        client, 1, lease_interval=0.2, status_interval=0.5, backoff=BackOffPolicy(initial=0.3, maximum=1.2)
    )
    await hollow.start()
    try:
        yield hollow
    finally:
        await hollow.stop()


def rc(name: str, replicas: int) -> ReplicationController:
    return msgspec.convert(
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"app": name},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "busybox"}],
                    },
                },
            },
        },
        ReplicationController,
    )


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

    async def gone() -> bool:
        try:
            await client.get(Namespace, "staging")
        except NotFound:
            return True
        return False

    await eventually(gone, "the namespace to go once its pods stopped", timeout=30)
    assert (await client.list(Pod, "staging")).items == []
    assert (await client.list(ReplicationController, "staging")).items == []
    # The hollow node really stopped them: nothing of staging is left on it.
    runtime = next(iter(nodes.agents.values())).runtime
    assert isinstance(runtime, HollowRuntime)
    assert [s.name for s in runtime.sandboxes.values() if s.namespace == "staging"] == []
