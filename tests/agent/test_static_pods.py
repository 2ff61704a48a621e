"""Static pods (``agent.static_pods``): the file source on its own, then an agent on the hollow runtime
running a folder's pods with no control plane at all (a closed loopback port), and the mirror pods it
keeps in a real control plane on loopback once there is one."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import msgspec
import pytest

from agent.agent import POD_CIDR_FILE, Agent
from agent.hollow import HOLLOW_MACHINE
from agent.runtime.base import SandboxInfo
from agent.runtime.hollow import HollowRuntime
from agent.static_pods import (
    CONFIG_HASH,
    CONFIG_MIRROR,
    CONFIG_SEEN,
    CONFIG_SOURCE,
    StaticPods,
    is_mirror,
    static_pod,
)
from controlplane.api import Node, Pod, ReplicationController
from controlplane.client import Client, NotFound
from controlplane.client.manifests import ManifestError
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import eventually, free_port

from .test_agent_hollow import settings as agent_settings

NODE = "node-1"
WEB = """apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: app
    image: busybox
"""


def edited(text: str, image: str = "busybox:edited") -> str:
    return text.replace("image: busybox\n", f"image: {image}\n")


# --- the file source on its own ----------------------------------------------------------------


def test_a_file_becomes_a_pod_of_this_node_with_a_content_hash_uid() -> None:
    pod = static_pod(WEB, "/etc/pods/web.yaml", NODE)
    assert pod.metadata.name == "web-node-1" and pod.metadata.namespace == "default"
    assert pod.spec.node_name == NODE
    notes = pod.metadata.annotations or {}
    assert notes[CONFIG_SOURCE] == "file" and notes[CONFIG_HASH] == pod.metadata.uid and notes[CONFIG_SEEN]
    assert pod.metadata.labels == {"app": "web"}
    # The same file on the same node: the same uid (an agent restart adopts); anything else: another.
    assert static_pod(WEB, "/elsewhere/web.yaml", NODE).metadata.uid == pod.metadata.uid
    assert static_pod(WEB, "web.yaml", "node-2").metadata.uid != pod.metadata.uid
    assert static_pod(edited(WEB), "web.yaml", NODE).metadata.uid != pod.metadata.uid
    # A namespace in the file is kept.
    other = static_pod(WEB.replace("  name: web\n", "  name: web\n  namespace: ops\n"), "w.yaml", NODE)
    assert other.metadata.namespace == "ops"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: Pod\nmetadata: {name: [unclosed\n", "web.yaml"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "exactly one Pod, found ConfigMap"),
        (WEB + "---\n" + WEB, "exactly one Pod, found Pod, Pod"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n", "no containers"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: 7}\n", "not a valid Pod"),
    ],
)
def test_a_broken_file_is_one_line_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ManifestError) as info:
        static_pod(text, "/etc/pods/web.yaml", NODE)
    message = str(info.value)
    assert problem in message and "/etc/pods/web.yaml" in message and "\n" not in message


async def test_the_folder_source_adds_edits_keeps_broken_and_removes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    changes: list[str] = []
    source = StaticPods(tmp_path, NODE, changes.append, debounce_ms=50)
    (tmp_path / "web.yaml").write_text(WEB)
    (tmp_path / ".hidden.yaml").write_text(WEB.replace("name: web", "name: hidden"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    await source.load()
    assert changes == ["default/web-node-1"] and set(source.pods) == {"default/web-node-1"}
    first = source.pods["default/web-node-1"].metadata.uid
    source.start()
    try:
        # A new file: its pod appears.
        (tmp_path / "db.json").write_text(
            msgspec.json.encode(
                {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "metadata": {"name": "db"},
                    "spec": {"containers": [{"name": "db", "image": "busybox"}]},
                }
            ).decode()
        )

        async def db() -> bool:
            return "default/db-node-1" in source.pods

        await eventually(db, "the new file's pod")
        # An edit: the same key, a new uid, reported as a change.
        changes.clear()
        (tmp_path / "web.yaml").write_text(edited(WEB))

        async def replaced() -> str | None:
            pod = source.get("default/web-node-1")
            return pod.metadata.uid if pod is not None and pod.metadata.uid != first else None

        second = await eventually(replaced, "the edited pod")
        assert changes == ["default/web-node-1"]
        # A broken file: one error line naming it; the pod it held stays as it was.
        changes.clear()
        with caplog.at_level(logging.ERROR, logger="agent.static_pods"):
            (tmp_path / "web.yaml").write_text("kind: Pod\nmetadata: {name: [oops\n")

            async def reported() -> bool:
                return str(tmp_path / "web.yaml") in source.errors

            await eventually(reported, "the broken file reported")
        lines = [r.getMessage() for r in caplog.records if r.name == "agent.static_pods"]
        assert len(lines) == 1 and str(tmp_path / "web.yaml") in lines[0], lines
        assert (source.get("default/web-node-1") or _no()).metadata.uid == second
        assert changes == []
        # Fixed again with the edited content: the same uid as before it broke, so no change at all.
        (tmp_path / "web.yaml").write_text(edited(WEB))

        async def healed() -> bool:
            return not source.errors

        await eventually(healed, "the file parsing again")
        assert (source.get("default/web-node-1") or _no()).metadata.uid == second and changes == []
        # A deleted file: its pod goes.
        (tmp_path / "db.json").unlink()

        async def db_gone() -> bool:
            return "default/db-node-1" not in source.pods

        await eventually(db_gone, "the deleted file's pod gone")
        assert "default/db-node-1" in changes
    finally:
        await source.stop()


# --- an agent with static pods ------------------------------------------------------------------


def sandboxes(runtime: HollowRuntime, name: str = "web-node-1") -> list[SandboxInfo]:
    return [s for s in runtime.sandboxes.values() if s.name == name]


def running(runtime: HollowRuntime, uid: str | None = None) -> SandboxInfo | None:
    """The static pod's one sandbox, with its container running (and of ``uid``, if given)."""
    mine = sandboxes(runtime)
    box = mine[0] if len(mine) == 1 else None
    app = box.latest("app") if box is not None else None
    ok = box is not None and app is not None and app.state == "running" and uid in (None, box.uid)
    return box if ok else None


