"""Pod volumes on real Podman: VolumeManager prepares them on the node, PodmanRuntime bind-mounts them.

What a Kubernetes user expects to see from inside the containers: an emptyDir shared by two containers,
a Memory emptyDir that is a tmpfs (and gone after ``remove``), a configMap that changes in a running
container after the object changes, secret files with their modes, read-only mounts, subPath, the pod's
managed /etc/hosts, and privileged containers refused unless the node allows them. A control plane of
its own serves the ConfigMaps and Secrets; the agent itself is not involved.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent.mounts import mount_points
from agent.runtime.base import ContainerInfo, ContainerSpec, RuntimeFailure, SandboxInfo
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from agent.volumes import VolumeManager, hosts_file_content
from controlplane.api.core import (
    ConfigMap,
    ConfigMapVolumeSource,
    EmptyDirVolumeSource,
    HostAlias,
    HostPathVolumeSource,
    KeyToPath,
    Pod,
    Secret,
    SecretVolumeSource,
    SecurityContext,
    Volume,
    VolumeMount,
)
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests import support

from .conftest import NODE, MakePod, busybox

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SLEEP = ("sleep", "3600")


@pytest_asyncio.fixture(loop_scope="session")
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    cp = ControlPlane(Settings(data_dir=tmp_path / "cp", listen="127.0.0.1:0", event_sweep_interval=3600))
    await cp.start()
    api = Client(cp.url)
    try:
        yield api
    finally:
        await api.close()
        await cp.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def manager(tmp_path: Path, client: Client) -> AsyncIterator[VolumeManager]:
    """Removes what it prepared, whatever the test did: no tmpfs is left mounted behind."""
    vm = VolumeManager(tmp_path / "pods", client, secrets_in_memory=True)
    try:
        yield vm
    finally:
        await vm.collect(set())


def volume_mount(name: str, path: str, **fields: Any) -> VolumeMount:
    return VolumeMount(name=name, mount_path=path, **fields)


async def start(runtime: PodmanRuntime, manager: VolumeManager, sandbox: SandboxInfo, pod: Pod,
                index: int = 0, attempt: int = 0) -> ContainerInfo:  # fmt: skip
    """What the agent does for one container: its mounts from the manager, create, start."""
    container = pod.spec.containers[index]
    spec = ContainerSpec(container, {}, attempt, mounts=manager.mounts(pod, container))
    info = await runtime.create_container(sandbox, pod, spec)
    await runtime.start_container(info)
    return info


async def run(runtime: PodmanRuntime, info: ContainerInfo, script: str) -> tuple[int, str]:
    result = await runtime.exec(info, ["sh", "-c", script], timeout=20)
    return result.exit_code, result.output.decode(errors="replace")


async def test_two_containers_share_an_empty_dir(
    runtime: PodmanRuntime, manager: VolumeManager, make_pod: MakePod
) -> None:
    pod = make_pod(
        "shared",
        busybox("writer", "sh", "-c", "echo hello from writer > /data/msg; exec sleep 3600",
                volume_mounts=[volume_mount("data", "/data")]),
        busybox("reader", "sh", "-c", "until [ -f /in/msg ]; do sleep 0.1; done; cat /in/msg; sleep 3600",
                volume_mounts=[volume_mount("data", "/in")]),
        volumes=[Volume(name="data", empty_dir=EmptyDirVolumeSource())],
    )  # fmt: skip
    await manager.prepare(pod)
    sandbox = await runtime.create_sandbox(pod)
    writer = await start(runtime, manager, sandbox, pod, 0)
    reader = await start(runtime, manager, sandbox, pod, 1)

    async def read() -> bool:
        return b"hello from writer" in await runtime.logs(reader)

    await support.wait_for(read, "the reader to print what the writer wrote")

    # The volume belongs to the pod: a new attempt of the writer finds the file.
    await runtime.remove_container(writer)
    writer = await start(runtime, manager, sandbox, pod, 0, attempt=1)
    assert await run(runtime, writer, "cat /data/msg") == (0, "hello from writer\n")
    await runtime.remove_sandbox(sandbox, 0)


async def test_memory_empty_dir_is_a_tmpfs_until_removed(
    runtime: PodmanRuntime, manager: VolumeManager, make_pod: MakePod
) -> None:
    pod = make_pod(
        "memory",
        busybox("app", *SLEEP, volume_mounts=[volume_mount("cache", "/cache")]),
        volumes=[Volume(name="cache", empty_dir=EmptyDirVolumeSource(medium="Memory", size_limit="16Mi"))],
    )
    await manager.prepare(pod)
    await manager.prepare(pod)  # every sync: never a second mount on top of the first
    uid = pod.metadata.uid or ""
    volume = manager.volume_path(uid, (pod.spec.volumes or [])[0])
    assert [p.name for p in mount_points(manager.pod_dir(uid))] == ["cache"]
    sandbox = await runtime.create_sandbox(pod)
    app = await start(runtime, manager, sandbox, pod)
    code, out = await run(runtime, app, "grep ' /cache ' /proc/mounts; stat -c %a /cache")
    assert code == 0, out
    fields = out.split()
    assert fields[2] == "tmpfs" and "size=16384k" in fields[3] and fields[-1] == "777", out

    await runtime.remove_sandbox(sandbox, 0)
    await manager.remove(uid)
    assert mount_points(volume.parent) == [] and not manager.pod_dir(uid).exists()


async def test_config_map_changes_in_the_running_container(
    runtime: PodmanRuntime, manager: VolumeManager, client: Client, make_pod: MakePod
) -> None:
    cm = await client.create(
        ConfigMap(metadata=ObjectMeta(name="app"), data={"greeting": "hello"}), "default"
    )
    pod = make_pod(
        "config",
        busybox("app", *SLEEP, volume_mounts=[
            volume_mount("cfg", "/etc/app"),
            volume_mount("cfg", "/etc/greeting", sub_path="greeting"),
        ]),
        volumes=[Volume(name="cfg", config_map=ConfigMapVolumeSource(name="app"))],
    )  # fmt: skip
    pod.metadata.namespace = "default"
    await manager.prepare(pod)
    sandbox = await runtime.create_sandbox(pod)
    app = await start(runtime, manager, sandbox, pod)
    assert await run(runtime, app, "cat /etc/app/greeting /etc/greeting") == (0, "hellohello")

    cm.data = {"greeting": "bye", "extra": "new key"}
    await client.replace(cm)
    await manager.prepare(pod)  # what the agent's next pod sync does
    code, out = await run(
        runtime, app, "cat /etc/app/greeting; echo; cat /etc/app/extra; echo; cat /etc/greeting"
    )
    # The directory mount follows the update; a subPath mount keeps the file it got, as in Kubernetes.
    assert (code, out) == (0, "bye\nnew key\nhello"), out
    code, out = await run(runtime, app, "touch /etc/app/x")
    assert code != 0 and "Read-only file system" in out  # configMap mounts are always read-only
    await runtime.remove_sandbox(sandbox, 0)


async def test_secret_files_have_their_modes_and_live_in_memory(
    runtime: PodmanRuntime, manager: VolumeManager, client: Client, make_pod: MakePod
) -> None:
    data = {"token": base64.b64encode(b"s3cr3t").decode(), "user": base64.b64encode(b"admin").decode()}
    await client.create(Secret(metadata=ObjectMeta(name="creds"), data=data), "default")
    pod = make_pod(
        "secret",
        busybox("app", *SLEEP, volume_mounts=[volume_mount("creds", "/var/run/creds")]),
        volumes=[Volume(name="creds", secret=SecretVolumeSource(
            secret_name="creds", default_mode=0o400, items=[
                KeyToPath(key="token", path="token", mode=0o440), KeyToPath(key="user", path="user")]))],
    )  # fmt: skip
    pod.metadata.namespace = "default"
    await manager.prepare(pod)
    sandbox = await runtime.create_sandbox(pod)
    app = await start(runtime, manager, sandbox, pod)
    code, out = await run(
        runtime, app,
        "cat /var/run/creds/token; echo; stat -L -c %a /var/run/creds/token /var/run/creds/user; "
        "grep ' /var/run/creds ' /proc/mounts",
    )  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:3] == ["s3cr3t", "440", "400"], out
    assert lines[3].split()[2] == "tmpfs", out  # secrets_in_memory: never on the node's disk
    await runtime.remove_sandbox(sandbox, 0)


async def test_read_only_host_path_and_sub_path(
    runtime: PodmanRuntime, manager: VolumeManager, make_pod: MakePod, tmp_path: Path
) -> None:
    host = tmp_path / "host-data"
    pod = make_pod(
        "paths",
        busybox("app", *SLEEP, volume_mounts=[
            volume_mount("host", "/host"),
            volume_mount("host", "/host-ro", read_only=True),
            volume_mount("scratch", "/logs", sub_path="logs/app"),
        ]),
        volumes=[
            Volume(name="host", host_path=HostPathVolumeSource(path=str(host), type="DirectoryOrCreate")),
            Volume(name="scratch", empty_dir=EmptyDirVolumeSource()),
        ],
    )  # fmt: skip
    await manager.prepare(pod)
    assert host.is_dir()
    sandbox = await runtime.create_sandbox(pod)
    app = await start(runtime, manager, sandbox, pod)
    assert await run(runtime, app, "echo written > /host/file; cat /host-ro/file") == (0, "written\n")
    assert (host / "file").read_text() == "written\n"
    code, out = await run(runtime, app, "echo no > /host-ro/other")
    assert code != 0 and "Read-only file system" in out, out
    assert await run(runtime, app, "echo log line > /logs/app.log") == (0, "")
    scratch = manager.volume_path(pod.metadata.uid or "", (pod.spec.volumes or [])[1])
    assert (scratch / "logs/app/app.log").read_text() == "log line\n"
    await runtime.remove_sandbox(sandbox, 0)


async def test_etc_hosts_is_the_pods_own(
    runtime: PodmanRuntime, manager: VolumeManager, make_pod: MakePod
) -> None:
    pod = make_pod(
        "hosts",
        busybox("app", *SLEEP),
        hostname="db-0",
        subdomain="db",
        host_aliases=[HostAlias(ip="10.1.2.3", hostnames=["foo.local", "bar.local"])],
    )
    await manager.prepare(pod)
    await manager.write_hosts(pod, "10.244.0.5")
    sandbox = await runtime.create_sandbox(pod)
    app = await start(runtime, manager, sandbox, pod)
    code, out = await run(runtime, app, "cat /etc/hosts")
    assert (code, out) == (0, hosts_file_content(pod, "10.244.0.5"))
    assert "10.244.0.5\tdb-0.db.e2e.svc.cluster.local\tdb-0\n" in out
    # Rewritten in place, so the container's bind mount of the file follows.
    await manager.write_hosts(pod, "10.244.0.6")
    assert "10.244.0.6\tdb-0.db" in (await run(runtime, app, "cat /etc/hosts"))[1]
    await runtime.remove_sandbox(sandbox, 0)


async def test_privileged_only_where_allowed(
    runtime: PodmanRuntime, podman_service: PodmanService, manager: VolumeManager, make_pod: MakePod
) -> None:
    pod = make_pod("priv", busybox("app", *SLEEP, security_context=SecurityContext(privileged=True)))
    await manager.prepare(pod)
    sandbox = await runtime.create_sandbox(pod)
    with pytest.raises(RuntimeFailure) as err:
        await start(runtime, manager, sandbox, pod)
    assert err.value.reason == "CreateContainerConfigError"
    assert "privileged containers are not allowed on this node" in err.value.message
    mine = [s for s in await runtime.list_sandboxes() if s.uid == pod.metadata.uid]
    assert mine and mine[0].containers == []  # refused before anything was created

    allowing = PodmanRuntime(podman_service.socket_path, NODE, allow_privileged=True)
    try:
        app = await start(allowing, manager, sandbox, pod)
        # Privileged: every capability, e.g. CAP_SYS_ADMIN (bit 21), which Podman drops by default.
        code, out = await run(allowing, app, "grep CapEff /proc/self/status")
        assert code == 0 and int(out.split()[1], 16) & (1 << 21), out
    finally:
        await allowing.close()
    await runtime.remove_sandbox(sandbox, 0)
