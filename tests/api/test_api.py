"""API tests against a real server on loopback: real HTTP, real SQLite, no mocks."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest

from controlplane.api import (
    ConfigMap,
    Event,
    Namespace,
    Node,
    ObjectMeta,
    Pod,
    ReplicationController,
    Service,
)
from controlplane.client import Client, Conflict, EventRecorder, Gone, Informer, NotFound
from controlplane.client.errors import ApiError
from controlplane.server.controlplane import ControlPlane, ControlPlaneError, Settings
from tests.support import collect

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "php-test", "labels": {"name": "php-test"}},
    "spec": {
        "containers": [
            {
                "name": "php-test",
                "image": "php-base:1.0",
                "env": [{"name": "ENV_TEST_1", "value": "env_test_1"}],
                "ports": [{"containerPort": 80, "hostPort": 80}],
            }
        ]
    },
}


def pod(name: str, labels: dict[str, str] | None = None, node: str | None = None) -> Pod:
    return msgspec.convert(
        {
            "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node},
        },
        Pod,
    )


async def http(cp: ControlPlane) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=cp.url)


async def test_create_get_list_with_defaults(client: Client) -> None:
    created = await client.create_raw(_pods(), POD)
    assert created["metadata"]["uid"]
    assert created["metadata"]["namespace"] == "default"
    assert int(created["metadata"]["resourceVersion"]) > 0
    spec = created["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["containers"][0]["ports"][0]["protocol"] == "TCP"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert created["status"]["phase"] == "Pending"
    got = await client.get(Pod, "php-test", "default")
    assert got.metadata.uid == created["metadata"]["uid"]
    listed = await client.list(Pod, "default")
    assert [p.metadata.name for p in listed.items] == ["php-test"]
    assert int(listed.resource_version) >= int(created["metadata"]["resourceVersion"])


def _pods() -> Any:
    from controlplane.api import by_kind

    return by_kind("Pod")


async def test_generate_name(client: Client) -> None:
    p = pod("")
    p.metadata.name = None
    p.metadata.generate_name = "php-controller-"
    made = await client.create(p)
    assert made.metadata.name and made.metadata.name.startswith("php-controller-")
    assert len(made.metadata.name) == len("php-controller-") + 5


async def test_already_exists_and_not_found(client: Client) -> None:
    await client.create(pod("a"))
    with pytest.raises(Conflict) as exc:
        await client.create(pod("a"))
    assert exc.value.reason == "AlreadyExists"
    assert exc.value.status.message == 'pods "a" already exists'
    with pytest.raises(NotFound) as nf:
        await client.get(Pod, "nope", "default")
    assert nf.value.status.message == 'pods "nope" not found'


async def test_namespace_must_exist(client: Client) -> None:
    with pytest.raises(NotFound) as exc:
        await client.create(pod("a"), "ghost")
    assert 'namespaces "ghost" not found' in str(exc.value)


async def test_replace_conflict_on_stale_resource_version(client: Client) -> None:
    made = await client.create(pod("a"))
    first = msgspec.structs.replace(made)
    first.metadata.labels = {"app": "web", "v": "1"}
    updated = await client.replace(first)
    assert int(updated.metadata.resource_version or 0) > int(made.metadata.resource_version or 0)
    stale = made
    stale.metadata.labels = {"app": "web", "v": "2"}
    with pytest.raises(Conflict) as exc:
        await client.replace(stale)
    assert exc.value.reason == "Conflict"
    assert "the object has been modified" in exc.value.status.message
    assert (await client.get(Pod, "a", "default")).metadata.labels == {"app": "web", "v": "1"}


async def test_update_ignores_status_and_status_subresource_ignores_spec(client: Client) -> None:
    made = await client.create(pod("a"))
    made.status.phase = "Running"
    made.metadata.labels = {"changed": "yes"}
    after = await client.replace(made)
    assert after.status.phase == "Pending"
    assert after.metadata.labels == {"changed": "yes"}
    after.status.phase = "Running"
    after.metadata.labels = {"ignored": "yes"}
    status = await client.replace_status(after)
    assert status.status.phase == "Running"
    assert status.metadata.labels == {"changed": "yes"}


async def test_no_op_update_keeps_resource_version(client: Client) -> None:
    made = await client.create(pod("a"))
    again = await client.replace(made)
    assert again.metadata.resource_version == made.metadata.resource_version


async def test_patch_types(client: Client) -> None:
    await client.create(pod("a"))
    merged = await client.patch(Pod, "a", {"metadata": {"labels": {"tier": "front"}}}, "default")
    assert merged.metadata.labels == {"app": "web", "tier": "front"}
    jsonp = await client.patch(
        Pod, "a", [{"op": "remove", "path": "/metadata/labels/tier"}], "default", patch_type="json"
    )
    assert jsonp.metadata.labels == {"app": "web"}
    strategic = await client.patch(
        Pod,
        "a",
        {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}},
        "default",
        patch_type="strategic",
    )
    assert strategic.spec.containers[0].image == "busybox:2"
    assert strategic.spec.containers[0].termination_message_path == "/dev/termination-log"
    with pytest.raises(ApiError) as exc:
        await client.patch(
            Pod, "a", [{"op": "test", "path": "/metadata/name", "value": "b"}], "default", patch_type="json"
        )
    assert exc.value.code == 422
    # A pod's spec is immutable but for images: the patch is refused and nothing changes.
    with pytest.raises(ApiError) as imm:
        await client.patch(Pod, "a", {"spec": {"restartPolicy": "Never"}}, "default")
    assert imm.value.code == 422
    assert (await client.get(Pod, "a", "default")).spec.restart_policy == "Always"


async def test_field_validation_modes(client: Client, controlplane: ControlPlane) -> None:
    from controlplane.api import by_kind

    svc = by_kind("Service")
    assert svc is not None
    typo = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "php-service"},
        "spec": {
            "clusterIp": "10.254.0.5",
            "ports": [{"port": 8081, "targetPort": 80}],
            "selector": {"a": "b"},
        },
    }
    with pytest.raises(ApiError) as exc:
        await client.create_raw(svc, typo, "default", field_validation="Strict")
    assert exc.value.code == 422
    assert "spec.clusterIp" in exc.value.status.message
    causes = exc.value.status.details.causes if exc.value.status.details else None
    assert causes and causes[0].field == "spec.clusterIp"
    with pytest.raises(NotFound):
        await client.get(Service, "php-service", "default")

    warnings: list[str] = []
    async with Client(controlplane.url, on_warning=warnings.append) as warned:
        made = await warned.create_raw(svc, typo, "default")
    assert warnings == ['unknown field "spec.clusterIp"']
    assert "clusterIp" not in made["spec"]

    typo["metadata"]["name"] = "php-service-2"
    warnings.clear()
    async with Client(controlplane.url, on_warning=warnings.append) as quiet:
        await quiet.create_raw(svc, typo, "default", field_validation="Ignore")
    assert warnings == []


async def test_invalid_name_gets_kubernetes_wording(client: Client) -> None:
    from controlplane.api import by_kind

    svc = by_kind("Service")
    assert svc is not None
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "php-nodePort-service"},
        "spec": {"type": "NodePort", "ports": [{"port": 8081}], "selector": {"a": "b"}},
    }
    with pytest.raises(ApiError) as exc:
        await client.create_raw(svc, body, "default")
    status = exc.value.status
    assert status.code == 422 and status.reason == "Invalid"
    assert status.message.startswith(
        'Service "php-nodePort-service" is invalid: metadata.name: Invalid value: '
        '"php-nodePort-service": a DNS-1035 label must consist of lower case'
    )
    assert status.details is not None and status.details.causes
    assert status.details.causes[0].field == "metadata.name"


async def test_bad_bodies(controlplane: ControlPlane) -> None:
    async with await http(controlplane) as h:
        r = await h.post(
            "/api/v1/namespaces/default/pods",
            content=b'{"metadata": ',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400
        assert r.json()["kind"] == "Status" and "line 1, column" in r.json()["message"]
        r = await h.post(
            "/api/v1/namespaces/default/pods",
            content=b"metadata: [1\nspec: 2",
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 400 and "line" in r.json()["message"]
        r = await h.post(
            "/api/v1/namespaces/default/pods", json={"metadata": {"name": "x"}, "spec": {"containers": 5}}
        )
        assert r.status_code == 400
        assert r.json()["details"]["causes"][0]["field"] == "spec.containers"
        r = await h.post(
            "/api/v1/namespaces/default/pods", json={"kind": "Service", "metadata": {"name": "x"}}
        )
        assert r.status_code == 400
        big = b'{"metadata":{"name":"x","annotations":{"a":"' + b"x" * (3 * 1024 * 1024) + b'"}}}'
        r = await h.post(
            "/api/v1/namespaces/default/configmaps", content=big, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"
        r = await h.get("/api/v1/namespaces/default/pods", params={"labelSelector": "a in (b"})
        assert r.status_code == 400
        r = await h.get("/api/v1/namespaces/default/pods", params={"fieldSelector": "spec.bogus=x"})
        assert r.status_code == 400 and "field label not supported" in r.json()["message"]
        r = await h.get("/api/v1/widgets")
        assert r.status_code == 404 and r.json()["kind"] == "Status"
        listed = await h.get("/api/v1/namespaces/default/configmaps")
        assert listed.json()["items"] == []


async def test_label_and_field_selectors_and_pagination(client: Client) -> None:
    for i in range(7):
        await client.create(
            pod(f"p{i}", {"app": "web" if i % 2 else "db", "i": str(i)}, node="n1" if i < 3 else None)
        )
    web = await client.list(Pod, "default", label_selector="app=web")
    assert sorted(p.metadata.name or "" for p in web.items) == ["p1", "p3", "p5"]
    setb = await client.list(Pod, "default", label_selector="app in (db),i notin (0)")
    assert sorted(p.metadata.name or "" for p in setb.items) == ["p2", "p4", "p6"]
    unscheduled = await client.list(Pod, "default", field_selector="spec.nodeName=")
    assert sorted(p.metadata.name or "" for p in unscheduled.items) == ["p3", "p4", "p5", "p6"]
    page1 = await client.list(Pod, "default", limit=3)
    assert [p.metadata.name for p in page1.items] == ["p0", "p1", "p2"] and page1.continue_
    page2 = await client.list(Pod, "default", limit=3, continue_=page1.continue_)
    assert [p.metadata.name for p in page2.items] == ["p3", "p4", "p5"]
    page3 = await client.list(Pod, "default", limit=3, continue_=page2.continue_)
    assert [p.metadata.name for p in page3.items] == ["p6"] and page3.continue_ is None
    filtered = await client.list(Pod, "default", limit=2, label_selector="app=db")
    assert [p.metadata.name for p in filtered.items] == ["p0", "p2"] and filtered.continue_
    rest = await client.list(Pod, "default", limit=2, label_selector="app=db", continue_=filtered.continue_)
    assert [p.metadata.name for p in rest.items] == ["p4", "p6"]


async def test_all_namespaces_and_cluster_scoped(client: Client) -> None:
    await client.create(Namespace(metadata=ObjectMeta(name="other")))
    await client.create(pod("a"))
    await client.create(pod("b"), "other")
    everywhere = await client.list(Pod)
    assert sorted((p.metadata.namespace, p.metadata.name) for p in everywhere.items) == [
        ("default", "a"),
        ("other", "b"),
    ]
    names = [n.metadata.name for n in (await client.list(Namespace)).items]
    assert {"default", "kube-system", "kube-public", "kube-node-lease", "other"} <= set(names)


async def test_watch_from_resource_version_and_resume(client: Client) -> None:
    a = await client.create(pod("a"))
    rv = a.metadata.resource_version
    await client.patch(Pod, "a", {"metadata": {"labels": {"x": "1"}}}, "default")
    await client.create(pod("b"))
    await client.delete(Pod, "b", "default")
    events = await collect(client.watch(Pod, "default", resource_version=rv, bookmarks=False), 3)
    assert [(e.type, e.object.metadata.name) for e in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "b"),
    ]
    # Resume from the middle: only what came after.
    resumed = client.watch(Pod, "default", resource_version=events[1].resource_version, bookmarks=False)
    later = await collect(resumed, 1)
    assert [(e.type, e.object.metadata.name) for e in later] == [("DELETED", "b")]


async def test_watch_without_version_starts_with_current_state(client: Client) -> None:
    await client.create(pod("a"))
    it = client.watch(Pod, "default", bookmarks=False)
    first = await collect(it, 1)
    assert (first[0].type, first[0].object.metadata.name) == ("ADDED", "a")

    async def later() -> None:
        await asyncio.sleep(0.05)
        await client.create(pod("b"))

    task = asyncio.create_task(later())
    second = await collect(it, 1)
    await task
    assert (second[0].type, second[0].object.metadata.name) == ("ADDED", "b")


async def test_watch_selector_transitions(client: Client) -> None:
    made = await client.create(pod("a", {"app": "web"}))
    it = client.watch(
        Pod,
        "default",
        resource_version=made.metadata.resource_version,
        label_selector="app=web",
        bookmarks=False,
    )
    await client.patch(Pod, "a", {"metadata": {"labels": {"app": "db"}}}, "default")
    await client.patch(Pod, "a", {"metadata": {"labels": {"app": "web"}}}, "default")
    events = await collect(it, 2)
    assert [e.type for e in events] == ["DELETED", "ADDED"]


async def test_watch_bookmarks(client: Client) -> None:
    made = await client.create(pod("a"))
    it = client.watch(Pod, "default", resource_version=made.metadata.resource_version, bookmarks=True)
    events = await collect(it, 1)
    assert events[0].type == "BOOKMARK"
    assert int(events[0].resource_version) >= int(made.metadata.resource_version or 0)


async def test_watch_timeout_ends_stream(client: Client) -> None:
    made = await client.create(pod("a"))
    got = []
    async for ev in client.watch(
        Pod, "default", resource_version=made.metadata.resource_version, timeout_seconds=1, bookmarks=False
    ):
        got.append(ev)
    assert got == []


@pytest.fixture
def small_cache(settings: Settings) -> Settings:
    settings.watch_cache_capacity = 2
    return settings


async def test_watch_expired_resource_version_is_410(
    small_cache: Settings, client: Client, controlplane: ControlPlane
) -> None:
    """A version older than the watch cache is read from the store; compacted there, it is 410 Gone."""
    first = await client.create(pod("a"))
    for i in range(5):
        await client.patch(Pod, "a", {"metadata": {"labels": {"i": str(i)}}}, "default")
    current = await controlplane.backend.current_revision()
    await controlplane.backend.compact(current)
    with pytest.raises(Gone) as exc:
        await collect(client.watch(Pod, "default", resource_version=first.metadata.resource_version), 1)
    assert exc.value.code == 410 and exc.value.reason == "Expired"
    # A list at a compacted revision is an HTTP 410.
    async with await http(controlplane) as h:
        r = await h.get(
            "/api/v1/namespaces/default/pods",
            params={"resourceVersion": first.metadata.resource_version, "resourceVersionMatch": "Exact"},
        )
        assert r.status_code == 410


async def test_informer_relists_after_410(client: Client, controlplane: ControlPlane) -> None:
    inf: Informer[Pod] = Informer(client, Pod, "default", retry_delay=0.05)
    seen: list[str] = []
    inf.on_add(lambda p: seen.append(p.metadata.name or ""))
    inf.start()
    try:
        await inf.wait_synced()
        await client.create(pod("a"))
        for _ in range(200):
            if inf.get("default/a") is not None:
                break
            await asyncio.sleep(0.02)
        assert inf.get("default/a") is not None
        # Make the informer's version stale and compacted, then break its stream: it must re-list.
        inf.resource_version = "1"
        await controlplane.backend.compact(await controlplane.backend.current_revision())
        await client.create(pod("b"))
        for _ in range(300):
            if inf.get("default/b") is not None:
                break
            await asyncio.sleep(0.02)
        assert inf.get("default/b") is not None
        assert seen.count("a") == 1
    finally:
        await inf.stop()


async def test_graceful_pod_delete(client: Client) -> None:
    await client.create(pod("a", node="node-1"))
    left = await client.delete(Pod, "a", "default")
    assert left is not None and left.metadata.deletion_timestamp is not None
    assert left.metadata.deletion_grace_period_seconds == 30
    still = await client.get(Pod, "a", "default")
    assert still.metadata.deletion_timestamp is not None
    # The node agent finishes it with grace 0.
    await client.delete(Pod, "a", "default", grace_period_seconds=0)
    with pytest.raises(NotFound):
        await client.get(Pod, "a", "default")
    # An unscheduled pod goes at once.
    await client.create(pod("b"))
    await client.delete(Pod, "b", "default")
    with pytest.raises(NotFound):
        await client.get(Pod, "b", "default")


async def test_finalizers_hold_deletion(client: Client) -> None:
    cm = ConfigMap(metadata=ObjectMeta(name="cfg", finalizers=["example.com/hold"]), data={"a": "b"})
    await client.create(cm)
    await client.delete(ConfigMap, "cfg", "default")
    held = await client.get(ConfigMap, "cfg", "default")
    assert held.metadata.deletion_timestamp is not None
    await client.patch(ConfigMap, "cfg", {"metadata": {"finalizers": None}}, "default")
    with pytest.raises(NotFound):
        await client.get(ConfigMap, "cfg", "default")


async def test_delete_preconditions_and_collection(client: Client) -> None:
    made = await client.create(pod("a"))
    with pytest.raises(Conflict):
        await client.delete(Pod, "a", "default", uid="not-the-uid")
    await client.delete(Pod, "a", "default", uid=made.metadata.uid)
    for i in range(4):
        await client.create(pod(f"p{i}", {"app": "web" if i < 3 else "db"}))
    await client.delete_collection(Pod, "default", label_selector="app=web")
    assert [p.metadata.name for p in (await client.list(Pod, "default")).items] == ["p3"]


async def test_scale_subresource(client: Client) -> None:
    rc = msgspec.convert(
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
        ReplicationController,
    )
    made = await client.create(rc)
    assert made.spec.selector == {"app": "web"}
    assert made.metadata.generation == 1
    await client.scale(ReplicationController, "web", 5, "default")
    after = await client.get(ReplicationController, "web", "default")
    assert after.spec.replicas == 5 and after.metadata.generation == 2
    r = await client.request("GET", "/api/v1/namespaces/default/replicationcontrollers/web/scale")
    scale = r.json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 5 and scale["status"]["selector"] == "app=web"
    patched = await client.request(
        "PATCH",
        "/api/v1/namespaces/default/replicationcontrollers/web/scale",
        body={"spec": {"replicas": 4}},
        content_type="application/merge-patch+json",
    )
    assert patched.json()["kind"] == "Scale" and patched.json()["spec"]["replicas"] == 4
    with pytest.raises(ApiError) as exc:
        await client.scale(ReplicationController, "web", -1, "default")
    assert exc.value.code == 422


async def test_binding(client: Client) -> None:
    await client.create(pod("a"))
    await client.bind("a", "default", "node-1")
    bound = await client.get(Pod, "a", "default")
    assert bound.spec.node_name == "node-1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in bound.status.conditions or [])
    with pytest.raises(Conflict) as exc:
        await client.bind("a", "default", "node-2")
    assert 'already assigned to node "node-1"' in exc.value.status.message


async def test_node_pod_cidr_allocation(client: Client, controlplane: ControlPlane) -> None:
    n1 = await client.create(Node(metadata=ObjectMeta(name="n1")))
    n2 = await client.create(Node(metadata=ObjectMeta(name="n2")))
    assert n1.spec.pod_cidr == "10.244.0.0/24" and n2.spec.pod_cidr == "10.244.1.0/24"
    await client.delete(Node, "n1")
    n3 = await client.create(Node(metadata=ObjectMeta(name="n3")))
    assert n3.spec.pod_cidr == "10.244.0.0/24"
    # A requested CIDR that is taken is refused, and nothing is created.
    taken = Node(metadata=ObjectMeta(name="n4"))
    taken.spec.pod_cidr = "10.244.1.0/24"
    with pytest.raises(ApiError) as exc:
        await client.create(taken)
    assert exc.value.code == 422 and "spec.podCIDR" in exc.value.status.message
    with pytest.raises(NotFound):
        await client.get(Node, "n4")
    allocated = await controlplane.api.pod_cidrs.allocated()
    assert allocated == {"10.244.0.0/24": "n3", "10.244.1.0/24": "n2"}


async def test_table_for_every_kind(client: Client) -> None:
    from controlplane.api import RESOURCES

    expected_first = {
        "pods": ["Name", "Ready", "Status", "Restarts", "Age"],
        "replicationcontrollers": ["Name", "Desired", "Current", "Ready", "Age"],
        "services": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"],
        "nodes": ["Name", "Status", "Roles", "Age", "Version"],
        "namespaces": ["Name", "Status", "Age"],
        "endpoints": ["Name", "Endpoints", "Age"],
        "configmaps": ["Name", "Data", "Age"],
        "secrets": ["Name", "Type", "Data", "Age"],
    }
    await client.create(pod("a"))
    for info in RESOURCES:
        table = await client.table(info, "default" if info.namespaced else None)
        assert table.kind == "Table" and table.api_version == "meta.k8s.io/v1"
        names = [c.name for c in table.column_definitions if c.priority == 0]
        if info.plural in expected_first:
            assert names == expected_first[info.plural], info.plural
    pods = await client.table(_pods(), "default")
    assert pods.rows[0].cells[:3] == ["a", "0/1", "Pending"]
    wide = [c.name for c in pods.column_definitions if c.priority == 1]
    assert wide[:2] == ["IP", "Node"]


async def test_auth_refusal(tmp_path: Any) -> None:
    token_file = tmp_path / "tokens.csv"
    token_file.write_text('sekret,admin,admin,"system:masters"\nnodetoken,system:node:n1,n1,"system:nodes"\n')
    cp = ControlPlane(Settings(data_dir=tmp_path / "cp", listen="127.0.0.1:0", token_file=token_file))
    await cp.start()
    try:
        async with httpx.AsyncClient(base_url=cp.url) as h:
            assert (await h.get("/healthz")).status_code == 200
            assert (await h.get("/version")).status_code == 200
            anon = await h.get("/api/v1/pods")
            assert anon.status_code == 401 and anon.json()["reason"] == "Unauthorized"
            bad = await h.get("/api/v1/pods", headers={"Authorization": "Bearer wrong"})
            assert bad.status_code == 401
            ok = await h.get("/api/v1/pods", headers={"Authorization": "Bearer sekret"})
            assert ok.status_code == 200
    finally:
        await cp.stop()
    with pytest.raises(ControlPlaneError) as exc:
        ControlPlane(Settings(data_dir=tmp_path / "cp2", listen="0.0.0.0:0"))
    assert "without --token-file" in str(exc.value)


async def test_event_merging(client: Client) -> None:
    target = await client.create(pod("a"))
    rec = EventRecorder(client, "test-component")
    for _ in range(3):
        await rec.record(target, "Warning", "BackOff", "Back-off restarting failed container")
    await rec.record(target, "Normal", "Pulled", "Container image already present")
    events = (
        await client.list(Event, "default", field_selector=f"involvedObject.uid={target.metadata.uid}")
    ).items
    by_reason = {e.reason: e for e in events}
    assert len(events) == 2
    assert by_reason["BackOff"].count == 3 and by_reason["Pulled"].count == 1
    assert by_reason["BackOff"].first_timestamp and by_reason["BackOff"].last_timestamp


async def test_event_ttl(client: Client, controlplane: ControlPlane) -> None:
    target = await client.create(pod("a"))
    await EventRecorder(client, "t").record(target, "Normal", "Old", "old news")
    controlplane.settings.event_ttl = -1
    removed = await controlplane.expire_events()
    assert removed == 1
    assert (await client.list(Event, "default")).items == []


async def test_namespace_deletion_removes_contents(client: Client) -> None:
    await client.create(Namespace(metadata=ObjectMeta(name="doomed")))
    await client.create(pod("a"), "doomed")
    await client.create(ConfigMap(metadata=ObjectMeta(name="c"), data={"k": "v"}), "doomed")
    left = await client.delete(Namespace, "doomed")
    assert left is not None and left.status.phase == "Terminating"
    with pytest.raises(ApiError) as exc:
        await client.create(pod("b"), "doomed")
    assert exc.value.code == 403
    for _ in range(300):
        try:
            await client.get(Namespace, "doomed")
        except NotFound:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("namespace was not removed")
    assert (await client.list(Pod, "doomed")).items == []
    with pytest.raises(ApiError) as protected:
        await client.delete(Namespace, "default")
    assert protected.value.code == 403
    assert (await client.get(Namespace, "default")).metadata.deletion_timestamp is None


async def test_discovery_and_version(controlplane: ControlPlane) -> None:
    async with await http(controlplane) as h:
        v = (await h.get("/version")).json()
        assert v["major"] == "1" and v["gitVersion"].startswith("v1.")
        core = (await h.get("/api/v1")).json()
        names = {r["name"] for r in core["resources"]}
        assert {
            "pods",
            "pods/status",
            "pods/binding",
            "replicationcontrollers/scale",
            "services",
            "nodes",
        } <= names
        po = next(r for r in core["resources"] if r["name"] == "pods")
        assert po["shortNames"] == ["po"] and po["namespaced"] is True
        groups = (await h.get("/apis")).json()
        assert any(g["name"] == "coordination.k8s.io" for g in groups["groups"])
        leases = (await h.get("/apis/coordination.k8s.io/v1")).json()
        assert leases["resources"][0]["kind"] == "Lease"
        assert (await h.get("/readyz")).status_code == 200


async def test_restart_keeps_everything(settings: Settings) -> None:
    cp = ControlPlane(settings)
    await cp.start()
    async with Client(cp.url) as c:
        made = await c.create(pod("a"))
    await cp.stop()
    cp2 = ControlPlane(settings)
    await cp2.start()
    try:
        async with Client(cp2.url) as c:
            got = await c.get(Pod, "a", "default")
            assert got.metadata.uid == made.metadata.uid
            assert got.metadata.resource_version == made.metadata.resource_version
    finally:
        await cp2.stop()


async def test_busy_port_is_a_clear_error(controlplane: ControlPlane, tmp_path: Any) -> None:
    port = controlplane.url.rsplit(":", 1)[1]
    second = ControlPlane(Settings(data_dir=tmp_path / "other", listen=f"127.0.0.1:{port}"))
    with pytest.raises(ControlPlaneError) as exc:
        await second.start()
    assert str(exc.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"


async def test_each_warning_is_its_own_header(controlplane: ControlPlane) -> None:
    warnings: list[str] = []
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "datta": {}, "extra": 1}
    async with Client(controlplane.url, on_warning=warnings.append) as c:
        await c.create_raw(_kind("ConfigMap"), body)
    assert sorted(warnings) == ['unknown field "datta"', 'unknown field "extra"']


def _kind(kind: str) -> Any:
    from controlplane.api import by_kind

    return by_kind(kind)


async def test_connections_do_not_wait_for_nagle(controlplane: ControlPlane) -> None:
    """Without TCP_NODELAY every request on a reused connection waits for a delayed ACK (~40 ms)."""
    import socket

    assert controlplane._uvicorn is not None
    listener = controlplane._uvicorn.servers[0].sockets[0]
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert controlplane._uvicorn.config.timeout_keep_alive > 5  # longer than httpx keeps idle connections
