"""``pea cordon``, ``pea uncordon`` and ``pea drain`` in-process against a real control plane, with a
hollow node running the pods so graceful deletions complete; and stock ``kubectl drain`` if installed."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.hollow import HollowNodes
from agent.pods import BackOffPolicy
from controlplane.api import Node, ObjectMeta, Pod
from controlplane.client import Client, NotFound, write_kubeconfig
from controlplane.server.controlplane import ControlPlane, Settings
from tests.cli.conftest import pea
from tests.support import eventually

NODE = "hollow-node-0"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Pods are placed by hand; no controller touches the pods' made-up owners.
    settings.scheduler = False
    settings.controllers = False
    return settings


@pytest.fixture
async def node(client: Client) -> AsyncIterator[HollowNodes]:
    hollow = HollowNodes(
        client, 1, lease_interval=0.2, status_interval=0.5, backoff=BackOffPolicy(initial=0.3)
    )
    await hollow.start()
    try:
        yield hollow
    finally:
        await hollow.stop()


def pod(name: str, node: str = NODE, *, owned: bool = True, **extra: Any) -> Pod:
    metadata: dict[str, Any] = {"name": name, **extra.pop("metadata", {})}
    if owned:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ReplicationController",
                "name": "web",
                "uid": "u-1",
                "controller": True,
            }
        ]
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], **extra}
    return msgspec.convert({"metadata": metadata, "spec": spec}, Pod)


async def running(client: Client, *names: str) -> None:
    async def all_running() -> bool:
        pods = [await client.get(Pod, n, "default") for n in names]
        return all(p.status.phase == "Running" for p in pods)

    await eventually(all_running, f"pods {names} Running")


async def exists(client: Client, name: str) -> bool:
    try:
        await client.get(Pod, name, "default")
    except NotFound:
        return False
    return True


async def test_cordon_and_uncordon(controlplane: ControlPlane, client: Client, node: HollowNodes) -> None:
    assert await pea(controlplane, "cordon", NODE) == (0, f"node/{NODE} cordoned\n", "")
    assert (await client.get(Node, NODE)).spec.unschedulable is True
    assert await pea(controlplane, "cordon", f"node/{NODE}") == (0, f"node/{NODE} already cordoned\n", "")
    assert await pea(controlplane, "uncordon", NODE) == (0, f"node/{NODE} uncordoned\n", "")
    assert not (await client.get(Node, NODE)).spec.unschedulable
    assert await pea(controlplane, "uncordon", NODE) == (0, f"node/{NODE} already uncordoned\n", "")
    code, out, err = await pea(controlplane, "cordon", "nope")
    assert (code, out) == (1, "")
    assert err == 'Error from server (NotFound): nodes "nope" not found\n'
    code, _, err = await pea(controlplane, "cordon", "pod/x")
    assert code == 1 and err == 'error: "pod/x" is not a node: use NODE or node/NODE\n'


async def test_drain_refuses_unmanaged_and_emptydir_pods(
    controlplane: ControlPlane, client: Client, node: HollowNodes
) -> None:
    await client.create(pod("bare", owned=False))
    await client.create(pod("scratch", volumes=[{"name": "tmp", "emptyDir": {}}]))
    await running(client, "bare", "scratch")
    code, out, err = await pea(controlplane, "drain", NODE)
    assert code == 1
    assert out == f"node/{NODE} cordoned\n"
    assert err == (
        f'error: unable to drain node "{NODE}": cannot delete Pods that declare no controller '
        "(use --force to override): default/bare; cannot delete Pods with local storage "
        "(use --delete-emptydir-data to override): default/scratch\n"
    )
    assert (await client.get(Node, NODE)).spec.unschedulable is True
    for name in ("bare", "scratch"):
        assert (await client.get(Pod, name, "default")).metadata.deletion_timestamp is None


async def test_drain_evicts_and_waits(controlplane: ControlPlane, client: Client, node: HollowNodes) -> None:
    await client.create(pod("owned"))
    await client.create(pod("bare", owned=False))
    await client.create(pod("scratch", volumes=[{"name": "tmp", "emptyDir": {}}]))
    # A mirror pod stands for a static pod the node runs from its own folder: no agent runs it, so its
    # status is written here as the node would.
    await client.create(pod("mirror", metadata={"annotations": {"kubernetes.io/config.mirror": "x"}}))
    await client.patch(Pod, "mirror", {"status": {"phase": "Running"}}, "default", subresource="status")
    await client.create(pod("elsewhere", node="other-node"))
    await running(client, "owned", "bare", "scratch", "mirror")
    code, out, err = await pea(
        controlplane,
        "drain",
        NODE,
        "--force",
        "--delete-emptydir-data",
        "--grace-period",
        "1",
        "--timeout",
        "30s",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"node/{NODE} cordoned"
    assert lines[-1] == f"node/{NODE} drained"
    for name in ("owned", "bare", "scratch"):
        assert f"evicting pod default/{name}" in lines
        assert f"pod/{name} evicted" in lines
        assert not await exists(client, name)
    assert "mirror" not in out
    assert err == (
        "Warning: deleting Pods that declare no controller: default/bare; "
        "deleting Pods with local storage: default/scratch\n"
    )
    assert await exists(client, "mirror") and await exists(client, "elsewhere")


async def test_drain_with_eviction_disabled_deletes(
    controlplane: ControlPlane, client: Client, node: HollowNodes
) -> None:
    await client.create(pod("owned"))
    await running(client, "owned")
    code, out, err = await pea(controlplane, "drain", NODE, "--disable-eviction")
    assert (code, err) == (0, "")
    assert out == (
        f"node/{NODE} cordoned\nevicting pod default/owned\n".replace("evicting", "deleting")
        + f"pod/owned deleted\nnode/{NODE} drained\n"
    )
    assert not await exists(client, "owned")


async def test_drain_times_out_when_pods_do_not_stop(controlplane: ControlPlane, client: Client) -> None:
    await client.create(Node(metadata=ObjectMeta(name="silent")))  # no agent will finish deletions
    await client.create(pod("stuck", node="silent", terminationGracePeriodSeconds=30))
    code, out, err = await pea(controlplane, "drain", "silent", "--timeout", "0.5s")
    assert code == 1
    assert out == "node/silent cordoned\nevicting pod default/stuck\n"
    assert err == (
        'error: unable to drain node "silent": global timeout reached: 0.5s '
        "(still terminating: default/stuck)\n"
    )
    assert (await client.get(Pod, "stuck", "default")).metadata.deletion_timestamp is not None
    code, _, err = await pea(controlplane, "drain", "silent", "--timeout", "soon")
    assert code == 1 and err.startswith('error: invalid duration "soon"')


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_drain(
    controlplane: ControlPlane, client: Client, node: HollowNodes, tmp_path: Path
) -> None:
    assert KUBECTL is not None
    resources = (await client.request("GET", "/api/v1")).json()["resources"]
    eviction: dict[str, Any] = next((r for r in resources if r["name"] == "pods/eviction"), {})
    # kubectl drain uses evictions only when discovery advertises them as policy/v1 Eviction.
    assert (eviction.get("kind"), eviction.get("group"), eviction.get("version")) == (
        "Eviction",
        "policy",
        "v1",
    )
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, controlplane.url, controlplane.admin_token)
    await client.create(pod("owned"))
    await running(client, "owned")
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--kubeconfig={kubeconfig}",
        "--cache-dir",
        str(tmp_path / "cache"),
        "drain",
        NODE,
        "--timeout=30s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 60)
    out, err = raw_out.decode(), raw_err.decode()
    assert proc.returncode == 0, err
    assert f"node/{NODE} cordoned" in out and f"node/{NODE} drained" in out
    assert "pod/owned" in out
    assert not await exists(client, "owned")
    assert (await client.get(Node, NODE)).spec.unschedulable is True
