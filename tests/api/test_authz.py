"""Authorization: NodeRestriction for node identities, admins and users unaffected, anonymous refused, and
the agent endpoint serving only the API server (with each node's own token, no shared secret)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from agent.agent import Agent, AgentSettings
from agent.hollow import HOLLOW_MACHINE
from agent.runtime.hollow import HollowRuntime
from controlplane.api import ConfigMap, Lease, Node, ObjectMeta, Pod, Secret
from controlplane.api.core import EnvVar
from controlplane.client import ApiError, Client, NotFound
from controlplane.server.authz import references
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import busybox_pod, eventually, serving

TOKENS = {
    "admin": ("admin-token", "admin", '"system:masters"'),
    "n1": ("n1-token", "system:node:n1", '"system:nodes"'),
    "n2": ("n2-token", "system:node:n2", '"system:nodes"'),
    "alice": ("alice-token", "alice", ""),
}
MIRROR = "kubernetes.io/config.mirror"


@pytest.fixture
async def cp(settings: Settings, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    token_file = tmp_path / "tokens.csv"
    lines = [
        f"{token},{user},{user}" + (f",{groups}" if groups else "") for token, user, groups in TOKENS.values()
    ]
    token_file.touch(mode=0o600)
    token_file.write_text("\n".join(lines) + "\n")
    settings.token_file = token_file
    async with serving(settings) as plane:
        yield plane


@pytest.fixture
async def clients(cp: ControlPlane) -> AsyncIterator[dict[str, Client]]:
    made = {who: Client(cp.url, token) for who, (token, _, _) in TOKENS.items()}
    try:
        yield made
    finally:
        for c in made.values():
            await c.close()


def node(name: str) -> Node:
    return Node(metadata=ObjectMeta(name=name))


def lease(name: str, namespace: str = "kube-node-lease") -> Lease:
    return msgspec.convert({"metadata": {"name": name, "namespace": namespace}, "spec": {}}, Lease)


async def refused(call: Any, code: int = 403) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code == code, caught.value.status
    return caught.value


async def test_a_node_writes_only_its_own_node_and_lease(clients: dict[str, Client]) -> None:
    admin, n1 = clients["admin"], clients["n1"]
    steered = node("n1")
    steered.metadata.labels = {"node-restriction.kubernetes.io/pool": "secure"}
    err = await refused(n1.create(steered))
    assert err.status.message.endswith(
        'node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/pool'
    )
    await n1.create(node("n1"))
    err = await refused(n1.create(node("n2")))
    assert err.reason == "Forbidden"
    assert err.status.message.startswith(
        'nodes "n2" is forbidden: User "system:node:n1" cannot create resource "nodes" in API group "" '
        "at the cluster scope"
    )
    assert err.status.details is not None and (err.status.details.kind, err.status.details.name) == (
        "nodes",
        "n2",
    )
    await admin.create(node("n2"))
    err = await refused(n1.patch(Node, "n2", {"metadata": {"labels": {"x": "y"}}}))
    assert err.status.message.startswith(
        'nodes "n2" is forbidden: User "system:node:n1" cannot patch resource "nodes" in API group ""'
    )
    await refused(n1.patch(Node, "n2", {"status": {"phase": "Running"}}, subresource="status"))
    await refused(n1.delete(Node, "n2"))
    mine = await n1.patch(Node, "n1", {"metadata": {"labels": {"x": "y"}}})
    assert (mine.metadata.labels or {}).get("x") == "y"
    await n1.patch(Node, "n1", {"status": {"phase": "Running"}}, subresource="status")
    # Nor may it steer workloads to itself: its taints and restricted labels are the admin's.
    await admin.patch(Node, "n1", {"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})
    err = await refused(n1.patch(Node, "n1", {"spec": {"taints": None}}))
    assert err.status.message.endswith('node "n1" is not allowed to modify taints')
    err = await refused(
        n1.patch(Node, "n1", {"metadata": {"labels": {"a.node-restriction.kubernetes.io/b": "c"}}})
    )
    assert err.status.message.endswith("not allowed to modify labels: a.node-restriction.kubernetes.io/b")
    assert (await admin.get(Node, "n1")).spec.taints
    assert len((await n1.list(Node)).items) == 2  # reading every node is fine (routes, the proxy)

    await n1.create(lease("n1"))
    await refused(n1.create(lease("n2")))
    await refused(n1.create(lease("n1", "default")))
    await admin.create(lease("n2"))
    await refused(n1.patch(Lease, "n2", {"spec": {"holderIdentity": "n1"}}, "kube-node-lease"))
    await refused(n1.get(Lease, "n2", "kube-node-lease"))
    await refused(n1.list(Lease, "kube-node-lease"))
    renewed = await n1.patch(Lease, "n1", {"spec": {"holderIdentity": "n1"}}, "kube-node-lease")
    assert renewed.spec.holder_identity == "n1"
    # The admin is unaffected; so is a user without system:masters (peapod has no RBAC).
    await admin.patch(Node, "n1", {"metadata": {"labels": {"by": "admin"}}})
    await clients["alice"].patch(Node, "n2", {"metadata": {"labels": {"by": "alice"}}})


async def test_a_node_touches_only_pods_bound_to_it(clients: dict[str, Client]) -> None:
    admin, n1 = clients["admin"], clients["n1"]
    for name in ("n1", "n2"):
        await admin.create(node(name))
    mine = await admin.create(busybox_pod("mine", "n1", terminationGracePeriodSeconds=30))
    theirs = await admin.create(busybox_pod("theirs", "n2"))
    await admin.create(busybox_pod("pending"))

    mine.status.phase = "Running"
    assert (await n1.replace_status(mine)).status.phase == "Running"
    theirs.status.phase = "Running"
    err = await refused(n1.replace_status(theirs))
    assert err.status.message == (
        'pods "theirs" is forbidden: User "system:node:n1" cannot update resource "pods/status" in API '
        'group "" in the namespace "default": node "n1" can only update pods with spec.nodeName set to itself'
    )
    await refused(n1.patch(Pod, "theirs", {"status": {"phase": "Failed"}}, "default", subresource="status"))
    await refused(n1.delete(Pod, "theirs", "default"))
    await refused(n1.patch(Pod, "mine", {"metadata": {"labels": {"a": "b"}}}, "default"))  # spec: no
    await refused(n1.bind("pending", "default", "n1"))
    await refused(n1.request("POST", "/api/v1/namespaces/default/pods/mine/eviction", body={}))
    await refused(n1.delete_collection(Pod, "default"))
    # A pod that is not a mirror pod, or a mirror pod of another node: refused.
    err = await refused(n1.create(busybox_pod("plain", "n1")))
    assert "can only create mirror pods" in err.status.message
    other_mirror = busybox_pod("other-mirror", "n2")
    other_mirror.metadata.annotations = {MIRROR: "x"}
    await refused(n1.create(other_mirror))
    mirror = busybox_pod("mirror", "n1")
    mirror.metadata.annotations = {MIRROR: "x"}
    # A mirror pod naming a Secret would let the node read it: refused.
    sneaky = busybox_pod("sneaky", "n1", volumes=[{"name": "s", "secret": {"secretName": "any"}}])
    sneaky.metadata.annotations = {MIRROR: "x"}
    err = await refused(n1.create(sneaky))
    assert err.status.message.endswith('node "n1" can not create pods that reference secrets')
    await n1.create(mirror)
    await n1.delete(Pod, "mirror", "default", grace_period_seconds=0)
    assert (await n1.list(Pod, field_selector="spec.nodeName=n1")).items[0].metadata.name == "mine"
    # Finishing a graceful deletion of its own pod: the admin starts it, the node ends it.
    await admin.delete(Pod, "mine", "default")
    await n1.delete(Pod, "mine", "default", grace_period_seconds=0)
    with pytest.raises(NotFound):
        await admin.get(Pod, "mine", "default")
    assert (await admin.get(Pod, "theirs", "default")).status.phase != "Running"


async def test_a_node_reads_only_secrets_its_pods_use(clients: dict[str, Client]) -> None:
    admin, n1, n2 = clients["admin"], clients["n1"], clients["n2"]
    for name in ("n1", "n2"):
        await admin.create(node(name))
    for name in ("used", "env-secret", "pull", "unused"):
        await admin.create(Secret(metadata=ObjectMeta(name=name), data={"k": "dg=="}))
    for name in ("config", "other-config"):
        await admin.create(ConfigMap(metadata=ObjectMeta(name=name), data={"k": "v"}))
    pod = busybox_pod(
        "user",
        "n1",
        volumes=[
            {"name": "s", "secret": {"secretName": "used"}},
            {"name": "c", "configMap": {"name": "config"}},
        ],
        imagePullSecrets=[{"name": "pull"}],
    )
    pod.spec.containers[0].env = msgspec.convert(
        [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
        list[EnvVar],
    )
    assert references(pod, "Secret") == {"used", "env-secret", "pull"}
    assert references(pod, "ConfigMap") == {"config"}
    await admin.create(pod)
    for name in ("used", "env-secret", "pull"):
        assert (await n1.get(Secret, name, "default")).data == {"k": "dg=="}
    assert (await n1.get(ConfigMap, "config", "default")).data == {"k": "v"}
    err = await refused(n1.get(Secret, "unused", "default"))
    assert err.status.message.endswith("no relationship found between node 'n1' and this object")
    await refused(n1.get(ConfigMap, "other-config", "default"))
    await refused(n2.get(Secret, "used", "default"))  # the pod is bound to n1, not n2
    await refused(n1.get(Secret, "peapod-agent-proxy", "kube-system"))
    await refused(n1.list(Secret, "default"))
    await refused(n1.request("GET", "/api/v1/secrets", params={"watch": "true"}))
    await refused(n1.create(Secret(metadata=ObjectMeta(name="new"), data={})))
    await refused(n1.delete(Secret, "used", "default"))
    await refused(n1.patch(ConfigMap, "config", {"data": {"k": "w"}}, "default"))
    assert (await clients["alice"].list(Secret, "default")).items  # users keep full access


async def test_other_writes_and_streams_are_refused_to_nodes(cp: ControlPlane) -> None:
    n1 = {"Authorization": "Bearer n1-token"}
    async with httpx.AsyncClient(base_url=cp.url, headers=n1) as h:
        for method, path in [
            ("POST", "/api/v1/namespaces"),
            ("POST", "/api/v1/namespaces/default/services"),
            ("POST", "/api/v1/namespaces/default/replicationcontrollers"),
            ("GET", "/api/v1/namespaces/default/replicationcontrollers"),
            ("DELETE", "/api/v1/namespaces/default"),
            ("GET", "/api/v1/namespaces/default/pods/p/log"),
            ("GET", "/api/v1/namespaces/default/pods/p/exec?command=sh&stdout=true"),
            ("POST", "/api/v1/nodes/n2/proxy/images/load"),
        ]:
            r = await h.request(method, path, json={"metadata": {"name": "x"}})
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["reason"] == "Forbidden" and 'User "system:node:n1"' in r.json()["message"]
        for path in ["/api/v1/namespaces", "/api/v1/services", "/api/v1/endpoints", "/api/v1/events"]:
            assert (await h.get(path)).status_code == 200, path
        event = {
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1"},
            "reason": "Starting",
        }
        assert (await h.post("/api/v1/namespaces/default/events", json=event)).status_code == 201


async def test_anonymous_requests_are_refused_but_health(cp: ControlPlane) -> None:
    async with httpx.AsyncClient(base_url=cp.url) as h:
        for path in ("/healthz", "/livez", "/readyz", "/version"):
            assert (await h.get(path)).status_code == 200, path
        for path in (
            "/api",
            "/apis",
            "/api/v1",
            "/openapi/v3",
            "/api/v1/nodes",
            "/api/v1/namespaces/default/pods/p/log",
        ):
            r = await h.get(path)
            assert r.status_code == 401 and r.json()["reason"] == "Unauthorized", path
        r = await h.post("/api/v1/nodes/n1/proxy/images/load", content=b"x")
        assert r.status_code == 401


async def test_an_agent_with_a_node_token_works_and_serves_only_the_api_server(
    cp: ControlPlane, clients: dict[str, Client], tmp_path: Path
) -> None:
    """The whole agent under NodeRestriction: register, lease, pod status, a Secret for env, events, the
    graceful deletion; and its endpoint takes the API server's n1 token, not n2's nor the admin's."""
    admin = clients["admin"]
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "static.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static}\n"
        "spec: {containers: [{name: c, image: busybox}]}\n"
    )
    settings = AgentSettings(
        listen="127.0.0.1:0",
        node_name="n1",
        node_ip="127.0.0.1",
        lease_interval=0.2,
        status_interval=0.5,
        resync_interval=0.5,
        pod_manifests=manifests,
    )
    agent = Agent(clients["n1"], HollowRuntime("n1"), settings, machine=HOLLOW_MACHINE)
    await agent.start()
    try:
        await admin.create(Secret(metadata=ObjectMeta(name="s"), data={"k": "dg=="}))
        pod = busybox_pod("p", "n1", terminationGracePeriodSeconds=5)
        pod.spec.containers[0].env = msgspec.convert(
            [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            list[EnvVar],
        )
        await admin.create(pod)

        async def running() -> bool:
            return (await admin.get(Pod, "p", "default")).status.phase == "Running"

        await eventually(running, "the pod running on n1", timeout=60)

        async def mirror_running() -> bool:
            try:
                mirror = await admin.get(Pod, "static-n1", "default")
            except NotFound:
                return False
            return mirror.status.phase == "Running" and MIRROR in (mirror.metadata.annotations or {})

        await eventually(mirror_running, "the static pod's mirror pod, running", timeout=60)
        assert await admin.get(Lease, "n1", "kube-node-lease")
        registered = await admin.get(Node, "n1")
        address = (registered.metadata.annotations or {}).get("peapod.io/agent-address", "")
        async with httpx.AsyncClient(base_url=f"http://{address}") as h:
            for token, code in [(None, 401), ("n2-token", 403), ("admin-token", 403)]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                r = await h.post("/images/load", content=b"img", headers=headers)
                assert r.status_code == code, (token, r.text)
                r = await h.get("/containerLogs/default/p/c", headers=headers)
                assert r.status_code == code, (token, r.text)
        # Through the API server (which shows n1's agent n1's token) the admin's image reaches it.
        from tui.cli import run

        archive = tmp_path / "img.tar"
        archive.write_bytes(b"not empty")
        out, err = io.StringIO(), io.StringIO()
        code = await run(
            ["image", "load", str(archive), "--node", "n1", "-s", cp.url, "--token", "admin-token"], out, err
        )
        assert code == 0, err.getvalue()
        assert out.getvalue().strip() == "node/n1: loaded localhost/hollow:latest"
        out, err = io.StringIO(), io.StringIO()
        code = await run(
            ["image", "load", str(archive), "--node", "n1", "-s", cp.url, "--token", "n2-token"], out, err
        )
        assert code == 1 and "forbidden" in err.getvalue()

        await admin.delete(Pod, "p", "default")

        async def gone() -> bool:
            try:
                await admin.get(Pod, "p", "default")
            except NotFound:
                return True
            return False

        await eventually(gone, "the agent finishing the pod's graceful deletion", timeout=60)
    finally:
        await agent.stop()
