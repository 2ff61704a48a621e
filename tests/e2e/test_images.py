"""The offline example images against a real Podman service: the redis image built from Debian's packages.

``build_redis_image`` downloads redis-server, redis-tools and the libraries the host lacks with
``apt-get download``. Without a route to the Debian archive these tests skip (only then: any other build
failure fails them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from agent.runtime.base import ContainerInfo, ContainerSpec, SandboxInfo
from agent.runtime.images import REDIS_IMAGE, ImageSourceUnavailable, build_redis_image
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from controlplane.api.core import Container, Pod
from tests import support

from .conftest import MakePod

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

T = TypeVar("T")


async def wait_for(probe: Callable[[], Awaitable[Any]], what: str, *, attempts: int = 200) -> Any:
    return await support.wait_for(probe, what, attempts=attempts)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def redis_image(podman_service: PodmanService) -> str:
    """The redis image in the session's service (built once; the build is idempotent anyway)."""
    try:
        return await build_redis_image(podman_service.socket_path)
    except ImageSourceUnavailable as err:
        pytest.skip(f"cannot download redis from the Debian archive (no network?): {err}")


async def run(runtime: PodmanRuntime, sandbox: SandboxInfo, pod: Pod, index: int) -> ContainerInfo:
    info = await runtime.create_container(sandbox, pod, ContainerSpec(pod.spec.containers[index], {}, 0))
    await runtime.start_container(info)
    return info


async def test_redis_image_config(
    redis_image: str, podman_service: PodmanService, podman_api: httpx.AsyncClient
) -> None:
    assert redis_image == REDIS_IMAGE
    r = await podman_api.get(f"/images/{REDIS_IMAGE}/json")
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["Config"]["Cmd"] == ["redis-server", "--protected-mode", "no"]
    assert not data["Config"].get("Entrypoint")
    assert data["Config"]["WorkingDir"] == "/data"
    assert 5_000_000 < data["Size"] < 60_000_000  # about 21 MB: redis, its libraries, busybox
    # Idempotent: a second build finds the image and leaves it alone.
    assert await build_redis_image(podman_service.socket_path) == REDIS_IMAGE
    assert (await podman_api.get(f"/images/{REDIS_IMAGE}/json")).json()["Id"] == data["Id"]


async def test_redis_pod_serves_a_sidecar_over_loopback(
    redis_image: str, runtime: PodmanRuntime, make_pod: MakePod
) -> None:
    # The server runs the image's own command; the client retries (bounded) until the server is up.
    client_script = (
        "for i in $(seq 1 150); do "
        "redis-cli -h 127.0.0.1 set greeting hello && exec redis-cli -h 127.0.0.1 get greeting; "
        "sleep 0.1; done; echo 'redis never answered'; exit 1"
    )
    pod = make_pod(
        "redis",
        Container(name="server", image=redis_image),
        Container(name="client", image=redis_image, command=["sh", "-c", client_script]),
    )
    sandbox = await runtime.create_sandbox(pod)
    server = await run(runtime, sandbox, pod, 0)
    client = await run(runtime, sandbox, pod, 1)

    async def client_exited() -> ContainerInfo | None:
        listed = next((s for s in await runtime.list_sandboxes() if s.uid == pod.metadata.uid), None)
        latest = listed.latest("client") if listed else None
        return latest if latest is not None and latest.state == "exited" else None

    done = await wait_for(client_exited, "the redis-cli container to finish")
    out = await runtime.logs(client)
    assert done.exit_code == 0, out.decode(errors="replace")
    lines = out.decode(errors="replace").split()
    assert lines[-2:] == ["OK", "hello"], lines  # SET's reply, then GET's: the value came back

    server_log = await runtime.logs(server)
    assert b"Ready to accept connections" in server_log, server_log.decode(errors="replace")
