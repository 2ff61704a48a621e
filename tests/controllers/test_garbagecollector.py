"""The garbage collector and delete propagation, end to end through the API server.

Owners here are ConfigMaps and Secrets (no controller touches them) and the ownerReferences are written
by hand; the scheduler is off, so pods have no node and their deletion is immediate unless a test binds
one by hand.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from controlplane.api import ConfigMap, ObjectMeta, Pod, Secret
from controlplane.api.meta import OwnerReference
from controlplane.api.registry import for_type
from controlplane.client import ApiError, Client, path_for
from controlplane.controllers.garbagecollector import GarbageCollector
from controlplane.controllers.manager import ControllerSettings
from controlplane.server.controlplane import ControlPlane
from tests.support import absent, busybox_pod, eventually, owner_ref


async def owner_cm(client: Client, name: str) -> ConfigMap:
    return await client.create(ConfigMap(metadata=ObjectMeta(name=name)))


async def dependent_pod(
    client: Client, name: str, *owners: OwnerReference, node: str | None = None, **spec: Any
) -> Pod:
    pod = busybox_pod(name, node, **spec)
    pod.metadata.owner_references = list(owners)
    return await client.create(pod)


async def dependent_cm(client: Client, name: str, *owners: OwnerReference, **meta: Any) -> ConfigMap:
    return await client.create(
        ConfigMap(metadata=ObjectMeta(name=name, owner_references=list(owners), **meta))
    )


async def test_background_deletes_only_the_dependents_of_that_owner_uid(client: Client) -> None:
    owner = await owner_cm(client, "owner")
    await dependent_pod(client, "child-a", owner_ref(owner, controller=True, block=True))
    await dependent_cm(client, "child-b", owner_ref(owner))
    await dependent_pod(client, "bystander")

    deleted = await client.delete(ConfigMap, "owner", "default")  # Background: the default
    assert deleted is not None and not deleted.metadata.finalizers
    # The same name again, a new uid: it neither adopts nor saves the old owner's dependents.
    again = await owner_cm(client, "owner")
    assert again.metadata.uid != owner.metadata.uid
    await dependent_pod(client, "child-of-new", owner_ref(again))

    async def collected() -> bool:
        return await absent(client, Pod, "child-a") and await absent(client, ConfigMap, "child-b")

    await eventually(collected, "the old owner's dependents to be deleted")
    new_child = await client.get(Pod, "child-of-new", "default")
    assert [r.uid for r in new_child.metadata.owner_references or ()] == [again.metadata.uid]
    assert (await client.get(Pod, "bystander", "default")).metadata.deletion_timestamp is None
    assert (await client.get(ConfigMap, "owner", "default")).metadata.uid == again.metadata.uid


async def test_a_dependent_with_a_live_owner_survives_and_loses_the_dangling_reference(
    client: Client,
) -> None:
    first = await owner_cm(client, "first")
    second = await client.create(Secret(metadata=ObjectMeta(name="second")))
    await dependent_cm(client, "shared", owner_ref(first), owner_ref(second))

    await client.delete(ConfigMap, "first", "default")

    async def only_second() -> bool:
        shared = await client.get(ConfigMap, "shared", "default")
        return [r.uid for r in shared.metadata.owner_references or ()] == [second.metadata.uid]

    await eventually(only_second, "the reference to the deleted owner to be removed")
    assert (await client.get(ConfigMap, "shared", "default")).metadata.deletion_timestamp is None

    await client.delete(Secret, "second", "default")
    await eventually(lambda: absent(client, ConfigMap, "shared"), "the last owner's dependent to go")


async def test_orphan_keeps_the_dependents_without_the_owner_reference(client: Client) -> None:
    owner = await owner_cm(client, "parent")
    await dependent_pod(client, "kept-1", owner_ref(owner, controller=True, block=True))
    await dependent_pod(client, "kept-2", owner_ref(owner, controller=True, block=True))

    deleted = await client.delete(ConfigMap, "parent", "default", propagation_policy="Orphan")
    assert deleted is not None
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.finalizers == ["orphan"]

    await eventually(lambda: absent(client, ConfigMap, "parent"), "the orphaning owner to go")
    for name in ("kept-1", "kept-2"):
        pod = await client.get(Pod, name, "default")
        assert not pod.metadata.owner_references
        assert pod.metadata.deletion_timestamp is None


async def test_orphan_dependents_query_parameter_and_no_dependents(client: Client) -> None:
    await owner_cm(client, "lonely")
    resp = await client.request(
        "DELETE", path_for(for_type(ConfigMap), "default", "lonely"), params={"orphanDependents": "true"}
    )
    body = msgspec.json.decode(resp.content)
    assert body["metadata"]["finalizers"] == ["orphan"]  # added whether or not there are dependents
    await eventually(lambda: absent(client, ConfigMap, "lonely"), "an owner without dependents to go")


async def test_foreground_waits_for_blocking_dependents(client: Client) -> None:
    owner = await owner_cm(client, "fg")
    # A blocking dependent that stays (with its own finalizer) after it is deleted, until released.
    await dependent_cm(client, "blocker", owner_ref(owner, block=True), finalizers=["example.com/hold"])
    await dependent_pod(client, "loose", owner_ref(owner))

    deleted = await client.delete(ConfigMap, "fg", "default", propagation_policy="Foreground")
    assert deleted is not None and deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.finalizers == ["foregroundDeletion"]

    async def blocker_deleting() -> bool:
        blocker = await client.get(ConfigMap, "blocker", "default")
        return blocker.metadata.deletion_timestamp is not None

    await eventually(blocker_deleting, "the GC to delete the blocking dependent")
    await eventually(lambda: absent(client, Pod, "loose"), "the non-blocking dependent to be deleted")
    waiting = await client.get(ConfigMap, "fg", "default")
    assert waiting.metadata.deletion_timestamp is not None
    assert waiting.metadata.finalizers == ["foregroundDeletion"]

    await client.patch(ConfigMap, "blocker", {"metadata": {"finalizers": None}}, "default")
    await eventually(lambda: absent(client, ConfigMap, "fg"), "the owner to go after its dependents")
    assert await absent(client, ConfigMap, "blocker")


async def test_foreground_propagates_down_the_tree(client: Client) -> None:
    top = await owner_cm(client, "top")
    middle = await dependent_cm(client, "middle", owner_ref(top, block=True))
    await dependent_pod(client, "leaf", owner_ref(middle, block=True))

    await client.delete(ConfigMap, "top", "default", propagation_policy="Foreground")

    async def all_gone() -> bool:
        return all(
            [
                await absent(client, ConfigMap, "top"),
                await absent(client, ConfigMap, "middle"),
                await absent(client, Pod, "leaf"),
            ]
        )

    await eventually(all_gone, "the whole tree to be deleted")


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"propagationPolicy": "Bogus"}, None),
        ({}, {"propagationPolicy": "Orphan", "orphanDependents": False}),
    ],
)
async def test_invalid_delete_options_are_refused(
    client: Client, params: dict[str, str], body: dict[str, Any] | None
) -> None:
    await owner_cm(client, "stays")
    with pytest.raises(ApiError) as err:
        await client.request(
            "DELETE", path_for(for_type(ConfigMap), "default", "stays"), params=params, body=body
        )
    assert err.value.code == 422
    assert "propagationPolicy" in str(err.value)
    causes = err.value.status.details.causes if err.value.status.details else None
    assert causes and causes[0].field == "propagationPolicy"
    assert (await client.get(ConfigMap, "stays", "default")).metadata.deletion_timestamp is None


async def test_graceful_pod_deletion_with_orphan_composes(client: Client) -> None:
    owner = await owner_cm(client, "pod-owner")
    await dependent_pod(client, "running", owner_ref(owner), node="node-x", terminationGracePeriodSeconds=30)

    deleted = await client.delete(Pod, "running", "default", propagation_policy="Orphan")
    assert deleted is not None
    assert deleted.metadata.deletion_grace_period_seconds == 30
    assert deleted.metadata.finalizers == ["orphan"]

    # The agent finishes the deletion (grace 0, guarded by the uid) whenever its containers stop; the
    # pod then goes once the GC has also removed its finalizer, in whichever order the two happen.
    await client.delete(Pod, "running", "default", grace_period_seconds=0, uid=deleted.metadata.uid)
    await eventually(lambda: absent(client, Pod, "running"), "the orphaned pod deletion to finish")
    assert (await client.get(ConfigMap, "pod-owner", "default")).metadata.deletion_timestamp is None


async def test_dependents_left_dangling_while_stopped_are_collected_at_start(
    controlplane: ControlPlane, client: Client
) -> None:
    assert controlplane.controllers is not None
    await controlplane.controllers.garbage_collector.stop()
    owner = await owner_cm(client, "gone-while-down")
    await dependent_pod(client, "stranded", owner_ref(owner))
    foreign = OwnerReference(api_version="apps/v1", kind="Deployment", name="elsewhere", uid="1234")
    await dependent_cm(client, "unresolvable", foreign)
    await client.delete(ConfigMap, "gone-while-down", "default")
    assert (await client.get(Pod, "stranded", "default")).metadata.deletion_timestamp is None

    collector = GarbageCollector(client, ControllerSettings(workers=2))
    await collector.start()
    try:
        await eventually(lambda: absent(client, Pod, "stranded"), "the stranded dependent to be collected")
    finally:
        await collector.stop()
    # An owner of a kind this server does not serve is never taken for absent.
    kept = await client.get(ConfigMap, "unresolvable", "default")
    assert kept.metadata.owner_references == [foreign]
