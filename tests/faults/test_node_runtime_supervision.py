"""The agent's side of a Podman service that dies, without Podman or root: ``PodmanService`` restarts a
killed service and ends the orphan a SIGKILLed agent left behind (against a fake ``podman`` that only
answers ``_ping``), and the agent reports a runtime that does not answer as Ready=False, "container
runtime is down", and Ready again once it answers (hollow runtime, real control plane).
The same faults on real Podman: ``test_node_faults.py``."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from agent.agent import Agent, AgentSettings
from agent.hollow import HOLLOW_MACHINE
from agent.runtime.hollow import HollowRuntime
from agent.runtime.podman_service import PodmanService
from controlplane.api import Node
from controlplane.client import Client
from tests.support import eventually

FAKE_PODMAN = f"""#!{sys.executable}
# "podman [--root R --runroot R] system service --time=0 unix:///PATH": answers every GET with 200.
import http.server, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass

class Server(socketserver.UnixStreamServer):
    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)

Server(sys.argv[-1].removeprefix("unix://"), Handler).serve_forever()
"""


@pytest.fixture
def base() -> Iterator[Path]:
    """A short directory (unix socket paths are limited) holding the fake ``podman``."""
    path = Path(tempfile.mkdtemp(prefix="pea-sv-"))
    (path / "podman").write_text(FAKE_PODMAN)
    (path / "podman").chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


async def pings(service: PodmanService) -> bool:
    transport = httpx.AsyncHTTPTransport(uds=str(service.socket_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://podman", timeout=5.0) as client:
        try:
            return (await client.get("/v4.0.0/libpod/_ping")).status_code == 200
        except httpx.TransportError:
            return False


async def test_a_killed_service_is_started_again_and_a_stopped_one_is_not(base: Path) -> None:
    service = PodmanService(base / "d", podman=str(base / "podman"), restart_backoff=(0.1, 1.0))
    await service.start()
    try:
        first = service.pid
        assert first is not None and await pings(service)
        assert service.pid_file.read_text().strip() == str(first)
        os.kill(first, signal.SIGKILL)

        async def restarted() -> bool:
            return service.restarts == 1 and service.running and service.pid != first and await pings(service)

        await eventually(restarted, "the service started again", timeout=60)
        assert service.pid_file.read_text().strip() == str(service.pid)
        second = service.pid
    finally:
        await service.stop()
    assert second is not None and not alive(second)
    assert not service.pid_file.exists() and not service.socket_path.exists()
    await asyncio.sleep(0.5)  # a supervisor left running would have started a third one by now
    assert service.restarts == 1 and not service.running


async def test_the_orphan_of_a_killed_agent_is_ended_before_a_new_service_starts(base: Path) -> None:
    # The first agent's service; then the agent "dies" (no stop()): its service keeps running.
    orphaned = PodmanService(base / "d", podman=str(base / "podman"), supervise=False)
    await orphaned.start()
    assert orphaned.pid is not None and orphaned._proc is not None
    fresh = PodmanService(base / "d", podman=str(base / "podman"))
    await fresh.start()
    try:
        code = await asyncio.wait_for(orphaned._proc.wait(), 60)
        assert code == -signal.SIGTERM  # ended, not left to share the storage with the new one
        assert fresh.running and await pings(fresh)
    finally:
        await fresh.stop()
        await orphaned.stop()


async def test_a_pid_file_naming_another_process_is_left_alone(base: Path) -> None:
    service = PodmanService(base / "d", podman=str(base / "podman"))
    (base / "d").mkdir()
    service.pid_file.write_text(f"{os.getpid()}\n")  # a reused PID: this test process
    await service.start()
    try:
        assert await pings(service)  # and we are still here to check it
    finally:
        await service.stop()


class FlakyRuntime(HollowRuntime):
    """A hollow runtime whose service can be "down": every ``version()`` then fails."""

    down = False

    async def version(self) -> str:
        if self.down:
            raise OSError("cannot reach Podman at /run/podman.sock: connection refused")
        return await super().version()


@pytest.fixture
async def node(client: Client) -> AsyncIterator[tuple[Agent, FlakyRuntime]]:
    runtime = FlakyRuntime("node-1")
    settings = AgentSettings(
        node_name="node-1",
        node_ip="127.0.0.1",
        listen=None,
        lease_interval=0.2,
        status_interval=0.5,
        resync_interval=0.5,
        runtime_check_interval=0.2,
    )
    agent = Agent(client, runtime, settings, machine=HOLLOW_MACHINE)
    await agent.start()
    try:
        yield agent, runtime
    finally:
        await agent.stop()


async def ready(client: Client) -> tuple[str, str, str]:
    node = await client.get(Node, "node-1")
    c = next(c for c in node.status.conditions or () if c.type == "Ready")
    return c.status, c.reason or "", c.message or ""


async def test_a_runtime_that_does_not_answer_makes_the_node_not_ready(
    client: Client, node: tuple[Agent, FlakyRuntime]
) -> None:
    _, runtime = node
    assert (await ready(client))[0] == "True"
    runtime.down = True

    async def not_ready() -> tuple[str, str, str] | None:
        r = await ready(client)
        return r if r[0] == "False" else None

    _, reason, message = await eventually(not_ready, "Ready=False while the runtime is down", timeout=60)
    assert reason == "KubeletNotReady"
    assert message.startswith("container runtime is down: ") and "connection refused" in message
    runtime.down = False

    async def ready_again() -> tuple[str, str, str] | None:
        r = await ready(client)
        return r if r[0] == "True" else None

    again = await eventually(ready_again, "Ready again once the runtime answers", timeout=60)
    assert again[1] == "KubeletReady"


async def test_heartbeats_back_after_failures_write_the_status_and_reopen_the_watches(
    client: Client, node: tuple[Agent, FlakyRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a network cut looks like to the agent: heartbeats fail, then succeed again. The status is
    written at once (not at the next status interval) and the pod informer lists and watches anew (a
    watch from before the cut may hang on a dead connection for minutes)."""
    agent, _ = node
    heartbeat, informer = agent.heartbeat, agent.informer
    assert heartbeat is not None and informer is not None
    heartbeat.status_interval = 3600.0  # only the recovery itself writes the status
    relists, written = informer.relists, heartbeat.last_status

    async def unreachable(**_: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(heartbeat, "beat", unreachable)

    async def failing() -> bool:
        return heartbeat.failures >= 2

    await eventually(failing, "heartbeats failing", timeout=60)
    monkeypatch.undo()

    async def recovered() -> bool:
        return heartbeat.failures == 0 and informer.relists > relists and heartbeat.last_status > written

    await eventually(recovered, "the status written and the pods listed again", timeout=60)
    assert informer.running


async def test_a_lease_duration_under_a_second_is_refused_naming_the_flag() -> None:
    from tui.cli import run

    out, err = io.StringIO(), io.StringIO()
    argv = ["-s", "http://127.0.0.1:9", "agent", "--runtime", "hollow", "--node-lease-duration-seconds", "0"]
    assert await run(argv, out, err) == 1
    assert err.getvalue().strip() == "error: --node-lease-duration-seconds: must be at least 1"
