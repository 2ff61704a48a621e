"""PodmanRuntime against a real Podman service: sandboxes, containers, events, failures and cleanup.

Every wait is a bounded poll for a condition (``wait_for``), never an assertion on elapsed time.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from agent.runtime.base import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER,
    LABEL_NODE,
    LABEL_UID,
    ContainerInfo,
    ContainerSpec,
    RuntimeEvent,
    RuntimeFailure,
    SandboxInfo,
)
from agent.runtime.podman import PodmanRuntime, format_time, image_candidates, pod_sandbox_name
from agent.runtime.podman_service import PodmanService, PodmanServiceError
from controlplane.api.core import Pod, ResourceRequirements
from controlplane.api.meta import ObjectMeta
from tests import support

from .conftest import NODE, MakePod, api_client, busybox, podman_missing_reason, remove_everything

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

T = TypeVar("T")


async def wait_for(probe: Callable[[], Awaitable[Any]], what: str, *, attempts: int = 150) -> Any:
    return await support.wait_for(probe, what, attempts=attempts)


async def sandbox_of(runtime: PodmanRuntime, pod: Pod) -> SandboxInfo | None:
    return next((s for s in await runtime.list_sandboxes() if s.uid == pod.metadata.uid), None)


async def run(runtime: PodmanRuntime, sandbox: SandboxInfo, pod: Pod, index: int = 0, attempt: int = 0,
              env: dict[str, str] | None = None) -> ContainerInfo:  # fmt: skip
    """Create and start the pod's ``index``-th container, as the agent would."""
    spec = ContainerSpec(pod.spec.containers[index], env or {}, attempt)
    info = await runtime.create_container(sandbox, pod, spec)
    await runtime.start_container(info)
    return info


async def container_state(runtime: PodmanRuntime, pod: Pod, name: str, state: str) -> ContainerInfo | None:
    sandbox = await sandbox_of(runtime, pod)
    latest = sandbox.latest(name) if sandbox else None
    return latest if latest is not None and latest.state == state else None


async def inspect(api: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    r = await api.get(f"/containers/{ref}/json")
    assert r.status_code == 200, r.text
    return dict(r.json())


class EventCollector:
    """Consumes ``runtime.events()`` in a task so a test can wait for one particular event."""

    def __init__(self, runtime: PodmanRuntime) -> None:
        self.seen: list[RuntimeEvent] = []
        self._task = asyncio.create_task(self._run(runtime))

    async def _run(self, runtime: PodmanRuntime) -> None:
        async for event in runtime.events():
            self.seen.append(event)

    async def wait(self, want: RuntimeEvent) -> RuntimeEvent:
        async def probe() -> RuntimeEvent | None:
            if self._task.done():
                self._task.result()  # surface the iterator's crash instead of timing out
            return next((e for e in self.seen if e == want), None)

        return await wait_for(probe, f"event {want}", attempts=200)

    async def close(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


# --- pure helpers (no Podman needed, but cheap enough to live here) ----------------------------------


async def test_image_candidates_follow_podman_local_resolution() -> None:
    assert image_candidates("busybox") == ["localhost/busybox:latest", "docker.io/library/busybox:latest"]
    assert image_candidates("busybox:1.36") == ["localhost/busybox:1.36", "docker.io/library/busybox:1.36"]
    assert image_candidates("me/app") == ["localhost/me/app:latest", "docker.io/me/app:latest"]
    assert image_candidates("docker.io/busybox") == ["docker.io/library/busybox:latest"]
    assert image_candidates("localhost/busybox") == ["localhost/busybox:latest"]
    assert image_candidates("registry.local:5000/x/y:2") == ["registry.local:5000/x/y:2"]
    assert image_candidates("busybox@sha256:" + "a" * 64)[0] == "localhost/busybox@sha256:" + "a" * 64


async def test_format_time_is_rfc3339_utc_seconds() -> None:
    assert format_time("2026-11-23T08:41:04.180436869Z") == "2026-11-23T08:41:04Z"
    assert format_time("2026-11-23T10:41:04.5+02:00") == "2026-11-23T08:41:04Z"
    assert format_time(0) is None
    assert format_time(-62135596800) is None
    assert format_time("0001-01-01T00:00:00Z") is None
    assert format_time(1795423260) == "2026-11-23T08:41:00Z"


# --- the service -----------------------------------------------------------------------------------


async def test_service_start_and_stop_leave_nothing_running() -> None:
    if (reason := podman_missing_reason()) is not None:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="peapod-svc-"))
    service = PodmanService(base / "d", root=base / "r", runroot=base / "rr")
    try:
        await service.start()
        pid = service.pid
        assert pid is not None and service.running
        conf = service.containers_conf.read_text()
        assert (
            'runtime = "runc"' in conf and "nofile=10000:10000" in conf and 'events_logger = "file"' in conf
        )
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(service.socket_path))) as c:
            assert (await c.get("http://podman/v4.0.0/libpod/_ping")).text == "OK"
            info = (await c.get("http://podman/v4.0.0/libpod/info")).json()
        assert info["store"]["graphRoot"] == str(base / "r")
        assert info["host"]["ociRuntime"]["name"] == "runc"
        await service.stop()
        assert not service.running
        assert not await asyncio.to_thread(Path(f"/proc/{pid}").exists)
        assert not await asyncio.to_thread(service.socket_path.exists)
    finally:
        await service.stop()
        await service.unmount_storage()
        await asyncio.to_thread(shutil.rmtree, base, True)


