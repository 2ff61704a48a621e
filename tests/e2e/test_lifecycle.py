"""Probes, init containers and lifecycle hooks on real Podman through a real control plane and agent
(issue 5's "done when" for health and lifecycle)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.runtime.base import ContainerInfo
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from controlplane.api import ConfigMap, ObjectMeta, Pod, Secret
from controlplane.client import Client, NotFound

from .cluster import cluster, eventually, get, manifest, reasons, recorded, running, sh
from .conftest import MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


HTTPD = "mkdir -p /var/www && exec httpd -f -p 8080 -h /var/www"


async def latest(agent: Agent, pod: Pod, container: str) -> ContainerInfo:
    """The newest attempt of ``container`` in the pod's sandbox, as the agent's runtime lists it."""
    box = await agent.workers._sandbox(pod.metadata.uid or "")
    info = box.latest(container) if box is not None else None
    assert info is not None, f"no {container} in the sandbox of {pod.metadata.name}"
    return info


async def ready(client: Client, name: str) -> bool:
    pod = await get(client, name)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())


async def test_readiness_probe_gates_ready_and_liveness_restarts(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
        web = sh("web", HTTPD, ports=[{"name": "http", "containerPort": 8080}], readinessProbe=probe)
        await client.create(manifest("gated", web))
        pod = await eventually(lambda: running(client, "gated"), "running")
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)
        info = await latest(agent, pod, "web")

        async def probed_unhealthy() -> bool:
            return "Unhealthy" in await reasons(client, "gated")

        await eventually(probed_unhealthy, "a failed readiness probe (404)")
        assert not await ready(client, "gated")
        await runtime.exec(info, ["touch", "/var/www/ready"])
        await eventually(lambda: ready(client, "gated"), "Ready once /ready exists")
        await runtime.exec(info, ["rm", "/var/www/ready"])

        async def unready() -> bool:
            return not await ready(client, "gated")

        await eventually(unready, "not Ready again")
        statuses = (await get(client, "gated")).status.container_statuses or []
        assert statuses[0].restart_count == 0  # readiness never restarts

        # Liveness: healthy while /tmp/healthy exists; the container deletes it after a moment.
        script = "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 600"
        live = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}
        await client.create(manifest("mortal", sh("app", script, livenessProbe=live)))
        await eventually(lambda: running(client, "mortal", restarts=1), "a restart by the liveness probe")
        await recorded(client, "mortal", "Unhealthy", "Killing")


async def test_tcp_startup_probe_and_post_start_hook(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        # The server comes up after 2 s; the startup probe (tcpSocket) holds liveness back until then.
        script = "sleep 2; mkdir -p /var/www; exec httpd -f -p 7000 -h /var/www"
        startup = {"tcpSocket": {"port": 7000}, "periodSeconds": 1, "failureThreshold": 10}
        liveness = {"tcpSocket": {"port": 7000}, "periodSeconds": 1, "failureThreshold": 1}
        hook = {"exec": {"command": ["sh", "-c", "echo hooked > /tmp/post-start"]}}
        app = sh("app", script, startupProbe=startup, livenessProbe=liveness, lifecycle={"postStart": hook})
        await client.create(manifest("booting", app))

        async def started() -> Pod | None:
            pod = await get(client, "booting")
            s = (pod.status.container_statuses or [None])[0]
            return pod if s and s.started and s.ready else None

        pod = await eventually(started, "started and ready after the startup probe passed")
        assert (pod.status.container_statuses or [])[0].restart_count == 0
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)
        info = await latest(agent, pod, "app")
        assert (await runtime.exec(info, ["cat", "/tmp/post-start"])).output.strip() == b"hooked"


async def test_pre_stop_runs_before_sigterm(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        # The main process logs SIGTERM; the preStop hook logs itself and takes a second. Both go to the
        # container's stdout (the hook through /proc/1/fd/1), so the order is in one log.
        script = "trap 'echo got-sigterm; exit 0' TERM; echo started; while true; do sleep 0.1; done"
        hook = {"exec": {"command": ["sh", "-c", "echo pre-stop-ran > /proc/1/fd/1; sleep 1"]}}
        await client.create(manifest("polite", sh("app", script, lifecycle={"preStop": hook})))
        pod = await eventually(lambda: running(client, "polite"), "running")
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)
        info = await latest(agent, pod, "app")
        log_seen: list[bytes] = []
        original = runtime.remove_sandbox

        async def remove_after_reading(sandbox, grace):  # type: ignore[no-untyped-def]
            # Read the log after SIGTERM and before the sandbox (and the log) goes.
            await runtime.stop_container(info, grace)
            log_seen.append(await runtime.logs(info))
            await original(sandbox, grace)

        runtime.remove_sandbox = remove_after_reading  # type: ignore[method-assign]
        try:
            await client.delete(Pod, "polite", "default")

            async def gone() -> bool:
                try:
                    await get(client, "polite")
                except NotFound:
                    return True
                return False

            await eventually(gone, "the deletion to finish")
        finally:
            runtime.remove_sandbox = original  # type: ignore[method-assign]
        lines = log_seen[0].decode().split()
        assert lines == ["started", "pre-stop-ran", "got-sigterm"], lines


async def test_init_container_fills_an_empty_dir_and_config_follows_its_objects(
    podman_service: PodmanService, make_pod: MakePod, tmp_path: Path
) -> None:
    async with cluster(podman_service, tmp_path) as (client, agent, _):
        await client.create(ConfigMap(metadata=ObjectMeta(name="settings"), data={"mode": "blue"}))
        secret = base64.b64encode(b"s3cret").decode()
        await client.create(Secret(metadata=ObjectMeta(name="creds"), data={"password": secret}))
        init = sh(
            "fill",
            "echo made-by-init > /data/index.html",
            volumeMounts=[{"name": "www", "mountPath": "/data"}],
        )
        web = sh(
            "web",
            "exec httpd -f -p 8080 -h /data",
            volumeMounts=[
                {"name": "www", "mountPath": "/data"},
                {"name": "settings", "mountPath": "/etc/settings"},
                {"name": "creds", "mountPath": "/etc/creds"},
            ],
        )
        volumes = [
            {"name": "www", "emptyDir": {}},
            {"name": "settings", "configMap": {"name": "settings"}},
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        ]
        await client.create(manifest("filled", web, initContainers=[init], volumes=volumes))
        pod = await eventually(lambda: running(client, "filled"), "running after the init container")
        runtime = agent.runtime
        assert isinstance(runtime, PodmanRuntime)
        info = await latest(agent, pod, "web")

        async def run(*command: str) -> str:
            return (await runtime.exec(info, list(command))).output.decode().strip()

        assert await run("wget", "-qO-", "http://127.0.0.1:8080/") == "made-by-init"
        assert await run("cat", "/etc/settings/mode") == "blue"
        assert await run("cat", "/etc/creds/password") == "s3cret"
        assert await run("stat", "-L", "-c", "%a", "/etc/creds/password") == "400"
        inits = (await get(client, "filled")).status.init_container_statuses or []
        assert inits[0].state and inits[0].state.terminated and inits[0].state.terminated.exit_code == 0

        await client.patch(ConfigMap, "settings", {"data": {"mode": "green"}}, "default")

        async def updated() -> bool:
            return await run("cat", "/etc/settings/mode") == "green"

        await eventually(updated, "the running container to see the ConfigMap's new value")
        await client.delete(Pod, "filled", "default")

        async def volumes_gone() -> bool:
            return not (tmp_path / "agent" / "pods" / (pod.metadata.uid or "")).exists()

        await eventually(volumes_gone, "the pod's volumes removed with it")
