"""Static pods on real Podman: an agent started with no control plane at all (its API address is a
closed loopback port) runs the pods of its folder on the pod network of ``--pod-cidr``; edits replace
them, a deleted file stops its pod, a broken one leaves it alone; once a control plane starts on that
port the agent registers and each static pod gets a mirror pod with its real status, which comes back
when deleted through the API. The pod network lives in a node namespace of the test's own
(``nodenet.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from agent.agent import Agent
from agent.network.bridge import BridgeNetwork
from agent.runtime.base import LABEL_NODE, LABEL_UID
from agent.runtime.images import BUSYBOX_IMAGE
from agent.runtime.podman_service import PodmanService
from agent.static_pods import CONFIG_MIRROR, CONFIG_SOURCE, static_pod
from controlplane.api import Node, Pod
from controlplane.client import Client, NotFound
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import free_port

from .cluster import eventually, start_agent
from .conftest import NODE, MakePod
from .nodenet import NodeNet, http_get, node_namespace

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

POD_CIDR = "10.244.9.0/24"
KEY = f"default/web-{NODE}"


@pytest_asyncio.fixture(loop_scope="session")
async def nodenet() -> AsyncIterator[NodeNet]:
    async with node_namespace() as net:
        yield net


def web(text: str) -> str:
    """A static pod file: busybox httpd on port 80 serving ``text``."""
    script = f"mkdir -p /var/www && echo {text} > /var/www/index.html && exec httpd -f -p 80 -h /var/www"
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "static-web"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "httpd", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]}],
        },
    }
    return yaml.safe_dump(body)


def uid_of(text: str) -> str:
    return static_pod(text, "x", NODE).metadata.uid or ""


async def podman_uids(api: httpx.AsyncClient) -> set[str]:
    """The pod uids of this node's Podman pods."""
    pods = (await api.get("/pods/json")).json() or []
    return {p["Labels"].get(LABEL_UID, "") for p in pods if p["Labels"].get(LABEL_NODE) == NODE}


async def page(netns: str, host: str) -> str | None:
    try:
        return await http_get(netns, host, 80)
    except OSError:
        return None


def static_status(agent: Agent, uid: str) -> Pod | None:
    """The static pod of ``uid`` if it runs, with an address."""
    pod = agent.static.get(KEY) if agent.static is not None else None
    ok = (
        pod is not None
        and pod.metadata.uid == uid
        and pod.status.phase == "Running"
        and bool(pod.status.pod_ip)
        and all(s.state and s.state.running for s in pod.status.container_statuses or [])
    )
    return pod if ok else None


async def value(x: Any) -> Any:
    return x


async def test_static_pods_with_no_control_plane_then_mirrored(
    podman_service: PodmanService,
    podman_api: httpx.AsyncClient,
    make_pod: MakePod,
    nodenet: NodeNet,
    tmp_path: Path,
) -> None:
    port = free_port()
    folder = tmp_path / "pods"
    folder.mkdir()
    manifest = folder / "web.yaml"
    manifest.write_text(web("static-v1"))
    cp = ControlPlane(
        Settings(data_dir=tmp_path / "cp", listen=f"127.0.0.1:{port}", event_sweep_interval=3600)
    )
    cp_started = False
    async with Client(f"http://127.0.0.1:{port}") as client:
        network = BridgeNetwork(tmp_path / "network", netns=nodenet.node)
        agent = start_agent(
            client,
            podman_service,
            network,
            nodenet.node_ip,
            tmp_path / "agent",
            pod_manifests=folder,
            pod_cidr=POD_CIDR,
            connect_retry=0.3,
        )
        agent.settings.data_dir = tmp_path / "agent"
        try:
            await agent.start()  # nothing listens on the port: it starts anyway
            # The pod runs in Podman with an address of --pod-cidr, reachable from the node.
            v1 = uid_of(web("static-v1"))
            pod = await eventually(lambda: value(static_status(agent, v1)), "the static pod running")
            ip = pod.status.pod_ip or ""
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR)
            assert "static-v1" in await eventually(lambda: page(nodenet.node, ip), "its page")
            assert v1 in await podman_uids(podman_api)
            first = await agent.workers._sandbox(v1)
            assert first is not None

            # An edit replaces it: a new uid, a new Podman pod, the old one gone.
            manifest.write_text(web("static-v2"))
            v2 = uid_of(web("static-v2"))
            pod = await eventually(lambda: value(static_status(agent, v2)), "the edited pod running")
            assert await podman_uids(podman_api) == {v2}
            second = await agent.workers._sandbox(v2)
            assert second is not None and second.id != first.id
            ip = pod.status.pod_ip or ""
            assert "static-v2" in await eventually(lambda: page(nodenet.node, ip), "the new page")

            # A broken file is reported and its pod left alone.
            manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: [web\n")
            assert agent.static is not None
            static = agent.static
            await eventually(lambda: value(str(manifest) in static.errors), "the broken file reported")
            assert str(manifest) in static.errors[str(manifest)]
            await agent.workers.sync(KEY)  # what any resync would do: nothing
            again = await agent.workers._sandbox(v2)
            assert again is not None and again.id == second.id and again.infra_running

            # A deleted file stops its pod.
            manifest.unlink()

            async def stopped() -> bool:
                return v2 not in await podman_uids(podman_api)

            await eventually(stopped, "the static pod stopped")

            # Back again, then a control plane on the agent's port: the mirror pod appears, Running.
            manifest.write_text(web("static-v1"))
            pod = await eventually(lambda: value(static_status(agent, v1)), "the static pod back")
            box = await agent.workers._sandbox(v1)
            assert box is not None
            await cp.start()
            cp_started = True

            async def running_mirror() -> Pod | None:
                try:
                    got = await client.get(Pod, f"web-{NODE}", "default")
                except NotFound:
                    return None
                ok = got.status.phase == "Running" and got.metadata.deletion_timestamp is None
                return got if ok and got.status.pod_ip else None

            mirror = await eventually(running_mirror, "the mirror pod, Running", 60)
            notes = mirror.metadata.annotations or {}
            assert notes[CONFIG_MIRROR] == v1 and notes[CONFIG_SOURCE] == "file"
            assert mirror.spec.node_name == NODE and mirror.status.pod_ip == pod.status.pod_ip
            node = await client.get(Node, NODE)
            assert [(r.kind, r.uid) for r in mirror.metadata.owner_references or []] == [
                ("Node", node.metadata.uid)
            ]

            # Deleting the mirror through the API does not stop the static pod: the mirror comes back.
            await client.delete(Pod, f"web-{NODE}", "default")

            async def recreated() -> Pod | None:
                got = await running_mirror()
                return got if got is not None and got.metadata.uid != mirror.metadata.uid else None

            await eventually(recreated, "the mirror pod recreated", 60)
            still = await agent.workers._sandbox(v1)
            assert still is not None and still.id == box.id and still.infra_running
            latest = static_status(agent, v1) or pod
            assert [s.restart_count for s in latest.status.container_statuses or []] == [0]
        finally:
            await agent.stop()
            if cp_started:
                await cp.stop()
