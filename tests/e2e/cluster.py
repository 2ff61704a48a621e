"""A control plane and one agent on the session's Podman service, and the helpers e2e tests share.

``cluster()`` starts both on loopback with short intervals; ``network`` is the agent's pod network
(``NoNetwork`` unless a test wires one into a node namespace of its own, see ``nodenet.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from agent.agent import Agent, AgentSettings
from agent.network import Network
from agent.pods import BackOffPolicy
from agent.runtime.images import BUSYBOX_IMAGE
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from agent.volumes import VolumeManager
from controlplane.api import Pod
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests import support

from .conftest import NODE

FAST = BackOffPolicy(initial=0.5, maximum=2.0, reset_after=600)


@contextlib.asynccontextmanager
async def cluster(
    service: PodmanService,
    tmp: Path,
    network: Network | None = None,
    node_ip: str = "127.0.0.1",
    cp_settings: dict[str, Any] | None = None,
    **agent_settings: Any,
) -> AsyncIterator[tuple[Client, Agent, ControlPlane]]:
    """``cp_settings``: control-plane Settings fields to change (pod security allowances, ...)."""
    cp = ControlPlane(
        Settings(data_dir=tmp / "cp", listen="127.0.0.1:0", event_sweep_interval=3600, **(cp_settings or {}))
    )
    await cp.start()
    client = Client(cp.url)
    agent = start_agent(client, service, network, node_ip, tmp / "agent", **agent_settings)
    try:
        await agent.start()
        yield client, agent, cp
    finally:
        await agent.stop()
        await client.close()
        await cp.stop()


def start_agent(
    client: Client,
    service: PodmanService,
    network: Network | None = None,
    node_ip: str = "127.0.0.1",
    data_dir: Path | None = None,
    **overrides: Any,
) -> Agent:
    """The test node's agent; with ``data_dir`` its pods' volumes live there (none without)."""
    settings = AgentSettings(
        node_name=NODE,
        node_ip=node_ip,
        listen="127.0.0.1:0",
        lease_interval=0.5,
        status_interval=1.0,
        resync_interval=1.0,
        backoff=FAST,
        dns_upstreams=[],  # its DNS server (bridge networks) never forwards to resolvers off the machine
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    volumes = VolumeManager(data_dir / "pods", client) if data_dir is not None else None
    return Agent(client, PodmanRuntime(service.socket_path, NODE), settings, network=network, volumes=volumes)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    """Real Podman is slower than the hollow runtime: a longer bound."""
    return await support.eventually(check, what, timeout)


def manifest(name: str, *containers: dict[str, Any], **spec: Any) -> Pod:
    body = {
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": list(containers), **spec},
    }
    return msgspec.convert(body, Pod)


def sh(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script], **fields}


async def get(client: Client, name: str) -> Pod:
    return await client.get(Pod, name, "default")


async def container_state(client: Client, name: str, index: int = 0) -> Any:
    statuses = (await get(client, name)).status.container_statuses or []
    return statuses[index] if len(statuses) > index else None


async def running(client: Client, name: str, restarts: int = 0) -> Pod | None:
    pod = await get(client, name)
    statuses = pod.status.container_statuses or []
    ok = (
        pod.status.phase == "Running"
        and statuses
        and all(s.state and s.state.running and s.restart_count >= restarts for s in statuses)
    )
    return pod if ok else None


reasons = support.reasons


async def recorded(client: Client, name: str, *wanted: str) -> None:
    """Real Podman is slower than the hollow runtime: a longer bound."""
    await support.recorded(client, name, *wanted, timeout=30)
