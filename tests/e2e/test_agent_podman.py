"""The agent on real Podman against a real control plane: what seeds 000 and 001 show users checking.

Each test starts its own control plane and agent on the session's Podman service (see conftest.py);
requesting ``make_pod`` only for its teardown, which removes every sandbox of the test node.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from agent.runtime.images import BUSYBOX_IMAGE
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from controlplane.api import Pod
from controlplane.client import NotFound
from tui.cli import run

from .cluster import (
    cluster,
    container_state,
    eventually,
    get,
    manifest,
    recorded,
    running,
    sh,
    start_agent,
)
from .conftest import NODE, MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_two_container_pod_with_infra_container(
    podman_service: PodmanService, podman_api: httpx.AsyncClient, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, cp):
        web = sh(
            "web",
            "mkdir -p /var/www && echo hello-from-web > /var/www/index.html && "
            "exec httpd -f -p 8080 -h /var/www",
        )
        sidecar = sh("sidecar", "while true; do wget -qO- http://127.0.0.1:8080/; sleep 0.5; done")
        await client.create(manifest("php-test", web, sidecar))
        pod = await eventually(lambda: running(client, "php-test"), "both containers running")
        assert [s.name for s in pod.status.container_statuses or []] == ["web", "sidecar"]
        assert all(s.restart_count == 0 and s.ready for s in pod.status.container_statuses or [])
        # The infra container holds the namespaces; the sidecar reaches httpd on 127.0.0.1.
        pods = (await podman_api.get("/pods/json")).json()
        mine = [p for p in pods if p["Labels"].get("io.peapod.pod.uid") == pod.metadata.uid]
        assert len(mine) == 1 and mine[0]["InfraId"]
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)

        async def fetched() -> bool:
            box = await agent.workers._sandbox(pod.metadata.uid or "")
            side = box.latest("sidecar") if box else None
            return side is not None and b"hello-from-web" in await runtime.logs(side)

        await eventually(fetched, "the sidecar to fetch the page over localhost")
        out, err = io.StringIO(), io.StringIO()
        assert await run(["describe", "pod", "php-test", "-s", cp.url], out, err) == 0, err.getvalue()
        text = out.getvalue()
        assert text.count("State:          Running") == 2 and text.count("Restart Count:  0") == 2
        assert "Started" in text and "Created" in text


async def test_killed_containers_come_back(
    podman_service: PodmanService, podman_api: httpx.AsyncClient, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        await client.create(manifest("php-test", sh("app", "exec sleep 600")))
        pod = await eventually(lambda: running(client, "php-test"), "running")
        first = (pod.status.container_statuses or [])[0].container_id or ""
        await podman_api.post(
            f"/containers/{first.removeprefix('podman://')}/kill", params={"signal": "KILL"}
        )
        again = await eventually(lambda: running(client, "php-test", restarts=1), "restart after podman kill")
        assert (again.status.container_statuses or [])[0].restart_count == 1
        # Now the infra (pause) container: the whole sandbox is re-created and the pod carries on.
        box = await agent.workers._sandbox(pod.metadata.uid or "")
        assert box is not None
        inspect = (await podman_api.get(f"/pods/{box.id}/json")).json()
        await podman_api.post(f"/containers/{inspect['InfraContainerID']}/kill", params={"signal": "KILL"})

        async def new_sandbox() -> bool:
            now = await agent.workers._sandbox(pod.metadata.uid or "")
            return now is not None and now.id != box.id and now.infra_running

        await eventually(new_sandbox, "a re-created sandbox")
        await eventually(lambda: running(client, "php-test", restarts=2), "running in the new sandbox")
        await recorded(client, "php-test", "SandboxChanged")


async def test_crash_loop_backs_off(podman_service: PodmanService, make_pod: MakePod, tmp_path: Path) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        await client.create(manifest("crasher", sh("app", "echo bye; exit 3")))

        async def looping() -> str | None:
            s = await container_state(client, "crasher")
            waiting = s.state.waiting if s and s.state else None
            if waiting and waiting.reason == "CrashLoopBackOff" and s.restart_count >= 2:
                return str(waiting.message)
            return None

        message = await eventually(looping, "CrashLoopBackOff after two restarts")
        assert "restarting failed container=app" in message and "back-off 1s" in message
        s = await container_state(client, "crasher")
        assert s.last_state.terminated.exit_code == 3 and s.last_state.terminated.reason == "Error"
        await recorded(client, "crasher", "BackOff")


async def test_delete_removes_the_podman_pod(
    podman_service: PodmanService, podman_api: httpx.AsyncClient, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        pod = await client.create(manifest("doomed", sh("app", "exec sleep 600")))
        await eventually(lambda: running(client, "doomed"), "running")
        await client.delete(Pod, "doomed", "default")

        async def gone() -> bool:
            try:
                await get(client, "doomed")
            except NotFound:
                return True
            return False

        await eventually(gone, "the agent to finish the deletion")
        pods = (await podman_api.get("/pods/json")).json() or []
        assert not [p for p in pods if p["Labels"].get("io.peapod.pod.uid") == pod.metadata.uid]
        await recorded(client, "doomed", "Killing")


async def test_agent_restart_adopts_and_catches_up(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        await client.create(manifest("keeper", sh("app", "exec sleep 600")))
        goner = await client.create(manifest("goner", sh("app", "exec sleep 600")))
        before = await eventually(lambda: running(client, "keeper"), "running")
        await eventually(lambda: running(client, "goner"), "running")
        await agent.stop()
        # While the agent is down: one pod is created, another deleted for good.
        await client.create(manifest("newcomer", sh("app", "exec sleep 600")))
        await client.delete(Pod, "goner", "default", grace_period_seconds=0)
        second = start_agent(client, podman_service, data_dir=tmp_path / "agent")
        await second.start()
        try:
            await eventually(lambda: running(client, "newcomer"), "the pod created while the agent was down")

            async def collected() -> bool:
                return await second.workers._sandbox(goner.metadata.uid or "") is None

            await eventually(collected, "the Podman pod of the deleted pod to be removed")
            after = await get(client, "keeper")
            old, new = (before.status.container_statuses or [])[0], (after.status.container_statuses or [])[0]
            assert new.container_id == old.container_id and new.restart_count == 0
            assert new.state and old.state and new.state.running and old.state.running
            assert new.state.running.started_at == old.state.running.started_at
        finally:
            await second.stop()


async def test_missing_image_and_bad_command_are_explained(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, _, _):
        await client.create(manifest("noimage", {"name": "app", "image": "localhost/not-built:1"}))
        await client.create(
            manifest("badcmd", {"name": "app", "image": BUSYBOX_IMAGE, "command": ["/nonexistent"]})
        )
        await client.create(manifest("fine", sh("app", "exec sleep 600")))

        async def waiting(name: str, wanted: tuple[str, ...]) -> str | None:
            s = await container_state(client, name)
            w = s.state.waiting if s and s.state else None
            return f"{w.reason}: {w.message}" if w and w.reason in wanted else None

        image = await eventually(
            lambda: waiting("noimage", ("ErrImagePull", "ImagePullBackOff")), "image error"
        )
        assert "localhost/not-built:1" in image and "no registry" in image
        command = await eventually(
            lambda: waiting("badcmd", ("RunContainerError", "CrashLoopBackOff")), "cmd error"
        )
        assert command
        await recorded(client, "noimage", "Failed")
        await recorded(client, "badcmd", "Failed")
        # The agent keeps doing its job for everything else.
        await eventually(lambda: running(client, "fine"), "an unrelated pod still starting")


async def test_image_load_through_the_agent(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (_, agent, cp):
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)
        archive = tmp_path / "busybox.tar"
        archive.write_bytes(await runtime.save_image(BUSYBOX_IMAGE))
        out, err = io.StringIO(), io.StringIO()
        code = await run(["image", "load", str(archive), "--node", NODE, "-s", cp.url], out, err)
        assert code == 0, err.getvalue() + out.getvalue()
        assert out.getvalue().startswith(f"node/{NODE}: loaded ") and "busybox" in out.getvalue()
        (tmp_path / "junk.tar").write_bytes(b"this is not an image archive")
        err = io.StringIO()
        code = await run(
            ["image", "load", str(tmp_path / "junk.tar"), "--node", NODE, "-s", cp.url], out, err
        )
        assert code == 1 and f"error: node {NODE}:" in err.getvalue()