async def test_event_stream_survives_a_service_restart() -> None:
    """The agent's Podman may restart under it: pods keep running, and ``events()`` reconnects."""
    if (reason := podman_missing_reason()) is not None:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="peapod-svc-"))
    service = PodmanService(base / "d", root=base / "r", runroot=base / "rr")
    runtime = PodmanRuntime(service.socket_path, NODE)
    events: EventCollector | None = None
    try:
        await service.start()
        # An infra-only sandbox: Podman builds its pause image itself, no other image is needed.
        pod = Pod(metadata=ObjectMeta(name="survivor", namespace="e2e", uid=str(uuid.uuid4())))
        sandbox = await runtime.create_sandbox(pod)
        events = EventCollector(runtime)
        await service.stop()
        await service.start()
        survived = await sandbox_of(runtime, pod)
        assert survived is not None and survived.infra_running  # conmon kept it alive meanwhile
        async with api_client(service.socket_path) as api:
            infra_id = (await api.get(f"/pods/{sandbox.id}/json")).json()["InfraContainerID"]
            assert (
                await api.post(f"/containers/{infra_id}/kill", params={"signal": "KILL"})
            ).status_code == 204
        await events.wait(RuntimeEvent("sandbox-died", pod.metadata.uid or ""))
    finally:
        if events is not None:
            await events.close()
        if service.running:
            await remove_everything(service.socket_path)
        await runtime.close()
        await service.stop()
        await service.unmount_storage()
        await asyncio.to_thread(shutil.rmtree, base, True)


async def test_service_that_cannot_start_says_why(tmp_path: Path) -> None:
    service = PodmanService(tmp_path / "d", podman="/nonexistent/podman")
    with pytest.raises(PodmanServiceError, match="not found"):
        await service.start()
    assert not service.running


# --- sandboxes and containers ----------------------------------------------------------------------


