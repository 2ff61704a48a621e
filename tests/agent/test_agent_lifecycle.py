"""Probes, init containers and lifecycle hooks on the hollow runtime against a real control plane.

The hollow runtime answers exec with the exit code a test sets for the command's first word
(``runtime.exec_codes``) and records every exec, so the agent's logic (thresholds, Ready, restarts,
ordering of hooks and stops) is tested fast; the real Podman path is in tests/e2e/test_lifecycle.py.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agent.agent import Agent
from agent.runtime.hollow import HollowRuntime
from controlplane.api import Pod
from controlplane.client import Client, NotFound
from tests.support import eventually

from .test_agent_hollow import _phase, node, recorded, status_of

__all__ = ["node"]  # the shared fixture, used by name


def exec_probe(command: str, **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": [command]}, "periodSeconds": 1, **fields}


def make(name: str, containers: list[dict[str, Any]], **spec: Any) -> Pod:
    body = {"metadata": {"name": name}, "spec": {"containers": containers, **spec}}
    return msgspec.convert(body, Pod)


async def condition(client: Client, name: str, kind: str) -> str | None:
    pod = await status_of(client, name)
    return next((c.status for c in pod.status.conditions or () if c.type == kind), None)


async def test_network_probes_are_answered_by_the_hollow_runtime(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    """httpGet and tcpSocket probes of hollow containers never open a connection: the runtime answers
    for the port (closed ports fail, by number or by the container port's name)."""
    _, runtime = node
    runtime.closed_ports.add(8080)
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    ports = [{"name": "http", "containerPort": 8080}]
    live = {"tcpSocket": {"port": 9090}, "periodSeconds": 1}
    container = {"name": "app", "image": "busybox", "ports": ports, "readinessProbe": probe}
    await client.create(make("net", [{**container, "livenessProbe": live}]))
    await recorded(client, "net", "Unhealthy")
    assert await condition(client, "net", "Ready") == "False"
    runtime.closed_ports.clear()

    async def ready() -> bool:
        return await condition(client, "net", "Ready") == "True"

    await eventually(ready, "Ready once the port answers")
    pod = await status_of(client, "net")
    assert (pod.status.container_statuses or [])[0].restart_count == 0  # the liveness port was open


async def test_readiness_decides_ready_and_comes_back(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    runtime.exec_codes["check-ready"] = 1
    probe = exec_probe("check-ready", failureThreshold=1)
    await client.create(make("web", [{"name": "app", "image": "busybox", "readinessProbe": probe}]))

    async def running_not_ready() -> Pod | None:
        pod = await status_of(client, "web")
        statuses = pod.status.container_statuses or []
        ok = pod.status.phase == "Running" and statuses and not statuses[0].ready
        return pod if ok and sum(1 for c, _ in runtime.execs if c == "app") >= 2 else None

    pod = await eventually(running_not_ready, "Running but not Ready while the probe fails")
    assert await condition(client, "web", "Ready") == "False"
    assert (pod.status.container_statuses or [])[0].restart_count == 0  # readiness never restarts
    await recorded(client, "web", "Unhealthy")
    runtime.exec_codes["check-ready"] = 0

    async def ready() -> bool:
        return await condition(client, "web", "Ready") == "True"

    await eventually(ready, "Ready once the probe passes")
    runtime.exec_codes["check-ready"] = 1

    async def unready_again() -> bool:
        return await condition(client, "web", "Ready") == "False"

    await eventually(unready_again, "not Ready again when it fails again")


async def test_failing_liveness_restarts_the_container(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    runtime.exec_codes["alive"] = 1
    probe = exec_probe("alive", failureThreshold=2)
    await client.create(
        make(
            "sick",
            [{"name": "app", "image": "busybox", "livenessProbe": probe}],
            terminationGracePeriodSeconds=0,
        )
    )

    async def restarted() -> Pod | None:
        pod = await status_of(client, "sick")
        statuses = pod.status.container_statuses or []
        return pod if statuses and statuses[0].restart_count >= 1 else None

    await eventually(restarted, "a restart after two failed liveness probes")
    await recorded(client, "sick", "Unhealthy", "Killing")
    runtime.exec_codes["alive"] = 0


async def test_startup_probe_holds_back_liveness_and_readiness(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    runtime.exec_codes["booted"] = 1
    container = {
        "name": "app",
        "image": "busybox",
        "startupProbe": exec_probe("booted", failureThreshold=30),
        "livenessProbe": exec_probe("alive"),
        "readinessProbe": exec_probe("ready"),
    }
    await client.create(make("slow", [container]))

    async def probing_startup() -> bool:
        return sum(1 for _, cmd in runtime.execs if cmd == ["booted"]) >= 2

    await eventually(probing_startup, "the startup probe running")
    assert not [cmd for _, cmd in runtime.execs if cmd[0] in ("alive", "ready")]
    pod = await status_of(client, "slow")
    assert (pod.status.container_statuses or [])[0].started is False
    runtime.exec_codes["booted"] = 0

    async def ready() -> bool:
        pod = await status_of(client, "slow")
        s = (pod.status.container_statuses or [None])[0]
        return bool(s and s.started and s.ready)

    await eventually(ready, "started, then ready")
    assert ["ready"] in [cmd for _, cmd in runtime.execs]


async def test_init_containers_run_in_order_before_the_app(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    made = await client.create(
        make(
            "initd",
            [{"name": "app", "image": "busybox"}],
            initContainers=[{"name": "first", "image": "busybox"}, {"name": "second", "image": "busybox"}],
        )
    )
    uid = made.metadata.uid or ""

    async def state(name: str) -> str | None:
        box = runtime.sandboxes.get(uid)
        latest = box.latest(name) if box is not None else None
        return latest.state if latest is not None else None

    await eventually(lambda: _equals(state("first"), "running"), "the first init container running")
    assert await state("second") is None and await state("app") is None
    pod = await status_of(client, "initd")
    assert pod.status.phase == "Pending" and await condition(client, "initd", "Initialized") == "False"
    app = (pod.status.container_statuses or [])[0]
    assert app.state and app.state.waiting and app.state.waiting.reason == "PodInitializing"
    runtime.crash(uid, "first", exit_code=0)
    await eventually(lambda: _equals(state("second"), "running"), "the second after the first succeeded")
    assert await state("app") is None
    runtime.crash(uid, "second", exit_code=0)
    await eventually(lambda: _equals(state("app"), "running"), "the app after both")

    async def initialized() -> Pod | None:
        pod = await status_of(client, "initd")
        ok = pod.status.phase == "Running" and await condition(client, "initd", "Initialized") == "True"
        return pod if ok else None

    pod = await eventually(initialized, "Initialized and Running")
    inits = pod.status.init_container_statuses or []
    assert [s.name for s in inits] == ["first", "second"]
    assert all(s.state and s.state.terminated and s.state.terminated.reason == "Completed" for s in inits)


async def test_a_failed_init_container_fails_a_never_restarting_pod(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    made = await client.create(
        make(
            "doomed-init",
            [{"name": "app", "image": "busybox"}],
            initContainers=[{"name": "setup", "image": "busybox"}],
            restartPolicy="Never",
        )
    )
    uid = made.metadata.uid or ""

    async def setup_running() -> bool:
        box = runtime.sandboxes.get(uid)
        return box is not None and box.latest("setup") is not None

    await eventually(setup_running, "the init container running")
    runtime.crash(uid, "setup", exit_code=2)

    async def failed() -> Pod | None:
        pod = await status_of(client, "doomed-init")
        return pod if pod.status.phase == "Failed" else None

    pod = await failed_pod(failed)
    init = (pod.status.init_container_statuses or [])[0]
    assert init.state and init.state.terminated and init.state.terminated.exit_code == 2
    box = runtime.sandboxes[uid]
    assert box.latest("app") is None  # the app never started


async def failed_pod(check: Any) -> Pod:
    result: Pod = await eventually(check, "phase Failed")
    return result


async def test_hooks_post_start_and_pre_stop(client: Client, node: tuple[Agent, HollowRuntime]) -> None:
    _, runtime = node
    container = {
        "name": "app",
        "image": "busybox",
        "lifecycle": {
            "postStart": {"exec": {"command": ["warm-up"]}},
            "preStop": {"exec": {"command": ["drain"]}},
        },
    }
    made = await client.create(make("hooked", [container], terminationGracePeriodSeconds=3))
    await eventually(lambda: _phase(client, "hooked", "Running"), "Running")
    assert ("app", ["warm-up"]) in runtime.execs
    uid = made.metadata.uid or ""
    box = runtime.sandboxes[uid]
    first = box.latest("app")
    assert first is not None
    await client.delete(Pod, "hooked", "default")

    async def gone() -> bool:
        try:
            await status_of(client, "hooked")
        except NotFound:
            return True
        return False

    await eventually(gone, "the deletion to finish")
    assert ("app", ["drain"]) in runtime.execs  # the hollow exec refuses a stopped container: it ran first


async def test_a_failing_post_start_hook_kills_the_container(
    client: Client, node: tuple[Agent, HollowRuntime]
) -> None:
    _, runtime = node
    runtime.exec_codes["broken-hook"] = 1
    container = {
        "name": "app",
        "image": "busybox",
        "lifecycle": {"postStart": {"exec": {"command": ["broken-hook"]}}},
    }
    await client.create(make("badhook", [container], terminationGracePeriodSeconds=0))

    await recorded(client, "badhook", "FailedPostStartHook", "Killing")
    runtime.exec_codes["broken-hook"] = 0

    async def restarted_and_running() -> bool:
        pod = await status_of(client, "badhook")
        s = (pod.status.container_statuses or [None])[0]
        return bool(s and s.restart_count >= 1 and s.state and s.state.running)

    await eventually(restarted_and_running, "running again once the hook passes")


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