class RecordingNetwork:
    """A pod network that only notes the podCIDR it was started with."""

    def __init__(self) -> None:
        self.started: list[str | None] = []

    async def start(self, pod_cidr: str | None) -> None:
        if not pod_cidr:
            raise ValueError("no podCIDR")
        self.started.append(pod_cidr)

    async def attach(self, pod: Pod, sandbox: SandboxInfo) -> str | None:
        return "10.9.0.2"

    async def detach(self, pod_uid: str, sandbox: SandboxInfo) -> None:
        return None

    async def restore(self, sandboxes: list[SandboxInfo]) -> None:
        return None


def static_agent(
    client: Client,
    runtime: HollowRuntime,
    folder: Path,
    data: Path,
    network: RecordingNetwork | None = None,
) -> Agent:
    s = agent_settings(NODE)
    s.pod_manifests = folder
    s.data_dir = data
    s.connect_retry = 0.2
    return Agent(client, runtime, s, machine=HOLLOW_MACHINE, network=network)


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[Client]:
    """A client for a control plane that is not there: every request is refused at once."""
    async with Client(f"http://127.0.0.1:{free_port()}") as c:
        yield c


async def test_static_pods_run_edit_and_stop_with_no_control_plane(offline: Client, tmp_path: Path) -> None:
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    runtime = HollowRuntime(NODE)
    network = RecordingNetwork()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / POD_CIDR_FILE).write_text("10.9.0.0/24\n")  # given by a control plane long ago
    agent = static_agent(offline, runtime, folder, tmp_path / "data", network=network)
    await agent.start()  # returns although nothing answers
    try:
        assert network.started == ["10.9.0.0/24"]
        first = await eventually(lambda: _value(running(runtime)), "the static pod running")
        assert first.uid == static_pod(WEB, "x", NODE).metadata.uid
        # An edit replaces it: the old sandbox goes, one of the new uid runs.
        (folder / "web.yaml").write_text(edited(WEB))
        want = static_pod(edited(WEB), "x", NODE).metadata.uid
        second = await eventually(lambda: _value(running(runtime, want)), "the edited pod replacing it")
        assert second.id != first.id
        # A broken file leaves it alone.
        (folder / "web.yaml").write_text("kind: Pod\nspec: [\n")
        await eventually(lambda: _value(str(folder / "web.yaml") in (agent.static or _no()).errors), "error")
        for _ in range(3):  # a few resyncs later the same sandbox still runs
            agent.workers.enqueue("default/web-node-1")
            await eventually(lambda: _value(len(agent.workers.queue) == 0), "the queue drained")
        assert (running(runtime, want) or _no()).id == second.id
        # A deleted file stops it.
        (folder / "web.yaml").unlink()
        await eventually(lambda: _value(not sandboxes(runtime)), "the static pod stopped")
    finally:
        await agent.stop()