async def test_two_container_pod_shares_loopback(
    runtime: PodmanRuntime, make_pod: MakePod, podman_api: httpx.AsyncClient
) -> None:
    pod = make_pod(
        "web",
        busybox("server", "sh", "-c",
                "echo peapod-page-$GREETING > /var/www/index.html && exec httpd -f -p 8080 -h /var/www"),
        busybox("sidecar", "sh", "-c",
                "while true; do wget -qO- http://127.0.0.1:8080/ && echo; sleep 0.2; done"),
    )  # fmt: skip
    sandbox = await runtime.create_sandbox(pod)
    assert sandbox.infra_running and sandbox.uid == pod.metadata.uid and sandbox.name == "web"
    server = await run(runtime, sandbox, pod, 0, env={"GREETING": "hello"})
    sidecar = await run(runtime, sandbox, pod, 1)

    listed = await sandbox_of(runtime, pod)
    assert listed is not None and listed.infra_running
    assert {(c.name, c.state) for c in listed.containers} == {("server", "running"), ("sidecar", "running")}

    infra = (await podman_api.get(f"/pods/{sandbox.id}/json")).json()
    assert infra["Name"] == pod_sandbox_name(pod)
    assert sorted(infra["SharedNamespaces"]) == ["ipc", "net", "uts"]
    infra_ctr = await inspect(podman_api, infra["InfraContainerID"])
    assert infra_ctr["State"]["Running"]
    assert infra_ctr["HostConfig"]["NetworkMode"] == "none"  # its own netns with only lo
    assert infra_ctr["Config"]["Hostname"] == "web"

    async def page_in_logs() -> bytes | None:
        out = await runtime.logs(sidecar)
        return out if b"peapod-page-hello" in out else None

    await wait_for(page_in_logs, "the sidecar to fetch the server's page over 127.0.0.1")
    srv = await inspect(podman_api, server.id)
    assert srv["Config"]["Labels"][LABEL_CONTAINER] == "server"
    assert srv["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
    assert srv["Config"]["StopSignal"] == 15


async def test_limits_rlimits_and_labels_reach_podman(
    runtime: PodmanRuntime, make_pod: MakePod, podman_api: httpx.AsyncClient
) -> None:
    resources = ResourceRequirements(limits={"cpu": "250m", "memory": "64Mi"}, requests={"cpu": "100m"})
    pod = make_pod("limits", busybox("app", "sleep", "60", resources=resources, working_dir="/tmp"),
                   share_process_namespace=True)  # fmt: skip
    sandbox = await runtime.create_sandbox(pod)
    app = await run(runtime, sandbox, pod, attempt=4)
    data = await inspect(podman_api, app.id)
    host = data["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["CpuQuota"] == 25_000 and host["CpuPeriod"] == 100_000
    assert host["CpuShares"] == 102
    assert {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]} == {
        "RLIMIT_NOFILE": (10000, 10000),
        "RLIMIT_NPROC": (1000, 1000),
    }
    assert data["Config"]["WorkingDir"] == "/tmp"
    labels = data["Config"]["Labels"]
    assert (
        labels[LABEL_UID] == pod.metadata.uid and labels[LABEL_NODE] == NODE and labels[LABEL_ATTEMPT] == "4"
    )
    assert data["Name"] == f"k8s_e2e_limits_{(pod.metadata.uid or '')[:8]}_app_4"
    pod_data = (await podman_api.get(f"/pods/{sandbox.id}/json")).json()
    assert "pid" in pod_data["SharedNamespaces"]


async def test_command_and_args_follow_kubernetes(runtime: PodmanRuntime, make_pod: MakePod) -> None:
    # The image has CMD ["/bin/sh"] and no ENTRYPOINT: a command alone must drop that CMD.
    pod = make_pod(
        "cmd",
        busybox("only-command", "echo", "from-command"),
        busybox("only-args", args=["echo", "from-args"]),
        busybox("both", "echo", args=["a", "b"]),
    )
    sandbox = await runtime.create_sandbox(pod)
    infos = [await run(runtime, sandbox, pod, i) for i in range(3)]
    for info in infos:
        await wait_for(
            functools.partial(container_state, runtime, pod, info.name, "exited"), f"{info.name} exit"
        )
    assert [await runtime.logs(i) for i in infos] == [b"from-command\n", b"from-args\n", b"a b\n"]


async def test_exit_code_and_reasons(runtime: PodmanRuntime, make_pod: MakePod) -> None:
    pod = make_pod("exits", busybox("fails", "sh", "-c", "exit 3"), busybox("ok", "true"))
    sandbox = await runtime.create_sandbox(pod)
    await run(runtime, sandbox, pod, 0)
    await run(runtime, sandbox, pod, 1)
    failed = await wait_for(lambda: container_state(runtime, pod, "fails", "exited"), "exit 3")
    assert failed.exit_code == 3 and failed.reason == "Error"
    assert failed.started_at and failed.finished_at and failed.started_at.endswith("Z")
    ok = await wait_for(lambda: container_state(runtime, pod, "ok", "exited"), "true to exit")
    assert ok.exit_code == 0 and ok.reason == "Completed"
    sandbox_now = await sandbox_of(runtime, pod)
    assert sandbox_now is not None and sandbox_now.infra_running  # the sandbox outlives its containers


async def test_list_sandboxes_by_label_with_all_attempts(runtime: PodmanRuntime, make_pod: MakePod,
                                                          podman_service: PodmanService) -> None:  # fmt: skip
    pod = make_pod("attempts", busybox("app", "sh", "-c", "exit 1"))
    sandbox = await runtime.create_sandbox(pod)
    for attempt in range(3):
        await run(runtime, sandbox, pod, attempt=attempt)
        await wait_for(lambda: container_state(runtime, pod, "app", "exited"), f"attempt {attempt} to exit")

    other_node = PodmanRuntime(podman_service.socket_path, "some-other-node")
    try:
        foreign = make_pod("foreign", busybox("app", "sleep", "60"))
        await other_node.create_sandbox(foreign)
        assert [s.uid for s in await other_node.list_sandboxes()] == [foreign.metadata.uid]
        listed = await runtime.list_sandboxes()
        assert foreign.metadata.uid not in {s.uid for s in listed}
        mine = next(s for s in listed if s.uid == pod.metadata.uid)
        assert (mine.namespace, mine.name, mine.id) == ("e2e", "attempts", sandbox.id)
        assert sorted(c.attempt for c in mine.containers) == [0, 1, 2]
        latest = mine.latest("app")
        assert latest is not None and latest.attempt == 2 and latest.exit_code == 1
        for s in await other_node.list_sandboxes():
            await other_node.remove_sandbox(s, 0)
        assert await other_node.list_sandboxes() == []
    finally:
        await other_node.close()


async def test_remove_sandbox_leaves_nothing(
    runtime: PodmanRuntime, make_pod: MakePod, podman_api: httpx.AsyncClient
) -> None:
    # sh as PID 1 ignores SIGTERM: the grace runs out and Podman SIGKILLs it.
    pod = make_pod("doomed", busybox("app", "sh", "-c", "while true; do sleep 0.1; done"),
                   busybox("done", "true"))  # fmt: skip
    sandbox = await runtime.create_sandbox(pod)
    await run(runtime, sandbox, pod, 0)
    await run(runtime, sandbox, pod, 1)
    await runtime.remove_sandbox(sandbox, 1)
    assert await sandbox_of(runtime, pod) is None
    uid_filter = json.dumps({"label": [f"{LABEL_UID}={pod.metadata.uid}"]})
    leftovers = await podman_api.get("/containers/json", params={"all": "true", "filters": uid_filter})
    assert leftovers.json() == []
    assert (await podman_api.get(f"/pods/{sandbox.id}/exists")).status_code == 404
    await runtime.remove_sandbox(sandbox, 1)  # idempotent: already gone is fine


async def test_stop_and_remove_container(runtime: PodmanRuntime, make_pod: MakePod) -> None:
    pod = make_pod("stopper", busybox("app", "sleep", "600"))
    sandbox = await runtime.create_sandbox(pod)
    app = await run(runtime, sandbox, pod)
    await runtime.stop_container(app, 1)
    stopped = await wait_for(lambda: container_state(runtime, pod, "app", "exited"), "app to stop")
    assert stopped.exit_code != 0 and stopped.reason == "Error"
    await runtime.remove_container(app)
    listed = await sandbox_of(runtime, pod)
    assert listed is not None and listed.containers == []


# --- events ----------------------------------------------------------------------------------------


async def test_killed_container_and_infra_arrive_as_events(
    runtime: PodmanRuntime, make_pod: MakePod, podman_api: httpx.AsyncClient
) -> None:
    pod = make_pod("killme", busybox("app", "sleep", "600"))
    uid = pod.metadata.uid or ""
    sandbox = await runtime.create_sandbox(pod)
    app = await run(runtime, sandbox, pod)
    events = EventCollector(runtime)
    try:
        r = await podman_api.post(f"/containers/{app.id}/kill", params={"signal": "KILL"})
        assert r.status_code == 204, r.text
        await events.wait(RuntimeEvent("container-died", uid, "app"))
        dead = await wait_for(lambda: container_state(runtime, pod, "app", "exited"), "app exited")
        assert dead.exit_code == 137

        infra_id = (await podman_api.get(f"/pods/{sandbox.id}/json")).json()["InfraContainerID"]
        r = await podman_api.post(f"/containers/{infra_id}/kill", params={"signal": "KILL"})
        assert r.status_code == 204, r.text
        await events.wait(RuntimeEvent("sandbox-died", uid))

        async def infra_down() -> bool:
            s = await sandbox_of(runtime, pod)
            return s is not None and not s.infra_running

        await wait_for(infra_down, "infra_running to turn False")
    finally:
        await events.close()


# --- failures --------------------------------------------------------------------------------------


async def test_missing_image_is_err_image_pull(runtime: PodmanRuntime, make_pod: MakePod) -> None:
    with pytest.raises(RuntimeFailure) as err:
        await runtime.ensure_image("no-such-image:1.0", "IfNotPresent")
    assert err.value.reason == "ErrImagePull"
    assert "not present" in err.value.message and "no registry" in err.value.message
    with pytest.raises(RuntimeFailure) as err:
        await runtime.ensure_image("no-such-image", "Never")
    assert err.value.reason == "ErrImageNeverPull"

    assert (await runtime.ensure_image("busybox", "IfNotPresent")).startswith("sha256:")
    assert await runtime.ensure_image("localhost/busybox:latest", "Always") == await runtime.ensure_image(
        "busybox", "Never"
    )
    names = [n for image in await runtime.images() for n in image.names or []]
    assert "localhost/busybox:latest" in names

    pod = make_pod("noimage", busybox("app", "true", image="ghost.example/none:1"))
    sandbox = await runtime.create_sandbox(pod)
    with pytest.raises(RuntimeFailure) as err:
        await runtime.create_container(sandbox, pod, ContainerSpec(pod.spec.containers[0], {}, 0))
    assert err.value.reason == "ErrImagePull"
    listed = await sandbox_of(runtime, pod)
    assert listed is not None and listed.containers == []


async def test_bad_command_fails_cleanly(
    runtime: PodmanRuntime, make_pod: MakePod, podman_api: httpx.AsyncClient
) -> None:
    pod = make_pod("badcmd", busybox("app", "/nonexistent"))
    sandbox = await runtime.create_sandbox(pod)
    info = await runtime.create_container(sandbox, pod, ContainerSpec(pod.spec.containers[0], {}, 0))
    with pytest.raises(RuntimeFailure) as err:
        await runtime.start_container(info)
    assert err.value.reason == "RunContainerError"
    assert "/nonexistent" in err.value.message and "no such file" in err.value.message
    assert (await podman_api.get(f"/containers/{info.id}/exists")).status_code == 404
    listed = await sandbox_of(runtime, pod)
    assert listed is not None and listed.infra_running and listed.containers == []


async def test_duplicate_container_name_is_create_error(runtime: PodmanRuntime, make_pod: MakePod) -> None:
    pod = make_pod("dup", busybox("app", "sleep", "60"))
    sandbox = await runtime.create_sandbox(pod)
    spec = ContainerSpec(pod.spec.containers[0], {}, 0)
    await runtime.create_container(sandbox, pod, spec)
    with pytest.raises(RuntimeFailure) as err:
        await runtime.create_container(sandbox, pod, spec)
    assert err.value.reason == "CreateContainerError" and "in use" in err.value.message
    again = await runtime.create_sandbox(pod)  # adopting an existing sandbox of the same pod
    assert again.id == sandbox.id and [c.name for c in again.containers] == ["app"]


async def test_runtime_without_service_fails_clearly(tmp_path: Path) -> None:
    rt = PodmanRuntime(tmp_path / "absent.sock", NODE)
    try:
        with pytest.raises(RuntimeFailure) as err:
            await rt.start()
        assert err.value.reason == "RuntimeUnavailable" and "absent.sock" in err.value.message
    finally:
        await rt.close()


async def test_exec_runs_a_command_and_reports_its_exit_code(
    runtime: PodmanRuntime, make_pod: MakePod
) -> None:
    pod = make_pod("execme", busybox("app", "sleep", "600"))
    sandbox = await runtime.create_sandbox(pod)
    spec = ContainerSpec(pod.spec.containers[0], {}, 0)
    info = await runtime.create_container(sandbox, pod, spec)
    await runtime.start_container(info)
    info.state = "running"
    result = await runtime.exec(info, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.exit_code == 3 and b"out" in result.output and b"err" in result.output
    assert (await runtime.exec(info, ["true"])).exit_code == 0
    missing = await runtime.exec(info, ["no-such-command"])  # the OCI runtime's "not found"
    assert missing.exit_code == 127, missing
    with pytest.raises(RuntimeFailure, match="timed out") as slow:
        await runtime.exec(info, ["sleep", "5"], timeout=0.5)
    assert slow.value.reason == "Timeout"
