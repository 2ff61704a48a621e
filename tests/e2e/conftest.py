"""End-to-end fixtures: a real Podman service on throwaway storage, with the busybox image built into it.

One ``podman system service`` serves the whole session (starting one and building the image costs about a
second). Its root, runroot, config, lock files and event log all live in one temporary directory, so the
tests never touch the machine's default Podman storage, and the teardown removes every pod and container
in it, stops the service, unmounts what containers/storage left mounted and deletes the directory.

The service lives on the session's event loop, so tests using these fixtures run on it too: mark them
``pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agent.runtime.base import LABEL_NODE
from agent.runtime.images import BUSYBOX_IMAGE, build_busybox_image
from agent.runtime.podman import PodmanRuntime
from agent.runtime.podman_service import PodmanService
from controlplane.api.core import Container, Pod, PodSpec
from controlplane.api.meta import ObjectMeta

NODE = "e2e-node"


def podman_missing_reason() -> str | None:
    """Why the e2e tests cannot run here, or None; only a missing Podman or a non-root user count."""
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman runc catatonit busybox-static)"
    if os.geteuid() != 0:
        return "the e2e tests need root (rootful Podman with cgroupfs and runc)"
    return None


def api_client(socket_path: Path) -> httpx.AsyncClient:
    """A bare libpod client, for what tests do behind the runtime's back (kill, inspect)."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
        base_url="http://podman/v4.0.0/libpod",
        timeout=30.0,
    )


async def remove_everything(socket_path: Path) -> None:
    """Force-remove every pod and container the service knows (all of them are the tests')."""
    async with api_client(socket_path) as api:
        for pod in (await api.get("/pods/json")).json() or []:
            await api.delete(f"/pods/{pod['Id']}", params={"force": "true"})
        for ctr in (await api.get("/containers/json", params={"all": "true"})).json() or []:
            await api.delete(f"/containers/{ctr['Id']}", params={"force": "true"})


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def podman_service() -> AsyncIterator[PodmanService]:
    reason = podman_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    # Not under pytest's basetemp: its path is long (unix socket paths are limited) and it is kept around.
    base = Path(tempfile.mkdtemp(prefix="peapod-e2e-"))
    service = PodmanService(base / "data", root=base / "root", runroot=base / "runroot")
    try:
        await service.start()
        await build_busybox_image(service.socket_path)
        yield service
    finally:
        try:
            if service.running:
                with contextlib.suppress(httpx.HTTPError):
                    await remove_everything(service.socket_path)
        finally:
            await service.stop()
            await service.unmount_storage()
            shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def runtime(podman_service: PodmanService) -> AsyncIterator[PodmanRuntime]:
    rt = PodmanRuntime(podman_service.socket_path, NODE)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close()


@pytest_asyncio.fixture(loop_scope="session")
async def podman_api(podman_service: PodmanService) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(podman_service.socket_path) as api:
        yield api


MakePod = Callable[..., Pod]


@pytest_asyncio.fixture(loop_scope="session")
async def make_pod(podman_service: PodmanService) -> AsyncIterator[MakePod]:
    """A factory for API pods with fresh uids; every sandbox of this node made during the test is removed
    afterwards, whatever the test did or how it failed."""

    def make(name: str, *containers: Container, **spec: Any) -> Pod:
        return Pod(
            metadata=ObjectMeta(name=name, namespace="e2e", uid=str(uuid.uuid4())),
            spec=PodSpec(containers=list(containers), **spec),
        )

    yield make
    async with api_client(podman_service.socket_path) as api:
        node_filter = json.dumps({"label": [f"{LABEL_NODE}={NODE}"]})
        for pod in (await api.get("/pods/json", params={"filters": node_filter})).json() or []:
            await api.delete(f"/pods/{pod['Id']}", params={"force": "true", "timeout": 0})


def busybox(name: str, *command: str, **fields: Any) -> Container:
    """A container of the locally built busybox image running ``command`` (given as the k8s command)."""
    fields.setdefault("image", BUSYBOX_IMAGE)
    return Container(name=name, command=list(command) or None, **fields)