async def test_an_unchanged_file_is_adopted_after_an_agent_restart(offline: Client, tmp_path: Path) -> None:
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    runtime = HollowRuntime(NODE)
    network = RecordingNetwork()
    agent = static_agent(offline, runtime, folder, tmp_path / "data", network=network)
    agent.settings.pod_cidr = "10.8.0.0/24"
    await agent.start()
    try:
        box = await eventually(lambda: _value(running(runtime)), "the static pod running")
    finally:
        await agent.stop()
    again = static_agent(offline, runtime, folder, tmp_path / "data", network=network)
    again.settings.pod_cidr = "10.8.0.0/24"
    await again.start()
    try:
        for _ in range(3):
            again.workers.enqueue("default/web-node-1")
            await eventually(lambda: _value(len(again.workers.queue) == 0), "the queue drained")
        same = running(runtime) or _no()
        assert same.id == box.id and (same.latest("app") or _no()).attempt == 0
        assert network.started == ["10.8.0.0/24", "10.8.0.0/24"]
    finally:
        await again.stop()


async def test_no_pod_cidr_at_all_is_one_clear_error(offline: Client, tmp_path: Path) -> None:
    folder = tmp_path / "pods"
    folder.mkdir()
    agent = static_agent(offline, HollowRuntime(NODE), folder, tmp_path / "data", network=RecordingNetwork())
    try:
        with pytest.raises(ValueError, match="--pod-cidr"):
            await agent.start()
    finally:
        await agent.stop()


# --- mirror pods ---------------------------------------------------------------------------------


async def mirror(client: Client, name: str = "web-node-1") -> Pod | None:
    try:
        return await client.get(Pod, name, "default")
    except NotFound:
        return None


async def test_mirror_pods_follow_static_pods(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    runtime = HollowRuntime(NODE)
    agent = static_agent(client, runtime, folder, tmp_path / "data")
    await agent.start()
    try:
        static_uid = static_pod(WEB, "x", NODE).metadata.uid or ""

        async def running_mirror(hash_: str = static_uid) -> Pod | None:
            pod = await mirror(client)
            ok = (
                pod is not None
                and (pod.metadata.annotations or {}).get(CONFIG_MIRROR) == hash_
                and pod.status.phase == "Running"
                and pod.metadata.deletion_timestamp is None
            )
            return pod if ok else None

        first = await eventually(running_mirror, "a Running mirror pod")
        node = await client.get(Node, NODE)
        assert is_mirror(first) and first.spec.node_name == NODE
        notes = first.metadata.annotations or {}
        assert notes[CONFIG_SOURCE] == "file" and notes[CONFIG_HASH] == static_uid
        refs = first.metadata.owner_references or []
        assert [(r.kind, r.name, r.uid, r.controller) for r in refs] == [
            ("Node", NODE, node.metadata.uid, True)
        ]
        assert first.metadata.uid != static_uid  # the API's own object
        box = running(runtime) or _no()
        assert box.uid == static_uid
        # Deleting the mirror through the API does not stop the static pod: the mirror comes back.
        await client.delete(Pod, "web-node-1", "default")

        async def recreated() -> Pod | None:
            pod = await running_mirror()
            return pod if pod is not None and pod.metadata.uid != first.metadata.uid else None

        await eventually(recreated, "the mirror pod recreated")
        assert (running(runtime) or _no()).id == box.id
        # An edit: a new static pod and a new mirror with the new hash.
        (folder / "web.yaml").write_text(edited(WEB))
        new_uid = static_pod(edited(WEB), "x", NODE).metadata.uid or ""
        await eventually(lambda: running_mirror(new_uid), "the mirror of the edited pod")
        await eventually(lambda: _value(running(runtime, new_uid)), "the edited pod running")
        # The file deleted: the pod stops and its mirror goes.
        (folder / "web.yaml").unlink()

        async def both_gone() -> bool:
            return not sandboxes(runtime) and await mirror(client) is None

        await eventually(both_gone, "the static pod and its mirror gone")
    finally:
        await agent.stop()


async def test_a_replication_controller_does_not_adopt_a_mirror_pod(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    runtime = HollowRuntime(NODE)
    agent = static_agent(client, runtime, folder, tmp_path / "data")
    await agent.start()
    try:
        await eventually(lambda: mirror(client), "the mirror pod")
        rc = {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"app": "web"},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]},
                },
            },
        }
        await client.create(msgspec.convert(rc, ReplicationController))

        async def own_replica() -> bool:
            pods = (await client.list(Pod, "default", label_selector="app=web")).items
            return any(p.metadata.name != "web-node-1" for p in pods)

        await eventually(own_replica, "the RC creating its own replica beside the mirror")
        got = await mirror(client) or _no()
        assert [r.kind for r in got.metadata.owner_references or []] == ["Node"]
    finally:
        await agent.stop()


