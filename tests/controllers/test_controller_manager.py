"""``pea controller-manager --server URL``: the controllers as their own process-level component, against
a control plane that runs none of its own."""

from __future__ import annotations

import asyncio
import contextlib
import io

import msgspec
import pytest

from controlplane.api import Pod, ReplicationController
from controlplane.client import Client
from controlplane.server.controlplane import ControlPlane, Settings
from tests.support import eventually
from tui.cli import run


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.controllers = False
    return settings


async def test_controller_manager_runs_the_controllers_against_a_server(
    controlplane: ControlPlane, client: Client
) -> None:
    rc = msgspec.convert(
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"app": "web"},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        },
        ReplicationController,
    )
    await client.create(rc)

    async def pods() -> list[Pod]:
        return (await client.list(Pod, "default", label_selector="app=web")).items

    await asyncio.sleep(0.5)
    assert await pods() == []  # nothing in the control plane acts on the RC
    out, err = io.StringIO(), io.StringIO()
    argv = ["controller-manager", "-s", controlplane.url, "--node-monitor-period", "0.2"]
    manager = asyncio.create_task(run(argv, out, err))
    try:

        async def two() -> list[Pod] | None:
            found = await pods()
            return found if len(found) == 2 else None

        made = await eventually(two, "the RC's two pods")
        assert all(p.metadata.name and p.metadata.name.startswith("web-") for p in made)
        assert "controller-manager running against" in out.getvalue()
    finally:
        manager.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await manager
    assert err.getvalue() == ""


async def test_bad_controller_flags_are_one_line(controlplane: ControlPlane) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await run(["controller-manager", "-s", controlplane.url, "--workers", "0"], out, err)
    assert code == 1
    assert err.getvalue() == "error: --workers must be at least 1\n"
