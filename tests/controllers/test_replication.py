"""The replication manager against a real control plane (scheduler off: pods stay Pending and unbound
unless a test binds them or writes their status, standing in for a node).

Most tests use the running controller-manager; the expectations test stops its replication manager and
drives a private one by hand, so that it controls when the pod informer catches up.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

from controlplane.api import Event, ObjectMeta, Pod, ReplicationController
from controlplane.api.core import PodCondition
from controlplane.api.meta import now
from controlplane.client import Client, Conflict, NotFound
from controlplane.controllers.manager import ControllerSettings
from controlplane.controllers.replication import (
    Expectations,
    ReplicationManager,
    calculate_status,
    deletion_order,
    slow_start,
)
from controlplane.server.controlplane import ControlPlane
from tests.controllers.conftest import busybox_rc
from tests.support import eventually

NS = "default"


def rc(name: str, replicas: int, **spec: Any) -> ReplicationController:
    """An RC whose pod template carries a label beyond its selector and an annotation."""
    return busybox_rc(
        name,
        replicas,
        template_labels={"app": name, "tier": "web"},
        template_annotations={"note": "x"},
        **spec,
    )


def bare_pod(name: str, labels: dict[str, str]) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
        Pod,
    )


async def pods_of(client: Client, app: str, *, active: bool = True) -> list[Pod]:
    pods = (await client.list(Pod, NS, label_selector=f"app={app}")).items
    if active:
        pods = [
            p
            for p in pods
            if p.metadata.deletion_timestamp is None and p.status.phase not in ("Succeeded", "Failed")
        ]
    return sorted(pods, key=lambda p: p.metadata.name or "")


async def wait_pods(client: Client, app: str, count: int) -> list[Pod]:
    async def check() -> tuple[list[Pod]] | None:
        pods = await pods_of(client, app)
        return (pods,) if len(pods) == count else None  # a tuple: an empty list is a result too

    (pods,) = await eventually(check, f"{count} active pods of {app}")
    return pods  # type: ignore[no-any-return]


async def wait_status(client: Client, name: str, **want: Any) -> ReplicationController:
    async def check() -> ReplicationController | None:
        got = await client.get(ReplicationController, name, NS)
        return got if all(getattr(got.status, k) == v for k, v in want.items()) else None

    return await eventually(check, f"{name} status {want}")  # type: ignore[no-any-return]


async def set_status(
    client: Client, name: str, phase: str, *, ready: bool = False, restarts: int = 0
) -> None:
    """What an agent would write: the phase, a Ready condition, one container status."""
    pod = await client.get(Pod, name, NS)
    pod.status.phase = phase
    pod.status.conditions = [
        PodCondition(type="Ready", status="True" if ready else "False", last_transition_time=now())
    ]
    pod.status.container_statuses = msgspec.convert(
        [{"name": "c", "ready": ready, "restartCount": restarts, "image": "busybox"}], list[Any]
    )
    await client.replace_status(pod)


async def reasons(client: Client, name: str) -> list[tuple[str, str]]:
    events = (await client.list(Event, NS)).items
    return sorted(
        (str(e.reason), str(e.message))
        for e in events
        if e.involved_object.kind == "ReplicationController" and e.involved_object.name == name
    )


async def test_scale_up_creates_owned_pods_with_generated_names(client: Client) -> None:
    made = await client.create(rc("web", 3))
    pods = await wait_pods(client, "web", 3)
    for pod in pods:
        assert re.fullmatch(r"web-[a-z0-9]{5}", pod.metadata.name or "")
        assert pod.metadata.generate_name == "web-"
        assert pod.metadata.labels == {"app": "web", "tier": "web"}
        assert pod.metadata.annotations == {"note": "x"}
        refs = pod.metadata.owner_references or []
        assert [
            (r.api_version, r.kind, r.name, r.uid, r.controller, r.block_owner_deletion) for r in refs
        ] == [("v1", "ReplicationController", "web", made.metadata.uid, True, True)]
    await wait_status(
        client,
        "web",
        replicas=3,
        fully_labeled_replicas=3,
        ready_replicas=0,
        available_replicas=0,
        observed_generation=1,
    )

    async def created() -> list[tuple[str, str]] | None:
        got = [r for r in await reasons(client, "web") if r[0] == "SuccessfulCreate"]
        return got if len(got) == 3 else None

    events = await eventually(created, "three SuccessfulCreate events")
    assert sorted(m for _, m in events) == sorted(f"Created pod: {p.metadata.name}" for p in pods)
    assert len(await pods_of(client, "web", active=False)) == 3  # nothing more was created


async def test_scale_down_deletes_unscheduled_then_not_ready_first(client: Client) -> None:
    await client.create(rc("down", 4))
    pods = await wait_pods(client, "down", 4)
    names = [p.metadata.name or "" for p in pods]
    ready, not_ready, pending_a, pending_b = names
    for name in (ready, not_ready):
        await client.bind(name, NS, "node-1")
    await set_status(client, ready, "Running", ready=True)
    await set_status(client, not_ready, "Running", ready=False, restarts=2)
    await wait_status(client, "down", replicas=4, ready_replicas=1)

    await client.scale(ReplicationController, "down", 2, NS)
    remaining = await wait_pods(client, "down", 2)
    assert [p.metadata.name for p in remaining] == sorted([ready, not_ready])
    for gone in (pending_a, pending_b):  # unscheduled pods go at once
        await eventually(lambda gone=gone: _gone(client, gone), f"{gone} deleted")

    await client.scale(ReplicationController, "down", 1, NS)
    remaining = await wait_pods(client, "down", 1)
    assert [p.metadata.name for p in remaining] == [ready]
    # A scheduled pod is deleted gracefully: its node would finish the deletion.
    terminating = await client.get(Pod, not_ready, NS)
    assert terminating.metadata.deletion_timestamp is not None
    await wait_status(client, "down", replicas=1, ready_replicas=1, observed_generation=3)

    async def deleted() -> list[str] | None:
        got = sorted(m for r, m in await reasons(client, "down") if r == "SuccessfulDelete")
        return got if len(got) == 3 else None

    got = await eventually(deleted, "three SuccessfulDelete events")
    assert got == sorted(f"Deleted pod: {n}" for n in (not_ready, pending_a, pending_b))


async def _gone(client: Client, name: str) -> bool:
    try:
        await client.get(Pod, name, NS)
    except NotFound:
        return True
    return False


async def test_deleted_and_failed_pods_are_replaced(client: Client) -> None:
    await client.create(rc("heal", 2))
    first = await wait_pods(client, "heal", 2)
    deleted, failed = (p.metadata.name or "" for p in first)
    await client.delete(Pod, deleted, NS)

    async def replaced() -> list[Pod] | None:
        pods = await pods_of(client, "heal")
        return pods if len(pods) == 2 and deleted not in {p.metadata.name for p in pods} else None

    await eventually(replaced, "the deleted pod replaced")
    await set_status(client, failed, "Failed")

    async def failed_replaced() -> list[Pod] | None:
        pods = await pods_of(client, "heal")
        return pods if len(pods) == 2 and failed not in {p.metadata.name for p in pods} else None

    await eventually(failed_replaced, "the failed pod replaced")
    everything = await pods_of(client, "heal", active=False)
    assert len(everything) == 3  # the Failed pod stays, for its logs and status
    assert (await client.get(Pod, failed, NS)).status.phase == "Failed"
    await wait_status(client, "heal", replicas=2)


async def test_relabeled_pod_is_released_and_replaced(client: Client) -> None:
    made = await client.create(rc("rel", 2))
    pods = await wait_pods(client, "rel", 2)
    moved = pods[0].metadata.name or ""
    await client.patch(Pod, moved, {"metadata": {"labels": {"app": "elsewhere"}}}, NS)

    async def released() -> Pod | None:
        pod = await client.get(Pod, moved, NS)
        return pod if not pod.metadata.owner_references else None

    pod = await eventually(released, "the relabeled pod released")
    assert pod.metadata.deletion_timestamp is None and pod.metadata.labels == {
        "app": "elsewhere",
        "tier": "web",
    }
    now_pods = await wait_pods(client, "rel", 2)
    assert moved not in {p.metadata.name for p in now_pods}
    assert all((p.metadata.owner_references or [])[0].uid == made.metadata.uid for p in now_pods)


async def test_matching_orphans_are_adopted_and_surplus_deleted(
    controlplane: ControlPlane, client: Client
) -> None:
    assert controlplane.controllers is not None
    cache = controlplane.controllers.replication.pod_informer
    orphans = {f"orphan-{i}" for i in range(3)}
    for name in orphans:
        await client.create(bare_pod(name, {"app": "adopt", "tier": "web"}))
    await client.create(bare_pod("stranger", {"app": "other"}))

    async def cached() -> bool:
        return all(cache.get(f"{NS}/{name}") is not None for name in orphans)

    await eventually(cached, "the orphans in the manager's cache")  # else it would create pods at first
    made = await client.create(rc("adopt", 2))
    pods = await wait_pods(client, "adopt", 2)
    assert {p.metadata.name for p in pods} <= orphans  # kept two of them, created none

    async def owned() -> bool:
        pods = await pods_of(client, "adopt")
        return len(pods) == 2 and all(
            [r.uid for r in p.metadata.owner_references or [] if r.controller] == [made.metadata.uid]
            for p in pods
        )

    await eventually(owned, "the orphans adopted")
    assert len(await pods_of(client, "adopt", active=False)) == 2
    assert not (await client.get(Pod, "stranger", NS)).metadata.owner_references
    await wait_status(client, "adopt", replicas=2, fully_labeled_replicas=2)


async def test_scale_subresource_patch_and_zero(client: Client) -> None:
    await client.create(rc("sc", 1))
    await wait_pods(client, "sc", 1)
    await client.scale(ReplicationController, "sc", 4, NS)
    await wait_pods(client, "sc", 4)
    await client.patch(ReplicationController, "sc", {"spec": {"replicas": 2}}, NS)
    await wait_pods(client, "sc", 2)
    for _ in range(10):  # a full update, retried like any client's when a status write got in first
        current = await client.get(ReplicationController, "sc", NS)
        current.spec.replicas = 0
        try:
            await client.replace(current)
            break
        except Conflict:
            continue
    await wait_pods(client, "sc", 0)
    await wait_status(client, "sc", replicas=0, observed_generation=4)
    assert await pods_of(client, "sc", active=False) == []


async def test_status_ready_available_and_observed_generation(client: Client) -> None:
    await client.create(rc("st", 2, minReadySeconds=1))
    pods = await wait_pods(client, "st", 2)
    for pod in pods:
        await client.bind(pod.metadata.name or "", NS, "node-1")
        await set_status(client, pod.metadata.name or "", "Running", ready=True)
    # Available once Ready for a second: nothing changes then, so this needs the controller's requeue.
    await wait_status(client, "st", replicas=2, ready_replicas=2, available_replicas=2, observed_generation=1)
    await client.patch(ReplicationController, "st", {"spec": {"minReadySeconds": 3600}}, NS)
    got = await wait_status(client, "st", observed_generation=2, available_replicas=0)
    assert (
        got.status.ready_replicas == 2 and got.status.replicas == 2 and got.status.fully_labeled_replicas == 2
    )
    # A pod relabeled to lose a template label (but not the selector's) is counted, not fully labeled.
    await client.patch(Pod, pods[0].metadata.name or "", {"metadata": {"labels": {"tier": None}}}, NS)
    await wait_status(client, "st", replicas=2, fully_labeled_replicas=1)


async def test_a_deleting_rc_creates_nothing(controlplane: ControlPlane, client: Client) -> None:
    assert controlplane.controllers is not None
    manager = controlplane.controllers.replication
    made = rc("held", 2)
    made.metadata.finalizers = ["test.peapod.io/hold"]  # keeps it in Terminating
    await client.create(made)
    first, second = await wait_pods(client, "held", 2)
    await client.delete(ReplicationController, "held", NS)

    async def seen_deleting() -> bool:
        cached = manager.rc_informer.get(f"{NS}/held")
        return cached is not None and cached.metadata.deletion_timestamp is not None

    await eventually(seen_deleting, "the manager to see the RC terminating")
    await client.delete(Pod, first.metadata.name or "", NS)
    # The sync that would have replaced the pod still writes the status: once it says 1, it is done.
    got = await wait_status(client, "held", replicas=1)
    assert got.metadata.deletion_timestamp is not None
    assert [p.metadata.name for p in await pods_of(client, "held", active=False)] == [second.metadata.name]


async def test_expectations_hold_back_a_lagging_cache(controlplane: ControlPlane, client: Client) -> None:
    assert controlplane.controllers is not None
    await controlplane.controllers.replication.stop()
    manager = ReplicationManager(client, ControllerSettings())
    manager.rc_informer.start()
    manager.pod_informer.start()
    try:
        await manager.rc_informer.wait_synced()
        await manager.pod_informer.wait_synced()
        await client.create(rc("lag", 3))
        await eventually(lambda: _cached(manager, "default/lag"), "the RC in the cache")
        await manager.pod_informer.stop()  # the pod cache now lags for as long as we like
        await manager.sync("default/lag")
        await manager.sync("default/lag")
        assert len(await pods_of(client, "lag")) == 3
        assert manager.expectations.pending("default/lag") == (3, 0)
        assert not manager.expectations.satisfied("default/lag")
        manager.pod_informer.start()  # catches up: the creations are observed

        async def observed() -> bool:
            return manager.expectations.satisfied("default/lag")

        await eventually(observed, "the creations observed")
        await manager.sync("default/lag")
        assert len(await pods_of(client, "lag", active=False)) == 3
        got = await client.get(ReplicationController, "lag", NS)
        assert got.status.replicas == 3
    finally:
        await manager.stop()


async def _cached(manager: ReplicationManager, key: str) -> bool:
    return manager.rc_informer.get(key) is not None


# --- pure parts ----------------------------------------------------------------------------------


def _pod(name: str, **fields: Any) -> Pod:
    return msgspec.convert({"metadata": {"name": name, **fields.pop("metadata", {})}, **fields}, Pod)


def test_deletion_order_follows_active_pods() -> None:
    ready = [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    pods = [
        _pod("ready-old", spec={"nodeName": "n"}, status={"phase": "Running", "conditions": ready}),
        _pod("running", spec={"nodeName": "n"}, status={"phase": "Running"}),
        _pod(
            "restarting",
            spec={"nodeName": "n"},
            status={"phase": "Running", "containerStatuses": [{"name": "c", "restartCount": 5}]},
        ),
        _pod("unknown", spec={"nodeName": "n"}, status={"phase": "Unknown"}),
        _pod("pending-bound", spec={"nodeName": "n"}, status={"phase": "Pending"}),
        _pod("unscheduled", status={"phase": "Pending"}),
    ]
    order = [p.metadata.name for p in sorted(pods, key=deletion_order)]
    assert order == ["unscheduled", "pending-bound", "unknown", "restarting", "running", "ready-old"]
    newer = _pod("newer", metadata={"creationTimestamp": "2026-01-02T00:00:00Z"})
    older = _pod("older", metadata={"creationTimestamp": "2026-01-01T00:00:00Z"})
    assert [p.metadata.name for p in sorted([older, newer], key=deletion_order)] == ["newer", "older"]


async def test_slow_start_doubles_and_stops_at_the_first_failing_batch() -> None:
    calls: list[int] = []

    async def create() -> None:
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("quota exceeded")

    successes, error = await slow_start(20, create)
    # Batches of 1, 2, 4: the failure is in the third, so 7 attempts, 6 successes, and no more.
    assert (len(calls), successes, str(error)) == (7, 6, "quota exceeded")

    async def fine() -> None:
        calls.append(1)

    calls.clear()
    assert await slow_start(5, fine) == (5, None)
    assert len(calls) == 5  # batches of 1, 2, then the 2 left


def test_expectations_expire_and_count_each_deletion_once() -> None:
    exp = Expectations()
    exp.expect_deletions("ns/rc", ["ns/a", "ns/b"])
    exp.deletion_observed("ns/rc", "ns/a")
    exp.deletion_observed("ns/rc", "ns/a")  # deletionTimestamp, then the DELETED event
    assert exp.pending("ns/rc") == (0, 1) and not exp.satisfied("ns/rc")
    exp.deletion_observed("ns/rc", "ns/b")
    assert exp.satisfied("ns/rc")
    stale = Expectations(timeout=0.0)
    stale.expect_creations("ns/rc", 3)
    time.sleep(0.001)
    assert stale.satisfied("ns/rc")  # a lost event must not wedge the RC forever


def test_replica_failure_condition_is_set_once_and_cleared() -> None:
    controller = rc("f", 1)
    controller.metadata = ObjectMeta(name="f", namespace=NS, generation=3)
    failed = calculate_status(controller, [], RuntimeError("forbidden: exceeded quota"), "FailedCreate")
    (cond,) = failed.conditions or []
    assert (cond.type, cond.status, cond.reason, cond.message) == (
        "ReplicaFailure",
        "True",
        "FailedCreate",
        "forbidden: exceeded quota",
    )
    assert failed.observed_generation == 3
    controller.status = failed
    assert calculate_status(controller, [], RuntimeError("again"), "FailedCreate").conditions == [cond]
    assert calculate_status(controller, [], None, "").conditions is None