async def test_the_mirror_appears_when_the_control_plane_starts_later(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    runtime = HollowRuntime(NODE)
    where = f"127.0.0.1:{port}"
    cp = ControlPlane(Settings(data_dir=tmp_path / "cp", listen=where, event_sweep_interval=3600))
    async with Client(f"http://127.0.0.1:{port}") as client:
        agent = static_agent(client, runtime, folder, tmp_path / "data", network=RecordingNetwork())
        agent.settings.pod_cidr = "10.7.0.0/24"
        try:
            await agent.start()
            box = await eventually(lambda: _value(running(runtime)), "the static pod running offline")
            await cp.start()

            async def running_mirror() -> Pod | None:
                pod = await mirror(client)
                return pod if pod is not None and pod.status.phase == "Running" else None

            await eventually(running_mirror, "the mirror pod once the control plane is up", 30)
            assert (running(runtime) or _no()).id == box.id  # the pod never restarted
            node = await client.get(Node, NODE)
            # The node's own podCIDR is remembered for the next start without a control plane.
            assert node.spec.pod_cidr
            assert (tmp_path / "data" / POD_CIDR_FILE).read_text().strip() == node.spec.pod_cidr
        finally:
            await agent.stop()
            await cp.stop()


def _no() -> NoReturn:
    raise AssertionError("expected a value")


async def _value(value: object) -> object:
    return value


# --- the command -------------------------------------------------------------------------------

PEA = str(Path(sys.executable).with_name("pea"))


async def test_pea_agent_runs_static_pods_before_there_is_a_control_plane(tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    where = f"127.0.0.1:{port}"
    args = ["agent", "--runtime", "hollow", "--node-name", NODE, "--node-ip", "127.0.0.1"]
    args += ["--pod-manifests", str(folder), "--data-dir", str(tmp_path / "data"), "-s", f"http://{where}"]
    proc = await asyncio.create_subprocess_exec(
        PEA, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    cp = ControlPlane(Settings(data_dir=tmp_path / "cp", listen=where, event_sweep_interval=3600))
    started = False
    try:
        assert proc.stdout is not None
        seen = b""
        while b"running" not in seen:  # it starts although nothing answers on the port
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, seen.decode()
            seen += line
        await cp.start()
        started = True
        async with Client(cp.url) as client:

            async def running_mirror() -> Pod | None:
                pod = await mirror(client)
                return pod if pod is not None and pod.status.phase == "Running" else None

            got = await eventually(running_mirror, "the mirror pod once the control plane is up", 30)
            assert is_mirror(got)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, (seen + out).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if started:
            await cp.stop()


async def test_pea_agent_refuses_a_missing_folder_and_a_bad_pod_cidr(tmp_path: Path) -> None:
    for extra, problem in (
        (["--pod-manifests", str(tmp_path / "nope")], "--pod-manifests"),
        (["--pod-cidr", "ten"], "--pod-cidr"),
    ):
        proc = await asyncio.create_subprocess_exec(
            PEA, "agent", "--runtime", "hollow", "-s", f"http://127.0.0.1:{free_port()}", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode != 0
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and problem in lines[0], err.decode()
