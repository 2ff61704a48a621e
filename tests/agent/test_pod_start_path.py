"""What makes a pod start cheap, without Podman: the Podman runtime's per-pod listing and image-list
reuse (against a fake libpod answering over httpx's MockTransport), and the pod workers' use of them
(on the hollow runtime, against a real control plane): one pod's sandboxes only, no listing again
when a sync changed nothing, events posted in the background, and a bound on concurrent syncs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec

from agent.pods import PodWorkers
from agent.runtime.base import LABEL_NAME, LABEL_NAMESPACE, LABEL_NODE, LABEL_UID, SandboxInfo
from agent.runtime.hollow import HollowRuntime
from agent.runtime.podman import API, PodmanRuntime
from controlplane.api import Event, Pod
from controlplane.client import Client, EventRecorder
from tests.support import eventually

NODE = "node-1"
BUSYBOX_ID = "a" * 64


class FakeLibpod:
    """Answers the few libpod list endpoints the lookups use, and notes every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.images: list[dict[str, Any]] = [{"Id": BUSYBOX_ID, "Names": ["localhost/busybox:latest"]}]
        self.pods: list[dict[str, Any]] = []
        self.containers: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None  # when set, image lists wait for it

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(API)
        if path == "/images/json":
            if self.gate is not None:
                await self.gate.wait()
            return httpx.Response(200, json=self.images)
        if path == "/pods/json":
            return httpx.Response(200, json=self.pods)
        if path == "/containers/json":
            return httpx.Response(200, json=self.containers)
        return httpx.Response(404, json={"message": f"no fake for {path}"})

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path == API + path)

    def filters(self, path: str) -> list[dict[str, list[str]]]:
        return [json.loads(r.url.params["filters"]) for r in self.requests if r.url.path == API + path]


def runtime_on(fake: FakeLibpod) -> PodmanRuntime:
    runtime = PodmanRuntime(Path("/nonexistent/podman.sock"), NODE)
    runtime._client = httpx.AsyncClient(
        transport=httpx.MockTransport(fake.handle), base_url="http://podman" + API
    )
    return runtime


async def test_pod_sandboxes_lists_one_pod_by_its_labels() -> None:
    fake = FakeLibpod()
    labels = {LABEL_UID: "u1", LABEL_NAME: "web", LABEL_NAMESPACE: "shop", LABEL_NODE: NODE}
    fake.pods = [{"Id": "pod1", "Labels": labels, "InfraId": "infra1", "Created": "2026-11-23T10:00:00Z"}]
    fake.containers = [
        {"Id": "infra1", "Pod": "pod1", "Labels": labels, "State": "running", "Pid": 42, "IsInfra": True},
        {"Id": "c1", "Pod": "pod1", "State": "running", "Image": "localhost/busybox:latest",
         "Labels": {**labels, "io.peapod.container.name": "app", "io.peapod.container.attempt": "0"}},
    ]  # fmt: skip
    runtime = runtime_on(fake)
    try:
        found = await runtime.pod_sandboxes("shop", "web")
    finally:
        await runtime.close()
    wanted = sorted([f"{LABEL_NODE}={NODE}", f"{LABEL_NAMESPACE}=shop", f"{LABEL_NAME}=web"])
    assert [sorted(f["label"]) for f in fake.filters("/pods/json")] == [wanted]
    assert [sorted(f["label"]) for f in fake.filters("/containers/json")] == [wanted]
    assert len(found) == 1 and found[0].uid == "u1" and found[0].infra_running
    assert found[0].netns == "/proc/42/ns/net"
    assert [(c.name, c.state) for c in found[0].containers] == [("app", "running")]


async def test_image_lookups_share_one_listing() -> None:
    fake = FakeLibpod()
    runtime = runtime_on(fake)
    try:
        fake.gate = asyncio.Event()
        lookups = [asyncio.create_task(runtime.resolve_image("busybox")) for _ in range(5)]
        await asyncio.sleep(0.05)
        fake.gate.set()
        found = await asyncio.gather(*lookups)
        assert found == [("localhost/busybox:latest", "sha256:" + BUSYBOX_ID)] * 5
        assert await runtime.ensure_image("busybox", "IfNotPresent") == "sha256:" + BUSYBOX_ID
        assert fake.count("/images/json") == 1  # the concurrent lookups and the next one: one list
    finally:
        await runtime.close()


async def test_a_missing_image_is_looked_for_again_and_loads_are_seen() -> None:
    fake = FakeLibpod()
    runtime = runtime_on(fake)
    try:
        assert await runtime.resolve_image("busybox") is not None
        fake.images.append({"Id": "b" * 64, "Names": ["localhost/redis:7"]})
        # Not in the reused list: listed again before saying it is missing, so a new image is found.
        assert await runtime.resolve_image("redis:7") == ("localhost/redis:7", "sha256:" + "b" * 64)
        assert fake.count("/images/json") == 2
        assert await runtime.resolve_image("nginx") is None
        assert fake.count("/images/json") == 3
        runtime.forget_images()  # what load_image and a failed create do
        assert await runtime.resolve_image("busybox") is not None
        assert fake.count("/images/json") == 4
    finally:
        await runtime.close()


class CountingRuntime(HollowRuntime):
    """The hollow runtime with the per-pod lookup, counting the listings."""

    def __init__(self, node_name: str) -> None:
        super().__init__(node_name)
        self.full_lists = 0
        self.pod_lists: list[tuple[str, str]] = []
        self.running = 0
        self.most = 0
        self.release: asyncio.Event | None = None  # when set, sandbox creation waits for it

    async def list_sandboxes(self) -> list[SandboxInfo]:
        self.full_lists += 1
        return await super().list_sandboxes()

    async def pod_sandboxes(self, namespace: str, name: str) -> list[SandboxInfo]:
        self.pod_lists.append((namespace, name))
        return [s for s in self.sandboxes.values() if (s.namespace, s.name) == (namespace, name)]

    async def create_sandbox(self, pod: Pod) -> SandboxInfo:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.release is not None:
                await self.release.wait()
            return await super().create_sandbox(pod)
        finally:
            self.running -= 1


def workers_for(client: Client, runtime: CountingRuntime, **kwargs: Any) -> tuple[PodWorkers, dict[str, Pod]]:
    pods: dict[str, Pod] = {}
    recorder = EventRecorder(client, "kubelet", NODE)
    workers = PodWorkers(client, runtime, NODE, "127.0.0.1", recorder, pods.get, **kwargs)
    return workers, pods


def new_pod(name: str) -> Pod:
    body = {
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]},
    }
    return msgspec.convert(body, Pod)


async def test_a_sync_lists_only_its_pod_and_relists_only_after_a_change(client: Client) -> None:
    runtime = CountingRuntime(NODE)
    workers, pods = workers_for(client, runtime)
    pod = await client.create(new_pod("web"))
    pods["default/web"] = pod
    await workers.sync("default/web")
    # At the start of the sync, and once more after the container was started: this pod's only.
    assert runtime.pod_lists == [("default", "web")] * 2 and runtime.full_lists == 0
    written = await client.get(Pod, "web", "default")
    assert written.status.phase == "Running"
    pods["default/web"] = written
    await workers.sync("default/web")  # nothing to do: one look, no write
    assert len(runtime.pod_lists) == 3 and runtime.full_lists == 0
    assert (
        await client.get(Pod, "web", "default")
    ).metadata.resource_version == written.metadata.resource_version

    async def events() -> set[str] | None:
        got = {
            e.reason for e in (await client.list(Event, "default")).items if e.involved_object.name == "web"
        }
        return got if {"Pulled", "Created", "Started"} <= got else None

    await eventually(events, "the container's events, posted in the background")
    await workers.stop()


async def test_concurrent_syncs_are_bounded_and_each_key_synced_once_at_a_time(client: Client) -> None:
    runtime = CountingRuntime(NODE)
    runtime.release = asyncio.Event()
    workers, pods = workers_for(client, runtime, workers=2)
    for i in range(5):
        pod = await client.create(new_pod(f"p{i}"))
        pods[f"default/p{i}"] = pod
    workers.start()
    try:
        for i in range(5):
            workers.enqueue(f"default/p{i}")
        workers.enqueue("default/p0")  # while queued: still one sync

        async def two_waiting() -> bool:
            return runtime.running == 2

        await eventually(two_waiting, "two syncs under way")
        runtime.release.set()

        async def all_running() -> bool:
            listed = (await client.list(Pod, "default")).items
            return all(p.status.phase == "Running" for p in listed)

        await eventually(all_running, "every pod Running")
        assert runtime.most == 2
        assert len(runtime.sandboxes) == 5
    finally:
        await workers.stop()


async def test_stop_posts_the_queued_events(client: Client) -> None:
    runtime = CountingRuntime(NODE)
    workers, _ = workers_for(client, runtime)
    pod = await client.create(new_pod("quiet"))
    for i in range(3):
        await workers._container_event(pod, "app", "Normal", "Note", f"note {i}")
    await workers.stop()
    got = sorted(e.message or "" for e in (await client.list(Event, "default")).items if e.reason == "Note")
    assert got == ["note 0", "note 1", "note 2"]
